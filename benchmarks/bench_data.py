"""Benchmark: Netflix raw text -> ratings table -> the four Netflix presets.

Run by hand (never in CI):

    python benchmarks/bench_data.py --sizes 4.4M,5M,20M --reference-size 4.4M

For each size it generates Netflix-like data (recozoo.data.synthetic.generate:
480,189 users x 17,770 movies, skewed activity and popularity, dates
1999-11-11..2005-12-31, seeded), writes the ``training_set/mv_*.txt`` layout
to a temp folder, and measures, each phase in its own subprocess (so peak RSS
belongs to that phase alone):

* ``parse``   — ``load_netflix`` on the folder: ratings/s (wall and CPU),
  peak RSS above the post-import baseline, bytes per rating;
* ``presets`` — ``load_netflix`` + ``time_split`` for all four
  ``NETFLIX_PRESETS``: time of the splits and of the whole, peak RSS;
* ``reference`` (one size) — a re-implementation of the approach of NVIDIA
  DeepRecommender's ``data_utils/netflix_data_convert.py``: ``readlines`` per
  file, ``split(",")``/``int``/``strptime``+``mktime`` per line, a dict of
  per-user lists of tuples, then per preset a per-user sorted Python loop
  with ``random.random()`` for the VALID/TEST coin and list comprehensions to
  drop unseen items. Writing the output files is left out on both sides.

Peak RSS: the child resets its high-water mark (``/proc/self/clear_refs``)
after imports and a warm-up, then reads ``VmHWM``; ``ru_maxrss`` is the
fallback where that is unavailable. The machine is shared: CPU time is
reported beside wall time. The run's record goes to ``benchmarks/records/data-netflix.json``
(``--record``), rewritten after every size, for ``benchmarks/render_docs.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402

N_USERS, N_ITEMS = 480_189, 17_770


def _size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000}.get(s[-1], 1)
    return int(round(float(s.rstrip("KM")) * mult))


# ----------------------------------------------------------------- in child
def _status(key: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> int:
    """Reset the RSS high-water mark; return the current RSS (bytes)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak() -> int:
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm_up() -> None:
    """Load the numba kernels (compiled and cached on first use) before timing."""
    from recozoo.data.netflix import load_netflix
    from recozoo.data.synthetic import generate, write_netflix_layout
    with tempfile.TemporaryDirectory() as d:
        write_netflix_layout(generate(50, 20, 200, seed=0), Path(d) / "ts", "mv")
        load_netflix(Path(d) / "ts")


def phase_gen(n: int, out: Path) -> dict:
    from recozoo.data.synthetic import generate, write_netflix_layout
    t0 = time.perf_counter()
    table = generate(N_USERS, N_ITEMS, n, seed=0)
    t1 = time.perf_counter()
    write_netflix_layout(table, out, "mv")
    return {"generate_s": t1 - t0, "write_s": time.perf_counter() - t1,
            "raw_bytes": sum(p.stat().st_size for p in out.iterdir()), "files": len(list(out.iterdir()))}


def phase_parse(src: Path) -> dict:
    from recozoo.data.netflix import load_netflix
    _warm_up()
    base = _reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    t = load_netflix(src)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak()
    return {"ratings": t.nnz, "users": t.n_users, "items": t.n_items, "wall_s": wall, "cpu_s": cpu,
            "ratings_per_s_wall": t.nnz / wall, "ratings_per_s_cpu": t.nnz / cpu,
            "peak_above_baseline": peak - base, "bytes_per_rating": (peak - base) / t.nnz,
            "table_bytes_per_rating": t.nbytes / t.nnz}


def phase_presets(src: Path) -> dict:
    from recozoo.data.netflix import load_netflix
    from recozoo.splits import NETFLIX_PRESETS, time_split
    _warm_up()
    base = _reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    t = load_netflix(src)
    t1 = time.perf_counter()
    sizes = {}
    for name, (a, b, c, d) in NETFLIX_PRESETS.items():
        s = time_split(t, name, a, b, c, d, seed=0)
        sizes[name] = {k: v["ratings"] for k, v in s.describe().items()}
        del s
    t2 = time.perf_counter()
    return {"ratings": t.nnz, "load_s": t1 - t0, "splits_s": t2 - t1, "total_s": t2 - t0,
            "total_cpu_s": time.process_time() - c0, "peak_above_baseline": _peak() - base,
            "sizes": sizes}


def _reference(folder: Path) -> dict:
    """The DeepRecommender converter's approach (Python dicts, per-line loops)."""
    import datetime
    import random
    from recozoo.splits import NETFLIX_PRESETS

    user2id, item2id, all_data = {}, {}, {}
    files = [os.path.join(folder, f) for f in os.listdir(folder)
             if os.path.isfile(os.path.join(folder, f)) and ".txt" in f]
    for fn in files:
        with open(fn) as f:
            lines = f.readlines()
        item = int(lines[0][:-2])
        if item not in item2id:
            item2id[item] = len(item2id)
        for line in lines[1:]:
            parts = line.strip().split(",")
            user = int(parts[0])
            if user not in user2id:
                user2id[user] = len(user2id)
            rating = float(parts[1])
            ts = int(time.mktime(datetime.datetime.strptime(parts[2], "%Y-%m-%d").timetuple()))
            u = user2id[user]
            if u not in all_data:
                all_data[u] = []
            all_data[u].append((item2id[item], rating, ts))
    t_parse = time.perf_counter()

    def stamp(d: str) -> float:
        return time.mktime(datetime.datetime.strptime(d, "%Y-%m-%d").timetuple())

    sizes = {}
    for name, (a, b, c, d) in NETFLIX_PRESETS.items():
        a, b, c, d = stamp(a), stamp(b), stamp(c), stamp(d)
        train, valid, test, train_items = {}, {}, {}, set()
        for u, ratings in all_data.items():
            for r in sorted(ratings, key=lambda x: x[2]):
                if a <= r[2] <= b:
                    train.setdefault(u, []).append(r)
                    train_items.add(r[0])
                elif c <= r[2] <= d:
                    if u not in train:
                        continue
                    (valid if random.random() <= 0.5 else test).setdefault(u, []).append(r)
        for part in (valid, test):
            for u in part:
                part[u] = [r for r in part[u] if r[0] in train_items]
        sizes[name] = {k: sum(len(v) for v in p.values())
                       for k, p in (("train", train), ("valid", valid), ("test", test))}
        del train, valid, test
    return {"t_parse": t_parse, "sizes": sizes, "ratings": sum(len(v) for v in all_data.values())}


def phase_reference(src: Path) -> dict:
    base = _reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    out = _reference(src)
    t2 = time.perf_counter()
    return {"ratings": out["ratings"], "load_s": out["t_parse"] - t0, "splits_s": t2 - out["t_parse"],
            "total_s": t2 - t0, "total_cpu_s": time.process_time() - c0,
            "peak_above_baseline": _peak() - base, "sizes": out["sizes"]}


PHASES = {"gen": phase_gen, "parse": phase_parse, "presets": phase_presets, "reference": phase_reference}


# ---------------------------------------------------------------- in parent
def _child(phase: str, *args: str) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"phase {phase} failed")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["child_wall_s"] = time.perf_counter() - t0
    return out


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def tables(figures: dict) -> dict:
    """The record's tables: every size (parse, load + 4 presets), and recozoo against the reference."""
    sizes, ref = [], []
    for label, r in figures["sizes"].items():
        p, q = r["parse"], r["presets"]
        sizes.append([f"{p['ratings']:,}", f"{p['wall_s']:.2f} s ({p['cpu_s']:.2f} s)",
                      f"{p['ratings_per_s_wall'] / 1e6:.2f}M ({p['ratings_per_s_cpu'] / 1e6:.2f}M)",
                      f"+{p['peak_above_baseline'] / 2**20:.0f} MiB",
                      f"{p['bytes_per_rating']:.1f} ({p['table_bytes_per_rating']:.1f})",
                      f"{q['total_s']:.2f} s ({q['total_cpu_s']:.2f} s)", f"+{q['peak_above_baseline'] / 2**20:.0f} MiB"])
        if "reference" in r:
            f = r["reference"]
            ref.append([f"{label} ratings", f"{f['total_s']:.1f} s / {f['total_cpu_s']:.1f} s / "
                        f"+{f['peak_above_baseline'] / 2**20:.0f} MiB",
                        f"{q['total_s']:.2f} s / {q['total_cpu_s']:.2f} s / +{q['peak_above_baseline'] / 2**20:.0f} MiB",
                        f"{r['speedup_total']:.1f}x", f"{r['speedup_total_cpu']:.1f}x", f"{r['memory_ratio']:.1f}x"])
    out = {"sizes": {"columns": ["ratings", "parse: wall (CPU)", "ratings/s wall (CPU)", "parse peak RSS",
                                 "bytes/rating (table alone)", "load + 4 presets: wall (CPU)", "presets peak RSS"],
                     "rows": sizes}}
    if ref:
        out["reference"] = {"columns": ["run", "reference: wall / CPU / peak",
                                        "recozoo load + 4 presets: wall / CPU / peak", "faster (wall)",
                                        "faster (CPU)", "less memory"], "rows": ref}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4.4M,5M,20M", help="comma-separated rating counts (K/M suffixes)")
    ap.add_argument("--reference-size", default="4.4M", help="size to run the reference converter on "
                                                             "('' to skip)")
    ap.add_argument("--workdir", default=None, help="where to write the generated text (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write all results to this JSON file")
    add_record_option(ap)
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.phase:  # child mode
        fn = PHASES[a.phase]
        res = fn(_size(a.args[0]), Path(a.args[1])) if a.phase == "gen" else fn(Path(a.args[0]))
        print(json.dumps(res))
        return

    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    ref = a.reference_size.strip()
    if ref and ref not in sizes:
        sizes.insert(0, ref)
    run = Run(__file__, argv)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "sizes": {}}
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        for s in sizes:
            n = _size(s)
            folder = Path(tmp) / s / "training_set"
            folder.parent.mkdir(parents=True)
            r = {"gen": _child("gen", str(n), str(folder))}
            print(f"[{s}] {n:,} ratings -> {r['gen']['files']} mv files, {_mib(r['gen']['raw_bytes'])} "
                  f"(generated in {r['gen']['generate_s']:.1f}s, written in {r['gen']['write_s']:.1f}s)",
                  flush=True)
            p = r["parse"] = _child("parse", str(folder))
            print(f"[{s}] parse: {p['wall_s']:.2f}s wall ({p['ratings_per_s_wall'] / 1e6:.2f}M ratings/s), "
                  f"{p['cpu_s']:.2f}s CPU ({p['ratings_per_s_cpu'] / 1e6:.2f}M/s); peak +"
                  f"{_mib(p['peak_above_baseline'])} = {p['bytes_per_rating']:.1f} B/rating "
                  f"(table {p['table_bytes_per_rating']:.1f} B/rating)", flush=True)
            q = r["presets"] = _child("presets", str(folder))
            print(f"[{s}] load + 4 presets: {q['total_s']:.2f}s wall ({q['load_s']:.2f} load + "
                  f"{q['splits_s']:.2f} splits), {q['total_cpu_s']:.2f}s CPU; peak +"
                  f"{_mib(q['peak_above_baseline'])}", flush=True)
            if s == ref:
                f = r["reference"] = _child("reference", str(folder))
                print(f"[{s}] reference converter: {f['total_s']:.1f}s wall ({f['load_s']:.1f} parse + "
                      f"{f['splits_s']:.1f} splits), {f['total_cpu_s']:.1f}s CPU; peak +"
                      f"{_mib(f['peak_above_baseline'])}", flush=True)
                r["speedup_total"] = f["total_s"] / q["total_s"]
                r["speedup_total_cpu"] = f["total_cpu_s"] / q["total_cpu_s"]
                r["memory_ratio"] = f["peak_above_baseline"] / q["peak_above_baseline"]
                print(f"[{s}] speed-up {r['speedup_total']:.1f}x wall, {r['speedup_total_cpu']:.1f}x CPU; "
                      f"peak memory {r['memory_ratio']:.1f}x less", flush=True)
                for name, ours in q["sizes"].items():
                    theirs = f["sizes"][name]
                    print(f"    {name}: train {ours['train']:,} vs {theirs['train']:,}; valid+test "
                          f"{ours['valid'] + ours['test']:,} vs {theirs['valid'] + theirs['test']:,}")
            results["sizes"][s] = r
            run.write(results, record_path(a.record, "data-netflix"))
            if a.json:  # after every size (removing 17,770 files per size takes a while)
                Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
