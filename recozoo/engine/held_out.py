"""VALID as held-out users (strong generalisation): what a ranking task selects its epochs on.

On a split with held-out users VALID's users have no TRAIN row, so the
engine's usual VALID figure (each VALID user's TRAIN row in, their VALID
entries scored) would read an empty input. A task that can fold users in
instead ranks VALID users from their fold-in rows and reports NDCG@:data:`SELECT_K`,
ranked exactly as the evaluator ranks (:func:`recozoo.rank_eval.rank_scores`:
fold-in items excluded, ties to the lower index), so that the figure an epoch
is kept for is the one ``recozoo evaluate`` reports. Liang et al. (2018) select
Mult-VAE's epoch the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from recozoo.engine.rows import RowBatch, RowMatrix
from recozoo.rank_eval import rank_scores

__all__ = ["HeldOutValid", "SELECT_K"]

#: the cut-off of the NDCG that selects epochs on held-out VALID users (the paper's NDCG@100)
SELECT_K = 100
#: VALID users scored at once
_ROWS = 1024


def _ones(csr) -> sp.csr_matrix:
    """Canonical (sorted) CSR of ones from a table's CSR, in fresh arrays."""
    out = sp.csr_matrix((np.ones(csr.nnz, dtype=np.float32), np.array(csr.indices), np.array(csr.indptr)),
                        shape=csr.shape)
    out.sort_indices()
    return out


@dataclass(frozen=True)
class HeldOutValid:
    """VALID's held-out users: their fold-in rows (the input, excluded from the ranking) and their
    scored items (the positives), row for row; only users with both."""

    inputs: RowMatrix
    known: sp.csr_matrix
    positives: sp.csr_matrix

    @classmethod
    def from_tables(cls, fold_in, valid) -> "HeldOutValid | None":
        """From the split's ``valid_fold_in`` and ``valid`` tables (None when no user has both)."""
        known, pos = _ones(fold_in.to_csr()), _ones(valid.to_csr())
        users = np.flatnonzero((np.diff(known.indptr) > 0) & (np.diff(pos.indptr) > 0))
        if users.size == 0:
            return None
        known, pos = known[users], pos[users]
        return cls(RowMatrix(known.indptr, known.indices, known.data, known.shape[1]), known, pos)

    def mean_ndcg(self, scores_of: Callable[[RowBatch], torch.Tensor], device: torch.device) -> float:
        """Mean NDCG@:data:`SELECT_K` over the users, ``scores_of(batch)`` giving every item's score
        (rows x items) for a batch of fold-in rows (binary values)."""
        ndcg = []
        for s in range(0, self.inputs.n_rows, _ROWS):
            r = np.arange(s, min(s + _ROWS, self.inputs.n_rows))
            scores = scores_of(self.inputs.take(r).to(device)).float().cpu().numpy()
            ndcg.append(rank_scores(scores, self.known[r], self.positives[r], (SELECT_K,))[f"ndcg@{SELECT_K}"])
        return float(np.mean(np.concatenate(ndcg)))
