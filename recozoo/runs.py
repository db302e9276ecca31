"""Run directories: one folder per fit, holding everything needed to trust and reuse it.

::

    config.json      the resolved configuration (model, settings, dataset, seeds, versions)
    metrics.jsonl    one record per epoch (written by the training engine)
    model.rcz        the selected model (best on VALID for models that select)
    summary.json     final metrics on VALID and TEST, timings

:func:`fit_run` is the library form of ``recozoo fit``; the CLI only parses
arguments and prints.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recozoo.data.table import IdMap
from recozoo.datasets import load_split
from recozoo.devices import require_device
from recozoo.errors import RecozooError
from recozoo.evaluate import evaluate_with_errors
from recozoo.rank_eval import default_ks, is_implicit, rank_part
from recozoo.io import atomic_write_json
from recozoo.models.base import load_model
from recozoo.progress import NullReporter, Reporter
from recozoo.registry import get_model
from recozoo.search import refit
from recozoo.settings import BaseSettings, parse_settings, settings_to_dict
from recozoo.warm import warm_start_split

__all__ = ["RunConfig", "fit_run", "fit_and_score", "FitOutcome", "load_run", "resolve_settings",
           "default_run_dir", "versions", "read_config", "MODEL_FILE", "run_split_key"]

MODEL_FILE = "model.rcz"


def versions() -> dict[str, str]:
    """Versions recorded beside a run. Read from the installed packages' metadata, not by
    importing them: importing torch only to record its version cost a torch-free model
    (``fit bias``) ~150 MB of memory and seconds of start-up (docs/reliability.md)."""
    from importlib import metadata
    out = {"recozoo": __import__("recozoo").__version__, "python": platform.python_version(),
           "numpy": np.__version__}
    try:
        out["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:  # pragma: no cover
        pass
    return out


@dataclass
class RunConfig:
    model: str
    dataset: str
    #: the model's parsed Settings, or a dict of values (parsed by fit_run)
    settings: BaseSettings | dict[str, Any]
    seed: int = 0
    split_seed: int = 0
    device: str = "cpu"
    data_params: dict[str, Any] | None = None
    source: str | None = None
    clip: tuple[float, float] | None = None
    preset: str | None = None
    #: refit on TRAIN ∪ VALID with the VALID-chosen recipe before scoring TEST (recozoo.search.refit)
    refit: bool = False

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["clip"] = list(self.clip) if self.clip else None
        if isinstance(self.settings, BaseSettings):
            d["settings"] = settings_to_dict(self.settings)
        return d


def resolve_settings(model_cls, overrides: dict[str, Any], preset: str | None, dataset: str):
    """Defaults < preset(dataset) < explicit overrides; returns the Settings object."""
    values: dict[str, Any] = {}
    if preset:
        presets = model_cls.presets
        if preset not in presets:
            raise RecozooError(f"{model_cls.name} has no preset {preset!r} "
                               f"(known: {', '.join(sorted(presets)) or 'none'})")
        values.update(presets[preset](dataset))
    values.update(overrides)
    return parse_settings(model_cls.Settings, values, model=model_cls.name)


def default_run_dir(model: str, dataset: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / f"{model}-{dataset}-{stamp}"


def _rank() -> int:
    """This process's rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class FitOutcome:
    """What :func:`fit_and_score` hands back: the summary (also written to ``summary.json``), the
    fitted model and TEST's per-rating errors exactly as the evaluator scored them (prediction −
    truth, float32, in its order; rating models only, else None) or TEST's ranking with its per-user
    values (ranking-only models, and every model on implicit data)."""

    summary: dict[str, Any]
    model: Any
    test_errors: np.ndarray | None = None
    #: TEST ranked (:class:`recozoo.rank_eval.RankedPart`, per-user values) when TEST was ranked, else None
    test_ranked: Any = None


def fit_run(cfg: RunConfig, run_dir: str | Path | None = None, *, resume: bool = False,
            reporter: Reporter | None = None, split=None,
            warm_start: str | Path | None = None) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.dataset``, select on VALID, score TEST once; return the summary.

    ``warm_start``: a run directory of the same model whose state the fit starts from, on TRAIN +
    that run's logged events (:mod:`recozoo.warm`)."""
    return fit_and_score(cfg, run_dir, resume=resume, reporter=reporter, split=split,
                         warm_start=warm_start).summary


def fit_and_score(cfg: RunConfig, run_dir: str | Path | None = None, *, resume: bool = False,
                  reporter: Reporter | None = None, split=None,
                  warm_start: str | Path | None = None) -> FitOutcome:
    """:func:`fit_run`, also handing back the fitted model and TEST's per-rating errors (what
    ``compare`` keeps for its bootstrap and ranking cut-offs, with no second prediction pass).

    ``cfg.settings`` may be the model's parsed ``Settings`` (what the CLI and ``compare`` pass:
    parsed once, where the user's values arrive) or a plain dict, parsed here.
    """
    require_device(cfg.device)      # a device this machine lacks: fail before any file or data
    reporter = reporter or NullReporter()
    cls = get_model(cfg.model)
    settings = cfg.settings if isinstance(cfg.settings, cls.Settings) else \
        parse_settings(cls.Settings, cfg.settings, model=cfg.model)
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg.model, cfg.dataset)
    if resume:
        _check_resumable(run_dir, cfg, settings)
    # under torchrun every rank trains; only rank 0 writes files and scores
    lead = _rank() == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_json(), "settings": settings_to_dict(settings), "versions": versions(),
              "machine": platform.platform(), "started": datetime.now(timezone.utc).isoformat()}
    if lead:
        atomic_write_json(run_dir / "config.json", config)
    t0 = time.perf_counter()
    if split is None:
        split = load_split(cfg.dataset, cfg.source, cfg.split_seed, cfg.data_params)
    t_data = time.perf_counter() - t0
    if cfg.refit and not split.has_valid:
        raise RecozooError(f"--refit: {cfg.dataset} has no VALID part to choose the recipe on")
    model = cls(settings=settings, seed=cfg.seed, device=cfg.device, clip=None)
    warm_info = None
    if warm_start is not None:
        split, warm_info = _warm_start(model, warm_start, split, resume, reporter)
        if lead:
            atomic_write_json(run_dir / "config.json", {**config, "warm_start": warm_info})
    t1 = time.perf_counter()
    model.fit(split.train, split.valid, reporter=reporter, run_dir=run_dir, resume=resume,
              valid_fold_in=split.valid_fold_in)
    t_fit = time.perf_counter() - t1
    resolved = model.settings                    # "auto" settings, as the rule resolved them for TRAIN
    if lead and resolved != settings:
        config["resolved_settings"] = settings_to_dict(resolved)
        atomic_write_json(run_dir / "config.json", {**config, **({"warm_start": warm_info} if warm_info else {})})
    scores = _Scores(split, cfg.clip)
    refit_info = None
    if cfg.refit:
        if lead:   # VALID is scored by the model that VALID chose (the refitted one has trained on it)
            scores.score(model, "valid")
        model, refit_info = _refit(model, split, reporter, run_dir)
    if not lead:   # rank 0 scores, writes and speaks for the run; this rank says so in its own log
        _write_rank_log(run_dir, t_fit)
        return FitOutcome({"model": cfg.model, "dataset": cfg.dataset, "run_dir": str(run_dir),
                           "rank": _rank()}, model)
    model.save(run_dir / MODEL_FILE)
    save_ids(run_dir, split)
    for part in ("valid", "test"):
        if getattr(split, part) is not None and part not in scores.metrics:
            scores.score(model, part)
    summary = {"model": cfg.model, "dataset": cfg.dataset, "run_dir": str(run_dir),
               "settings": settings_to_dict(resolved), "seed": cfg.seed, "split_seed": cfg.split_seed,
               "device": model.device_used(), "device_requested": cfg.device, "metrics": scores.metrics,
               "seconds": {"data": t_data, "fit": t_fit, "evaluate": scores.seconds},
               "n_parameters": model.n_parameters(), "split": split.describe(),
               "split_info": split.info, "split_key": split.key, "fallback": model.fallback,
               "predicts_ratings": model.predicts_ratings}
    for key, info in (("refit", refit_info), ("warm_start", warm_info)):
        if info is not None:
            summary[key] = info
    atomic_write_json(run_dir / "summary.json", summary)
    return FitOutcome(summary, model, scores.test_errors, scores.test_ranked)


def _write_rank_log(run_dir: Path, fit_seconds: float) -> None:
    """``rank-N.log``: what a rank other than 0 did, since it prints nothing (one JSON document on
    stdout and one progress bar per run, whatever the number of processes)."""
    rank, world = _rank(), int(os.environ.get("WORLD_SIZE", "1") or 1)
    text = (f"{datetime.now(timezone.utc).isoformat()} rank {rank} of {world}: trained its shard of every "
            f"batch for {fit_seconds:.2f} s; quiet on stdout and stderr (rank 0 prints the summary and "
            "progress, and writes the model and summary.json)\n")
    with open(run_dir / f"rank-{rank}.log", "a") as f:
        f.write(text)


def _warm_start(model, warm_start: str | Path, split, resume: bool, reporter: Reporter):
    """Start ``model`` from a previous run's state; the split gains that run's logged events (recozoo.warm)."""
    if resume:
        raise RecozooError("--warm-start and --resume do not go together")
    _, previous = load_run(warm_start)
    model.warm_start_from(previous)
    split, info = warm_start_split(warm_start, split, ranking=not model.predicts_ratings)
    reporter.message(f"warm start from {warm_start}: {info['events_used']} events "
                     f"({info['new_users']} new users, {info['implicit_skipped']} implicit "
                     f"skipped, {info['heldout_dropped']} on VALID/TEST pairs dropped)")
    return split, info


def _check_resumable(run_dir: Path, cfg: RunConfig, settings) -> None:
    if not (run_dir / "config.json").exists():
        raise RecozooError(f"--resume: {run_dir} holds no run to resume (no config.json)")
    prev = read_config(run_dir)
    if prev["model"] != cfg.model:
        raise RecozooError(f"--resume: {run_dir} holds a {prev['model']} run, not {cfg.model}")
    if prev.get("settings") != settings_to_dict(settings) or prev.get("dataset") != cfg.dataset \
            or prev.get("seed") != cfg.seed:
        raise RecozooError(f"--resume: {run_dir} was started with other settings, dataset or seed")


def _refit(model, split, reporter: Reporter, run_dir: Path):
    """The model refitted on TRAIN ∪ VALID with VALID's recipe (:func:`recozoo.search.refit`), and what changed."""
    overrides = model.refit_settings()
    reporter.message(f"refitting on train+valid with {overrides or 'the same settings'}")
    t = time.perf_counter()
    model = refit(model, split, reporter=reporter, run_dir=run_dir / "refit")
    return model, {"overrides": overrides, "settings": settings_to_dict(model.settings),
                   # (a blend's weights stay VALID's, but its refitted components learn from both)
                   "train_ratings": int(split.train.nnz + split.valid.nnz),
                   "fit_seconds": time.perf_counter() - t}


class _Scores:
    """The run's figures per part, the seconds spent scoring, and TEST's per-rating errors."""

    def __init__(self, split, clip):
        self.split, self.clip = split, clip
        self.metrics: dict[str, Any] = {}
        self.seconds = 0.0
        self.test_errors: np.ndarray | None = None
        self.test_ranked = None

    def score(self, model, part: str) -> None:
        t = time.perf_counter()
        if model.predicts_ratings and not is_implicit(self.split):
            self.metrics[part], errors = evaluate_with_errors(model, self.split, part, clip=self.clip)
            if part == "test":
                self.test_errors = errors
        else:   # ranking-only models, and every model on implicit data (where a "rating" is a 1)
            ranked = rank_part(model, self.split, part, default_ks(self.split))
            self.metrics[part] = ranked.summary
            if part == "test":
                self.test_ranked = ranked
        self.seconds += time.perf_counter() - t


def save_ids(run_dir: Path, split) -> None:
    """The raw ids behind the model's indices, so a run can be served on its own."""
    np.save(run_dir / "user_ids.npy", split.user_ids.raw, allow_pickle=False)
    np.save(run_dir / "item_ids.npy", split.item_ids.raw, allow_pickle=False)


def load_ids(run_dir: str | Path):
    """(user IdMap, item IdMap) saved beside a run's model."""
    run_dir = Path(run_dir)
    try:
        return (IdMap(np.load(run_dir / "user_ids.npy", allow_pickle=False)),
                IdMap(np.load(run_dir / "item_ids.npy", allow_pickle=False)))
    except (OSError, ValueError) as e:
        raise RecozooError(f"{run_dir}: cannot read the run's id maps ({e})") from None


def run_split_key(run_dir: str | Path) -> str | None:
    """The prepared-split key a run was fitted on (``summary.json``), None for runs that lack it."""
    try:
        key = json.loads((Path(run_dir) / "summary.json").read_text()).get("split_key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def load_run(run_dir: str | Path):
    """(config dict, model) of a finished run."""
    run_dir = Path(run_dir)
    return read_config(run_dir), load_model(run_dir / MODEL_FILE)


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``config.json``, checked: a JSON object naming its model and dataset (one-line errors)."""
    cfg_path = Path(run_dir) / "config.json"
    if not cfg_path.is_file():
        raise RecozooError(f"{run_dir}: not a run directory (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, OSError) as e:
        raise RecozooError(f"{cfg_path}: unreadable ({e})") from None
    if not isinstance(cfg, dict):
        raise RecozooError(f"{cfg_path}: must be a JSON object, got {type(cfg).__name__}")
    for key in ("model", "dataset"):
        if not isinstance(cfg.get(key), str):
            raise RecozooError(f"{cfg_path}: field {key!r} must be a string, got {cfg.get(key)!r}")
    return cfg
