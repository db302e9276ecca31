"""EASE^R: Embarrassingly Shallow Autoencoders (Steck, WWW 2019).

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (The Web
Conference 2019). An item-item weight matrix B is learned from the binary
user x item matrix X by

    min_B ‖X − XB‖²_F + λ‖B‖²_F   subject to diag(B) = 0,

whose closed form (the paper's eq. 8) is, with P = (XᵀX + λI)⁻¹,

    B = I − P · diag(1 / diag(P)),   i.e. B_ij = −P_ij / P_jj (i ≠ j), B_jj = 0.

The zero diagonal is the point: without it the trivial B = I reconstructs X
perfectly and ranks nothing. A user's scores are x_u B (their interactions
times the weights), so EASE ranks items; it predicts no ratings
(``predicts_ratings = False``). Fitting costs one dense n_items x n_items
inverse, which is fast up to ~20-30k items.

Default λ = 500: the value the paper reports for ML-20M (it uses 200 for
Netflix and 1000 for MSD); tune it on VALID for other data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import recozoo
from recozoo.models.base import FoldIn, Model

try:
    from recozoo.models.base import scores_at_pairs
except ImportError:     # a recozoo from before the helper (its version number is the same 0.1.0)
    raise ImportError(f"recozoo-ease needs a recozoo whose recozoo.models.base has scores_at_pairs (this "
                      f"recozoo {recozoo.__version__} has not): install recozoo from the same "
                      "repository as this plugin") from None
from recozoo.search_space import Float, SearchSpace
from recozoo.settings import BaseSettings, setting

__all__ = ["EASE", "EASESettings"]


@dataclass(frozen=True)
class EASESettings(BaseSettings):
    reg: float = setting(500.0, "λ, the L2 weight on B (the paper's value for ML-20M is 500)",
                         min=0, min_exclusive=True)
    min_rating: float = setting(0.0, "ratings below this are not interactions (X is binary)")


class EASE(Model):
    """EASE^R (Steck 2019): closed-form item-item weights with a zero diagonal; ranking only."""

    name = "ease"
    Settings = EASESettings
    predicts_ratings = False
    summary = "EASE^R item-item autoencoder (Steck, WWW 2019), closed form; ranking only"
    fallback = ("user without training interactions (or unknown): the item's popularity "
                "(column sums of X) scaled to [0, 1]; unknown item: score 0")
    conformance_settings = {"reg": 10.0}
    #: what ``recozoo tune ease --metric ndcg@10`` tries: λ over four decades (the paper's 200..1000 inside)
    search_space = SearchSpace(Float("reg", 1.0, 10000.0, log=True))
    folds_in = FoldIn.YES
    warm_starts = True
    warm_start_method = "closed form: refitted on TRAIN + events (no learned state to start from)"
    fold_in_method = ("x B: the new user's binary interaction row (ratings >= min_rating) times the "
                      "item-item weights, exactly as for a training user")

    def _binary(self, csr: sp.csr_matrix, dtype) -> sp.csr_matrix:
        """X: 1 where a rating is >= min_rating, the rest dropped. In copies of the index arrays:
        eliminate_zeros works in place, and the table's arrays are shared (or read-only)."""
        keep = (np.asarray(csr.data) >= self.settings.min_rating).astype(dtype)
        X = sp.csr_matrix((keep, csr.indices.copy(), csr.indptr.copy()), shape=csr.shape)
        X.eliminate_zeros()
        return X

    def _fit(self, train, valid, reporter, run_dir, resume):
        X = self._binary(train.to_csr(), np.float64)
        reporter.start("ease", total=1)
        G = (X.T @ X).toarray()
        idx = np.diag_indices_from(G)
        G[idx] += self.settings.reg
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))[None, :]
        B[idx] = 0.0
        reporter.advance(1)
        reporter.finish()
        self.weights_ = B.astype(np.float32)
        self.interactions_ = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), X.indices, X.indptr),
                                           shape=X.shape)
        pop = np.asarray(X.sum(0)).ravel()
        self.popularity_ = (pop / max(pop.max(), 1.0)).astype(np.float32)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        rows = self.interactions_[users]
        out = np.asarray(rows @ self.weights_, dtype=np.float32)
        cold = np.diff(rows.indptr) == 0
        if cold.any():
            out[cold] = self.popularity_
        return out

    def _score_new_users(self, ratings):
        """The paper's scoring rule for any user: x B with x = 1 where rating >= min_rating."""
        X = self._binary(ratings, np.float32)
        out = np.asarray(X @ self.weights_, dtype=np.float32)
        cold = np.diff(X.indptr) == 0
        if cold.any():
            out[cold] = self.popularity_
        return out

    def _predict(self, users, items):
        # one dense row block of scores per chunk of users, 4M scores at most
        return scores_at_pairs(self._scores, users, items, self.n_items_, cells=4_000_000)

    def _predict_unknown(self, users, items):
        ki = (items >= 0) & (items < self.n_items_)
        ku = (users >= 0) & (users < self.n_users_)
        out = np.where(ki, self.popularity_[np.clip(items, 0, self.n_items_ - 1)], 0.0)
        if (ku & ki).any():
            sel = np.flatnonzero(ku & ki)
            out[sel] = self._predict(users[sel], items[sel])
        return out.astype(np.float32)

    def score_items(self, users):
        return self._scores(np.asarray(users, dtype=np.int64))

    def _get_state(self) -> dict[str, Any]:
        X = self.interactions_
        return {"weights": self.weights_, "popularity": self.popularity_,
                "x_indptr": X.indptr, "x_indices": X.indices}

    def _set_state(self, state):
        self.weights_ = np.asarray(state["weights"], dtype=np.float32)
        self.popularity_ = np.asarray(state["popularity"], dtype=np.float32)
        ind = np.asarray(state["x_indices"])
        self.interactions_ = sp.csr_matrix((np.ones(ind.size, dtype=np.float32), ind,
                                            np.asarray(state["x_indptr"])),
                                           shape=(self.n_users_, self.n_items_))
        if self.weights_.shape != (self.n_items_, self.n_items_):
            raise ValueError("weight matrix does not match the saved shape")
