"""The one evaluator every model and command uses.

It takes a fitted model and a :class:`~recozoo.splits.Split`, applies the
protocol and returns metrics *plus the counts it scored*, so a reader always
knows what a figure covers.

Unseen-id policies for pairs whose user or item has no TRAIN rating:

* ``drop`` — skip them (the Netflix protocol; its splits have none anyway);
* ``fallback`` — score every pair, the model answering with its documented
  fallback (how published ML-100K u1 results are computed: ``u1.test`` holds
  ratings of items absent from ``u1.base``).

RMSE/MAE are reported unclipped. Clipping to the rating scale is an explicit
option; when used, the clipped figures are reported *beside* the unclipped ones
under ``rmse_clipped``/``mae_clipped``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from recozoo.errors import RecozooError
from recozoo.metrics import mae, rmse
from recozoo.rank_eval import evaluate_ranking, rank_part
from recozoo.splits import Split

__all__ = ["evaluate", "evaluate_with_errors", "evaluate_ranking", "rank_part", "POLICIES"]

POLICIES = ("drop", "fallback")


def _known(split: Split, users: np.ndarray, items: np.ndarray):
    ku = split.train.user_counts()[users] > 0
    ki = split.train.item_counts()[items] > 0
    return ku, ki


def evaluate(model, split: Split, part: str = "test", *, policy: str | None = None,
             clip: tuple[float, float] | None = None, chunk: int = 2_000_000) -> dict[str, Any]:
    """RMSE/MAE of ``model`` on ``split``'s ``part`` (valid|test), with coverage counts."""
    return evaluate_with_errors(model, split, part, policy=policy, clip=clip, chunk=chunk)[0]


def evaluate_with_errors(model, split: Split, part: str = "test", *, policy: str | None = None,
                         clip: tuple[float, float] | None = None,
                         chunk: int = 2_000_000) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`evaluate`'s figures and the per-rating errors behind them.

    The errors are prediction − truth (unclipped, float32; computed in float64)
    for exactly the pairs the figures cover, in the part's order: what a paired
    bootstrap between two models needs, with no second prediction pass.
    """
    if not model.predicts_ratings:
        raise RecozooError(f"{model.name} predicts no ratings: use ranking metrics (evaluate_ranking)")
    policy = policy or split.default_policy
    if policy not in POLICIES:
        raise RecozooError(f"unknown policy {policy!r} (drop|fallback)")
    table = split.table(part)
    users = table.users.astype(np.int64)
    items = np.asarray(table.items, dtype=np.int64)
    truth = np.asarray(table.ratings)
    ku, ki = _known(split, users, items)
    both = ku & ki
    sel = both if policy == "drop" else np.ones_like(both)
    u, i, y = users[sel], items[sel], truth[sel]
    t0 = time.perf_counter()
    pred = _predict(model, table, sel, u, i, chunk)
    seconds = time.perf_counter() - t0
    if u.size and not np.all(np.isfinite(pred)):
        raise RecozooError(f"{model.name} produced non-finite predictions on {part}")
    out: dict[str, Any] = {
        "part": part, "policy": policy, "rmse": rmse(pred, y), "mae": mae(pred, y),
        "n_scored": int(u.size), "n_total": int(table.nnz),
        "n_unknown_user": int((~ku).sum()), "n_unknown_item": int((ku & ~ki).sum()),
        "n_dropped": int((~sel).sum()), "n_fallback": int((sel & ~both).sum()),
        "predict_seconds": seconds, "clip": list(clip) if clip else None,
    }
    if clip is not None:
        pc = np.clip(pred, clip[0], clip[1])
        out["rmse_clipped"] = rmse(pc, y)
        out["mae_clipped"] = mae(pc, y)
    return out, (pred.astype(np.float64) - y.astype(np.float64)).astype(np.float32)


def _predict(model, table, sel: np.ndarray, users: np.ndarray, items: np.ndarray, chunk: int) -> np.ndarray:
    """Predictions in chunks; temporal models predict at the rating's time (they never read ratings at or
    after it)."""
    pred = np.empty(users.shape[0], dtype=np.float32)
    ts = np.asarray(table.timestamps)[sel] if model.uses_timestamps and table.timestamps is not None else None
    for s in range(0, users.shape[0], chunk):
        if ts is None:
            pred[s:s + chunk] = model.predict(users[s:s + chunk], items[s:s + chunk])
        else:
            pred[s:s + chunk] = model.predict(users[s:s + chunk], items[s:s + chunk], timestamps=ts[s:s + chunk])
    return pred
