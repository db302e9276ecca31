"""What one comparison is: dataset, models (with settings/presets), seeds, metrics.

It comes from a TOML file (``--config``), from CLI options, or both; CLI options
win. A TOML experiment file::

    dataset = "ml-100k"
    models = ["bias", "pmf", "deeprec"]
    seeds = 3                  # or an explicit list: [0, 1, 2]
    metrics = ["rmse", "mae"]  # optional; ranking metrics as "ndcg@10", "recall@20", ...
    split_seed = 0             # optional
    device = "auto"            # optional
    # source = "/path/to/raw"  # optional, like --source
    jobs = 2                   # optional, like --jobs: fits run in 2 worker processes
    # cluster = "tcp://10.0.0.5:8786"  # optional, like --cluster: a Dask scheduler

    [data_params]              # optional, like --data-param
    # valid_fraction = 0.05

    [model.deeprec]            # optional per-model table: "preset" + settings
    preset = "paper"
    epochs = 20

    # optional, like --tune --budget 5m: each model's settings tuned on VALID first
    # tune = { budget = "5m" }   # or { trials = 20 }; `tune = true` = 20 trials each
    # tune = { budget = "5m", pruner = "median" }   # pruner: auto (default) | median | none

Everything is validated before the first fit, so a typo fails in a second with
one line, not an hour into the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recozoo.errors import RecozooError, SettingsError
from recozoo.fanout import check_jobs

__all__ = ["ModelSpec", "CompareConfig", "load_config_file", "parse_metrics", "parse_seeds",
           "parse_model_list", "parse_model_sets", "build_config", "config_hash", "RATING_METRICS",
           "RANKING_METRICS", "DEFAULT_RANKING", "TuneSpec", "parse_tune"]

RATING_METRICS = ("rmse", "mae")
RANKING_METRICS = ("ndcg", "recall", "recall_std", "map", "hitrate", "coverage", "popularity")
#: added when a ranking-only model is compared and no ranking metric was asked for,
#: so that its row is never empty
DEFAULT_RANKING = ("ndcg@10", "recall@10")
_RANK_RE = re.compile(r"^(ndcg|recall|recall_std|map|hitrate|coverage|popularity)@([1-9][0-9]*)$")
_TOP_KEYS = {"dataset", "models", "seeds", "metrics", "split_seed", "device", "source", "data_params",
             "model", "refit", "tune", "jobs", "cluster"}


@dataclass
class ModelSpec:
    """One model of the comparison: registry name, setting overrides, optional preset."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None


@dataclass
class TuneSpec:
    """``compare --tune``: each model's settings chosen by ``recozoo tune`` on VALID, per model."""

    #: wall-clock seconds per model (None: by trials)
    budget: float | None = None
    #: finished trials per model (None with no budget: recozoo tune's default)
    trials: int | None = None
    #: recozoo tune's --pruner for every model (auto: each model's declaration)
    pruner: str = "auto"


def parse_tune(value: Any, where: str = "tune") -> TuneSpec | None:
    """``true`` / ``{budget = "5m"}`` / ``{trials = 20}`` (TOML) -> a :class:`TuneSpec`; ``false`` -> None."""
    from recozoo.tune.config import parse_budget, parse_pruner
    if isinstance(value, bool):
        return TuneSpec() if value else None
    if not isinstance(value, dict) or set(value) - {"budget", "trials", "pruner"}:
        raise RecozooError(f"{where}: expected true or a table with budget, trials and/or pruner, e.g. "
                           f"tune = {{ budget = \"5m\" }}, got {value!r}")
    trials = value.get("trials")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise RecozooError(f"{where}: trials must be an integer >= 1, got {trials!r}")
    try:
        pruner = parse_pruner(value.get("pruner"))
    except RecozooError as e:
        raise RecozooError(f"{where}: {e}") from None
    return TuneSpec(budget=parse_budget(value.get("budget")), trials=trials, pruner=pruner)


@dataclass
class CompareConfig:
    dataset: str
    models: list[ModelSpec]
    seeds: list[int]
    metrics: list[str]
    split_seed: int = 0
    device: str = "auto"
    source: str | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    #: refit every fit on TRAIN ∪ VALID with the recipe VALID chose before scoring TEST (`recozoo fit --refit`)
    refit: bool = False
    #: no metric was named (CLI or file): the dataset's defaults apply (RMSE/MAE, or NDCG@100,
    #: Recall@20/50 on implicit data)
    metrics_default: bool = False
    #: tune every model on VALID first (`compare --tune`); refit is then on unless asked off
    tune: TuneSpec | None = None
    #: fits at a time in local worker processes (1: one after another in this process)
    jobs: int = 1
    #: a Dask scheduler address: the fits run on its workers instead (``recozoo.fanout``)
    cluster: str | None = None


def parse_metrics(value: str | list[str] | None) -> list[str]:
    """``"RMSE,mae,NDCG@10"`` -> ``["rmse", "mae", "ndcg@10"]``; unknown names are an error."""
    if value is None:
        return list(RATING_METRICS)
    items = _listed(value, "metrics")
    out: list[str] = []
    for raw in items:
        if not isinstance(raw, str):
            raise SettingsError(f"metrics: expected names, got {raw!r}")
        m = raw.strip().lower()
        if not m:
            continue
        if m not in RATING_METRICS and not _RANK_RE.match(m):
            raise SettingsError(f"unknown metric {raw.strip()!r} (known: rmse, mae, ndcg@K, recall@K, "
                                "recall_std@K, map@K, hitrate@K, coverage@K, popularity@K; "
                                "docs/evaluation.md)")
        if m not in out:
            out.append(m)
    if not out:
        raise SettingsError("--metrics names no metric")
    return out


def parse_seeds(value: Any) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``[0, 5]`` or ``"0,5"`` -> an explicit list."""
    if isinstance(value, bool):
        raise SettingsError(f"seeds: expected a count or a list of integers, got {value!r}")
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise SettingsError(f"--seeds expects a count (3) or a list (0,1,2), got {value!r}") from None
        value = nums[0] if len(nums) == 1 and "," not in value else nums
    if isinstance(value, int):
        if value < 1:
            raise SettingsError(f"seeds: the count must be >= 1, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in value):
        if len(set(value)) != len(value):
            raise SettingsError(f"seeds: repeated seed in {value}")
        return list(value)
    raise SettingsError(f"seeds: expected a count or a non-empty list of integers, got {value!r}")


def _listed(value: Any, what: str) -> list[Any]:
    """A comma-separated string or a list, as a list; anything else (``models = 3``) is a one-line error."""
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, (list, tuple)):
        return list(value)
    raise SettingsError(f"{what}: expected a comma-separated string or a list of names, got {value!r}")


def parse_model_list(value: str | list[str]) -> list[str]:
    """``"a, b,a"`` or ``["a", "b"]`` -> ``["a", "b"]`` (order kept, repeats dropped)."""
    items = _listed(value, "models")
    out: list[str] = []
    for it in items:
        if not isinstance(it, str):
            raise SettingsError(f"models: expected names, got {it!r}")
        name = it.strip()
        if name and name not in out:
            out.append(name)
    if not out:
        raise SettingsError("--models names no model")
    return out


def parse_model_sets(pairs: list[str] | None) -> dict[str, dict[str, str]]:
    """``["pmf.factors=50"]`` -> ``{"pmf": {"factors": "50"}}`` (values parsed later per type)."""
    out: dict[str, dict[str, str]] = {}
    for p in pairs or ():
        key, eq, val = p.partition("=")
        model, dot, name = key.strip().partition(".")
        if not eq or not dot or not model or not name.strip():
            raise SettingsError(f"--set expects MODEL.NAME=VALUE, got {p!r}")
        out.setdefault(model, {})[name.strip()] = val.strip()
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and structurally check an experiment file (models are resolved later)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecozooError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecozooError(f"--config {path}: unreadable ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise RecozooError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise RecozooError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})")
    out: dict[str, Any] = {}
    if "dataset" in raw:
        if not isinstance(raw["dataset"], str):
            raise RecozooError(f"{path}: dataset must be a string")
        out["dataset"] = raw["dataset"]
    for key, parse in (("models", parse_model_list), ("seeds", parse_seeds), ("metrics", parse_metrics)):
        if key in raw:
            try:
                out[key] = parse(raw[key])
            except SettingsError as e:
                raise RecozooError(f"{path}: {e}") from None
    if "split_seed" in raw:
        if not isinstance(raw["split_seed"], int) or isinstance(raw["split_seed"], bool):
            raise RecozooError(f"{path}: split_seed must be an integer")
        out["split_seed"] = raw["split_seed"]
    if "refit" in raw:
        if not isinstance(raw["refit"], bool):
            raise RecozooError(f"{path}: refit must be true or false, got {raw['refit']!r}")
        out["refit"] = raw["refit"]
    if "jobs" in raw:
        try:
            out["jobs"] = check_jobs(raw["jobs"])
        except RecozooError as e:
            raise RecozooError(f"{path}: {e}") from None
    for key in ("device", "source", "cluster"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise RecozooError(f"{path}: {key} must be a string")
            out[key] = raw[key]
    if "tune" in raw:
        out["tune"] = parse_tune(raw["tune"], f"{path}: tune")
    if "data_params" in raw:
        if not isinstance(raw["data_params"], dict):
            raise RecozooError(f"{path}: [data_params] must be a table")
        out["data_params"] = dict(raw["data_params"])
    specs: dict[str, ModelSpec] = {}
    tables = raw.get("model", {})
    if not isinstance(tables, dict):
        raise RecozooError(f"{path}: [model.NAME] must be tables")
    for name, tbl in tables.items():
        if not isinstance(tbl, dict):
            raise RecozooError(f"{path}: [model.{name}] must be a table of settings")
        if "models" in out and name not in out["models"]:
            raise RecozooError(f"{path}: [model.{name}] is not in models = {out['models']}")
        tbl = dict(tbl)
        preset = tbl.pop("preset", None)
        if preset is not None and not isinstance(preset, str):
            raise RecozooError(f"{path}: [model.{name}] preset must be a string")
        specs[name] = ModelSpec(name, tbl, preset)
    out["model_specs"] = specs
    return out


def build_config(*, file: dict[str, Any] | None = None, dataset: str | None = None,
                 models: str | None = None, seeds: str | None = None, metrics: str | None = None,
                 sets: list[str] | None = None, presets: list[str] | None = None,
                 split_seed: int | None = None, device: str | None = None, source: str | None = None,
                 data_params: dict[str, Any] | None = None, refit: bool | None = None,
                 tune: TuneSpec | None = None, jobs: int | None = None,
                 cluster: str | None = None) -> CompareConfig:
    """Merge a loaded file (if any) with CLI options; CLI options win (``tune``: the CLI's --tune)."""
    file = file or {}
    tune = tune or file.get("tune")
    ds = dataset or file.get("dataset")
    if not ds:
        raise RecozooError("compare needs --dataset NAME (or dataset = \"...\" in --config)")
    names = parse_model_list(models) if models else file.get("models")
    if not names:
        raise RecozooError("compare needs --models a,b,c (or models = [...] in --config)")
    file_specs: dict[str, ModelSpec] = file.get("model_specs", {})
    specs = [ModelSpec(n, dict(file_specs[n].settings), file_specs[n].preset) if n in file_specs
             else ModelSpec(n) for n in names]
    by_name = {s.name: s for s in specs}
    for model, values in parse_model_sets(sets).items():
        if model not in by_name:
            raise SettingsError(f"--set {model}.…: {model!r} is not one of the compared models "
                                f"({', '.join(names)})")
        by_name[model].settings.update(values)
    for p in presets or ():
        model, eq, name = p.partition("=")
        if not eq or not model.strip() or not name.strip():
            raise SettingsError(f"--preset expects MODEL=NAME, got {p!r}")
        if model.strip() not in by_name:
            raise SettingsError(f"--preset {p}: {model.strip()!r} is not one of the compared models")
        by_name[model.strip()].preset = name.strip()
    if tune is not None:
        preset = next((s for s in specs if s.preset), None)
        if preset is not None:
            raise SettingsError(f"--tune chooses {preset.name}'s settings on VALID: drop its preset "
                                f"{preset.preset!r} (fix single settings with --set {preset.name}.NAME=VALUE)")
    return CompareConfig(
        dataset=ds, models=specs,
        seeds=parse_seeds(seeds) if seeds is not None else file.get("seeds", [0, 1, 2]),
        metrics=parse_metrics(metrics) if metrics is not None else file.get("metrics",
                                                                            list(RATING_METRICS)),
        split_seed=split_seed if split_seed is not None else file.get("split_seed", 0),
        device=device or file.get("device", "auto"),
        source=source or file.get("source"),
        data_params={**file.get("data_params", {}), **(data_params or {})},
        refit=refit if refit is not None else file.get("refit", tune is not None),
        metrics_default=metrics is None and "metrics" not in file, tune=tune,
        jobs=check_jobs(jobs) if jobs is not None else file.get("jobs", 1),
        cluster=cluster or file.get("cluster"))


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (the identity of a model x config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
