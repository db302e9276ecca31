"""Hyperparameter search that can only look at VALID.

Every candidate is fitted on ``split.train`` and scored on ``split.valid``;
``split.test`` is never read here, so settings chosen through :func:`search`
cannot have been picked by looking at TEST. Grid search tries the whole
Cartesian product; with ``n_iter`` it tries a seeded random sample of it
(without replacement), which finds good regions of large grids at a fraction
of the cost (Bergstra & Bengio 2012).

Usage::

    from recozoo.search import search
    res = search("biasedmf", split, {"factors": [50, 100], "reg": [0.02, 0.05, 0.1]})
    res.best["settings"], res.best["rmse"]
    chosen = get_model("biasedmf")(settings=res.best["settings"]).fit(split.train, split.valid)
    final = refit(chosen, split)          # same recipe on TRAIN ∪ VALID, then score TEST once
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recozoo.errors import RecozooError, SettingsError
from recozoo.evaluate import evaluate, evaluate_ranking
from recozoo.rank_eval import is_implicit
from recozoo.registry import get_model
from recozoo.settings import parse_settings, settings_to_dict
from recozoo.splits import Split

__all__ = ["search", "refit", "SearchResult", "LOWER_IS_BETTER"]

#: metrics where smaller is better; every other metric (ranking metrics) is maximised
LOWER_IS_BETTER = ("rmse", "mae")


@dataclass
class SearchResult:
    """All tried candidates (in the order tried) and the best one."""

    model: str
    metric: str
    results: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    def table(self) -> list[dict[str, Any]]:
        """Candidates sorted best first."""
        rev = self.metric not in LOWER_IS_BETTER
        return sorted(self.results, key=lambda r: r[self.metric], reverse=rev)


def _candidates(grid: dict[str, list], n_iter: int | None, seed: int) -> list[dict[str, Any]]:
    names = list(grid)
    for n in names:
        if not isinstance(grid[n], (list, tuple)) or len(grid[n]) == 0:
            raise SettingsError(f"search grid: {n!r} needs a non-empty list of values")
    sizes = [len(grid[n]) for n in names]
    total = int(np.prod(sizes)) if names else 1
    if n_iter is None or n_iter >= total:
        picks = range(total)
    else:
        if n_iter < 1:
            raise SettingsError(f"search: n_iter must be >= 1, got {n_iter}")
        picks = np.sort(np.random.default_rng(seed).choice(total, size=n_iter, replace=False))
    out = []
    for flat in picks:
        combo, rest = {}, int(flat)
        for n, size in zip(reversed(names), reversed(sizes)):
            rest, j = divmod(rest, size)
            combo[n] = grid[n][j]
        out.append({n: combo[n] for n in names})
    return out


def search(model_name: str, split: Split, grid: dict[str, list], n_iter: int | None = None,
           seed: int = 0, metric: str = "rmse", *, base: dict[str, Any] | None = None,
           fit_seed: int = 0, device: str = "cpu", k: int = 10, reporter=None) -> SearchResult:
    """Fit ``model_name`` on TRAIN for each candidate, score on VALID, return all + best.

    ``grid`` maps setting names to candidate values; ``base`` holds fixed
    settings shared by every candidate. ``metric`` is ``rmse``/``mae`` for
    rating models or a ranking metric of :func:`recozoo.evaluate.evaluate_ranking`
    (e.g. ``ndcg``, at ``k``) for any model. Bad settings fail before any
    fitting, naming the candidate; a candidate whose fit fails with a
    :class:`RecozooError` (e.g. SGD diverging) is kept in ``results`` with an
    ``error`` and the worst score, and never chosen.
    """

    if not split.has_valid:
        raise RecozooError(f"search needs a VALID part, and {split.name} has none")
    cls = get_model(model_name)
    if metric in LOWER_IS_BETTER and is_implicit(split):
        raise SettingsError(f"{split.name} is implicit feedback: search {model_name} with a ranking metric "
                            f"(e.g. metric='ndcg', k=100)")
    if metric in LOWER_IS_BETTER and not cls.predicts_ratings:
        raise SettingsError(f"{model_name} predicts no ratings: search it with a ranking metric "
                            f"(e.g. metric='ndcg')")
    cands = _candidates(grid, n_iter, seed)
    built = []
    for c in cands:  # validate every candidate before spending time on fitting
        values = dict(base or {})
        values.update(c)
        built.append(parse_settings(cls.Settings, values, model=model_name))
    res = SearchResult(model=model_name, metric=metric)
    for c, settings in zip(cands, built):
        model = cls(settings=settings, seed=fit_seed, device=device)
        t0 = time.perf_counter()
        try:
            model.fit(split.train, split.valid, valid_fold_in=split.valid_fold_in)
        except RecozooError as e:  # e.g. SGD diverged at this learning rate: a bad candidate
            worst = float("inf") if metric in LOWER_IS_BETTER else float("-inf")
            res.results.append({"candidate": c, "settings": settings_to_dict(settings), metric: worst,
                                "fit_seconds": time.perf_counter() - t0, "error": str(e)})
            continue
        fit_s = time.perf_counter() - t0
        if metric in LOWER_IS_BETTER:
            scores = evaluate(model, split, "valid")
        else:
            scores = evaluate_ranking(model, split, "valid", k=k)
            scores = {key.split("@")[0]: v for key, v in scores.items()} | scores
        if metric not in scores:
            raise SettingsError(f"search: unknown metric {metric!r} (have: {', '.join(sorted(scores))})")
        row = {"candidate": c, "settings": settings_to_dict(settings), metric: float(scores[metric]),
               "fit_seconds": fit_s}
        if "rmse" in scores:
            row["rmse"], row["mae"] = float(scores["rmse"]), float(scores["mae"])
        res.results.append(row)
        if reporter is not None:
            reporter.message(f"{model_name} {c} -> {metric} {row[metric]:.4f}")
    ok = [r for r in res.table() if "error" not in r]
    if not ok:
        raise RecozooError(f"search: every candidate of {model_name} failed "
                           f"(first: {res.results[0]['error']})")
    res.best = ok[0]
    return res


def refit(model, split: Split, *, reporter=None, run_dir=None):
    """A new model of ``model``'s kind, fitted on TRAIN ∪ VALID with the recipe VALID chose.

    ``model`` must have been fitted on ``split.train`` with ``split.valid``
    for selection; its settings plus :meth:`~recozoo.models.base.Model.refit_settings`
    (the training length it stopped at) are fitted again on all of TRAIN and
    VALID, with the same seed and device, and without VALID — except for
    models that need VALID for more than the length (``needs_valid``, the
    blend), which get both parts and refit their components themselves.
    TEST is not read; score it with the returned model, once.
    """
    if not split.has_valid:
        raise RecozooError(f"refit needs a VALID part, and {split.name} has none")
    new = model.refit_copy()
    if model.needs_valid:
        return new.fit(split.train, split.valid, reporter=reporter, run_dir=run_dir,
                       valid_fold_in=split.valid_fold_in)
    return new.fit(split.train_and_valid(), None, reporter=reporter, run_dir=run_dir)
