"""Model selection on VALID, shared by every epoch loop: which epoch to keep, and when to stop.

One rule for the torch engine (:class:`recozoo.engine.Trainer`) and for models
with their own epoch loop (TimeSVD++'s numba passes): an epoch whose VALID figure
is strictly better than the best so far becomes the best (its weights are the
ones kept) — strictly below for an error such as RMSE, strictly above for a
ranking metric such as NDCG@100 (``higher_is_better``; the first of equal
figures stays the best either way); ``patience`` evaluations in a row without such an improvement stop
training (0 = never). Without VALID every epoch is the best, so the last one is
kept. The state is a few numbers, stored in checkpoints so that a resumed run
selects exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Selection"]


@dataclass
class Selection:
    """Best-on-VALID bookkeeping of one training run (epochs count from 1)."""

    #: False when the run has no VALID part: every epoch is then the best
    uses_valid: bool
    #: stop after this many evaluations without improvement (0 = never)
    patience: int = 0
    best_epoch: int = 0
    #: the best VALID figure so far (the name predates ranking metrics; with ``higher_is_better`` it
    #: holds e.g. the best NDCG)
    best_rmse: float | None = None
    #: evaluations since the last improvement
    bad: int = 0
    #: the patience ran out at the last evaluation
    stopped: bool = False
    #: the VALID figure is a score to maximise (a ranking metric), not an error to minimise
    higher_is_better: bool = False

    def update(self, epoch: int, valid_rmse: float | None) -> bool:
        """Record ``epoch``; ``valid_rmse`` (the VALID figure, whatever the metric) is None when VALID
        was not scored after it.

        Returns True when the epoch is the new best (the caller keeps its weights).
        """
        if not self.uses_valid:
            self.best_epoch = epoch
            return True
        if valid_rmse is None:
            self.stopped = False
            return False
        better = (self.best_rmse is None or
                  (valid_rmse > self.best_rmse if self.higher_is_better else valid_rmse < self.best_rmse))
        if better:
            self.best_epoch, self.best_rmse, self.bad = epoch, valid_rmse, 0
            self.stopped = False
            return True
        self.bad += 1
        self.stopped = bool(self.patience and self.bad >= self.patience)
        return False

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores (``uses_valid``, ``patience`` and ``higher_is_better`` come from the
        run's settings)."""
        d = asdict(self)
        del d["uses_valid"], d["patience"], d["higher_is_better"]
        return d

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_epoch = int(state["best_epoch"])
        self.best_rmse = None if state["best_rmse"] is None else float(state["best_rmse"])
        self.bad = int(state["bad"])
        self.stopped = bool(state["stopped"])
