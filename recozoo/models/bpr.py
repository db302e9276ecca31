"""``bpr``: Bayesian Personalized Ranking matrix factorisation (Rendle et al., UAI 2009), via ``implicit``.

BPR-Opt: maximise ``Σ_(u,i,j) ln σ(x_ui − x_uj) − λ‖Θ‖²`` over triples of a
user, an item they interacted with and one they did not, by stochastic
gradient ascent on sampled triples (LearnBPR). ``implicit`` (Ben Frederickson)
runs it natively: its factors carry an item bias (a last user column fixed at
1), negatives are re-drawn when they hit a positive
(``verify_negative_samples``), and with more than one thread the updates are
lock-free (Hogwild!) and so not reproducible — ``threads`` defaults to 1 for
that reason. Every stored entry of TRAIN is one interaction.

Fold-in (a user absent from training; ``implicit`` has none for BPR): the
item factors stay fixed and the user's vector ``p`` (the bias column fixed at
1) maximises the same objective over the pairs of the user's items ``i`` and
a fixed set ``S`` of ``fold_in_negatives`` items drawn once at fit time
(seeded; items of the user are left out of ``S`` for that user)::

    F(p) = mean_{i ∈ I_u, j ∈ S \\ I_u} ln σ(p·(q_i − q_j)) − (reg/2)·‖p‖²

``F`` is concave, so gradient ascent with the step ``1/L`` (``L = ¼·max‖q_i −
q_j‖² + reg`` over the user's pairs, a bound on the curvature) climbs to its
maximum; ``fold_in_iterations`` steps are taken from ``p = 0``. The set ``S``
does not depend on who else is in a batch: a user folded in alone or in a
batch gets the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recozoo.models._interactions import InteractionModel
from recozoo.search_space import Float, Int, SearchSpace
from recozoo.settings import BaseSettings, setting

__all__ = ["BPR", "BPRSettings", "bpr_fold_in"]


@dataclass(frozen=True)
class BPRSettings(BaseSettings):
    factors: int = setting(64, "latent dimension (implicit adds an item-bias column)", min=1, max=4096)
    lr: float = setting(0.01, "SGD learning rate", min=0.0, min_exclusive=True)
    reg: float = setting(0.01, "λ, the L2 weight of the factors", min=0.0)
    iterations: int = setting(100, "passes over the interactions", min=1, max=100_000)
    threads: int = setting(1, "implicit's worker threads (more than 1: lock-free, not reproducible)", min=1)
    fold_in_negatives: int = setting(1000, "negatives of the fold-in objective (fixed, drawn at fit)", min=1)
    fold_in_iterations: int = setting(200, "gradient-ascent steps of the fold-in", min=1)


def bpr_fold_in(X: sp.csr_matrix, Q: np.ndarray, negatives: np.ndarray, reg: float,
                iterations: int) -> np.ndarray:
    """User vectors (rows of ``X``, binary) maximising the fold-in objective ``F`` (module docstring).

    ``Q`` is (items x f+1) with the item bias last; the returned vectors have their last column 1.
    Vectorised over every (entry, negative) pair of the batch: ``W = σ(s_j − s_i)`` is the weight of
    pair (i, j), and ``∇F = (Σ_ij W_ij (q_i − q_j)) / n_pairs − reg·p``.
    """
    B, m = X.shape[0], negatives.size
    rows = np.repeat(np.arange(B), np.diff(X.indptr))
    pos = X.indices.astype(np.int64)
    Qn = Q[negatives].astype(np.float64)                                  # m x f+1
    Qp = Q[pos].astype(np.float64)                                        # nnz x f+1
    valid = 1.0 - np.asarray(X[:, negatives].todense(), dtype=np.float64)  # B x m: j not the user's item
    n_pairs = np.bincount(rows, minlength=B) * valid.sum(1)
    # curvature bound per user: ¼·max over its pairs of ‖q_i − q_j‖² ≤ ¼·(max‖q_i‖ + max‖q_j‖)²
    pmax = np.zeros(B)
    np.maximum.at(pmax, rows, np.linalg.norm(Qp[:, :-1], axis=1))
    nmax = np.linalg.norm(Qn[:, :-1], axis=1).max() if m else 0.0
    step = 1.0 / (0.25 * (pmax + nmax) ** 2 + reg + 1e-12)
    P = np.zeros((B, Q.shape[1]))
    P[:, -1] = 1.0
    agg = sp.csr_matrix((np.ones(pos.size), (rows, np.arange(pos.size))), shape=(B, pos.size))
    valid_pairs = valid[rows]                                             # nnz x m, fixed: gathered once
    for _ in range(iterations):
        s_pos = np.einsum("kf,kf->k", Qp, P[rows])                        # nnz
        s_neg = P @ Qn.T                                                  # B x m
        W = valid_pairs / (1.0 + np.exp(s_pos[:, None] - s_neg[rows]))    # σ(s_j − s_i), nnz x m
        grad = agg @ (W.sum(1)[:, None] * Qp) - (agg @ W) @ Qn            # B x f+1
        grad = grad / np.maximum(n_pairs, 1)[:, None] - reg * P
        grad[:, -1] = 0.0
        P += step[:, None] * grad
    return P.astype(np.float32)


class BPR(InteractionModel):
    __doc__ = __doc__
    name = "bpr"
    Settings = BPRSettings
    summary = "BPR matrix factorisation (Rendle et al. 2009) via the implicit library"
    fallback = ("a user without training interactions (or unknown): the items' training interaction "
                "counts; an unknown item: 0")
    fold_in_method = ("the user vector maximising BPR's objective against the fixed item factors (pairs "
                      "of the user's items and a fixed seeded negative set), by gradient ascent")
    conformance_settings = {"factors": 4, "iterations": 3, "fold_in_negatives": 20, "fold_in_iterations": 20}
    search_space = SearchSpace(Int("factors", 16, 256, log=True), Float("lr", 1e-3, 0.1, log=True),
                               Float("reg", 1e-4, 1.0, log=True), Int("iterations", 20, 300, log=True))

    def _fit_interactions(self, X, reporter):
        import threadpoolctl
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        s = self.settings
        reporter.start(self.name, total=s.iterations)
        with threadpoolctl.threadpool_limits(1, "blas"):      # implicit warns under a threaded BLAS
            model = BayesianPersonalizedRanking(
                factors=s.factors, learning_rate=s.lr, regularization=s.reg, iterations=s.iterations,
                num_threads=s.threads, random_state=self.seed, dtype=np.float32)
            model.fit(X, show_progress=False, callback=lambda *progress: reporter.advance(1))
        reporter.finish()
        self.user_factors_ = np.array(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.array(model.item_factors, dtype=np.float32)
        rng = np.random.default_rng([self.seed, 1])
        m = min(s.fold_in_negatives, X.shape[1])
        self.fold_in_negatives_ = np.sort(rng.choice(X.shape[1], m, replace=False)).astype(np.int64)

    def score_items(self, users):
        """Known users: their trained factors (users without interactions: the popularity fallback)."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        out = (self.user_factors_[users] @ self.item_factors_.T).astype(np.float32)
        empty = np.diff(self._seen.indptr)[users] == 0
        out[empty] = self.popularity_
        return out

    def _scores(self, X):
        s = self.settings
        P = bpr_fold_in(X, self.item_factors_, self.fold_in_negatives_, s.reg, s.fold_in_iterations)
        return (P @ self.item_factors_.T).astype(np.float32)

    def _interaction_state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "fold_in_negatives": self.fold_in_negatives_}

    def _set_interaction_state(self, state: dict[str, Any]) -> None:
        self.user_factors_ = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(state["item_factors"], dtype=np.float32)
        self.fold_in_negatives_ = np.asarray(state["fold_in_negatives"], dtype=np.int64)
        f = self.settings.factors + 1
        if self.user_factors_.shape != (self.n_users_, f) or self.item_factors_.shape != (self.n_items_, f):
            raise ValueError("factor matrices do not match the saved shape")
