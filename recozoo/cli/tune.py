"""``recozoo tune`` (registered into the main Typer app): a thin layer over :func:`recozoo.tune.tune`.

stdout holds the result (a short table, or one JSON document with ``--json``);
each trial's line, with the best VALID so far, goes to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune_cmd(
        model: str = typer.Argument(..., help="registered model name (its search space: `recozoo models MODEL`)"),
        dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="dataset name"),
        budget: Optional[str] = typer.Option(None, "--budget", help="wall-clock budget, e.g. 90s, 10m, 1.5h"),
        trials: Optional[int] = typer.Option(None, "--trials", help="finished trials to reach (default 20 "
                                             "when no --budget)"),
        metric: Optional[str] = typer.Option(None, "--metric", help="rmse|mae|ndcg@K|recall@K|map@K|hitrate@K "
                                             "(default rmse; ndcg@10 for ranking-only models)"),
        jobs: Optional[int] = typer.Option(None, "--jobs", help="trials at once: worker processes sharing the "
                                           "study (default 1); with --cluster, default: the cluster's task slots"),
        cluster: Optional[str] = typer.Option(None, "--cluster", help="Dask scheduler address tcp://HOST:PORT: the "
                                              "trials run on its workers, the study is kept in --out "
                                              "(pip install 'recozoo\\[cluster]')"),
        storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in "
                                              "--out); e.g. postgresql://user@host/db for several machines"),
        seed: int = typer.Option(0, "--seed", help="seed of the TPE sampler and of every fit"),
        out: Optional[Path] = typer.Option(None, "--out", help="output folder = the final run directory "
                                           "(default runs/tune-MODEL-DATASET; rerun to resume)"),
        pruner: str = typer.Option("auto", "--pruner", help="auto|median|none: median stops trials whose "
                                   "per-epoch VALID RMSE lags the completed trials'; auto = median for the models "
                                   "that declare it (`recozoo models MODEL`), none for the fast factor models"),
        no_refit: bool = typer.Option(False, "--no-refit", help="score TEST with the best trial's settings "
                                      "fitted on TRAIN (default: refitted on TRAIN+VALID)"),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="fix a setting NAME=VALUE in every trial"),
        split_seed: int = typer.Option(0, "--split-seed", help="seed of the valid/test split"),
        device: str = typer.Option("cpu", "--device", help="cpu|cuda|cuda:N|mps|auto"),
        source: Optional[Path] = typer.Option(None, "--source", help="raw data path (first use of a source)"),
        data_param: Optional[List[str]] = typer.Option(None, "--data-param", help="dataset parameter NAME=VALUE"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
    ):
        """Tune MODEL's settings on VALID (Optuna, resumable), refit the best, score TEST once."""
        from recozoo.devices import check_device_name
        from recozoo.errors import RecozooError
        from recozoo.progress import NullReporter, RichReporter
        from recozoo.settings import parse_assignments
        from recozoo.tune import TuneConfig, parse_budget, tune
        if not dataset:
            raise RecozooError("tune needs --dataset NAME (see `recozoo data list`)")
        cfg = TuneConfig(model=model, dataset=dataset, metric=metric, budget=parse_budget(budget), trials=trials,
                         jobs=jobs, cluster=cluster, storage=storage, seed=seed, out=out, refit=not no_refit,
                         fixed=parse_assignments(set_), split_seed=split_seed,
                         data_params=parse_assignments(data_param) if data_param else None,
                         source=str(source) if source else None, device=check_device_name(device),
                         pruner=pruner)
        reporter = NullReporter() if quiet else RichReporter(enabled=False)
        result = tune(cfg, reporter=reporter)
        if as_json:
            from recozoo.io import json_default
            sys.stdout.write(json.dumps(result, indent=2, default=json_default) + "\n")
        else:
            _print_result(result)


def _print_result(r: dict) -> None:
    c, b = r["trials"], r["best"]
    lines = [f"{r['model']} on {r['dataset']}: {c['complete']} trials completed, {c['pruned']} pruned, "
             f"{c['failed']} failed in {r['seconds']:.0f} s (pruner: {r['pruner']})",
             f"best trial {b['number']}: VALID {r['metric']} {b['value']:.4f}",
             "settings: " + ", ".join(f"{k}={v}" for k, v in sorted(b["params"].items()))]
    test = r.get("test") or {}
    if r["metric"] in test:
        how = "refitted on train+valid" if r["refit"] else "fitted on train"
        lines.append(f"TEST {r['metric']} {test[r['metric']]:.4f} ({how}, scored once)")
    lines.append(f"run directory: {r['run_dir']} (trials.csv, best.json, history.png, importances.png)")
    sys.stdout.write("\n".join(lines) + "\n")
