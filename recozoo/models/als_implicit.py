"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008), backed by the ``implicit`` library.

Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets"
(ICDM 2008): every (user, item) cell has a preference p_ui = 1 if the user
interacted with the item, else 0, and a confidence c_ui = 1 + α·r_ui (the
paper's linear scheme, eq. 6) or 1 + α·log(1 + r_ui/ε) (eq. 7); the factors
minimise Σ_all cells c_ui (p_ui − x_u·y_i)² + λ(Σ‖x_u‖² + Σ‖y_i‖²). Unobserved
cells count (with confidence 1), which is what makes it a *ranking* model.

``implicit`` (Ben Frederickson) already solves this well — native code,
conjugate-gradient or Cholesky solves, multi-threaded top-k — so this module
only translates: ratings become confidences, our seed becomes its
``random_state``, and the fold-in is its ``recalculate_user``; ``recommend`` is the
base class's dense x_u·Y ranking through :func:`recozoo.topk.top_k_rows`, so its
ties go to the lower item index like every other model's. We pass
c_ui itself and ``alpha=1`` to ``implicit``, whose solver reads the matrix
value as the confidence, so α and the confidence scheme stay ours and
visible.

No ratings are predicted (``predicts_ratings = False``; the evaluator never
reports an RMSE for it): :meth:`predict` returns the preference score x_u·y_i,
an estimate of p_ui on no rating scale.

Threads: ``implicit`` runs its own thread pool and asks for the BLAS pool to
be single-threaded (a multi-threaded OpenBLAS under it is up to 10x slower);
fitting therefore runs under ``threadpoolctl.threadpool_limits(1, "blas")``,
which also keeps ``implicit`` from warning about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recozoo.models.base import FoldIn, Model
from recozoo.search_space import Categorical, Float, Int, SearchSpace, When
from recozoo.settings import BaseSettings, setting

__all__ = ["ImplicitALS", "ImplicitALSSettings"]


@dataclass(frozen=True)
class ImplicitALSSettings(BaseSettings):
    factors: int = setting(64, "latent dimension f", min=1, max=4096)
    reg: float = setting(0.05, "λ, the L2 weight of the factors", min=0)
    alpha: float = setting(10.0, "α in the confidence c = 1 + α·s (the paper uses 40 on TV "
                                 "watching times)", min=0)
    confidence: Literal["linear", "log", "binary"] = setting(
        "linear", "s = the rating (linear), log(1 + rating/epsilon) (log), or 1 (binary)")
    epsilon: float = setting(1.0, "ε of the log confidence scheme", min=0, min_exclusive=True)
    min_rating: float = setting(0.0, "ratings below this are dropped (not interactions)")
    iterations: int = setting(15, "ALS sweeps", min=1, max=10_000)
    use_cg: bool = setting(True, "conjugate-gradient solves (Takács et al. 2011) instead of "
                                 "exact Cholesky")
    threads: int = setting(0, "implicit's worker threads (0 = one per core)", min=0)


class ImplicitALS(Model):
    """Hu-Koren-Volinsky implicit-feedback ALS via the implicit library (ranking only)."""

    name = "als-implicit"
    Settings = ImplicitALSSettings
    predicts_ratings = False
    summary = "implicit-feedback ALS (Hu, Koren & Volinsky 2008) via the implicit library"
    fallback = ("unknown or rating-less user: the mean user factor's score (a popularity-like "
                "preference); unknown or rating-less item: score 0 (no evidence)")
    conformance_settings = {"factors": 4, "iterations": 2}
    #: what ``recozoo tune als-implicit`` tries (with a ranking metric); ε only for the log confidence
    search_space = SearchSpace(Int("factors", 16, 256, log=True), Float("reg", 1e-3, 10.0, log=True),
                               Float("alpha", 1.0, 100.0, log=True),
                               Categorical("confidence", ("linear", "log", "binary")),
                               When("confidence", "log", Float("epsilon", 0.1, 10.0, log=True)),
                               Int("iterations", 5, 30))
    folds_in = FoldIn.YES
    warm_starts = True
    warm_start_method = ("implicit's ALS continues from the run's user and item factors (new users: "
                         "implicit's own random start)")
    fold_in_method = ("implicit's recalculate_user: x_u = (YᵀY + λI + Σ (c_ui − 1) y_i y_iᵀ)⁻¹ Σ c_ui y_i, "
                      "the exact user half-step, confidences as in training")

    def _confidence(self, r: np.ndarray) -> np.ndarray:
        s = self.settings
        if s.confidence == "binary":
            v = np.ones_like(r)
        elif s.confidence == "log":
            v = np.log1p(np.maximum(r, 0) / s.epsilon)
        else:
            v = np.maximum(r, 0)
        return (1.0 + s.alpha * v).astype(np.float32)

    def _fit(self, train, valid, reporter, run_dir, resume):
        import threadpoolctl
        from implicit.cpu.als import AlternatingLeastSquares

        s = self.settings
        csr = train.to_csr()
        keep = np.asarray(csr.data) >= s.min_rating
        conf = np.where(keep, self._confidence(np.asarray(csr.data, dtype=np.float32)), 0).astype(np.float32)
        # copies: implicit's solver needs writable buffers (a cached split's columns are read-only
        # memory maps), and eliminate_zeros works in place and must not touch the (shared) table
        cui = sp.csr_matrix((conf, np.array(csr.indices), np.array(csr.indptr)), shape=csr.shape)
        if not keep.all():
            cui.eliminate_zeros()
        self.user_known_ = np.diff(cui.indptr) > 0
        self.item_known_ = np.bincount(cui.indices, minlength=train.n_items) > 0
        reporter.start(self.name, total=s.iterations)
        with threadpoolctl.threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=s.factors, regularization=s.reg, alpha=1.0, iterations=s.iterations,
                use_cg=s.use_cg, num_threads=s.threads, random_state=self.seed, dtype=np.float32,
                calculate_training_loss=False)
            prev = self._warm_previous(train.n_users, train.n_items)
            if prev is not None:      # implicit keeps factors that are already set (its warm start)
                rng = np.random.default_rng(self.seed)
                new = rng.random((train.n_users - prev.n_users_, s.factors), dtype=np.float32) * 0.01
                model.user_factors = np.vstack([prev.user_factors_, new]).astype(np.float32)
                model.item_factors = prev.item_factors_.astype(np.float32, copy=True)
            model.fit(cui, show_progress=False,
                      callback=lambda it, seconds, loss: reporter.advance(1))
        reporter.finish()
        self._set_factors(np.asarray(model.user_factors), np.asarray(model.item_factors))

    def _set_factors(self, X: np.ndarray, Y: np.ndarray) -> None:
        X = X.astype(np.float32, copy=True)
        Y = Y.astype(np.float32, copy=True)
        X[~self.user_known_] = 0.0   # never trained: keep them out of the fallback's mean
        Y[~self.item_known_] = 0.0
        self.user_factors_, self.item_factors_ = X, Y
        self.mean_user_factor_ = (X[self.user_known_].mean(0) if self.user_known_.any()
                                  else np.zeros(X.shape[1], dtype=np.float32)).astype(np.float32)
        self._implicit = None    # the serving engine caches YᵀY: rebuilt for these factors

    def _engine(self):
        """The ``implicit`` model serving the fold-in, holding our factors (built once
        per set of factors: it caches YᵀY; ``regularization`` is ours, ``alpha`` 1 as in training)."""
        model = getattr(self, "_implicit", None)
        if model is None:
            import threadpoolctl
            from implicit.cpu.als import AlternatingLeastSquares
            with threadpoolctl.threadpool_limits(1, "blas"):  # its constructor checks BLAS threads
                model = AlternatingLeastSquares(factors=self.settings.factors, regularization=self.settings.reg,
                                                alpha=1.0, num_threads=self.settings.threads,
                                                dtype=np.float32)
            model.user_factors = self.user_factors_
            model.item_factors = self.item_factors_
            self._implicit = model
        return model

    # ------------------------------------------------------------- prediction
    def _predict(self, users, items):
        """Preference scores x_u·y_i (not ratings); rating-less users get the fallback."""
        U = np.where(self.user_known_[users][:, None], self.user_factors_[users],
                     self.mean_user_factor_[None, :])
        return np.einsum("ij,ij->i", U, self.item_factors_[items]).astype(np.float32)

    def _predict_unknown(self, users, items):
        ki = (items >= 0) & (items < self.n_items_)
        Y = self.item_factors_[np.clip(items, 0, self.n_items_ - 1)]
        ku = (users >= 0) & (users < self.n_users_)
        U = self.user_factors_[np.clip(users, 0, self.n_users_ - 1)]
        U = np.where((ku & self.user_known_[np.clip(users, 0, self.n_users_ - 1)])[:, None], U,
                     self.mean_user_factor_[None, :])
        return np.where(ki, np.einsum("ij,ij->i", U, Y), 0.0).astype(np.float32)

    def score_items(self, users):
        users = np.asarray(users, dtype=np.int64)
        U = np.where(self.user_known_[users][:, None], self.user_factors_[users],
                     self.mean_user_factor_[None, :])
        return (U @ self.item_factors_.T).astype(np.float32)

    def _score_new_users(self, ratings):
        """The exact user half-step of the paper (eq. 4) through ``implicit``'s ``recalculate_user``,
        with the confidences of training (ratings below ``min_rating`` are no interaction); a user
        with no interaction gets the mean-user-factor fallback."""
        import threadpoolctl
        s = self.settings
        keep = ratings.data >= s.min_rating
        conf = np.where(keep, self._confidence(ratings.data.astype(np.float32)), 0).astype(np.float32)
        cui = sp.csr_matrix((conf, ratings.indices.copy(), ratings.indptr.copy()), shape=ratings.shape)
        cui.eliminate_zeros()
        with threadpoolctl.threadpool_limits(1, "blas"):
            X = np.asarray(self._engine().recalculate_user(np.arange(cui.shape[0]), cui),
                           dtype=np.float32).reshape(cui.shape[0], -1)
        cold = np.diff(cui.indptr) == 0
        X[cold] = self.mean_user_factor_
        return (X @ self.item_factors_.T).astype(np.float32)

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_known": self.user_known_, "item_known": self.item_known_}

    def _set_state(self, state):
        self.user_known_ = np.asarray(state["user_known"], dtype=bool)
        self.item_known_ = np.asarray(state["item_known"], dtype=bool)
        X = np.asarray(state["user_factors"], dtype=np.float32)
        Y = np.asarray(state["item_factors"], dtype=np.float32)
        if X.shape != (self.n_users_, self.settings.factors) or \
                Y.shape != (self.n_items_, self.settings.factors):
            raise ValueError("factor matrices do not match the saved shape")
        self._set_factors(X, Y)

