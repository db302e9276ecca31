"""Shared plumbing of the temporal models (TimeSVD++, RRN): time-aware ``predict``.

Why this exists: :meth:`Model.predict` answers for (user, item) pairs, but a
temporal model's answer depends on *when* the rating is made. Both temporal
models therefore accept ``predict(users, items, timestamps=None)``:

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

__all__ = ["SECONDS_PER_DAY", "days_of", "TimeAwarePredict", "signature", "save_epoch_checkpoint",
           "load_epoch_checkpoint"]

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


# ------------------------------------------------------------------ checkpoints
CHECKPOINT = "last.pt"


def signature(name: str, train, settings) -> list:
    """What a resumable checkpoint must match: the data's shape and every setting but the budget."""
    import json

    from recozoo.settings import settings_to_dict
    st = {k: v for k, v in settings_to_dict(settings).items() if k not in ("epochs", "patience")}
    return [name, train.n_users, train.n_items, train.nnz, json.dumps(st, sort_keys=True)]


def save_epoch_checkpoint(run_dir, state: dict) -> None:
    """Write ``run_dir/last.pt`` atomically (the engine's checkpoint writer).

    numpy arrays become tensors and the numpy RNG state a JSON string, so the
    file loads with ``torch.load(weights_only=True)``.
    """
    if run_dir is None:
        return
    import json
    from pathlib import Path

    import torch

    from recozoo.engine.checkpoint import save_checkpoint

    def conv(v):
        if isinstance(v, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    state = dict(state)
    if "rng" in state:
        state["rng"] = json.dumps(state["rng"])
    save_checkpoint(Path(run_dir) / CHECKPOINT, conv(state))


def load_epoch_checkpoint(run_dir, signature: list) -> dict | None:
    """The state saved by :func:`save_epoch_checkpoint`, or None when there is none.

    A checkpoint made for other data (``signature`` differs) is a one-line
    :class:`~recozoo.errors.CheckpointError`. Tensors come back as numpy arrays
    only where the caller converts them.
    """
    if run_dir is None:
        return None
    import json
    from pathlib import Path

    from recozoo.engine.checkpoint import load_checkpoint
    from recozoo.errors import CheckpointError

    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    state = load_checkpoint(path)
    if list(state.get("signature", [])) != list(signature):
        raise CheckpointError(f"{path}: made for other data or settings "
                              f"({state.get('signature')} vs {signature}); remove it or use another --out")
    if "rng" in state:
        state["rng"] = json.loads(state["rng"])
    return state


def new_selection() -> dict:
    """Best-on-VALID bookkeeping of TimeSVD++'s epoch loop (the keys its checkpoints store; RRN, a torch
    model, trains through recozoo.engine instead)."""
    return {"best": None, "best_rmse": float("inf"), "bad": 0, "stopped": False}


def finish_epoch(model, rec: dict, valid, reporter, selection: dict, patience: int, snapshot) -> None:
    """The shared end of an epoch: VALID RMSE (when ``valid`` is given), history, log and progress, then the
    best-on-VALID bookkeeping in ``selection`` (``snapshot()`` copies the current weights on improvement;
    ``stopped`` after ``patience`` epochs without improvement, 0 = never)."""
    from recozoo.metrics import rmse
    if valid is not None:
        rec["valid_rmse"] = rmse(model.predict_table(valid), valid.ratings)
    model.history_.append(rec)
    reporter.log(rec)
    reporter.advance(1, **{k: v for k, v in rec.items() if k.endswith("rmse")})
    if valid is None:
        return
    if rec["valid_rmse"] < selection["best_rmse"]:
        selection.update(best_rmse=float(rec["valid_rmse"]), bad=0, best=snapshot())
    else:
        selection["bad"] += 1
        selection["stopped"] = bool(patience and selection["bad"] >= patience)
