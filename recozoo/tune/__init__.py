"""Hyperparameter tuning on VALID with Optuna: ``recozoo tune MODEL --dataset D``.

Every trial samples the model's declared search space (:mod:`recozoo.search_space`),
fits on TRAIN and is scored on VALID only; a seeded TPE sampler proposes the next
point, and for models whose trials pay for it (``--pruner auto``) a median pruner
stops trials whose per-epoch VALID RMSE lags. The study
lives in a database (SQLite in the output folder by default), so a killed run
resumes when the same command is run again. At the end the best settings are
refitted on TRAIN ∪ VALID and TEST is scored once, as an ordinary run directory
with ``trials.csv``, ``best.json`` and two PNGs beside it. Trials run in this process, in
``jobs`` worker processes, or on a Dask cluster (``cluster``: :mod:`recozoo.tune.cluster`).
See docs/tuning.md.

Usage::

    from recozoo.tune import TuneConfig, tune
    result = tune(TuneConfig("biasedmf", "ml-100k", trials=30, seed=1))
    result["best"]["settings"], result["test"]["rmse"]

Optuna is imported only when a study is opened: other commands do not pay for it.
"""

from recozoo.tune.config import TuneConfig, parse_budget, parse_metric, parse_pruner
from recozoo.tune.run import tune

__all__ = ["TuneConfig", "tune", "parse_budget", "parse_metric", "parse_pruner"]
