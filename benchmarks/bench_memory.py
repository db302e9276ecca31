"""Benchmark: whole-process peak memory of recozoo commands, as a user runs them.

Run by hand (never in CI):

    python benchmarks/bench_memory.py                       # the issue's sizes
    python benchmarks/bench_memory.py --quick               # small sizes, for a check

The parent imports nothing of recozoo (a forked child's peak counts the parent's pages it
started with). In-process deltas (bench_data.py's "peak above the post-import baseline") leave out what a user
pays anyway: the interpreter, the imports, the buffers of writing files. This script runs each
command as its own child process, exactly as typed at a shell, and reads the child's peak
resident set from ``os.wait4`` (``ru_maxrss`` of that child alone — not of every child so far,
which ``getrusage(RUSAGE_CHILDREN)`` would give). Before the measured commands it prepares
their data in a temporary data home (unmeasured), so a ``fit`` reads a prepared split as it
would after ``data prepare``. Steps:

* ``python -c pass`` and ``python -c "import torch"``: the floor, and torch's own share;
* ``recozoo --help``: the CLI's own imports;
* ``recozoo data prepare netflix-3m --source DIR``: DIR holds ``--ratings`` generated ratings
  in the ``training_set/mv_*.txt`` layout; the figure per rating is compared with the table's
  own bytes per rating (16: user, item, rating, day);
* ``recozoo fit bias``: a model that needs no torch, on that split;
* ``recozoo fit deeprec`` on ``synthetic`` at ``--users`` x ``--items`` (one epoch, default
  settings otherwise) — the issue's comparison: 5,000 users x 17,768 items.

The record (``benchmarks/records/memory.json``, or ``memory-quick.json`` with ``--quick``)
holds each step's command, peak RSS and wall seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402

RECOZOO = shutil.which("recozoo", path=str(Path(sys.executable).parent)) or "recozoo"


def measure(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run ``argv`` as a child; its peak RSS (bytes, from ``os.wait4``) and wall seconds."""
    t0 = time.perf_counter()
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}:\n{(cwd / 'stderr.txt').read_text()[-3000:]}")
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "wall_s": wall}


def _netflix_source(folder: Path, n_ratings: int, n_users: int, n_items: int) -> Path:
    """``folder/training_set`` of generated ratings, dated within netflix-3m's months — generated in
    a child: this process must stay small, since a child's peak counts the parent's pages it was
    forked with."""
    code = ("import sys; from recozoo.data.synthetic import generate, write_netflix_layout; "
            f"write_netflix_layout(generate({n_users}, {n_items}, {n_ratings}, seed=0, start='2005-06-01', "
            f"end='2005-12-31'), sys.argv[1], 'mv')")
    subprocess.run([sys.executable, "-c", code, str(folder / "training_set")], check=True)
    return folder / "training_set"


def steps(a, source: Path) -> list[tuple[str, list[str]]]:
    deeprec_data = ["--data-param", f"n_users={a.users}", f"n_items={a.items}",
                    f"n_ratings={a.deeprec_ratings}"]
    return [
        ("python (floor)", [sys.executable, "-c", "pass"]),
        ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
        ("recozoo --help", [RECOZOO, "--help"]),
        (f"data prepare netflix-3m ({a.ratings:,} ratings)",
         [RECOZOO, "data", "prepare", "netflix-3m", "--source", str(source)]),
        ("fit bias --dataset netflix-3m", [RECOZOO, "fit", "bias", "--dataset", "netflix-3m", "-q",
                                           "--out", "run-bias"]),
        (f"fit deeprec --dataset synthetic ({a.users:,} x {a.items:,}, 1 epoch)",
         [RECOZOO, "fit", "deeprec", "--dataset", "synthetic", *deeprec_data, "--set", "epochs=1", "-q",
          "--out", "run-deeprec"]),
    ]


def tables(figures: dict) -> dict:
    rows = []
    for s in figures["steps"]:
        extra = ""
        if "bytes_per_rating" in s:
            extra = f"{s['bytes_per_rating']:.0f} B/rating (table: 16)"
        rows.append([s["name"], f"{s['peak_rss_bytes'] / 2**20:,.0f} MiB", f"{s['wall_s']:.1f} s", extra])
    return {"main": {"columns": ["command (own process)", "peak RSS", "wall", "note"], "rows": rows}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratings", type=int, default=4_400_000, help="ratings of the Netflix-layout source")
    ap.add_argument("--users", type=int, default=5_000, help="users of the DeepRec fit's data")
    ap.add_argument("--items", type=int, default=17_768, help="items of the DeepRec fit's data")
    ap.add_argument("--deeprec-ratings", type=int, default=1_000_000, help="ratings of the DeepRec fit's data")
    ap.add_argument("--quick", action="store_true", help="small sizes (200K ratings, 1,000 x 2,000)")
    add_record_option(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.ratings, a.users, a.items, a.deeprec_ratings = 200_000, 1_000, 2_000, 100_000
    run = Run(__file__, argv)
    figures = {"sizes": {"ratings": a.ratings, "users": a.users, "items": a.items,
                         "deeprec_ratings": a.deeprec_ratings}, "steps": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "RECOZOO_DATA": str(tmp / "home")}
        source = _netflix_source(tmp / "src", a.ratings, min(480_189, max(a.ratings // 20, 1000)), 17_770)
        # the DeepRec fit's split, prepared beforehand (unmeasured): the fit reads it as a user's would
        subprocess.run([RECOZOO, "data", "prepare", "synthetic", "--data-param", f"n_users={a.users}",
                        f"n_items={a.items}", f"n_ratings={a.deeprec_ratings}"], env=env, check=True,
                       capture_output=True)
        for name, cmd in steps(a, source):
            r = {"name": name, "command": " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd)),
                 **measure(cmd, env, tmp)}
            if name.startswith("data prepare"):
                r["bytes_per_rating"] = r["peak_rss_bytes"] / a.ratings
            figures["steps"].append(r)
            print(f"{name}: peak {r['peak_rss_bytes'] / 2**20:,.0f} MiB, {r['wall_s']:.1f} s", flush=True)
    run.write(figures, record_path(a.record, "memory-quick" if a.quick else "memory"))


if __name__ == "__main__":
    main()
