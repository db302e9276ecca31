"""``recozoo tune`` as a library call: the study, the trials (one process or ``jobs`` workers), the end.

At the end the best trial's settings are fitted again as an ordinary run
(:func:`recozoo.runs.fit_and_score` into the output folder: ``config.json``,
``model.rcz``, ``summary.json``, so ``evaluate``, ``recommend``, ``serve`` and
``export`` work on it): on TRAIN with VALID choosing the length, then — unless
``refit=False`` — refitted on TRAIN ∪ VALID (:func:`recozoo.search.refit`), and
TEST is scored once, by that final model. A rerun whose best trial has not
changed reuses that run instead of fitting it again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from recozoo.datasets import load_split
from recozoo.errors import RecozooError
from recozoo.progress import NullReporter, Reporter
from recozoo.registry import get_model
from recozoo.runs import MODEL_FILE, RunConfig, fit_and_score
from recozoo.search import LOWER_IS_BETTER
from recozoo.tune.config import TuneConfig
from recozoo.tune.outputs import BEST_FILE, TRIALS_FILE, info, trial_summary, write_plots, write_trials_csv
from recozoo.tune.study import StudyLock, counts, default_url, open_storage, open_study, redo_interrupted, safe_url
from recozoo.tune.trials import pruner, queue_defaults, run_worker, sampler

__all__ = ["tune"]


def tune(cfg: TuneConfig, *, reporter: Reporter | None = None, split=None) -> dict[str, Any]:
    """Tune ``cfg.model`` on VALID, then fit the best settings and score TEST once; returns best.json's
    content plus ``run`` (the final run's summary). ``split``: a ready split (else ``cfg.dataset``'s)."""
    reporter = reporter or NullReporter()
    cls = get_model(cfg.model)
    cfg = cfg.resolved(cls)
    if not cfg.cluster:
        return _tune(cfg, cls, reporter, split, None, None)
    from recozoo.tune.cluster import connect
    with connect(cfg) as (fan, served):     # a cluster that does not answer: one line, nothing written yet
        if cfg.jobs is None:
            cfg = dataclasses.replace(cfg, jobs=fan.workers)
        return _tune(cfg, cls, reporter, split, fan, served)


def _tune(cfg: TuneConfig, cls, reporter: Reporter, split, fan, served) -> dict[str, Any]:
    given_split = split is not None
    if split is None:
        split = load_split(cfg.dataset, cfg.source, cfg.split_seed, cfg.data_params)
    if not split.has_valid:
        raise RecozooError(f"tune needs a VALID part to score trials on, and {cfg.dataset} has none")
    created = not cfg.out.exists()
    cfg.out.mkdir(parents=True, exist_ok=True)
    with StudyLock(cfg.out):
        try:
            storage = open_storage(cfg.storage or default_url(cfg.out), shared=cfg.storage is not None)
            study = open_study(storage, cfg.study_name, _identity(cfg), sampler(cfg, 0), pruner(cfg))
        except RecozooError:
            if created:        # nothing half-written: the folder this call made goes again
                shutil.rmtree(cfg.out, ignore_errors=True)
            raise
        redone = [] if cfg.storage else redo_interrupted(study, storage)
        queue_defaults(study, cls, cls.search_space.without(cfg.fixed), split.train, cfg.fixed)
        study.sampler = sampler(cfg, 0, len(study.get_trials(deepcopy=False)))
        _announce_resume(study, redone, reporter)
        shipped = given_split or cfg.jobs == 1 or fan is not None   # (local workers load it faster themselves)
        _run_trials(cfg, study, storage, cls, split if shipped else None, reporter, fan, served)
        return _finish(cfg, study, split, reporter, redone)


def _identity(cfg: TuneConfig) -> dict[str, Any]:
    return {"model": cfg.model, "dataset": cfg.dataset, "metric": cfg.metric, "seed": cfg.seed,
            "split_seed": cfg.split_seed, "data_params": cfg.data_params or {}, "fixed": cfg.fixed}


def _announce_resume(study, redone: list[int], reporter: Reporter) -> None:
    c = counts(study)
    if c["complete"] + c["pruned"] or redone:
        extra = f"; interrupted trial(s) {', '.join(map(str, redone))} queued again" if redone else ""
        reporter.message(f"resuming study {study.study_name}: {c['complete']} completed and {c['pruned']} "
                         f"pruned trials kept{extra}")


def _remaining(cfg: TuneConfig, study) -> tuple[int | None, float | None]:
    """Trials still to finish and seconds of budget left (None = no limit of that kind)."""
    c = counts(study)
    trials = None if cfg.trials is None else max(0, cfg.trials - c["complete"] - c["pruned"])
    seconds = None if cfg.budget is None else max(0.0, cfg.budget - float(study.user_attrs.get("seconds", 0.0)))
    return trials, seconds


def _run_trials(cfg: TuneConfig, study, storage, cls, split, reporter: Reporter, fan, served) -> None:
    trials, seconds = _remaining(cfg, study)
    if trials == 0 or seconds == 0:
        return
    t0, spent = time.perf_counter(), float(study.user_attrs.get("seconds", 0.0))
    try:
        if fan is not None:
            from recozoo.tune.cluster import run_on_cluster
            reporter.message(f"{cfg.jobs} trial(s) at a time on the Dask cluster at {cfg.cluster}")
            run_on_cluster(cfg, study, storage, fan, served, split, seconds, reporter)
        elif cfg.jobs == 1:
            run_worker(cfg, 0, split=split, study=study, cls=cls, reporter=reporter, seconds=seconds)
        else:
            from recozoo.tune.workers import run_workers      # (multiprocessing only when asked for)
            run_workers(cfg, split, seconds)
    finally:
        study.set_user_attr("seconds", spent + time.perf_counter() - t0)


def _finish(cfg: TuneConfig, study, split, reporter: Reporter, redone: list[int]) -> dict[str, Any]:
    """trials.csv, the PNGs, the final fit (unless the same best was already fitted, or ``final`` is off:
    ``compare --tune`` fits the chosen settings itself) and best.json."""
    c = counts(study)
    write_trials_csv(study, cfg.out / TRIALS_FILE)
    if c["complete"] == 0:
        first = next((info(t)["error"] for t in study.trials if info(t).get("error")), None)
        raise RecozooError(f"tune {cfg.model}: no trial completed ({c['failed']} failed, {c['pruned']} pruned"
                           + (f"; first error: {first})" if first else ")"))
    best = study.best_trial
    plots = write_plots(study, cfg.out) if cfg.plots else {}
    summary = _final_run(cfg, best, split, reporter) if cfg.final else {"metrics": {}}
    out = {"model": cfg.model, "dataset": cfg.dataset, "metric": cfg.metric,
           "direction": "minimize" if cfg.metric in LOWER_IS_BETTER else "maximize",
           "study": study.study_name, "storage": safe_url(cfg.storage or default_url(cfg.out)),
           "seed": cfg.seed, "pruner": cfg.pruner, "trials": c, "trials_target": cfg.trials, "budget_seconds": cfg.budget,
           "seconds": float(study.user_attrs.get("seconds", 0.0)), "redone": redone,
           "best": trial_summary(best), "refit": cfg.refit, "valid": summary["metrics"].get("valid"),
           "test": summary["metrics"].get("test"), "run_dir": str(cfg.out), "plots": plots}
    from recozoo.io import atomic_write_json
    atomic_write_json(cfg.out / BEST_FILE, out)
    return {**out, "run": summary if cfg.final else None}


def _final_run(cfg: TuneConfig, best, split, reporter: Reporter) -> dict[str, Any]:
    """The best settings as an ordinary run in the output folder (reused when already fitted for this best)."""
    prev = _read_json(cfg.out / BEST_FILE)
    summary = _read_json(cfg.out / "summary.json")
    if prev and summary and (cfg.out / MODEL_FILE).exists() and prev.get("refit") == cfg.refit \
            and (prev.get("best") or {}).get("number") == best.number:
        reporter.message(f"best trial {best.number} unchanged: its run in {cfg.out} is kept")
        return summary
    how = "refitted on train+valid" if cfg.refit else "fitted on train"
    reporter.message(f"best trial {best.number} ({cfg.metric} {best.value:.4f} on VALID): {how}, TEST scored once")
    run = RunConfig(model=cfg.model, dataset=cfg.dataset, settings=info(best)["settings"], seed=cfg.seed,
                    split_seed=cfg.split_seed, device=cfg.device, data_params=cfg.data_params, source=cfg.source,
                    refit=cfg.refit)
    return fit_and_score(run, cfg.out, reporter=reporter, split=split).summary


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
