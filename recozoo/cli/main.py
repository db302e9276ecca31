"""The ``recozoo`` command: a thin Typer layer over the library.

Conventions every command keeps: ``--json`` prints exactly one JSON document on
stdout and nothing else there; progress bars and messages go to stderr; an
error is one line on stderr (``recozoo: error: ...``) and a non-zero exit.

The commands import the library inside their bodies, on purpose and only for
start-up time: ``recozoo --help`` or ``recozoo fit bias`` then load no torch,
numba or plotting code that another command needs. (They dodge no import
circle: the package has none, ``tests/test_structure.py`` checks it.)
``recozoo.cli.compare`` does the same.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from recozoo.errors import RecozooError
from recozoo.io import json_default

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="recozoo: fit, evaluate, compare and serve recommender models.")
data_app = typer.Typer(no_args_is_help=True, help="List, fetch, prepare and inspect datasets.")
app.add_typer(data_app, name="data")


def _out(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")
    sys.stdout.flush()


def _console(stderr: bool = False):
    from rich.console import Console
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _params(pairs: Optional[List[str]]) -> dict:
    from recozoo.settings import parse_assignments
    return parse_assignments(pairs)


# ---------------------------------------------------------------- models
@app.command("models")
def models_cmd(name: Optional[str] = typer.Argument(None, help="show one model's settings"),
               as_json: bool = typer.Option(False, "--json", help="print JSON on stdout")):
    """List registered models (built-in and plugins) with their provider, or one model's settings."""
    from recozoo.registry import get_model, list_models
    from recozoo.settings import settings_table
    if name:
        cls = get_model(name)
        rows = settings_table(cls.Settings)
        if as_json:
            _out({"model": name, "settings": rows, "fallback": cls.fallback,
                  "presets": sorted(cls.presets), "folds_in": cls.folds_in.value,
                  "fold_in_method": cls.fold_in_method, "valid_curve": cls.valid_curve,
                  "search_space": cls.search_space.describe()})
            return
        _print_settings(cls, rows)
        return
    entries = list_models()
    if as_json:
        _out([{"name": e.name, "provider": e.provider, "summary": e.summary,
               "predicts_ratings": e.cls.predicts_ratings, "folds_in": e.cls.folds_in.value,
               "fold_in_method": e.cls.fold_in_method} for e in entries])
        return
    from rich.table import Table
    t = Table(title="recozoo models")
    for c in ("model", "provider", "ratings", "fold-in", "summary"):
        t.add_column(c)
    for e in entries:
        t.add_row(e.name, e.provider, "yes" if e.cls.predicts_ratings else "ranking only",
                  e.cls.folds_in.value, e.summary)
    _console().print(t)


def _print_settings(cls, rows) -> None:
    from rich.table import Table
    t = Table(title=f"{cls.name} settings (--set NAME=VALUE)")
    for c in ("name", "type", "default", "meaning"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["type"], r["default"], r["help"])
    con = _console()
    con.print(t)
    presets = sorted(cls.presets)
    if presets:
        con.print(f"presets (--preset NAME): {', '.join(presets)}")
    con.print(f"fallback for unseen users/items: {cls.fallback}")
    con.print(f"fold-in of a new user ({cls.folds_in.value}): {cls.fold_in_method}")
    curve = "reported" if cls.valid_curve else "not reported"
    if cls.valid_curve:
        curve += "; recozoo tune --pruner auto: " + ("median pruning" if cls.tune_prunes else "no pruning")
    con.print("VALID RMSE per epoch (what recozoo tune can prune on): " + curve)
    _print_space(cls, con)


def _print_space(cls, con) -> None:
    """The model's declared search space (what `recozoo tune` samples), or a line saying it has none."""
    rows = cls.search_space.describe()
    if not rows:
        con.print("search space (recozoo tune): none declared")
        return
    from rich.table import Table
    t = Table(title=f"{cls.name} search space (recozoo tune)")
    for c in ("name", "kind", "values", "scale", "when"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["kind"], r["values"], "log" if r["log"] else "", r["when"])
    con.print(t)


# ------------------------------------------------------------------- fit
@app.command("fit")
def fit_cmd(
    model: str = typer.Argument(..., help="registered model name (see `recozoo models`)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="dataset name (see `recozoo data list`)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="a setting NAME=VALUE (repeatable)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="named settings, e.g. `paper` (picked by dataset)"),
    seed: int = typer.Option(0, "--seed", help="model seed (initialisation, shuffling)"),
    split_seed: int = typer.Option(0, "--split-seed", help="seed of the valid/test split"),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|cuda:N|mps"),
    source: Optional[Path] = typer.Option(None, "--source", help="raw data path (first use of a source)"),
    data_param: Optional[List[str]] = typer.Option(None, "--data-param", help="dataset parameter NAME=VALUE"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/MODEL-DATASET-TIME)"),
    resume: bool = typer.Option(False, "--resume", help="continue the interrupted run in --out"),
    force: bool = typer.Option(False, "--force", help="replace the run in --out (kept intact until the new "
                               "run is whole)"),
    refit: bool = typer.Option(False, "--refit", help="after selecting on VALID, refit on TRAIN+VALID with "
                               "the chosen settings and epoch count; TEST is scored by the refitted model"),
    warm_start: Optional[Path] = typer.Option(None, "--warm-start",
                                              help="continue RUN_DIR's model from its weights on TRAIN + the "
                                                   "live events it logged (dataset and settings: the run's)"),
    clip: Optional[str] = typer.Option(None, "--clip", help="also report metrics clipped to LO,HI (e.g. 1,5)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout"),
    help_settings: bool = typer.Option(False, "--help-settings", help="list the model's settings and exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
):
    """Fit MODEL on a dataset's TRAIN, select on VALID, score TEST once; save a run directory."""
    from recozoo.progress import NullReporter, RichReporter
    from recozoo.registry import get_model
    from recozoo.rundir import process_rank, writing_run
    from recozoo.runs import RunConfig, default_run_dir, fit_run, resolve_settings
    from recozoo.settings import settings_table

    cls = get_model(model)
    if help_settings:
        _print_settings(cls, settings_table(cls.Settings))
        return
    device = _device(device)
    if warm_start is not None:
        from recozoo.warm import read_run_config
        prev = read_run_config(warm_start)
        if prev.get("model") != model:
            raise RecozooError(f"--warm-start: {warm_start} holds a {prev.get('model')} run, not {model}")
        if dataset and dataset != prev.get("dataset"):
            raise RecozooError(f"--warm-start: {warm_start} was fitted on {prev.get('dataset')}, not {dataset}")
        if preset:
            raise RecozooError("--warm-start keeps the run's settings; change them with --set, not --preset")
        dataset = prev["dataset"]
        split_seed, data_param = prev.get("split_seed", 0), [f"{k}={v}" for k, v in
                                                             (prev.get("data_params") or {}).items()]
        # (the run's own record of its source is not used: reading a run never re-points the data home)
        if seed == 0:
            seed = prev.get("seed", 0)
    if not dataset:
        raise RecozooError("fit needs --dataset NAME (see `recozoo data list`)")
    if resume and out is None:
        raise RecozooError("--resume needs --out RUN_DIR (the run to continue)")
    overrides = _params(set_)
    if warm_start is not None:                  # the run's settings, then --set
        overrides = {**(prev.get("settings") or {}), **overrides}
    settings = resolve_settings(cls, overrides, preset, dataset)     # parsed once, here
    cfg = RunConfig(model=model, dataset=dataset, settings=settings, seed=seed,
                    split_seed=split_seed, device=device, data_params=_params(data_param),
                    source=str(source) if source else None, clip=_clip(clip), preset=preset,
                    refit=refit)
    rank, _ = process_rank()         # under torchrun only rank 0 speaks (the others: rank-N.log in the run)
    reporter = RichReporter(enabled=not quiet) if rank == 0 else NullReporter()
    try:
        with writing_run(out or default_run_dir(model, dataset), force=force, resume=resume) as run_dir:
            summary = run_dir.commit(fit_run(cfg, run_dir.path, resume=resume, reporter=reporter,
                                             warm_start=warm_start))
    finally:
        reporter.close()
    if rank != 0:
        return
    if as_json:
        _out(summary)
    else:
        _print_summary(summary)


def _device(d: str) -> str:
    """Check the device now, before any file or data: its name's form, and for an explicit
    cuda/mps that this machine has one (``auto``/``cpu`` need no torch import)."""
    from recozoo.devices import require_device
    return require_device(d)


def _clip(c: Optional[str], option: str = "--clip"):
    """``"LO,HI"`` of ``option`` as a pair of floats (None when not given)."""
    if c is None:
        return None
    try:
        lo, hi = (float(x) for x in c.split(","))
    except ValueError:
        raise RecozooError(f"{option} expects LO,HI, got {c!r}") from None
    if not lo < hi:
        raise RecozooError(f"{option} expects LO < HI, got {c!r}")
    return (lo, hi)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _rating_table(title: str, metrics: dict):
    from rich.table import Table
    t = Table(title=title)
    metric_names = []
    for m in metrics.values():
        for k in m:
            if (k in ("rmse", "mae", "rmse_clipped", "mae_clipped") or "@" in k) and k not in metric_names:
                metric_names.append(k)
    t.add_column("split")
    for k in metric_names + ["scored", "policy"]:
        t.add_column(k)
    for part, m in metrics.items():
        t.add_row(part, *[_fmt(m.get(k, "")) for k in metric_names],
                  str(m.get("n_scored", m.get("n_users", ""))), str(m.get("policy", "")))
    return t


def _ranking_table(title: str, metrics: dict):
    """One row per part and cut-off, one column per ranking metric (docs/evaluation.md)."""
    from rich.table import Table
    from recozoo.metrics import RANKING_METRICS
    names = [*RANKING_METRICS, "coverage", "popularity"]
    t = Table(title=title)
    for c in ("split", "K", *names, "users", "scored by"):
        t.add_column(c)
    for part, m in metrics.items():
        for k in m["ks"]:
            t.add_row(part, str(k), *[_fmt(m.get(f"{n}@{k}", "")) for n in names], str(m.get("n_users", "")),
                      str(m.get("scored_by", "")))
    return t


def _print_summary(s: dict) -> None:
    con = _console()
    rated = {p: m for p, m in s["metrics"].items() if "ks" not in m}
    ranked = {p: m for p, m in s["metrics"].items() if "ks" in m}
    if rated:
        con.print(_rating_table(f"{s['model']} on {s['dataset']}", rated))
    if ranked:
        con.print(_ranking_table(f"{s['model']} on {s['dataset']} (ranking, full)", ranked))
    sec = s["seconds"]
    if "refit" in s:
        r = s["refit"]
        con.print(f"valid: scored by the model VALID chose; test: by its refit on {r['train_ratings']} "
                  f"train+valid ratings ({r['overrides'] or 'same settings'}, {r['fit_seconds']:.2f} s)")
    con.print(f"fit {sec['fit']:.2f} s, evaluate {sec['evaluate']:.2f} s; run directory: {s['run_dir']}")


# -------------------------------------------------------------- evaluate
@app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by `recozoo fit`"),
    split: str = typer.Option("test", "--split", help="valid|test"),
    policy: Optional[str] = typer.Option(None, "--policy", help="drop|fallback (default: the protocol's)"),
    clip: Optional[str] = typer.Option(None, "--clip", help="also report metrics clipped to LO,HI"),
    k: Optional[int] = typer.Option(None, "--k", help="cut-off for ranking metrics (default 10; implicit "
                                                      "data: 20, 50 and 100)"),
    source: Optional[Path] = typer.Option(None, "--source", help="the raw files the run was fitted on, when "
                                          "this data home has not prepared its split (not recorded)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Score a saved run's model on its dataset's VALID or TEST part (found by the split's key)."""
    from recozoo.evaluate import evaluate, evaluate_ranking
    from recozoo.rank_eval import default_ks, is_implicit
    from recozoo.run_split import load_run_split
    from recozoo.runs import load_run, run_split_key
    if split not in ("valid", "test"):
        raise RecozooError(f"--split must be valid or test, got {split!r}")
    cfg, model = load_run(run_dir)
    sp = load_run_split(cfg["dataset"], cfg.get("split_seed", 0), cfg.get("data_params"),
                        run_split_key(run_dir), source)
    if model.n_users_ != sp.train.n_users or model.n_items_ != sp.train.n_items:
        raise RecozooError(f"{run_dir}: the model's shape does not match dataset {cfg['dataset']}")
    if model.predicts_ratings and not is_implicit(sp):
        m = evaluate(model, sp, split, policy=policy, clip=_clip(clip))
    else:   # ranking-only models, and every model on implicit data (as `recozoo fit` scores them)
        m = evaluate_ranking(model, sp, split, ks=(k,) if k else default_ks(sp))
    result = {"model": cfg["model"], "dataset": cfg["dataset"], "run_dir": str(run_dir), "split": split,
              "metrics": m}
    if as_json:
        _out(result)
    else:
        _console().print(", ".join(f"{k}={_fmt(v)}" for k, v in m.items()))


# ------------------------------------------------------------ online use
@app.command("recommend")
def recommend_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by `recozoo fit`"),
    user: Optional[str] = typer.Option(None, "--user", help="raw id of a known user"),
    ratings: Optional[Path] = typer.Option(None, "--ratings",
                                           help="JSON file {item: rating} of a new user ('-' for stdin)"),
    k: int = typer.Option(10, "--k", help="how many items"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Top-k items for a known user (--user: training history + the run's logged events folded in) or
    for a new user's ratings (--ratings)."""
    from recozoo.serve import Recommender
    if (user is None) == (ratings is None):
        raise RecozooError("give exactly one of --user ID or --ratings FILE")
    if k < 1:
        raise RecozooError(f"--k must be >= 1, got {k}")
    rec = Recommender(run_dir)
    rec.read_run_events()                     # the events `recozoo serve` logged, folded in as it does
    if user is not None:
        rows = rec.recommend_user(rec.parse_user(user), k)
    else:
        text = sys.stdin.read() if str(ratings) == "-" else _read_text(ratings)
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise RecozooError(f"{ratings}: not valid JSON ({e})") from None
        rows = rec.recommend_ratings(obj, k)
    if as_json:
        _out({"run_dir": str(run_dir), "user": user, "items": rows})
    else:
        for r in rows:
            sys.stdout.write(f"{r['item']}\t{r['score']:.4f}\n")


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise RecozooError(f"{path}: {e.strerror or e}") from None


@app.command("serve")
def serve_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by `recozoo fit` (a symlink to one "
                                   "is re-resolved on SIGHUP)"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", help="0 picks a free port"),
    workers: int = typer.Option(1, "--workers", help="server processes sharing the socket"),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms",
                                        help="longest wait for the companions the clients usually send at once "
                                             "(ms, 0 = none)"),
    max_batch: int = typer.Option(64, "--max-batch", help="most queries scored in one pass"),
    events: Optional[Path] = typer.Option(None, "--events",
                                          help="SQLite file of live interactions (default RUN_DIR/"
                                               "interactions.sqlite3)"),
    max_body_bytes: int = typer.Option(4 << 20, "--max-body-bytes", help="largest request body"),
    read_timeout: float = typer.Option(10.0, "--read-timeout",
                                       help="seconds to receive a request's headers, and its body"),
    admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="RECOZOO_ADMIN_TOKEN",
                                              help="enables POST /admin/swap (Authorization: Bearer TOKEN)"),
    backlog: int = typer.Option(2048, "--backlog", help="listen backlog (pending connections)"),
    threads: int = typer.Option(0, "--threads", help="compute threads per worker (0 = the cores left after "
                                "one per worker's event loop, shared; at least 1)"),
):
    """Serve a trained run over HTTP (ASGI on uvicorn): /recommend, /recommend/batch, /predict,
    /interactions, /model, /health, /metrics, /docs. SIGTERM drains in-flight requests; SIGHUP reloads."""
    for name, value, lo in (("--workers", workers, 1), ("--max-batch", max_batch, 1), ("--threads", threads, 0),
                            ("--max-body-bytes", max_body_bytes, 1024), ("--backlog", backlog, 1)):
        if value < lo:
            raise RecozooError(f"{name} must be >= {lo}, got {value}")
    if not 0 <= batch_wait_ms <= 1000:
        raise RecozooError(f"--batch-wait-ms must be between 0 and 1000, got {batch_wait_ms}")
    if not 0 < read_timeout <= 3600:
        raise RecozooError(f"--read-timeout must be between 0 and 3600 s, got {read_timeout}")
    if not 0 <= port <= 65535:
        raise RecozooError(f"--port must be between 0 and 65535, got {port}")
    from recozoo.serve.app import ServeOptions
    from recozoo.serve.server import serve
    options = ServeOptions(str(run_dir), events=str(events) if events else None, batch_wait_ms=batch_wait_ms,
                           max_batch=max_batch, max_body_bytes=max_body_bytes, read_timeout=read_timeout,
                           admin_token=admin_token, workers=workers, threads=threads)

    def announce(url: str) -> None:
        sys.stderr.write(f"recozoo: serving {run_dir} on {url}\n")
        sys.stderr.flush()
    serve(options, host, port, backlog=backlog, announce=announce)


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory of a torch model"),
    out: Path = typer.Option(..., "--out", help="file to write"),
    fmt: str = typer.Option("torchscript", "--format", help="torchscript|onnx"),
):
    """Export a trained torch model for serving outside recozoo (TorchScript or ONNX)."""
    from recozoo.runs import load_run
    _, model = load_run(run_dir)
    path = model.export(out, format=fmt)
    _console(stderr=True).print(f"exported {model.name} to {path}")


# ------------------------------------------------------------------ data
@data_app.command("list")
def data_list(as_json: bool = typer.Option(False, "--json")):
    """Datasets recozoo knows (built-in, then your own), their raw source and whether it is available."""
    from recozoo.datasets import resolve_source, user_datasets
    from recozoo.errors import DatasetNotFound
    from recozoo.registry import list_datasets
    rows = []
    for s in list_datasets():
        avail = "generated"
        if s.source:
            try:
                avail = str(resolve_source(s.source))
            except DatasetNotFound:
                avail = "not available"
        rows.append({"name": s.name, "source": s.source, "available": avail, "description": s.description})
    for s in user_datasets():
        rows.append({"name": s.name, "source": "user", "available": "registered",
                     "description": s.description})
    if as_json:
        _out(rows)
        return
    from rich.table import Table
    t = Table(title="recozoo datasets")
    for c in ("name", "source", "available", "description"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["source"] or "-", r["available"], r["description"])
    _console().print(t)


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, "
                                                    "ml-latest-small, ml-latest (netflix: instructions)")):
    """Download a public dataset into the data home (SHA-256 verified, with progress)."""
    from recozoo.data import fetch as fetch_mod
    from recozoo.datasets import data_home
    if name.startswith("netflix"):
        sys.stderr.write(fetch_mod.NETFLIX_HOWTO.rstrip() + "\n")
        raise typer.Exit(2)
    path = fetch_mod.fetch(name, data_home())
    _console(stderr=True).print(f"{name}: ready at {path}")


@data_app.command("prepare")
def data_prepare(
    name: str = typer.Argument(..., help="dataset name, or a new name for your own data"),
    source: Optional[Path] = typer.Option(None, "--source", help="raw files (folder, archive or file)"),
    protocol: Optional[str] = typer.Option(None, "--protocol",
                                           help="split one --source as NAME: random|user-random|time|"
                                                "user-time|leave-last-k|strong (docs/datasets.md)"),
    train: Optional[Path] = typer.Option(None, "--train", help="pre-split TRAIN file/folder"),
    valid: Optional[Path] = typer.Option(None, "--valid", help="pre-split VALID file/folder"),
    test: Optional[Path] = typer.Option(None, "--test", help="pre-split TEST file/folder"),
    fmt: str = typer.Option("auto", "--format", help="auto|tsv|csv|parquet (own data: --protocol or "
                                                     "pre-split files)"),
    columns: Optional[str] = typer.Option(None, "--columns",
                                          help="column mapping, e.g. user=userId,item=movieId,rating=rating,"
                                               "timestamp=ts (rating=none: interaction-only)"),
    seed: int = typer.Option(0, "--split-seed", help="seed of the valid/test split"),
    data_param: Optional[List[str]] = typer.Option(None, "--data-param",
                                                   help="dataset (or protocol) parameter NAME=VALUE"),
    rating_range: Optional[str] = typer.Option(None, "--rating-range",
                                               help="LO,HI: refuse the data if any rating lies outside"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Parse a dataset's raw files and cache its split; or register your own data as NAME:
    one source split by --protocol, or pre-split --train/--valid/--test files."""
    from recozoo.datasets import load_split, register_protocol_dataset, register_user_dataset
    cols = _params(columns.split(",")) if columns else None
    bounds = _clip(rating_range, "--rating-range")
    if protocol is not None:
        if train or test or valid:
            raise RecozooError("--protocol splits one --source; pre-split --train/--test take no protocol")
        if source is None:
            raise RecozooError("--protocol needs --source FILE (the ratings file or folder to split)")
        split = register_protocol_dataset(name, source, protocol, fmt=fmt, columns=cols,
                                          params=_params(data_param), seed=seed, rating_range=bounds)
        _show_split(name, split, as_json)
        return
    if train or test or valid:
        if not (train and test):
            raise RecozooError("pre-split data needs both --train and --test (--valid optional)")
        if source:
            raise RecozooError("give either --source or --train/--test, not both")
        if cols:
            from recozoo.data.generic import check_column_options
            check_column_options(cols)
        if data_param:
            raise RecozooError("pre-split files take no --data-param")
        _show_split(name, register_user_dataset(name, train, test, valid, fmt=fmt, columns=cols,
                                                seed=seed, rating_range=bounds), as_json)
        return
    if source is not None:
        _known_dataset_or_hint(name)
    _show_split(name, load_split(name, source, seed, _params(data_param), rating_range=bounds), as_json)


def _known_dataset_or_hint(name: str) -> None:
    """An unknown NAME with --source: say how to split one's own file (the likely intent)."""
    from recozoo.datasets import get_spec
    from recozoo.errors import DatasetNotFound
    try:
        get_spec(name)
    except DatasetNotFound:
        from recozoo.protocols import PROTOCOLS
        raise DatasetNotFound(f"unknown dataset {name!r}: to make a dataset of your own ratings file, "
                              f"add --protocol {'|'.join(PROTOCOLS)} (see `recozoo data list` for the "
                              "built-in names)") from None


@data_app.command("info")
def data_info(name: str = typer.Argument(...),
              source: Optional[Path] = typer.Option(None, "--source"),
              seed: int = typer.Option(0, "--split-seed"),
              data_param: Optional[List[str]] = typer.Option(None, "--data-param"),
              as_json: bool = typer.Option(False, "--json")):
    """Counts of ratings, users and items per split (prepares the dataset if needed)."""
    from recozoo.datasets import load_split
    split = load_split(name, source, seed, _params(data_param))
    if not _show_split(name, split, as_json):
        info = {k: v for k, v in split.info.items() if k not in ("files",)}
        _console().print(f"protocol: {json.dumps(info, default=str)}")


def _show_split(name: str, split, as_json: bool) -> bool:
    """The split's counts and rating range as JSON on stdout or as a table; True when it was JSON."""
    from recozoo.data.plausible import rating_bounds
    desc = split.describe()
    for part, d in desc.items():
        d["min_rating"], d["max_rating"] = rating_bounds(getattr(split, part)) or (None, None)
    if as_json:
        _out(desc)
    else:
        _print_describe(name, desc)
    return as_json


def _print_describe(name: str, desc: dict) -> None:
    from rich.table import Table
    t = Table(title=name)
    for c in ("split", "ratings", "users", "items", "min rating", "max rating"):
        t.add_column(c, justify="right")
    for part, d in desc.items():
        t.add_row(part, f"{d['ratings']:,}", f"{d['users']:,}", f"{d['items']:,}",
                  *("-" if d[k] is None else f"{d[k]:g}" for k in ("min_rating", "max_rating")))
    _console().print(t)


# ---------------------------------------------------------- extra commands
def _load_extra_commands() -> None:
    """Command groups that live in their own modules register themselves here."""
    import importlib
    for mod in ("recozoo.cli.compare", "recozoo.cli.tune"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        m.register(app)


_load_extra_commands()


#: options that take NAME=VALUE pairs: after one of them, further NAME=VALUE words belong to it
MULTI_VALUE_OPTIONS = ("--data-param",)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=")


def expand_assignments(argv: List[str]) -> List[str]:
    """``--data-param a=1 b=2`` -> ``--data-param a=1 --data-param b=2`` (the docs' form, as well as
    the repeated one). Why here: click options take one value each, and a word that follows is
    otherwise an "unexpected extra argument". Only words shaped ``NAME=VALUE`` are taken, so a
    positional (a dataset name, a path) after the pairs stays a positional; ``--`` ends it all."""
    out: List[str] = []
    option = None          # the multi-value option whose further pairs are being read
    own_value = False      # the next word is that option's own value, whatever its shape
    for i, word in enumerate(argv):
        if word == "--":
            return out + argv[i:]
        name, eq, value = word.partition("=")
        if name in MULTI_VALUE_OPTIONS:
            option, own_value = name, not eq
            out += [name, value] if eq else [word]
        elif own_value:
            out.append(word)
            own_value = False
        elif option and _ASSIGNMENT.match(word):
            out += [option, word]
        else:
            option = None
            out.append(word)
    return out


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """recozoo's own warnings as one line on stderr; any other warning as Python shows it."""
    from recozoo.errors import RecozooWarning
    if issubclass(category, RecozooWarning):
        sys.stderr.write(f"recozoo: warning: {' '.join(str(message).split())}\n")
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def main() -> None:
    """Entry point: RecozooError -> one line on stderr and its exit code, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        # standalone mode: Typer handles --help, usage errors and exits itself
        app(args=expand_assignments(sys.argv[1:]), prog_name="recozoo")
    except RecozooError as e:
        sys.stderr.write(f"recozoo: error: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("recozoo: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
