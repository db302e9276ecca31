"""Refactor guard: SHA-256 of every model's predictions on ML-100K u1, before vs after.

Why: refactors of the engine and the models must keep every prediction
bit-identical (the bar DeepRec's engine port was held to). This tool fits a
fixed list of models with fixed seeds and short budgets, hashes what they
answer (rating predictions on TEST, time-aware predictions for the temporal
models, top-10 recommendations and their scores, the evaluator's figures) and
runs one small ``compare`` (per-rating TEST errors, ranking metrics). Run it on
two checkouts and compare the two JSON files::

    python benchmarks/check_predictions.py --out after.json
    git worktree add /tmp/base BASE_COMMIT
    PYTHONPATH=/tmp/base python benchmarks/check_predictions.py --out before.json
    python benchmarks/check_predictions.py --diff before.json after.json

(``PYTHONPATH`` puts the other checkout's ``recozoo`` first; the JSON records
which ``recozoo`` was imported.) Everything runs single-threaded on the CPU
(torch, BLAS, numba, implicit), so the hashes do not depend on the machine's
load. A few minutes on one core.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: DeepRec's settings that became "auto" (recozoo.defaults), at the values the cases were recorded with
_DEEPREC_PINNED = {"mode": "user", "activation": "selu", "optimizer": "momentum", "lr": 0.005,
                   "weight_decay": 0.0, "batch_size": 128, "eval_every": 1, "patience": 0,
                   "baseline": "none"}

#: RRN's settings that became "auto" (recozoo.defaults), at the values the case was recorded with
_RRN_PINNED = {"baseline": "none"}

#: (case name, registered model, settings): short budgets, every optimiser path of the engine
CASES: list[tuple[str, str, dict]] = [
    ("mean", "mean", {}),
    ("bias", "bias", {}),
    ("deeprec-refeed1", "deeprec", {"layers": "64,32", "epochs": 3, "refeed": 1, "dropout": 0.2,
                                    **_DEEPREC_PINNED}),
    ("deeprec-refeed0", "deeprec", {"layers": "64,32", "epochs": 3, "refeed": 0, "dropout": 0.2,
                                    **_DEEPREC_PINNED}),
    ("autorec-i-rprop", "autorec-i", {"hidden": 50, "epochs": 8, "eval_every": 2, "baseline": "none"}),
    ("autorec-i-lbfgs", "autorec-i", {"hidden": 50, "optimizer": "lbfgs", "lr": 1.0, "lam": 200.0,
                                      "epochs": 4, "eval_every": 1, "baseline": "none"}),
    ("autorec-u-adam", "autorec-u", {"hidden": 50, "optimizer": "adam", "lr": 0.001, "batch_size": 128,
                                     "epochs": 3, "eval_every": 1, "baseline": "none"}),
    ("glocal-k", "glocal-k", {"layers": "32,32", "pre_epochs": 4, "fine_epochs": 3, "eval_every": 2}),
    ("rrn", "rrn", {"epochs": 2, "hidden": 16, "embed": 16, "dynamic": 8, "stationary": 8,
                    **_RRN_PINNED}),
    ("timesvdpp", "timesvdpp", {"epochs": 3}),
    ("als", "als", {"iterations": 5, "reg": 0.1, "baseline": "none"}),
    ("pmf", "pmf", {"epochs": 5, "link": "logistic", "baseline": "none"}),
    ("biasedmf", "biasedmf", {"epochs": 3, "factors": 100, "reg": 0.02}),
    ("blend", "blend", {"components": "bias; biasedmf epochs=2 factors=100 reg=0.02"}),
    ("als-implicit", "als-implicit", {"iterations": 3, "threads": 1}),
    ("ease", "ease", {}),
]

#: one small comparison: the compare path's per-rating TEST errors and ranking metrics (als-implicit is
#: fitted above only: at 0.1.0 it fails on the compare's memory-mapped, read-only split)
COMPARE_MODELS = ["bias", "biasedmf", "timesvdpp", "ease"]
COMPARE_SETTINGS = {"biasedmf": {"epochs": 2, "factors": 100, "reg": 0.02}, "timesvdpp": {"epochs": 2}}

#: keys of result records that measure time or place, not what was computed
_VOLATILE = {"predict_seconds", "recommend_seconds", "seconds", "wall", "finished", "memory", "machine",
             "versions", "run_dir", "started", "fit_seconds"}


def sha(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _figures(obj) -> str:
    return hashlib.sha256(json.dumps(_strip(obj), sort_keys=True, default=str).encode()).hexdigest()


def check_case(name: str, model_name: str, settings: dict, split) -> dict:
    from recozoo.evaluate import evaluate, evaluate_ranking
    from recozoo.registry import get_model
    cls = get_model(model_name)
    model = cls(settings=dict(settings), seed=0)
    t0 = time.perf_counter()
    model.fit(split.train, split.valid)
    out: dict = {"model": model_name, "settings": settings, "fit_seconds": round(time.perf_counter() - t0, 2)}
    test = split.test
    users, items = test.users.astype(np.int64), np.asarray(test.items, dtype=np.int64)
    if cls.predicts_ratings:
        out["predict"] = sha(model.predict(users, items))
        if cls.uses_timestamps:
            out["predict_at_time"] = sha(model.predict(users, items, timestamps=np.asarray(test.timestamps)))
        out["evaluate_test"] = _figures(evaluate(model, split, "test"))
        out["evaluate_valid"] = _figures(evaluate(model, split, "valid"))
    rec_users = np.arange(0, split.train.n_users, 7, dtype=np.int64)
    rec_items, rec_scores = model.recommend(rec_users, k=10)
    out["recommend_items"] = sha(rec_items)
    out["recommend_scores"] = sha(rec_scores)
    out["evaluate_ranking"] = _figures(evaluate_ranking(model, split, "test", k=10))
    return out


def check_synthetic() -> dict:
    """The generator behind the ``synthetic`` datasets and the small test splits (dense, drifting, default)."""
    from recozoo.data.synthetic import generate
    out = {}
    for name, kw in (("default", {}), ("drift", {"n_users": 300, "n_items": 60, "n_ratings": 6000, "seed": 5,
                                                   "drift": True}),
                     ("dense", {"n_users": 50, "n_items": 20, "n_ratings": 500, "seed": 1})):
        t = generate(**kw)
        out[name] = sha(np.concatenate([t.indptr.astype(np.int64), t.items.astype(np.int64),
                                        t.timestamps.astype(np.int64), t.ratings.view(np.int32).astype(np.int64)]))
    return out


def check_compare(source: Path, work: Path) -> dict:
    from recozoo.compare.config import CompareConfig, ModelSpec
    from recozoo.compare.runner import TEST_ERRORS, run_compare, run_dir_name
    from recozoo.compare.store import ResultsStore
    cfg = CompareConfig(dataset="ml-100k", models=[ModelSpec(m, dict(COMPARE_SETTINGS.get(m, {})))
                                                   for m in COMPARE_MODELS],
                        seeds=[0], metrics=["rmse", "mae", "ndcg@10", "recall@5"], device="cpu",
                        source=str(source))
    out_dir = work / "compare"
    run_compare(cfg, out_dir, progress=False)
    res: dict = {}
    for rec in ResultsStore(out_dir).latest().values():
        m = rec["model"]
        entry = {"metrics": _figures(rec["metrics"]), "config_hash": rec["config_hash"]}
        err = out_dir / run_dir_name(m, 0) / TEST_ERRORS
        if err.exists():
            e = np.load(err)
            entry["test_errors"] = sha(e)
            entry["test_errors_rmse_matches"] = bool(abs(float(np.sqrt(np.mean(e.astype(np.float64) ** 2)))
                                                         - rec["metrics"]["test"]["rmse"]) <= 1e-5)
        res[m] = entry
    return res


def _commit(path: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run(data: Path, only: list[str] | None) -> dict:
    import torch
    torch.set_num_threads(1)
    import recozoo
    from recozoo.datasets import build_split
    pkg = Path(recozoo.__file__).resolve().parents[1]
    result = {"recozoo": str(Path(recozoo.__file__).resolve()), "commit": _commit(pkg), "cases": {}}
    with tempfile.TemporaryDirectory() as home:
        os.environ["RECOZOO_DATA"] = home
        split = build_split("ml-100k", source=data, seed=0)
        for name, model_name, settings in CASES:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            result["cases"][name] = check_case(name, model_name, settings, split)
            print(f"{name:18s} {time.perf_counter() - t0:6.1f}s", file=sys.stderr, flush=True)
        if not only or "synthetic" in only:
            result["synthetic"] = check_synthetic()
        if not only or "compare" in only:
            t0 = time.perf_counter()
            result["compare"] = check_compare(data, Path(home))
            print(f"{'compare':18s} {time.perf_counter() - t0:6.1f}s", file=sys.stderr, flush=True)
    return result


def diff(a: dict, b: dict) -> list[str]:
    """Lines naming every hash that differs (fit_seconds and paths ignored)."""
    out = []

    def walk(x, y, where):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if k in ("fit_seconds", "recozoo", "commit"):
                    continue
                if k not in x or k not in y:
                    out.append(f"{where}{k}: only in {'after' if k in y else 'before'}")
                else:
                    walk(x[k], y[k], f"{where}{k}.")
        elif x != y:
            out.append(f"{where[:-1]}: {x} != {y}")
    walk(a, b, "")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("RECOZOO_TEST_DATA", ROOT.parent / "shared" / "data")) / "ml-100k",
                    help="the ML-100K folder (u.data, u1.base, u1.test, ...)")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    ap.add_argument("--only", help="comma list of case names (and/or 'synthetic', 'compare')")
    ap.add_argument("--diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                    help="compare two JSON files; exit 1 when any hash differs")
    args = ap.parse_args()
    if args.diff:
        a, b = (json.loads(p.read_text()) for p in args.diff)
        lines = diff(a, b)
        print("\n".join(lines) if lines else f"identical: {len(b.get('cases', {}))} cases and the compare run")
        return 1 if lines else 0
    if not args.data.is_dir():      # (the data folder is the one input a run needs; say so in one line)
        sys.exit(f"check_predictions.py: error: --data {args.data}: no such folder (the ML-100K folder)")
    res = run(args.data, args.only.split(",") if args.only else None)
    text = json.dumps(res, indent=1, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
