"""Time-aware ``predict`` for temporal models (TimeSVD++, RRN, and any model that reads timestamps).

Why this exists: :meth:`Model.predict` answers for (user, item) pairs, but a
temporal model's answer depends on *when* the rating is made. Temporal models
therefore accept ``predict(users, items, timestamps=None)``:

* ``timestamps`` (int64 Unix seconds, one per pair) — the prediction for that
  moment; the evaluator should pass the VALID/TEST table's own timestamps;
* ``None`` — the moment is "the first day after the training range" (the
  Netflix protocol's first test day), so callers that know nothing about time
  (``recommend``, ``score_items``, generic code) still get a well-defined,
  forward-looking answer.

Times are handled at day resolution (``timestamp // 86400``, UTC), as in both
papers.
"""

from __future__ import annotations

import numpy as np

from recozoo.errors import RecozooError

__all__ = ["SECONDS_PER_DAY", "days_of", "TimeAwarePredict"]

SECONDS_PER_DAY = 86400


def days_of(timestamps: np.ndarray) -> np.ndarray:
    """Day numbers (days since 1970-01-01, UTC) of Unix-second timestamps (int64)."""
    return np.floor_divide(np.asarray(timestamps, dtype=np.int64), SECONDS_PER_DAY)


class TimeAwarePredict:
    """Mixin (put before :class:`Model`): ``predict`` with optional per-pair timestamps.

    Subclasses implement ``_predict_at(users, items, days)`` (in-range indices,
    int64 day numbers) and set ``self.default_day_`` during fit; ``_predict``
    (the base contract, used by ``score_items``/``recommend``) predicts at that
    default day.
    """

    default_day_: int | None = None

    def _predict_at(self, users: np.ndarray, items: np.ndarray, days: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        days = np.full(users.shape[0], int(self.default_day_), dtype=np.int64)
        return self._predict_at(users, items, days)

    def predict(self, users, items, timestamps=None) -> np.ndarray:
        """Predicted ratings (float32); ``timestamps`` (Unix s) say when, else the default day."""
        if timestamps is None:
            return super().predict(users, items)
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        ts = np.asarray(timestamps).reshape(-1)
        if users.shape != items.shape or ts.shape != users.shape:
            raise RecozooError(f"predict: {users.size} users, {items.size} items and "
                               f"{ts.size} timestamps must have one entry per pair")
        if ts.dtype.kind not in "iu":
            raise RecozooError("predict: timestamps must be integer Unix seconds")
        days = days_of(ts)
        known = (users >= 0) & (users < self.n_users_) & (items >= 0) & (items < self.n_items_)
        out = np.empty(users.shape[0], dtype=np.float32)
        if known.all():
            out[:] = self._predict_at(users, items, days)
        else:
            if known.any():
                out[known] = self._predict_at(users[known], items[known], days[known])
            if (~known).any():
                out[~known] = self._predict_unknown(users[~known], items[~known])
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out

    def predict_table(self, table) -> np.ndarray:
        """Predictions for every rating of ``table`` at its own timestamps (same id maps)."""
        ts = table.timestamps if table.has_timestamps else None
        return self.predict(table.users, table.items, ts)
