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

``F`` is strictly concave, so it has one maximiser; Newton's method finds it
in a handful of steps for every held-out user at once
(:mod:`recozoo.models._bpr_fold_in`: 6.5 s for ML-100K's 93 TEST users at
load 9.6, where gradient ascent took a minute or more). The set ``S`` does not depend on who
else is in a batch, and each user stops on their own convergence: a user
folded in alone or in a batch gets the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recozoo.models._bpr_fold_in import bpr_fold_in
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
    fold_in_iterations: int = setting(50, "Newton steps of the fold-in, at most (a user stops once converged)",
                                      min=1)


class BPR(InteractionModel):
    __doc__ = __doc__
    name = "bpr"
    Settings = BPRSettings
    summary = "BPR matrix factorisation (Rendle et al. 2009) via the implicit library"
    fallback = ("a user without training interactions (or unknown): the items' training interaction "
                "counts; an unknown item: 0")
    fold_in_method = ("the user vector maximising BPR's objective against the fixed item factors (pairs "
                      "of the user's items and a fixed seeded negative set), by Newton's method")
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
