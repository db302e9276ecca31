"""``recozoo compare`` as a benchmark: the whole command timed, its leaderboard kept as a record.

    python benchmarks/bench_compare.py --dataset ml-100k \
        --models deeprec,autorec-i,autorec-u,als,pmf,biasedmf,bias --seeds 3

Every option other than ``--out`` and ``--record`` goes to ``recozoo compare`` unchanged. The
comparison runs as its own process (``python -m recozoo.cli.main compare ...``), end to end:
fits, evaluation, bootstrap and figures, exactly what a user runs. The record
(``benchmarks/records/compare-DATASET.json``, or ``--record``) keeps the wall-clock seconds,
``leaderboard.json`` and the leaderboard in Markdown as ``recozoo compare`` printed it; its table
in the docs is that Markdown (``benchmarks/render_docs.py``). ``--out`` keeps the run folder (by
default a temporary one, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402


def parse_leaderboard(markdown: str) -> dict:
    """``recozoo compare``'s Markdown (a bold title, the table, '- ' notes) as a table."""
    lines = markdown.strip().splitlines()
    rows = [ln for ln in lines if ln.startswith("|")]
    if len(rows) < 2:
        raise ValueError("no table in the leaderboard")

    def cells(ln: str) -> list[str]:
        return [c.strip() for c in ln.strip()[1:-1].split("|")]
    align = [("l" if c.startswith(":") else "") + ("r" if c.endswith(":") else "") for c in cells(rows[1])]
    return {"columns": cells(rows[0]), "rows": [cells(r) for r in rows[2:]],
            "align": [{"lr": "c"}.get(a, a) for a in align],
            "notes": [ln[2:] for ln in lines if ln.startswith("- ")]}


def tables(figures: dict) -> dict:
    """The record's table (``render_docs.py``)."""
    t = parse_leaderboard(figures["markdown"])
    t["notes"].append(f"{figures['wall_s']:.0f} s wall clock for the whole command (every fit, evaluation, "
                      "bootstrap and figures).")
    return {"main": t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Any other option is passed to `recozoo compare`.")
    ap.add_argument("--out", default=None, help="keep the comparison's run folder here")
    ap.add_argument("--dataset", required=True)
    add_record_option(ap)
    args, rest = ap.parse_known_args(argv)
    run = Run(__file__, argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "compare")
        cmd = [sys.executable, "-m", "recozoo.cli.main", "compare", "--dataset", args.dataset, *rest,
               "--out", str(out), "--format", "markdown"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            print(f"bench_compare: recozoo compare failed (exit {p.returncode})", file=sys.stderr)
            return p.returncode
        markdown = (out / "leaderboard.md").read_text()
        board = json.loads((out / "leaderboard.json").read_text())
    print(markdown)
    print(f"{wall:.0f} s wall clock end to end", file=sys.stderr)
    run.write({"dataset": args.dataset, "compare_args": rest, "wall_s": round(wall, 1), "markdown": markdown,
               "leaderboard": board}, record_path(args.record, f"compare-{args.dataset}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
