"""The trials themselves: the seeded sampler, the pruner, and one process's optimisation loop.

Shared by ``recozoo tune`` in one process (:mod:`recozoo.tune.run`) and by its ``--jobs``
workers (:mod:`recozoo.tune.workers`), which open the study from its storage themselves.
"""

from __future__ import annotations

import time
from typing import Any

from recozoo.datasets import load_split
from recozoo.progress import NullReporter, Reporter
from recozoo.registry import get_model
from recozoo.tune.config import TuneConfig, parse_metric
from recozoo.tune.objective import DEFAULTS_ORIGIN, FailedFit, Objective, defaults_for
from recozoo.tune.outputs import info
from recozoo.tune.study import counts, default_url, open_storage, quiet_optuna

__all__ = ["sampler", "pruner", "run_worker", "Progress", "queue_defaults", "DEFAULTS_ORIGIN",
           "finished"]


def sampler(cfg: TuneConfig, worker: int, done: int = 0):
    """Seeded TPE: one worker with one seed samples the same sequence every time. The seed is
    ``seed + worker + done`` (``done``: trials already in the study), so a resumed study does not
    replay the random start-up points its first session drew."""
    optuna = quiet_optuna()
    startup = 10 if cfg.trials is None else max(3, min(10, cfg.trials // 3))
    return optuna.samplers.TPESampler(seed=cfg.seed + worker + done, n_startup_trials=startup, multivariate=True,
                                      group=True, constant_liar=cfg.jobs > 1)


def pruner(cfg: TuneConfig):
    """``cfg.pruner`` (resolved: ``median`` or ``none``) as Optuna's pruner. Median: a trial stops when its
    best VALID RMSE so far is worse than the median of the completed trials' at the same epoch, once three
    trials have completed; the first three epochs are never pruned (a first pass's VALID RMSE says little
    about where a fit ends)."""
    optuna = quiet_optuna()
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4)
    return optuna.pruners.NopPruner()


def queue_defaults(study, cls, space, train, fixed: dict[str, Any]) -> dict[str, Any] | None:
    """Queue the model's defaults for this data (its "auto" rules resolved on ``train``, the user's
    ``fixed`` values applied) as the first trial of a new ``study``; returns the queued draws, or None
    when nothing was queued (a study that has trials, or defaults the space cannot express at all).

    Why: the defaults are chosen to hold on any data (docs/defaults.md), so a study that starts
    from them never ends worse on VALID than `recozoo fit` at the defaults, however short the budget
    — a few random start-up points in a space of ten dimensions often are. The trial fits the
    defaults themselves (:meth:`recozoo.tune.objective.Objective.settings`); its draws are the
    space's nearest point (:meth:`recozoo.search_space.SearchSpace.params_for`), what the sampler
    models it as (docs/tuning.md says what running the nearest point instead cost DeepRec)."""
    from dataclasses import asdict
    from recozoo.errors import SettingsError
    if study.get_trials(deepcopy=False):
        return None
    try:
        defaults = defaults_for(cls, fixed, train)
    except SettingsError:
        return None
    params = space.params_for(asdict(defaults))
    if not params:
        return None
    study.enqueue_trial(params, user_attrs={"origin": DEFAULTS_ORIGIN})
    return params


def run_worker(cfg: TuneConfig, worker: int, *, split=None, study=None, storage=None, cls=None,
               reporter: Reporter | None = None, seconds: float | None = None, callbacks=()) -> None:
    """One process's share of the trials (the only one when ``jobs=1``); workers open the study themselves,
    from ``storage`` when given (a cluster's scheduler-served copy, :mod:`recozoo.tune.cluster`), else
    from ``cfg``'s storage URL. ``callbacks``: more of Optuna's after-each-trial callbacks."""
    optuna = quiet_optuna()
    cls = cls or get_model(cfg.model)
    if study is None:
        if storage is None:
            storage = open_storage(cfg.storage or default_url(cfg.out), shared=cfg.storage is not None)
        study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=None, pruner=pruner(cfg))
        study.sampler = sampler(cfg, worker, len(study.get_trials(deepcopy=False)))
    if cfg.trials is not None and finished(study) >= cfg.trials:
        return      # a worker that starts late (a cluster with fewer slots than --jobs) adds no extra trial
    if split is None:
        split = load_split(cfg.dataset, cfg.source, cfg.split_seed, cfg.data_params)
    _, k = parse_metric(cfg.metric)
    deadline = None if seconds is None else time.perf_counter() + seconds
    objective = Objective(cls, cls.search_space.without(cfg.fixed), split, cfg.metric, k, fixed=cfg.fixed,
                          seed=cfg.seed, device=cfg.device, deadline=deadline, prune=cfg.pruner == "median")
    callbacks = [Progress(cfg, reporter or NullReporter(), worker), *callbacks]
    n_trials = None
    if cfg.trials is not None:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        callbacks.append(optuna.study.MaxTrialsCallback(cfg.trials, states=states))
        n_trials = 3 * cfg.trials + 5            # a cap, so that fits failing every time cannot loop forever
    study.optimize(objective, n_trials=n_trials, timeout=seconds, catch=(FailedFit,), callbacks=callbacks)


def finished(study) -> int:
    """Completed plus pruned trials: what ``--trials`` counts."""
    c = counts(study)
    return c["complete"] + c["pruned"]


class Progress:
    """After each trial, one line on stderr: its outcome and the best VALID so far (``worker``: the
    worker to name in the line when ``jobs`` > 1; None names none)."""

    def __init__(self, cfg: TuneConfig, reporter: Reporter, worker: int | None):
        self.cfg, self.reporter, self.worker = cfg, reporter, worker
        self.t0 = time.perf_counter()

    def __call__(self, study, trial) -> None:
        state = trial.state.name.lower()
        if state == "complete":
            what = f"{self.cfg.metric} {trial.value:.4f}"
        elif state == "pruned":
            what = f"pruned at epoch {info(trial).get('pruned_at', '?')}" + \
                (" (the budget is spent)" if info(trial).get("stopped") == "budget" else "")
        else:
            what = f"failed: {info(trial).get('error', 'see the study')}"
        c = counts(study)
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no completed trial yet"
        goal = f"/{self.cfg.trials}" if self.cfg.trials else ""
        who = f"worker {self.worker}: " if self.cfg.jobs > 1 and self.worker is not None else ""
        self.reporter.message(f"{who}trial {trial.number} {what} | {best} | {c['complete'] + c['pruned']}{goal} "
                              f"finished, {time.perf_counter() - self.t0:.0f} s")
