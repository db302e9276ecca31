"""DeepRec on ML-100K u1: the paper's qualitative findings on a small grid, and the VALID search.

    python benchmarks/deeprec_findings.py             # findings grid (depth, dropout, re-feeding x lr)
    python benchmarks/deeprec_findings.py --search    # candidates for the small-data preset
    python benchmarks/deeprec_findings.py --autorec   # lambda search for autorec-i
    python benchmarks/deeprec_findings.py --search --autorec   # both searches, one record

Every row trains on u1.base minus the seeded 5% VALID slice, keeps the best
epoch on VALID, and reports that checkpoint's VALID and TEST RMSE (TEST is
printed, never used to choose). The paper's findings (Kuchaiev & Ginsburg
2017) that the grid checks: depth helps at width 128; code dropout 0.8 beats
0.0 on a wide model; re-feeding helps together with the larger learning rate
(0.005 vs 0.001), not alone.

The run's record goes to ``benchmarks/records/deeprec-findings.json`` (the grid) or
``deeprec-ml100k-accuracy.json`` (the searches), for ``benchmarks/render_docs.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import ml100k_u1  # noqa: E402
from _record import Run, add_record_option, record_path  # noqa: E402

# the paper's protocol on ML-100K: user rows, SELU, SGD momentum 0.9; batch 8 (not 128) so that
# 943 users still give ~120 updates per epoch
PAPER = {"mode": "user", "activation": "selu", "optimizer": "momentum", "batch_size": 8, "epochs": 40,
         "refeed": 0, "dropout": 0.0, "lr": 0.001}

GRID = [
    ("depth", "2 layers (n,128,n)", {"layers": "128"}),
    ("depth", "4 layers (n,128,128,...)", {"layers": "128,128"}),
    ("depth", "6 layers", {"layers": "128,128,128"}),
    ("depth", "8 layers", {"layers": "128,128,128,128"}),
    ("dropout", "512,512,1024 dp 0.0", {"layers": "512,512,1024", "dropout": 0.0}),
    ("dropout", "512,512,1024 dp 0.8", {"layers": "512,512,1024", "dropout": 0.8}),
    ("refeed", "baseline lr 0.001", {"layers": "128,128,128", "dropout": 0.5}),
    ("refeed", "baseline lr 0.001 + RF", {"layers": "128,128,128", "dropout": 0.5, "refeed": 1}),
    ("refeed", "baseline lr 0.005", {"layers": "128,128,128", "dropout": 0.5, "lr": 0.005}),
    ("refeed", "baseline lr 0.005 + RF", {"layers": "128,128,128", "dropout": 0.5, "lr": 0.005, "refeed": 1}),
]

_FULL = {"mode": "item", "optimizer": "rprop", "lr": 0.01, "batch_size": 0, "epochs": 600, "eval_every": 5,
         "patience": 10}
SEARCH = [
    {**_FULL, "layers": "500", "activation": "selu", "dropout": 0.5, "refeed": 0, "weight_decay": 0.004},
    {**_FULL, "layers": "500", "activation": "sigmoid", "dropout": 0.0, "refeed": 1, "weight_decay": 0.004},
    {**_FULL, "layers": "500", "activation": "sigmoid", "dropout": 0.0, "refeed": 0, "weight_decay": 0.004},
    {"mode": "item", "layers": "256,256", "dropout": 0.8, "optimizer": "adam", "lr": 0.001, "refeed": 1,
     "batch_size": 32, "epochs": 30},
    {"mode": "user", "layers": "256,256", "dropout": 0.8, "optimizer": "adam", "lr": 0.001, "refeed": 1,
     "batch_size": 32, "epochs": 30},
]

AUTOREC = [{"optimizer": "rprop", "batch_size": 0, "lr": 0.01, "lam": lam, "epochs": 800, "eval_every": 5,
            "patience": 10} for lam in (10, 100, 200, 300, 1000)] + \
          [{"lam": lam, "epochs": 60} for lam in (10, 30, 100)]


def run_one(model: str, settings: dict, split, seed: int = 0) -> dict:
    import torch
    from recozoo.evaluate import evaluate
    from recozoo.registry import get_model
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    m = get_model(model)(settings, seed=seed).fit(split.train, split.valid)
    return {"valid": evaluate(m, split, "valid")["rmse"], "test": evaluate(m, split, "test")["rmse"],
            "best_epoch": m.best_epoch_, "epochs_run": len(m.history_), "seconds": time.perf_counter() - t0}


def _settings_text(st: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in st.items())


def tables(figures: dict) -> dict:
    """The record's table (``render_docs.py``): the findings grid, or the searched settings."""
    if figures["mode"] == "findings":
        return {"main": {"columns": ["finding", "model", "best VALID RMSE", "TEST RMSE (best epoch)", "best epoch"],
                         "rows": [[r["finding"], r["label"], f"{r['valid']:.4f}", f"{r['test']:.4f}",
                                   str(r["best_epoch"])] for r in figures["rows"]]}}
    chosen = {m: min((r for r in figures["rows"] if r["model"] == m), key=lambda r: r["valid"])
              for m in {r["model"] for r in figures["rows"]}}
    rows = []
    for r in figures["rows"]:
        mark = "**" if chosen[r["model"]] is r else ""
        rows.append([f"{mark}{r['model']}{mark}", f"{mark}{_settings_text(r['settings'])}{mark}",
                     f"{mark}{r['valid']:.4f}{mark}", f"{mark}{r['test']:.4f}{mark}", str(r["best_epoch"]),
                     f"{r['seconds']:.0f}"])
    return {"main": {"columns": ["model", "settings", "VALID RMSE", "TEST RMSE", "best epoch", "seconds"],
                     "rows": rows, "notes": ["bold: the model's row with the best VALID RMSE (TEST is printed, "
                                             "never used to choose)"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search", action="store_true")
    ap.add_argument("--autorec", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="override every row's epochs (a quick smoke run)")
    add_record_option(ap)
    args = ap.parse_args()
    run = Run(__file__)
    import torch
    torch.set_num_threads(args.threads)
    split = ml100k_u1()
    print(f"ml-100k u1: {split.describe()}  (torch threads {args.threads})")
    if args.search or args.autorec:
        jobs = [("deeprec", st) for st in SEARCH] * args.search + [("autorec-i", st) for st in AUTOREC] * args.autorec
        rows = []
        print("| model | settings | VALID RMSE | TEST RMSE | best epoch | epochs run | seconds |")
        print("|---|---|---|---|---|---|---|")
        for model, st in jobs:
            st = {**st, "epochs": args.epochs} if args.epochs else st
            r = run_one(model, st, split)
            rows.append({"model": model, "settings": st, **r})
            print(f"| {model} | `{json.dumps(st)}` | {r['valid']:.4f} | {r['test']:.4f} | {r['best_epoch']} | "
                  f"{r['epochs_run']} | {r['seconds']:.0f} |", flush=True)
        for model in dict.fromkeys(m for m, _ in jobs):
            best = min((r for r in rows if r["model"] == model), key=lambda r: r["valid"])
            print(f"\n{model} selected on VALID: {json.dumps(best['settings'])} -> VALID {best['valid']:.4f}, "
                  f"TEST {best['test']:.4f}")
        run.write({"mode": "search", "threads": args.threads, "rows": rows},
                  record_path(args.record, "deeprec-ml100k-accuracy"))
        return
    print(f"common settings: {PAPER}")
    print("| finding | model | best VALID RMSE | TEST RMSE (best epoch) | best epoch |")
    print("|---|---|---|---|---|")
    rows = []
    for group, label, over in GRID:
        st = {**PAPER, **over}
        if args.epochs:
            st["epochs"] = args.epochs
        r = run_one("deeprec", st, split)
        rows.append({"finding": group, "label": label, "settings": st, **r})
        print(f"| {group} | {label} | {r['valid']:.4f} | {r['test']:.4f} | {r['best_epoch']} |", flush=True)
    run.write({"mode": "findings", "threads": args.threads, "rows": rows}, record_path(args.record, "deeprec-findings"))


if __name__ == "__main__":
    main()
