"""Temporal models against their static counterparts (issue 6), and TimeSVD++ speed.

Accuracy table (VALID and TEST RMSE, unclipped; each temporal model predicts at
the rating's own timestamp)::

    python benchmarks/bench_temporal.py compare [--datasets synthetic,synthetic-drift,ml-100k-time]
        [--models biasedmf,pmf,timesvdpp,timesvdpp@small,rrn] [--seeds 0,1,2]
        [--set MODEL.NAME=VALUE ...]

``MODEL@PRESET`` runs a model with one of its named presets (the settings
``recozoo fit MODEL --preset PRESET`` uses), e.g. ``timesvdpp@small``. Seed
``s`` is both the VALID/TEST split seed and the model seed.

Training time per TimeSVD++ pass at netflix-3m size (generated: 13.7M ratings,
311K users, 17.7K items over 2005-09-01..2005-11-30)::

    python benchmarks/bench_temporal.py speed [--passes 3] [--factors 20]

Prints a Markdown table (and ``--json FILE`` writes the raw figures) and writes the run's
record for ``benchmarks/render_docs.py``: ``benchmarks/records/temporal-compare-DATASETS.json``
(the data sets joined by ``-``) or ``temporal-speed.json`` (``--record`` elsewhere). Run by
hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import Run, add_record_option, record_path  # noqa: E402
from render_docs import markdown_table  # noqa: E402


def _settings(label: str, dataset: str) -> dict[str, object]:
    """``MODEL@PRESET``: the model's named preset (``recozoo fit MODEL --preset PRESET``)."""
    from recozoo.registry import get_model
    if "@" not in label:
        return {}
    name, preset = label.split("@", 1)
    presets = getattr(get_model(name), "presets", {}) or {}
    if preset not in presets:
        raise SystemExit(f"{name} has no preset {preset!r} (known: {', '.join(sorted(presets))})")
    return dict(presets[preset](dataset))


def _split(name: str, seed: int):
    from recozoo.datasets import load_split
    return load_split(name, seed=seed)


def _predict(model, table):
    ts = table.timestamps if getattr(model, "uses_timestamps", False) else None
    if ts is not None:
        return model.predict(table.users, table.items, ts)
    return model.predict(table.users, table.items)


def compare(args) -> list[dict]:
    from recozoo.metrics import rmse
    from recozoo.registry import get_model
    overrides: dict[str, dict[str, str]] = {}
    for kv in args.set or ():
        k, v = kv.split("=", 1)
        m, name = k.split(".", 1)
        overrides.setdefault(m, {})[name] = v
    rows = []
    seeds = [int(x) for x in str(args.seeds).split(",")]
    for seed in seeds:
        for ds in args.datasets.split(","):
            split = _split(ds, seed)
            for label in args.models.split(","):
                cls = get_model(label.split("@")[0])
                st = {**_settings(label, ds), **overrides.get(label, {})}
                model = cls(settings=st, seed=seed)
                t0 = time.perf_counter()
                model.fit(split.train, split.valid)
                fit_s = time.perf_counter() - t0
                row = {"seed": seed, "dataset": ds, "model": label, "fit_s": round(fit_s, 1),
                       "valid_rmse": rmse(_predict(model, split.valid), split.valid.ratings),
                       "test_rmse": rmse(_predict(model, split.test), split.test.ratings),
                       "best_epoch": getattr(model, "best_epoch_", None),
                       "settings": st}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(markdown_table(compare_table(rows)))
    return rows


def speed(args) -> list[dict]:
    from recozoo.data.synthetic import generate
    from recozoo.models.timesvdpp import TimeSVDpp
    t0 = time.perf_counter()
    table = generate(311_315, 17_736, 13_675_402, seed=0, drift=True,
                     start="2005-09-01", end="2005-11-30")
    print(f"generated {table.describe()} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = []
    for extra in ({}, {"scaling": True, "day_factors": True}):
        st = {"epochs": args.passes, "patience": 0, "factors": args.factors, **extra}
        model = TimeSVDpp(settings=st, seed=0)
        t0 = time.perf_counter()
        model.fit(table)                    # no VALID: pure training passes
        total = time.perf_counter() - t0
        secs = [h["seconds"] for h in model.history_]
        row = {"settings": st, "ratings": table.nnz, "pass_seconds": secs,
               "median_pass_s": float(np.median(secs[1:] if len(secs) > 1 else secs)),
               "fit_total_s": total}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(markdown_table(speed_table(rows)))
    return rows


def compare_table(rows: list[dict]) -> dict:
    """One row per fit (with a data-set column when there are several), then each model's mean over seeds."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    multi = len(datasets) > 1
    cols = ["seed"] * (len(seeds) > 1 or not multi) + ["dataset"] * multi + \
        ["model", "VALID RMSE", "TEST RMSE", "best epoch (on VALID)", "fit s"]
    out = []
    for r in rows:
        head = [str(r["seed"])] * (len(seeds) > 1 or not multi) + [r["dataset"]] * multi
        out.append(head + [r["model"], f"{r['valid_rmse']:.4f}", f"{r['test_rmse']:.4f}",
                           "-" if r["best_epoch"] is None else str(r["best_epoch"]), f"{r['fit_s']}"])
    if len(seeds) > 1:
        for ds in datasets:
            for m in models:
                sel = [r for r in rows if r["dataset"] == ds and r["model"] == m]
                out.append(["mean"] + [ds] * multi + [m, f"{np.mean([r['valid_rmse'] for r in sel]):.4f}",
                                                      f"{np.mean([r['test_rmse'] for r in sel]):.4f}", "",
                                                      f"{np.mean([r['fit_s'] for r in sel]):.1f}"])
    return {"columns": cols, "rows": out}


def speed_table(rows: list[dict]) -> dict:
    out = []
    for r in rows:
        extra = {k: v for k, v in r["settings"].items() if k not in ("epochs", "patience", "factors")}
        label = " ".join(f"{k}={str(v).lower()}" for k, v in extra.items())
        label = f"`{label}`" if label else f"defaults (`factors={r['settings']['factors']}`)"
        n = len(r["pass_seconds"])
        out.append([label, f"{r['median_pass_s']:.1f}", f"{r['fit_total_s']:.0f}"])
    return {"columns": ["settings", f"seconds per pass (median of passes 2–{n})", f"whole fit, {n} passes (s)"],
            "rows": out}


def tables(figures: dict) -> dict:
    """The record's table (``render_docs.py``)."""
    rows = figures["rows"]
    return {"main": compare_table(rows) if figures["mode"] == "compare" else speed_table(rows)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--datasets", default="synthetic,synthetic-drift,ml-100k-time")
    c.add_argument("--models", default="biasedmf,pmf,timesvdpp,timesvdpp@small,rrn")
    c.add_argument("--seeds", "--seed", default="0",
                   help="comma-separated seeds; seed s is both the VALID/TEST split seed and the "
                        "model seed")
    c.add_argument("--set", action="append", help="MODEL[@PROFILE].NAME=VALUE")
    c.add_argument("--json")
    add_record_option(c)
    s = sub.add_parser("speed")
    s.add_argument("--passes", type=int, default=3)
    s.add_argument("--factors", type=int, default=20)
    s.add_argument("--json")
    add_record_option(s)
    args = ap.parse_args(argv)
    run = Run(__file__, argv)
    rows = compare(args) if args.cmd == "compare" else speed(args)
    name = "temporal-speed" if args.cmd == "speed" else \
        "temporal-compare-" + "-".join(d.strip() for d in args.datasets.split(","))
    run.write({"mode": args.cmd, "rows": rows}, record_path(args.record, name))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
