"""What one tuning run is asked to do, and the checks that run before anything is written.

Every check here is cheap and touches no file: a bad metric, budget or trial count,
a model without a search space, or a space whose points are not valid settings
is a one-line :class:`~recozoo.errors.RecozooError` before the output folder or
the study exists ("nothing half-written").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recozoo.errors import RecozooError
from recozoo.metrics import RANKING_METRICS
from recozoo.search import LOWER_IS_BETTER
from recozoo.search_space import first_invalid_point

__all__ = ["TuneConfig", "parse_budget", "parse_metric", "parse_pruner", "RANKING_METRICS", "DEFAULT_TRIALS",
           "PRUNERS"]

#: trials when neither ``--trials`` nor ``--budget`` is given
DEFAULT_TRIALS = 20

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str | float | int | None) -> float | None:
    """Wall-clock seconds from ``90``, ``90s``, ``10m``, ``1.5h`` or ``1h30m``; None stays None."""
    if text is None or isinstance(text, (int, float)) and not isinstance(text, bool):
        if text is not None and text <= 0:
            raise RecozooError(f"--budget must be positive, got {text}")
        return None if text is None else float(text)
    s = str(text).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", s)
    if not s or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smh]?)", "", s).strip():
        raise RecozooError(f"--budget: cannot read {text!r} (e.g. 90s, 10m, 1.5h, 1h30m)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise RecozooError(f"--budget must be positive, got {text!r}")
    return seconds


#: ``--pruner`` values: ``auto`` = ``median`` for models that declare
#: :attr:`~recozoo.models.base.Model.tune_prunes` (and a per-epoch VALID curve, and an RMSE/MAE metric),
#: ``none`` for the others
PRUNERS = ("auto", "median", "none")


def parse_pruner(text: str | None) -> str:
    """``auto`` (None), ``median`` or ``none``; anything else is a one-line error."""
    t = "auto" if text is None else str(text).strip().lower()
    if t not in PRUNERS:
        raise RecozooError(f"--pruner: unknown pruner {text!r} (use {'|'.join(PRUNERS)})")
    return t


def parse_metric(text: str) -> tuple[str, int]:
    """``(metric key, ranking cut-off k)`` of ``rmse``, ``mae`` or ``NAME@K`` (ndcg, recall, map, hitrate)."""
    t = str(text).strip().lower()
    if t in LOWER_IS_BETTER:
        return t, 10
    m = re.fullmatch(r"([a-z_]+)@(\d+)", t)
    if m and m.group(1) in RANKING_METRICS and int(m.group(2)) >= 1:
        return f"{m.group(1)}@{int(m.group(2))}", int(m.group(2))
    raise RecozooError(f"unknown metric {text!r} (use rmse, mae or {'|'.join(RANKING_METRICS)}@K, e.g. ndcg@10)")


@dataclass
class TuneConfig:
    """One ``recozoo tune`` run (the CLI's options, the library's arguments)."""

    model: str
    dataset: str
    #: rmse, mae or NAME@K; None = rmse for rating models, ndcg@10 for ranking-only ones
    metric: str | None = None
    #: wall-clock seconds for the whole study (resumed runs count what earlier runs spent)
    budget: float | None = None
    #: finished (completed or pruned) trials to reach; None with no budget = DEFAULT_TRIALS
    trials: int | None = None
    #: trials at once: worker processes here, or on ``cluster`` (None: 1 here, the cluster's task slots there)
    jobs: int | None = 1
    #: an Optuna storage URL; None = SQLite in the output folder
    storage: str | None = None
    #: a Dask scheduler address (``tcp://HOST:PORT``): the trials run on its workers (recozoo.tune.cluster)
    cluster: str | None = None
    seed: int = 0
    out: Path | None = None
    #: refit the best settings on TRAIN ∪ VALID before TEST (recozoo.search.refit)
    refit: bool = True
    #: settings every trial uses, overriding the space (the CLI's --set)
    fixed: dict[str, Any] = field(default_factory=dict)
    split_seed: int = 0
    data_params: dict[str, Any] | None = None
    source: str | None = None
    device: str = "cpu"
    #: the study's name in the storage; None = derived from model, dataset and metric
    study_name: str | None = None
    #: write history.png and importances.png (matplotlib and fANOVA cost a few seconds)
    plots: bool = True
    #: fit the best settings and score TEST at the end (off: the study only, TEST never read)
    final: bool = True
    #: auto | median | none (:data:`PRUNERS`); resolved to median or none
    pruner: str = "auto"

    def resolved(self, model_cls) -> "TuneConfig":
        """This config checked against the model (see the module docstring), defaults filled in."""
        metric = self.metric or ("rmse" if model_cls.predicts_ratings else "ndcg@10")
        key, _ = parse_metric(metric)
        if key in LOWER_IS_BETTER and not model_cls.predicts_ratings:
            raise RecozooError(f"{self.model} predicts no ratings: tune it with a ranking metric, e.g. "
                               f"--metric ndcg@10")
        if self.trials is not None and self.trials < 1:
            raise RecozooError(f"--trials must be >= 1, got {self.trials}")
        jobs = self.jobs if self.jobs is not None or self.cluster else 1
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise RecozooError(f"--jobs must be >= 1, got {jobs}")
        if self.cluster and self.storage and self.storage.startswith("sqlite:"):
            raise RecozooError(f"--cluster with --storage {self.storage}: the cluster's workers cannot share an SQLite "
                               "file; leave --storage out (the scheduler serves the study and it is kept in --out) "
                               "or give a database server every worker reaches")
        budget = parse_budget(self.budget)
        trials = self.trials if (self.trials is not None or budget is not None) else DEFAULT_TRIALS
        space = model_cls.search_space.without(self.fixed)
        if not space:
            raise RecozooError(f"{self.model} declares no search space (see `recozoo models {self.model}`): "
                               "nothing to tune")
        bad = first_invalid_point(space, model_cls.Settings, self.model, fixed=self.fixed)
        if bad is not None:
            raise RecozooError(f"{self.model}: its search space yields invalid settings "
                               f"({bad[1]}; point {_short(bad[0])})")
        out = Path(self.out) if self.out else Path("runs") / f"tune-{self.model}-{self.dataset}"
        name = self.study_name or f"recozoo-{self.model}-{self.dataset}-{key}"
        return _replace(self, metric=key, budget=budget, trials=trials, jobs=jobs, out=out, study_name=name,
                        pruner=_pruner(parse_pruner(self.pruner), model_cls, key))


def _pruner(asked: str, model_cls, metric: str) -> str:
    """``median`` or ``none``: pruning needs a per-epoch VALID curve of the metric (RMSE, or MAE judged by it)."""
    if metric not in LOWER_IS_BETTER or not model_cls.valid_curve:
        return "none"
    if asked == "auto":
        return "median" if model_cls.tune_prunes else "none"
    return asked


def _short(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def _replace(cfg: TuneConfig, **changes) -> TuneConfig:
    return TuneConfig(**{**cfg.__dict__, **changes})
