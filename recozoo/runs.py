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
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recozoo.errors import RecozooError
from recozoo.io import atomic_write_json
from recozoo.progress import NullReporter, Reporter
from recozoo.settings import parse_settings, settings_to_dict

__all__ = ["RunConfig", "fit_run", "load_run", "resolve_settings", "default_run_dir", "versions",
           "MODEL_FILE"]

MODEL_FILE = "model.rcz"


def versions() -> dict[str, str]:
    import numpy
    out = {"recozoo": __import__("recozoo").__version__, "python": platform.python_version(),
           "numpy": numpy.__version__}
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


@dataclass
class RunConfig:
    model: str
    dataset: str
    settings: dict[str, Any]
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
        return d


def resolve_settings(model_cls, overrides: dict[str, Any], preset: str | None, dataset: str):
    """Defaults < preset(dataset) < explicit overrides; returns the Settings object."""
    values: dict[str, Any] = {}
    if preset:
        presets = getattr(model_cls, "presets", {}) or {}
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
    import os
    return int(os.environ.get("RANK", "0"))


def fit_run(cfg: RunConfig, run_dir: str | Path | None = None, *, resume: bool = False,
            reporter: Reporter | None = None, split=None,
            warm_start: str | Path | None = None) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.dataset``, select on VALID, score TEST once; return the summary.

    ``warm_start``: a run directory of the same model whose state the fit starts from, on TRAIN +
    that run's logged events (:mod:`recozoo.warm`)."""
    from recozoo.datasets import load_split
    from recozoo.evaluate import evaluate, evaluate_ranking
    from recozoo.registry import get_model

    reporter = reporter or NullReporter()
    cls = get_model(cfg.model)
    settings = parse_settings(cls.Settings, cfg.settings, model=cfg.model)
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg.model, cfg.dataset)
    if resume:
        old = run_dir / "config.json"
        if not old.exists():
            raise RecozooError(f"--resume: {run_dir} holds no run to resume (no config.json)")
        prev = json.loads(old.read_text())
        if prev.get("settings") != settings_to_dict(settings) or prev.get("dataset") != cfg.dataset \
                or prev.get("seed") != cfg.seed:
            raise RecozooError(f"--resume: {run_dir} was started with other settings, dataset or seed")
    # under torchrun every rank trains; only rank 0 writes files and scores
    lead = _rank() == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.settings = settings_to_dict(settings)
    config = {**cfg.to_json(), "versions": versions(), "machine": platform.platform(),
              "started": datetime.now(timezone.utc).isoformat()}
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
        from recozoo.warm import warm_start_split
        if resume:
            raise RecozooError("--warm-start and --resume do not go together")
        _, previous = load_run(warm_start)
        model.warm_start_from(previous)
        split, warm_info = warm_start_split(warm_start, split, ranking=not cls.predicts_ratings)
        reporter.message(f"warm start from {warm_start}: {warm_info['events_used']} events "
                         f"({warm_info['new_users']} new users, {warm_info['implicit_skipped']} implicit "
                         f"skipped, {warm_info['heldout_dropped']} on VALID/TEST pairs dropped)")
        config["warm_start"] = warm_info
        if lead:
            atomic_write_json(run_dir / "config.json", config)
    t1 = time.perf_counter()
    model.fit(split.train, split.valid, reporter=reporter, run_dir=run_dir, resume=resume)
    t_fit = time.perf_counter() - t1

    def score(m, part: str) -> dict[str, Any]:
        if m.predicts_ratings:
            return evaluate(m, split, part, clip=cfg.clip)
        return evaluate_ranking(m, split, part)

    metrics: dict[str, Any] = {}
    refit_info = None
    t_eval = 0.0
    if cfg.refit:
        from recozoo.search import refit
        if lead:   # VALID is scored by the model that VALID chose (the refitted one has trained on it)
            t2 = time.perf_counter()
            metrics["valid"] = score(model, "valid")
            t_eval += time.perf_counter() - t2
        overrides = model.refit_settings()
        reporter.message(f"refitting on train+valid with {overrides or 'the same settings'}")
        t3 = time.perf_counter()
        model = refit(model, split, reporter=reporter, run_dir=run_dir / "refit")
        refit_info = {"overrides": overrides, "settings": settings_to_dict(model.settings),
                      # (a blend's weights stay VALID's, but its refitted components learn from both)
                      "train_ratings": int(split.train.nnz + split.valid.nnz),
                      "fit_seconds": time.perf_counter() - t3}
    if not lead:
        return {"model": cfg.model, "dataset": cfg.dataset, "run_dir": str(run_dir), "rank": _rank()}
    model.save(run_dir / MODEL_FILE)
    save_ids(run_dir, split)

    t2 = time.perf_counter()
    for part in ("valid", "test"):
        if getattr(split, part) is None or part in metrics:
            continue
        metrics[part] = score(model, part)
    t_eval += time.perf_counter() - t2
    summary = {"model": cfg.model, "dataset": cfg.dataset, "run_dir": str(run_dir),
               "settings": settings_to_dict(settings), "seed": cfg.seed, "split_seed": cfg.split_seed,
               "device": cfg.device, "metrics": metrics,
               "seconds": {"data": t_data, "fit": t_fit, "evaluate": t_eval},
               "n_parameters": model.n_parameters(), "split": split.describe(),
               "split_info": split.info, "fallback": model.fallback,
               "predicts_ratings": model.predicts_ratings}
    if refit_info is not None:
        summary["refit"] = refit_info
    if warm_info is not None:
        summary["warm_start"] = warm_info
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def save_ids(run_dir: Path, split) -> None:
    """The raw ids behind the model's indices, so a run can be served on its own."""
    import numpy as np
    np.save(run_dir / "user_ids.npy", split.user_ids.raw, allow_pickle=False)
    np.save(run_dir / "item_ids.npy", split.item_ids.raw, allow_pickle=False)


def load_ids(run_dir: str | Path):
    """(user IdMap, item IdMap) saved beside a run's model."""
    import numpy as np
    from recozoo.data.table import IdMap
    run_dir = Path(run_dir)
    try:
        return (IdMap(np.load(run_dir / "user_ids.npy", allow_pickle=False)),
                IdMap(np.load(run_dir / "item_ids.npy", allow_pickle=False)))
    except (OSError, ValueError) as e:
        raise RecozooError(f"{run_dir}: cannot read the run's id maps ({e})") from None


def load_run(run_dir: str | Path):
    """(config dict, model) of a finished run."""
    from recozoo.models.base import load_model
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise RecozooError(f"{run_dir}: not a run directory (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise RecozooError(f"{cfg_path}: unreadable ({e})") from None
    return cfg, load_model(run_dir / MODEL_FILE)
