"""Defaults that travel: every rating model at its defaults against ``bias``, on every data set.

Why (issue 12): a default chosen on one data set must hold on data it was not
chosen on. For each data set this fits ``bias`` and every registered
rating-predicting model at its defaults (``"auto"`` settings resolved by
:mod:`recozoo.defaults` from TRAIN's shape), selects on VALID as ``recozoo fit``
does, scores TEST once, and records TEST RMSE, whether it beats ``bias``, the
fit's wall and CPU seconds and the settings the rules chose::

    python benchmarks/bench_defaults.py                       # every data set, every model
    python benchmarks/bench_defaults.py --datasets synthetic --models deeprec,pmf --record ''
    python benchmarks/bench_defaults.py --models autorec-i,glocal-k --jobs 4 --record benchmarks/records/defaults-autoencoders.json

Data sets: ``ml-100k`` (fold u1) and its other folds (``ml-100k-u2`` …),
``ml-100k-time`` (global time split), ``netflix-sample`` (the Netflix sample
in ``RECOZOO_TEST_DATA``, split by the ``random`` protocol, as a user's own
file would be), ``synthetic`` (the built-in default), ``synthetic-small``
(2,000 x 500, 30,000 ratings) and ``synthetic-large`` (20,000 x 2,000,
500,000 ratings, the generator's own defaults). A model that needs timestamps
is skipped where the data has none. Figures in docs/defaults.md come from the
record (``benchmarks/records/defaults.json``).

``--surprise`` (needs scikit-surprise, a benchmark extra, never a recozoo
dependency) runs ``bias`` and Surprise's ``SVD``, ``SVDpp`` and ``KNNBaseline``
at Surprise's own defaults on the same splits instead: trained on TRAIN alone
(Surprise selects nothing on VALID; recozoo's models use VALID only to stop),
scored on the same TEST, with ``random_state=0`` where Surprise draws. Record
``benchmarks/records/defaults-surprise.json``::

    python benchmarks/bench_defaults.py --surprise --datasets synthetic,ml-100k,ml-100k-time,netflix-sample
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _record import Run, add_record_option, record_path  # noqa: E402

DATA = Path(os.environ.get("RECOZOO_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
#: generated sizes: (n_users, n_items, n_ratings); None = the dataset's own defaults
SYNTHETIC = {"synthetic": None, "synthetic-small": (2_000, 500, 30_000),
             "synthetic-large": (20_000, 2_000, 500_000)}
DATASETS = ["ml-100k", "ml-100k-u2", "ml-100k-time", "netflix-sample", *SYNTHETIC]


def load(name: str):
    """The split of one of :data:`DATASETS` (TRAIN, VALID, TEST)."""
    from recozoo.datasets import build_split
    if name in SYNTHETIC:
        size = SYNTHETIC[name]
        params = dict(zip(("n_users", "n_items", "n_ratings"), size)) if size else None
        return build_split("synthetic", seed=0, params=params)
    if name == "netflix-sample":
        from recozoo.data.ratings_source import load_ratings_source
        from recozoo.protocols import apply_protocol, protocol_params
        table = load_ratings_source(DATA / "netflix-sample")
        return apply_protocol(table, name, "random", 0, protocol_params("random", {}))
    return build_split(name, source=DATA / "ml-100k", seed=0)


def rating_models() -> list[str]:
    from recozoo.registry import list_models
    return [e.name for e in list_models() if e.cls.predicts_ratings and e.name not in ("bias", "mean")]


def fit_one(model: str, split) -> dict:
    """Fit ``model`` at its defaults on TRAIN (VALID for selection), score VALID and TEST once."""
    from recozoo.defaults import DataShape
    from recozoo.evaluate import evaluate
    from recozoo.registry import get_model
    from recozoo.settings import settings_to_dict
    cls = get_model(model)
    if cls.uses_timestamps and not split.train.has_timestamps:
        return {"model": model, "skipped": "needs timestamps"}
    m = cls(seed=0)
    c0, t0 = time.process_time(), time.perf_counter()
    m.fit(split.train, split.valid)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"model": model, "test_rmse": evaluate(m, split, "test")["rmse"], "fit_seconds": round(wall, 1),
           "cpu_seconds": round(cpu, 1), "best_epoch": m.best_epoch_, "settings": settings_to_dict(m.settings)}
    if split.valid is not None:
        row["valid_rmse"] = evaluate(m, split, "valid")["rmse"]
    row["shape"] = DataShape.of(split.train).to_json()
    return row


#: Surprise's algorithms, by the row name they get here
SURPRISE = {"surprise-svd": "SVD", "surprise-svd++": "SVDpp", "surprise-knnbaseline": "KNNBaseline"}
#: KNNBaseline's default similarity is user-user (msd): three dense n_users² float64 matrices
KNN_MAX_USERS = 20_000


def _surprise_pairs(table):
    return list(zip(table.users.tolist(), np.asarray(table.items).tolist(),
                    np.asarray(table.ratings, dtype=float).tolist()))


def fit_surprise(model: str, split) -> dict:
    """One of :data:`SURPRISE` at Surprise's defaults, fitted on TRAIN, scored on VALID and TEST
    (the raw ids are recozoo's row numbers, so a pair Surprise does not know gets its own fallback)."""
    import surprise
    train = split.train
    n_users = int(np.count_nonzero(train.user_counts()))         # the users Surprise's trainset holds
    if model == "surprise-knnbaseline" and n_users > KNN_MAX_USERS:
        gb = 3 * 8 * n_users ** 2 / 1e9
        return {"model": model, "skipped": f"user-user similarity of {n_users:,} users: {gb:.0f} GB"}
    r = np.asarray(train.ratings, dtype=float)
    reader = surprise.Reader(rating_scale=(float(r.min()), float(r.max())))
    import pandas as pd
    df = pd.DataFrame(_surprise_pairs(train), columns=["user", "item", "rating"])
    trainset = surprise.Dataset.load_from_df(df, reader).build_full_trainset()
    cls = getattr(surprise, SURPRISE[model])
    algo = cls(random_state=0) if model != "surprise-knnbaseline" else cls(verbose=False)
    c0, t0 = time.process_time(), time.perf_counter()
    algo.fit(trainset)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    def score(table):
        pairs = _surprise_pairs(table)
        est = np.array([p.est for p in algo.test(pairs)])
        return float(np.sqrt(np.mean((est - np.array([t for _, _, t in pairs])) ** 2)))
    row = {"model": model, "test_rmse": score(split.test), "fit_seconds": round(wall, 1),
           "cpu_seconds": round(cpu, 1), "best_epoch": None, "settings": f"Surprise {SURPRISE[model]}() defaults",
           "trained_on": "TRAIN"}
    if split.valid is not None:
        row["valid_rmse"] = score(split.valid)
    return row


def _fit_row(ds: str, model: str, split=None) -> dict:
    """One model's row on data set ``ds`` (the split loaded here unless given)."""
    split = load(ds) if split is None else split
    try:
        return {"dataset": ds, **(fit_surprise(model, split) if model in SURPRISE else fit_one(model, split))}
    except Exception as e:  # noqa: BLE001 — one failing model must not lose the others' figures
        return {"dataset": ds, "model": model,
                "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def _fit_task(shared, task: tuple[str, str]) -> dict:
    """One (data set, model) fit in a :class:`recozoo.fanout.ProcessFanout` worker."""
    return _fit_row(*task)


def run(datasets: list[str], models: list[str], jobs: int = 1) -> dict:
    """``bias`` and every model on every data set, rows in that order; ``jobs`` > 1 runs that many fits at
    once in :class:`recozoo.fanout.ProcessFanout` workers (spawned, killed with this process, torch/BLAS/
    numba threads pinned to cores // jobs: the same fits, only side by side)."""
    tasks = [(ds, m) for ds in datasets for m in ["bias", *models]]
    if jobs > 1:      # recozoo's one local pool: spawned workers, threads pinned to cores // jobs
        from recozoo.fanout import ProcessFanout
        with ProcessFanout(jobs) as fan:
            rows = fan.map(_fit_task, tasks, labels=[f"{m} on {ds}" for ds, m in tasks])
    else:
        splits: dict[str, Any] = {}
        rows = []
        for ds, m in tasks:
            if ds not in splits:
                splits.clear()                   # one data set in memory at a time
                splits[ds] = load(ds)
            rows.append(_fit_row(ds, m, splits[ds]))
    bias = {r["dataset"]: r for r in rows if r["model"] == "bias"}
    for r in rows:
        base = bias[r["dataset"]]
        if r["model"] != "bias" and "test_rmse" in r and "test_rmse" in base:
            r["beats_bias"] = r["test_rmse"] < base["test_rmse"]
        rmse = f"{r['test_rmse']:.4f}" if "test_rmse" in r else r.get("skipped") or r.get("error")
        mark = {True: " beats", False: " LOSES"}.get(r.get("beats_bias"), "")
        secs = f" ({r['fit_seconds']} s, cpu {r['cpu_seconds']} s)" if "fit_seconds" in r else ""
        print(f"{r['dataset']:16s} {r['model']:10s} {rmse}{mark}{secs}", file=sys.stderr, flush=True)
    return {"rows": rows}


def tables(figures: dict) -> dict:
    """``main``: TEST RMSE per data set (columns) and model (rows), ✗ where a model loses to bias."""
    rows = figures["rows"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["dataset"], r["model"]): r for r in rows}

    def show(ds, m):
        r = cell.get((ds, m))
        if r is None:
            return "not run"
        if "test_rmse" not in r:
            return r.get("skipped") or "error"
        mark = "" if m == "bias" else (" ✓" if r["beats_bias"] else " ✗")
        return f"{r['test_rmse']:.4f}{mark}"
    return {"main": {"columns": ["model", *datasets], "rows": [[m, *[show(d, m) for d in datasets]] for m in models]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma list of {', '.join(DATASETS)}")
    ap.add_argument("--models", help="comma list (default: every registered rating model)")
    ap.add_argument("--jobs", type=int, default=1, help="data sets fitted at once, one process each (default 1)")
    ap.add_argument("--surprise", action="store_true",
                    help="instead: bias and Surprise's SVD, SVDpp, KNNBaseline at Surprise's defaults "
                         "(needs scikit-surprise; record defaults-surprise.json)")
    add_record_option(ap)
    args = ap.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        ap.error(f"unknown data set(s) {', '.join(unknown)} (known: {', '.join(DATASETS)})")
    models = [m.strip() for m in args.models.split(",")] if args.models else rating_models()
    if args.surprise:
        if importlib.util.find_spec("surprise") is None:
            ap.error("--surprise needs scikit-surprise (pip install scikit-surprise; a benchmark extra)")
        models = list(SURPRISE)
    rec = Run(__file__, argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    figures = run(datasets, models, args.jobs)
    if args.surprise:
        import surprise
        figures["surprise_version"] = surprise.__version__
    from render_docs import markdown_table
    print(markdown_table(tables(figures)["main"]))
    rec.write(figures, record_path(args.record, "defaults-surprise" if args.surprise else "defaults"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
