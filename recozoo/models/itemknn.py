"""``itemknn``: item-item collaborative filtering with cosine similarity and top-k neighbours.

The item-based kNN of Sarwar et al. (WWW 2001) / Deshpande & Karypis (TOIS
2004) on binary interactions, as the baselines of Dacrema et al. (RecSys
2019, ``ItemKNNCF``) compute it:

* ``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|)·sqrt(|U_j|) + shrink)`` — the
  cosine of the items' binary user columns, shrunk towards 0 for items with
  few users (``shrink``, default 0 = plain cosine); ``sim(j, j) = 0``;
* for each item ``j`` only its ``neighbours`` most similar items keep their
  similarity (a sparse ``W``: column ``j`` holds ``j``'s neighbours);
* a user's score for item ``j`` is ``Σ_{i ∈ I_u} W_ij``: the similarity mass
  of ``j``'s neighbours the user interacted with. A new user is folded in by
  the same sum over their fold-in items.

Fit: ``XᵀX`` is computed one block of item columns at a time (a dense
``n_items x block`` slab, its top ``neighbours`` per column kept), so the
memory stays ``n_items·block`` floats however many items there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recozoo.models._interactions import InteractionModel
from recozoo.search_space import Float, Int, SearchSpace
from recozoo.settings import BaseSettings, setting

__all__ = ["ItemKNN", "ItemKNNSettings", "cosine_top_k"]

#: item columns per block of XᵀX (the slab is n_items x BLOCK float32)
BLOCK = 512


@dataclass(frozen=True)
class ItemKNNSettings(BaseSettings):
    neighbours: int = setting(100, "similar items kept per item (k)", min=1)
    shrink: float = setting(0.0, "added to the cosine's denominator (shrinks rare items' similarities)", min=0.0)


def cosine_top_k(X: sp.csr_matrix, k: int, shrink: float) -> sp.csr_matrix:
    """``W`` (items x items): column ``j`` holds the ``k`` largest positive ``sim(i, j)``, ``i ≠ j``.

    Among equal similarities at the cut the lower item index is kept (a stable sort), so the result
    does not depend on the block size.
    """
    n = X.shape[1]
    Xc = X.tocsc()
    XT = Xc.T.tocsr()
    norms = np.sqrt(np.asarray(X.sum(axis=0), dtype=np.float64).ravel())
    k = min(int(k), max(n - 1, 1))
    rows, cols, vals = [], [], []
    for c0 in range(0, n, BLOCK):
        c1 = min(c0 + BLOCK, n)
        G = np.asarray((XT @ Xc[:, c0:c1]).todense(), dtype=np.float64)       # n x block co-counts
        denom = norms[:, None] * norms[None, c0:c1] + shrink
        S = np.divide(G, denom, out=np.zeros_like(G), where=denom > 0)
        S[np.arange(c0, c1), np.arange(c1 - c0)] = 0.0                       # no self-similarity
        top = np.argsort(-S, axis=0, kind="stable")[:k]                        # k x block
        v = np.take_along_axis(S, top, axis=0)
        keep = v > 0
        rows.append(top[keep])
        cols.append(np.broadcast_to(np.arange(c0, c1), top.shape)[keep])
        vals.append(v[keep].astype(np.float32))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


class ItemKNN(InteractionModel):
    __doc__ = __doc__
    name = "itemknn"
    Settings = ItemKNNSettings
    summary = "item-item kNN: cosine similarity of binary item columns, top-k neighbours"
    fallback = ("a user without training interactions (or unknown): the items' training interaction "
                "counts; an unknown item: 0")
    fold_in_method = "the sum of the neighbour similarities of the user's items (x_u · W, no refit)"
    conformance_settings = {"neighbours": 10}
    search_space = SearchSpace(Int("neighbours", 5, 1000, log=True), Float("shrink", 0.0, 200.0))

    def _fit_interactions(self, X, reporter):
        self.weights_ = cosine_top_k(X, self.settings.neighbours, self.settings.shrink)

    def _scores(self, X):
        return np.asarray((X @ self.weights_).todense(), dtype=np.float32)

    def _interaction_state(self) -> dict[str, Any]:
        W = self.weights_
        return {"w_indptr": W.indptr, "w_indices": W.indices, "w_data": W.data}

    def _set_interaction_state(self, state: dict[str, Any]) -> None:
        n = self.n_items_
        self.weights_ = sp.csr_matrix((state["w_data"], state["w_indices"], state["w_indptr"]), shape=(n, n))
