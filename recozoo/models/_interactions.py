"""What the implicit-feedback ranking models share: interactions in, item scores out.

``pop``, ``itemknn`` and ``bpr`` read a user as the *set* of items they
interacted with: every stored entry of the training table (or of a new user's
row) is one interaction, value 1, whatever its rating — binarise rated data
first (``ml-100k-implicit``, ``--data-param threshold=3.5``). A subclass
learns from the binary matrix (:meth:`InteractionModel._fit_interactions`)
and scores users' rows (:meth:`InteractionModel._scores`); this base turns
that into the whole model contract: scores of known users from their training
row, fold-in of new users from theirs (the same code path), the popularity
fallback for rows without interactions, and persistence of the popularity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recozoo.models.base import FoldIn, Model, scores_at_pairs
from recozoo.progress import Reporter

__all__ = ["InteractionModel", "binary_matrix"]


def binary_matrix(csr: sp.spmatrix) -> sp.csr_matrix:
    """Every stored entry as value 1 (float32), in fresh writable arrays.

    Why copies: a prepared split's arrays are read-only memory maps, and
    ``implicit``'s Cython kernels refuse read-only buffers.
    """
    csr = sp.csr_matrix(csr)
    return sp.csr_matrix((np.ones(csr.nnz, dtype=np.float32), np.array(csr.indices, dtype=np.int32),
                          np.array(csr.indptr, dtype=np.int64)), shape=csr.shape)


class InteractionModel(Model):
    """Base of the ranking models that score items from a user's interactions (module docstring)."""

    predicts_ratings = False
    folds_in = FoldIn.YES

    def _fit(self, train, valid, reporter, run_dir, resume):
        X = binary_matrix(train.to_csr())
        self.popularity_ = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()
        self._fit_interactions(X, reporter)

    def _fit_interactions(self, X: sp.csr_matrix, reporter: Reporter) -> None:
        """Learn from the binary (users x items) matrix of TRAIN."""
        raise NotImplementedError

    def _scores(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores of every item (rows x n_items) for binary rows that have at least one interaction."""
        raise NotImplementedError

    def _rows(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores for binary rows; rows without an interaction get the popularity fallback."""
        out = np.empty(X.shape, dtype=np.float32)
        full = np.diff(X.indptr) > 0
        if full.any():
            out[full] = self._scores(X[np.flatnonzero(full)])
        out[~full] = self.popularity_
        return out

    def score_items(self, users):
        self._check_fitted()
        return self._rows(binary_matrix(self._seen[np.asarray(users, dtype=np.int64).reshape(-1)]))

    def _predict(self, users, items):
        return scores_at_pairs(self.score_items, users, items, self.n_items_)

    def _predict_unknown(self, users, items):
        ok = (items >= 0) & (items < self.n_items_)
        return np.where(ok, self.popularity_[np.clip(items, 0, self.n_items_ - 1)], 0.0).astype(np.float32)

    def _score_new_users(self, ratings):
        return self._rows(binary_matrix(ratings))

    def _get_state(self) -> dict[str, Any]:
        return {"popularity": self.popularity_, **self._interaction_state()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.popularity_ = np.asarray(state["popularity"], dtype=np.float32)
        if self.popularity_.shape != (self.n_items_,):
            raise ValueError("the popularity vector does not match the saved number of items")
        self._set_interaction_state(state)

    def _interaction_state(self) -> dict[str, Any]:
        """The subclass's learned arrays."""
        return {}

    def _set_interaction_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_interaction_state`."""
