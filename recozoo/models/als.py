"""ALS-WR: alternating least squares for explicit ratings (Zhou et al. 2008).

Zhou, Wilkinson, Schreiber & Pan, "Large-scale Parallel Collaborative
Filtering for the Netflix Prize" (AAIM 2008). The objective is

    Σ_(u,i) observed (r_ui − x_u·y_i)² + λ (Σ_u n_u ‖x_u‖² + Σ_i n_i ‖y_i‖²)

— "weighted-λ-regularisation": each user's (item's) penalty is scaled by its
number of ratings n_u (n_i), which the paper found keeps the best λ stable as
the rank grows. With the item side fixed, every user's factor is the solution
of a small ridge problem

    (Σ_i∈I_u y_i y_iᵀ + λ n_u I) x_u = Σ_i∈I_u r_ui y_i

and alternating the two sides never increases the objective.

How it is fast (no Python loop per user): for a block of users the Gram
matrices Σ y_i y_iᵀ are one sparse-times-dense product — the 0/1 rating
pattern (users x items, CSR) times the items' flattened outer products
(items x d(d+1)/2: the upper triangle, as the Grams are symmetric) — and the
right-hand sides are the ratings matrix times the factors; the d x d systems
(symmetric positive definite) are then solved all at once by one batched
LAPACK call (``np.linalg.solve`` over a stack, float64). Measured on the
2-core CPU for 1,650 systems of size 11 / 31 and 20,000 of size 51, that
stacked solve took 2–12 / 14–29 / 360–370 ms against 30 / 63 / 1,040 ms for
``torch.linalg.cholesky_ex`` + ``torch.cholesky_solve``, and it beat
``np.linalg.cholesky`` followed by vectorised triangular sweeps, so the
Cholesky route was dropped: for matrices this small the per-matrix call
overhead dominates, not the factorisation. Cost per half-step: nnz·d²/2 for
the Grams plus n·d³/3 for the solves, what ALS costs in any implementation.

``biases=True`` (the default) adds a global mean and user/item biases,
r̂ = μ + b_u + b_i + x_u·y_i, by giving each side one extra coordinate fixed to
1 on the other side (the usual trick): the bias is solved jointly with the
factor, under the same λ n_u penalty. ``biases=False`` is the paper's model
exactly (no mean, no biases; the item matrix's first column starts at the
item's mean rating, as in the paper's step 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recozoo.defaults import als_rule
from recozoo.errors import SettingsError
from recozoo.models._baseline import BiasBaseline
from recozoo.models._factors import BiasedFactorModel
from recozoo.search_space import Categorical, Float, Int, SearchSpace
from recozoo.settings import AUTO, BaseSettings, setting

__all__ = ["ALS", "ALSSettings", "solve_ridge_rows"]

#: budget (bytes) for one block's stacked Gram matrices; bounds memory on Netflix-size data
_GRAM_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class ALSSettings(BaseSettings):
    rank: int = setting(10, "number of latent factors d", min=1, max=4096)
    reg: float = setting(AUTO, "λ of the weighted-λ penalty λ·n_u·‖x_u‖² (and λ·n_i·‖y_i‖²); "
                         "ML-100K VALID picks 0.12; auto: docs/defaults.md",
                         min=0, min_exclusive=True, auto=True)
    iterations: int = setting(15, "alternating passes (each solves users, then items)",
                              min=1, max=10_000)
    biases: bool = setting(True, "learn μ + user and item biases beside the factors "
                           "(False = the paper's pure factor model)")
    init_std: float = setting(0.1, "standard deviation of the random initial item factors", min=0)
    baseline: Literal["none", "bias"] = setting(
        AUTO, "bias: factors fitted to the residuals of the bias model μ + b_u + b_i (fitted on TRAIN, "
        "kept fixed; needs biases=true); none: biases solved jointly with the factors; auto: docs/defaults.md",
        auto=True)

    def validate(self) -> None:
        if self.baseline == "bias" and not self.biases:
            raise SettingsError("setting 'baseline': bias takes μ, b_u and b_i from the bias model; "
                                "with biases=false use baseline=none")


def solve_ridge_rows(indptr: np.ndarray, cols: np.ndarray, targets: np.ndarray,
                     features: np.ndarray, reg: float) -> np.ndarray:
    """Solve every row's weighted-λ ridge problem at once.

    Row ``r`` (a user, or an item when called on the transpose) has observed
    columns ``cols[indptr[r]:indptr[r+1]]`` with ``targets`` there; its
    solution ``x_r`` minimises Σ (t − f_c·x_r)² + reg·n_r·‖x_r‖² over the rows
    ``f_c`` of ``features`` (n_cols x d). Rows without observations get 0.

    Returns an (n_rows x d) float64 array.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = indptr.size - 1
    feats = np.ascontiguousarray(features, dtype=np.float64)
    d = feats.shape[1]
    iu, ju = np.triu_indices(d)          # Grams are symmetric: build the upper triangle only
    outer = feats[:, iu] * feats[:, ju]  # (n_cols x d(d+1)/2)
    sym = np.empty((d, d), dtype=np.int64)   # position of (j, k) in the triangle
    sym[iu, ju] = sym[ju, iu] = np.arange(iu.size)
    sym = sym.ravel()
    counts = np.diff(indptr)
    out = np.zeros((n_rows, d), dtype=np.float64)
    # rows per block so that the block's Grams stay within the budget
    step = max(1, _GRAM_BLOCK_BYTES // (16 * d * d))
    diag = np.arange(d)
    for s in range(0, n_rows, step):
        e = min(n_rows, s + step)
        a, b = int(indptr[s]), int(indptr[e])
        if a == b:
            continue
        ptr = indptr[s:e + 1] - a
        shape = (e - s, feats.shape[0])
        pattern = sp.csr_matrix((np.ones(b - a), cols[a:b], ptr), shape=shape)
        values = sp.csr_matrix((np.asarray(targets[a:b], dtype=np.float64), cols[a:b], ptr), shape=shape)
        gram = np.take(np.asarray(pattern @ outer), sym, axis=1).reshape(e - s, d, d)
        rhs = np.asarray(values @ feats)
        n = counts[s:e]
        gram[:, diag, diag] += np.where(n > 0, reg * n, 1.0)[:, None]  # empty rows: A = I, rhs = 0
        out[s:e] = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
    return out


class ALS(BiasedFactorModel):
    """Weighted-λ-regularised ALS for explicit ratings (Zhou et al. 2008), with optional biases."""

    name = "als"
    Settings = ALSSettings
    summary = "ALS-WR for explicit ratings (Zhou et al. 2008), batched normal-equation solves"
    fallback = ("user or item without training ratings: μ + the known side's bias "
                "(biases=True) or the global mean (biases=False)")
    fold_in_method = ("ALS-WR's user half-step: (Σ y_i y_iᵀ + λ n_u I) x_u = Σ (r_ui − μ − b_i) y_i "
                      "over the new user's ratings, bias solved jointly, item side fixed")
    conformance_settings = {"rank": 4, "iterations": 2}
    valid_curve = True          # one record per iteration, ALS's epoch
    tune_prunes = False         # trials of seconds, slow learners end best: see Model.tune_prunes
    auto_rule = als_rule
    #: what ``recozoo tune als`` tries (VALID RMSE is reported per iteration, so trials prune).
    #: Ranks up to 128: the weighted λ keeps large ranks from overfitting (Zhou et al.'s RMSE still
    #: fell at rank 1000 on Netflix) and ML-100K's VALID chose 125; beyond, a 2-core trial takes
    #: over half a minute (docs/tuning.md)
    search_space = SearchSpace(Int("rank", 2, 128, log=True), Float("reg", 0.01, 1.0, log=True),
                               Int("iterations", 5, 30), Categorical("biases", (True, False)))

    def _fit(self, train, valid, reporter, run_dir, resume):
        s = self.settings
        rng = np.random.default_rng(self.seed)
        n_u, n_i = train.n_users, train.n_items
        items = np.asarray(train.items, dtype=np.int64)
        users = train.users.astype(np.int64)
        r = np.asarray(train.ratings, dtype=np.float64)
        u_ptr = np.asarray(train.indptr, dtype=np.int64)
        order = np.argsort(items, kind="stable")           # item-major view, built once
        i_ptr = np.zeros(n_i + 1, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=n_i), out=i_ptr[1:])
        users_im = users[order]
        self.user_known_ = np.diff(u_ptr) > 0
        self.item_known_ = np.diff(i_ptr) > 0

        base = BiasBaseline.fit(train) if s.baseline == "bias" else None
        self.base_reg_user_ = None if base is None else base.reg_user
        if base is not None:                  # the factors fit what the fixed baseline leaves
            r = r - base.at(users, items)
        joint = s.biases and base is None     # biases solved with the factors
        mu = self.global_mean_ if joint else 0.0
        Y = rng.normal(0.0, s.init_std, (n_i, s.rank))
        if not s.biases:  # paper, step 1: first row of M = the item's average rating
            sums = np.bincount(items, weights=r, minlength=n_i)
            Y[:, 0] = np.where(self.item_known_, sums / np.maximum(np.diff(i_ptr), 1), 0.0)
        bu = np.zeros(n_u)
        bi = np.zeros(n_i)
        X = np.zeros((n_u, s.rank))
        self._warm_init(X, Y, bu, bi)     # (the first half-step solves X and b_u from Y and b_i)
        ones_u = np.ones((n_u, 1))
        ones_i = np.ones((n_i, 1))
        reporter.start("als", total=s.iterations)
        for it in range(s.iterations):
            if joint:
                sol = solve_ridge_rows(u_ptr, items, r - mu - bi[items], np.hstack([Y, ones_i]), s.reg)
                X, bu = sol[:, :-1], sol[:, -1]
                sol = solve_ridge_rows(i_ptr, users_im, (r - mu - bu[users])[order],
                                       np.hstack([X, ones_u]), s.reg)
                Y, bi = sol[:, :-1], sol[:, -1]
            else:
                X = solve_ridge_rows(u_ptr, items, r, Y, s.reg)
                Y = solve_ridge_rows(i_ptr, users_im, r[order], X, s.reg)
            pred = mu + bu[users] + bi[items] + np.einsum("ij,ij->i", X[users], Y[items])
            figures = {"train_rmse": float(np.sqrt(np.mean((pred - r) ** 2)))}
            if base is None:
                self._store(X, Y, bu, bi, mu)
            else:
                self._store(X, Y, base.user_bias, base.item_bias, base.mu)
            if valid is not None and valid.nnz:
                vp = self.predict(valid.users, valid.items)
                figures["valid_rmse"] = float(np.sqrt(np.mean((vp - valid.ratings) ** 2)))
            reporter.advance(1, **figures)
            reporter.log({"epoch": it + 1, **figures})
        reporter.finish()

    def _store(self, X, Y, bu, bi, mu):
        self.user_factors_ = X.astype(np.float32)
        self.item_factors_ = Y.astype(np.float32)
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)
        self.offset_ = float(mu)

    # ------------------------------------------------------ prediction, state
    def _uses_bias(self) -> bool:
        return bool(self.settings.biases)

    def _rank(self) -> int:
        return int(self.settings.rank)

    def _fold_in_reg(self) -> tuple[float, float]:
        """ALS-WR's own user half-step: λ·n_u on the factors and (with biases) the jointly solved bias."""
        return float(self.settings.reg), float(self.settings.reg)
