"""``recozoo tune --pruner median`` against ``--pruner none``: the same study, the same budget, side by side.

    python benchmarks/bench_pruners.py --dataset ml-100k --models biasedmf,timesvdpp,als,deeprec --budget 3m

For each model, two ``recozoo tune`` processes run at once, one thread each (``OMP_NUM_THREADS=1``),
one with median pruning and one without, with the same seed and the same wall-clock budget; each
refits its best trial on TRAIN ∪ VALID and scores TEST once. The record
(``benchmarks/records/tune-pruners-DATASET.json``) keeps each study's trial counts, best VALID, TEST
and chosen settings. It is the measurement behind ``--pruner auto`` (a model's ``tune_prunes``):
pruning pays where trials are slow, and costs accuracy where slow-learning settings end best
(docs/tuning.md, "Pruning: when it pays").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, load_average, record_path  # noqa: E402

PRUNERS = ("median", "none")


def tune_pair(model: str, dataset: str, budget: str, seed: int, root: Path, source: str | None) -> list[dict]:
    """Both studies of ``model`` at once; each one's best.json figures (a failed study ends the benchmark)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    load_before = load_average()
    for pruner in PRUNERS:
        cmd = [sys.executable, "-m", "recozoo.cli.main", "tune", model, "--dataset", dataset, "--budget", budget,
               "--seed", str(seed), "--pruner", pruner, "--out", str(root / f"{model}-{pruner}"), "--json", "-q",
               *(["--source", source] if source else [])]
        procs[pruner] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    rows = []
    for pruner, p in procs.items():
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"bench_pruners: recozoo tune {model} --pruner {pruner} failed (exit {p.returncode})")
        r = json.loads(out)
        rows.append({"model": model, "pruner": r["pruner"], "trials": r["trials"], "best_valid": r["best"]["value"],
                     "test_rmse": r["test"]["rmse"], "best_params": r["best"]["params"],
                     "best_trial": r["best"]["number"], "seconds": r["seconds"]})
        print(f"{model} --pruner {pruner}: {r['trials']['complete']} completed, {r['trials']['pruned']} pruned; "
              f"best VALID {r['best']['value']:.4f}, TEST {r['test']['rmse']:.4f}", file=sys.stderr)
    for row in rows:
        row["load_before"], row["load_after"] = load_before, load_average()
    return rows


def tables(figures: dict) -> dict:
    """The record's table (``render_docs.py``): one row per model and pruner."""
    rows = []
    for r in figures["rows"]:
        t = r["trials"]
        rows.append([r["model"], r["pruner"], f"{t['complete'] + t['pruned']:,} ({t['pruned']:,})",
                     f"{r['best_valid']:.4f}", f"{r['test_rmse']:.4f}"])
    notes = [f"{figures['dataset']}, `recozoo tune MODEL --budget {figures['budget']} --seed {figures['seed']}` with "
             "`--pruner median` and `--pruner none` running at the same time, one thread each, on a "
             f"{figures['cores']}-core machine. Trials = completed + pruned (a study without pruning shows one "
             "pruned trial: the one the budget stopped). Best VALID: the study's best trial; TEST: that trial's "
             "settings refitted on TRAIN ∪ VALID and scored once."]
    return {"main": {"columns": ["model", "pruner", "trials (pruned)", "best VALID", "TEST RMSE"], "rows": rows,
                     "align": ["l", "l", "r", "r", "r"], "notes": notes}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", default="biasedmf,timesvdpp,als,deeprec")
    ap.add_argument("--budget", default="3m", help="wall clock of each study (recozoo tune --budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default=None, help="raw data path (recozoo tune --source: first use of a source)")
    ap.add_argument("--out", default=None, help="keep the studies here (default: a temporary folder)")
    add_record_option(ap)
    args = ap.parse_args(argv)
    run = Run(__file__, argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        rows = [row for m in args.models.split(",")
                for row in tune_pair(m.strip(), args.dataset, args.budget, args.seed, root, args.source)]
    figures = {"dataset": args.dataset, "budget": args.budget, "seed": args.seed, "cores": os.cpu_count(),
               "rows": rows}
    run.write(figures, record_path(args.record, f"tune-pruners-{args.dataset}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
