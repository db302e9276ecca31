"""``recozoo compare`` and ``recozoo leaderboard`` (registered into the main Typer app).

stdout holds exactly the table in the chosen ``--format`` (for ``json``: one
JSON document); progress bars, the paths of the written files and messages go
to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from recozoo.errors import RecozooError

FORMATS = ("table", "markdown", "csv", "json")


def _check_format(fmt: str) -> str:
    f = fmt.strip().lower()
    if f not in FORMATS:
        raise RecozooError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return f


def _emit(lb, fmt: str) -> None:
    """Write the files, print the table on stdout and the file paths on stderr."""
    import json
    from rich.console import Console
    from recozoo.compare.report import write_outputs
    from recozoo.compare.table import to_csv, to_json, to_markdown, to_rich
    files = write_outputs(lb)
    if fmt == "json":
        sys.stdout.write(json.dumps(to_json(lb), indent=2, default=str) + "\n")
    elif fmt == "csv":
        sys.stdout.write(to_csv(lb))
    elif fmt == "markdown":
        sys.stdout.write(to_markdown(lb))
    else:
        # a pipe gets the full width: a table is no use wrapped into 80 columns
        width = None if sys.stdout.isatty() else 240
        Console(highlight=False, soft_wrap=False, width=width).print(to_rich(lb))
    sys.stdout.flush()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if "learning_curves" not in files:
        err.print("learning curves: no model logged per-epoch validation RMSE")
    for name in ("learning_curves", "test_rmse_bars", "leaderboard_md", "leaderboard_csv",
                 "leaderboard_json"):
        if name in files:
            err.print(f"{name.replace('_', ' ')}: {files[name]}")


def _tune_spec(tune: bool, budget: Optional[str], trials: Optional[int], pruner: Optional[str] = None):
    """--tune [--budget PER_MODEL | --tune-trials N] [--tune-pruner P] as a TuneSpec (None without --tune)."""
    from recozoo.compare.config import TuneSpec
    from recozoo.tune.config import parse_budget, parse_pruner
    if not tune:
        if budget is not None or trials is not None or pruner is not None:
            raise RecozooError("--budget, --tune-trials and --tune-pruner go with --tune")
        return None
    if trials is not None and trials < 1:
        raise RecozooError(f"--tune-trials must be >= 1, got {trials}")
    return TuneSpec(budget=parse_budget(budget), trials=trials, pruner=parse_pruner(pruner))


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="dataset name"),
        models: Optional[str] = typer.Option(None, "--models", "-m",
                                             help="comma-separated model names, e.g. deeprec,pmf,bias"),
        seeds: Optional[str] = typer.Option(None, "--seeds",
                                            help="number of seeds (3 = 0,1,2) or a list 0,5,7 (default 3)"),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="MODEL.NAME=VALUE (repeatable)"),
        preset: Optional[List[str]] = typer.Option(None, "--preset", help="MODEL=PRESET, e.g. deeprec=paper"),
        config: Optional[Path] = typer.Option(None, "--config", help="TOML experiment file"),
        out: Optional[Path] = typer.Option(None, "--out", help="output folder (default runs/compare-DATASET)"),
        fmt: str = typer.Option("table", "--format", help="table|markdown|csv|json"),
        metrics: Optional[str] = typer.Option(None, "--metrics",
                                              help="rmse,mae,ndcg@K,recall@K,recall_std@K,map@K,"
                                                   "hitrate@K,coverage@K,popularity@K (default rmse,mae; "
                                                   "implicit data: ndcg@100,recall@20,recall@50)"),
        sort: Optional[str] = typer.Option(None, "--sort", help="sort rows by this metric (default: test RMSE; "
                                           "implicit data: ndcg@100)"),
        split_seed: Optional[int] = typer.Option(None, "--split-seed", help="seed of the valid/test split"),
        device: Optional[str] = typer.Option(None, "--device", help="auto|cpu|cuda|cuda:N|mps"),
        source: Optional[Path] = typer.Option(None, "--source", help="raw data path (first use of a source)"),
        data_param: Optional[List[str]] = typer.Option(None, "--data-param", help="dataset parameter NAME=VALUE"),
        refit: Optional[bool] = typer.Option(None, "--refit/--no-refit",
                                             help="refit each fit on TRAIN+VALID with the settings and epoch "
                                                  "count VALID chose; TEST scores the refitted models"),
        tune: bool = typer.Option(False, "--tune", help="tune each model's settings on VALID first (recozoo "
                                  "tune; studies kept in OUT/studies), then refit on TRAIN+VALID; a blend without "
                                  "components blends the tuned rows"),
        budget: Optional[str] = typer.Option(None, "--budget", help="with --tune: wall clock per model, e.g. 5m"),
        tune_trials: Optional[int] = typer.Option(None, "--tune-trials", help="with --tune: trials per model"),
        tune_pruner: Optional[str] = typer.Option(None, "--tune-pruner", help="with --tune: auto|median|none "
                                                  "(recozoo tune --pruner; default auto)"),
        jobs: Optional[int] = typer.Option(None, "--jobs", "-j",
                                           help="fits at a time: this process and jobs-1 local worker processes "
                                                "(default 1); threads per fit = cores // jobs"),
        cluster: Optional[str] = typer.Option(None, "--cluster",
                                              help="Dask scheduler address (tcp://HOST:8786): the fits "
                                                   "(and with --tune the studies, one per worker slot) run on "
                                                   "its workers (pip install 'recozoo\\[cluster]')"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    ):
        """Fit several models x seeds on one split and print a leaderboard (resumable)."""
        from recozoo.compare.config import build_config, load_config_file
        from recozoo.compare.runner import run_compare
        from recozoo.compare.table import build_leaderboard
        from recozoo.devices import check_device_name
        from recozoo.settings import parse_assignments
        f = _check_format(fmt)
        file = load_config_file(config) if config else None
        tune_spec = _tune_spec(tune, budget, tune_trials, tune_pruner)
        cfg = build_config(file=file, dataset=dataset, models=models, seeds=seeds, metrics=metrics,
                           sets=set_, presets=preset, split_seed=split_seed,
                           device=check_device_name(device) if device else None,
                           source=str(source) if source else None,
                           data_params=parse_assignments(data_param) if data_param else None,
                           refit=refit, tune=tune_spec, jobs=jobs, cluster=cluster)
        out_dir = out or Path("runs") / f"compare-{cfg.dataset}"
        res = run_compare(cfg, out_dir, progress=not quiet)
        if res["skipped"]:
            sys.stderr.write(f"reused {len(res['skipped'])} finished fit(s) from {out_dir / 'results.jsonl'}; "
                             f"fitted {len(res['fitted'])}\n")
        _emit(build_leaderboard(out_dir, sort=sort), f)

    @app.command("leaderboard")
    def leaderboard_cmd(
        folder: Path = typer.Argument(..., help="output folder of a `recozoo compare` run"),
        fmt: str = typer.Option("table", "--format", help="table|markdown|csv|json"),
        metrics: Optional[str] = typer.Option(None, "--metrics",
                                              help="columns among the metrics the comparison computed"),
        sort: Optional[str] = typer.Option(None, "--sort", help="sort rows by this metric (one of the columns)"),
    ):
        """Redraw a comparison's table and figures from its results store, without refitting."""
        from recozoo.compare.table import build_leaderboard
        f = _check_format(fmt)
        _emit(build_leaderboard(folder, metrics, sort), f)
