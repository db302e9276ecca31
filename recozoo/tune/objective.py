"""One trial: sample settings, fit on TRAIN, score VALID; prune from the per-epoch VALID score.

TEST is never read here (the split's ``test`` part is not touched): a trial's
value is its VALID score only. Pruning listens to the VALID learning curve
that models declaring :attr:`~recozoo.models.base.Model.valid_curve` send to
``reporter.log`` after each epoch (the torch engine's record: ``epoch``,
``valid_rmse``; ALS, TimeSVD++, PMF and biased MF send the same). For ``rmse``
and ``mae`` that curve is reported to the trial, and (``--pruner median``, the
default for models that declare :attr:`~recozoo.models.base.Model.tune_prunes`)
Optuna's median pruner stops a trial whose VALID RMSE at an epoch is worse than
the median of earlier trials at that epoch. Ranking metrics have no
per-epoch curve to compare, so their trials run to the end.
"""

from __future__ import annotations

import time
from typing import Any

from recozoo.defaults import resolve
from recozoo.errors import RecozooError, SettingsError
from recozoo.evaluate import evaluate, evaluate_ranking
from recozoo.progress import Reporter
from recozoo.search import LOWER_IS_BETTER
from recozoo.settings import parse_settings, settings_to_dict

#: the ``origin`` user attribute of the trial that tries the model's defaults (queued by
#: :func:`recozoo.tune.trials.queue_defaults`, fitted as the defaults by :meth:`Objective.settings`)
DEFAULTS_ORIGIN = "defaults"

__all__ = ["Objective", "PruningReporter", "FailedFit", "valid_score", "DEFAULTS_ORIGIN", "defaults_for"]


def defaults_for(cls, fixed: dict[str, Any], train):
    """What ``recozoo fit`` fits on ``train`` with the user's ``fixed`` values: the model's settings
    with its "auto" rules resolved there (the defaults trial queues these and then fits them)."""
    return resolve(parse_settings(cls.Settings, fixed, model=cls.name), cls.auto_rule, train)


class FailedFit(Exception):
    """A trial's fit failed with a RecozooError (e.g. SGD diverged): a failed trial, not a failed study."""


class PruningReporter(Reporter):
    """Reports each epoch's VALID RMSE to the trial; raises ``TrialPruned`` when the pruner says so,
    or when the budget's ``deadline`` (a ``time.perf_counter`` value) has passed and the study
    already has a completed trial (so a budget never ends a study with nothing to choose)."""

    def __init__(self, trial, prune: bool, deadline: float | None = None):
        self.trial = trial
        self.prune = prune
        self.deadline = deadline
        self.last_step = 0
        self.pruned_at: int | None = None
        self.stopped: str | None = None

    def log(self, record: dict[str, Any]) -> None:
        step = record.get("epoch")
        if step is None:
            return
        self.last_step = int(step)
        if self.deadline is not None and time.perf_counter() > self.deadline and self._study_has_a_result():
            import optuna
            self.pruned_at, self.stopped = int(step), "budget"
            raise optuna.TrialPruned(f"stopped at epoch {step}: the budget is spent")
        value = record.get("valid_rmse")
        if value is None:
            return
        if not self.prune:
            return
        self.trial.report(float(value), int(step))
        if self.trial.should_prune():
            import optuna
            self.pruned_at = int(step)
            raise optuna.TrialPruned(f"pruned at epoch {step} (VALID RMSE {value:.4f})")

    def _study_has_a_result(self) -> bool:
        import optuna
        return bool(self.trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def valid_score(model, split, metric: str, k: int) -> dict[str, float]:
    """The trial's figures on VALID: ``metric`` and, for rating models, rmse and mae."""
    if metric in LOWER_IS_BETTER:
        m = evaluate(model, split, "valid")
        return {"rmse": float(m["rmse"]), "mae": float(m["mae"])}
    m = evaluate_ranking(model, split, "valid", k=k)
    if metric not in m:
        raise RecozooError(f"{model.name}: VALID has no user with a positive to rank, so {metric} is undefined")
    return {metric: float(m[metric])}


class Objective:
    """Callable for ``study.optimize``: the model class, its space, the split, the metric."""

    def __init__(self, model_cls, space, split, metric: str, k: int, *, fixed: dict[str, Any],
                 seed: int, device: str, deadline: float | None = None, prune: bool = False):
        self.cls, self.space, self.split = model_cls, space, split
        #: report the VALID curve to the pruner: ``TuneConfig.resolved`` turned ``--pruner`` into median
        #: only for a model that sends a curve, tuned on RMSE/MAE
        self.prune = prune
        self.metric, self.k, self.fixed = metric, k, dict(fixed)
        self.seed, self.device, self.deadline = seed, device, deadline

    def settings(self, trial):
        """The trial's settings: a sampled point, then the user's fixed values; bad ones stop the study.

        The queued defaults trial (:func:`recozoo.tune.trials.queue_defaults`) runs the defaults
        themselves, exactly what ``recozoo fit`` runs with the user's values: its draws are only the
        space's nearest point, for the sampler's model, and the nearest point can differ (a default
        outside a range is clipped; the space's fixed budget replaces the defaults' own epochs and
        patience). The study's best is then never worse on VALID than the defaults."""
        point = {**self.space.sample(trial), **self.fixed}     # (sampling records the trial's draws)
        try:
            if trial.user_attrs.get("origin") == DEFAULTS_ORIGIN:   # best.json shows the values it ran
                return defaults_for(self.cls, self.fixed, self.split.train)
            return parse_settings(self.cls.Settings, point, model=self.cls.name)
        except SettingsError as e:
            raise RecozooError(f"{self.cls.name}: its search space yielded invalid settings in trial "
                               f"{trial.number} ({e})") from None

    def __call__(self, trial) -> float:
        settings = self.settings(trial)
        model = self.cls(settings=settings, seed=self.seed, device=self.device)
        reporter = PruningReporter(trial, prune=self.prune, deadline=self.deadline)
        # one user attribute, written once (each write is a database commit)
        info: dict[str, Any] = {"settings": settings_to_dict(settings)}
        t0 = time.perf_counter()
        try:
            model.fit(self.split.train, self.split.valid, reporter=reporter,
                      valid_fold_in=self.split.valid_fold_in)
            info["best_epoch"] = int(model.best_epoch_)
            info["valid"] = valid_score(model, self.split, self.metric, self.k)
        except RecozooError as e:
            info["error"] = str(e)
            raise FailedFit(str(e)) from None
        finally:
            info.update(fit_seconds=round(time.perf_counter() - t0, 3), epochs_run=reporter.last_step,
                        pruned_at=reporter.pruned_at, stopped=reporter.stopped)
            trial.set_user_attr("info", info)
        return info["valid"][self.metric]
