"""Scoring, fallbacks and persistence shared by the biased latent-factor models.

ALS, PMF and biased MF all predict ``link(offset + b_u + b_i + p_u·q_i)`` and
fall back the same way for users/items without training ratings, so that logic
lives here once; each model only learns the arrays (``user_factors_``,
``item_factors_``, ``user_bias_``, ``item_bias_``, ``user_known_``,
``item_known_``, ``offset_``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from recozoo.models.base import FoldIn, Model

__all__ = ["BiasedFactorModel", "ValidCurve", "fold_in_ridge", "padded_rows", "keep_entries", "with_ones"]

#: users per padded block of the fold-in solve (block memory: users x longest row x rank floats)
_FOLD_BLOCK = 64
#: a row's padded length in a block is its rating count rounded up to a multiple of this
_PAD_STEP = 8


def padded_rows(indptr: np.ndarray, max_users: int = _FOLD_BLOCK):
    """Blocks of rows of similar length: yields (row ids, positions (rows x L) into the CSR arrays, mask).

    Why: a batch of users with different rating counts becomes a few dense
    (users x L x d) stacks, so every Gram matrix is one batched matmul instead
    of a Python loop over users. Each row's padded length ``L`` is its own
    count rounded up to a multiple of :data:`_PAD_STEP` — a function of that
    row alone, never of the other rows in the batch — so a user's solve runs
    the same arithmetic (same summation lengths) whoever shares the batch: a
    server that folds users in micro-batches answers exactly what it answers
    for one user alone (a block padded to its longest row did not: BLAS sums
    of different lengths round differently).
    """
    counts = np.diff(indptr)
    width = -(-counts // _PAD_STEP) * _PAD_STEP
    order = np.argsort(width, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(width[order])) + 1):
        if group.size == 0:
            continue
        offs = np.arange(max(int(width[group[0]]), 1))
        for s in range(0, group.size, max_users):
            rows = group[s:s + max_users]
            mask = offs[None, :] < counts[rows][:, None]
            pos = np.where(mask, indptr[rows][:, None] + offs[None, :], 0)
            yield rows, pos, mask


def fold_in_ridge(ratings, features, targets: np.ndarray, reg: np.ndarray, count_reg=0.0) -> np.ndarray:
    """Solve every row's weighted-λ ridge problem against fixed ``features``.

    ``features(columns)`` returns the (len(columns) x d) feature rows of those
    columns (a function, so that only the rated items' rows are ever gathered:
    building a whole 17,768 x 101 feature matrix per call cost 20 ms).
    Row ``b`` of the CSR matrix ``ratings`` observes the columns ``I_b`` (its
    stored entries, ``n_b`` of them) with ``targets`` (aligned with
    ``ratings.data``); its solution minimises

        Σ_{i∈I_b} (t_bi − f_i·x)² + Σ_j (n_b reg_j + count_reg_j) x_j²

    i.e. ``(F_bᵀF_b + diag(n_b reg + count_reg)) x = F_bᵀ t_b`` (``count_reg``, a
    scalar or one per column, is PMF's ``reg_count``: 0 elsewhere). Rows without entries get
    0; a singular system (``reg`` 0 and fewer ratings than dimensions) gets the
    minimum-norm least-squares solution. Returns (rows x d) float64.
    """
    reg = np.asarray(reg, dtype=np.float64)
    d = reg.size
    out = np.zeros((ratings.shape[0], d))
    t_all = np.asarray(targets, dtype=np.float64)
    for rows, pos, mask in padded_rows(ratings.indptr):
        n = mask.sum(1)
        live = n > 0
        if not live.any():
            continue
        rows, pos, mask, n = rows[live], pos[live], mask[live], n[live]
        cols = ratings.indices[pos]
        F = np.asarray(features(cols.ravel()), dtype=np.float64).reshape(*cols.shape, d)
        F *= mask[:, :, None]                                            # (B x L x d), padding = 0
        t = np.where(mask, t_all[pos], 0.0)
        gram = np.matmul(F.transpose(0, 2, 1), F)
        gram[:, np.arange(d), np.arange(d)] += n[:, None] * reg[None, :] + count_reg
        rhs = np.matmul(F.transpose(0, 2, 1), t[:, :, None])                 # (B x d x 1), per user
        try:
            out[rows] = np.linalg.solve(gram, rhs)[:, :, 0]
        except np.linalg.LinAlgError:
            out[rows] = np.matmul(np.linalg.pinv(gram), rhs)[:, :, 0]
    return out


def _known_side_bias(offset, user_bias, item_bias, users, items, ku, ki):
    """``offset + b_u + b_i`` with each bias counted only where its side is known (``ku``, ``ki``): the
    score of a pair whose user or item has no factors (``users``/``items`` must index the arrays)."""
    return offset + np.where(ku, user_bias[users], 0.0) + np.where(ki, item_bias[items], 0.0)


class BiasedFactorModel(Model):
    """A model scored as ``link(offset + b_u + b_i + p_u·q_i)``.

    Fold-in (:meth:`score_new_users`): the new user's factor (and bias, where
    the model has biases) minimise the model's own per-user objective with the
    item side fixed, ``Σ_i (r_ui − offset − b_i − b_u − p·q_i)² + n_u Σ_j λ_j
    θ_j²`` over θ = (p, b_u) — one small ridge solve per user
    (:func:`fold_in_ridge`), all users of a batch at once. ``λ_j`` come from
    :meth:`_fold_in_reg`. Ratings of items without training data are left out
    (their factors were never learned).
    """

    folds_in = FoldIn.YES
    fold_in_method = ("the user's factors and bias solve the model's own weighted ridge problem "
                      "against the fixed item side (one small batched solve)")
    warm_starts = True
    warm_start_method = ("the run's user and item factors and biases; new users' factors drawn as in "
                         "a fresh fit")
    #: under ``baseline=bias`` the biases are the bias model's (fixed), and this is its shrinkage of
    #: b_u, which a new user's b_u is folded in with (:class:`recozoo.models._baseline.BiasBaseline`)
    base_reg_user_: float | None = None

    def _warm_init(self, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray) -> None:
        """Overwrite freshly initialised arrays (in place) with a warm start's state, if any.

        Called after the fresh initialisation has drawn its random numbers, so a
        fit without a warm start is unchanged and new users keep their fresh rows.
        """
        prev = self._warm_previous(P.shape[0], Q.shape[0])
        if prev is None:
            return
        n = prev.n_users_
        P[:n] = prev.user_factors_
        Q[:] = prev.item_factors_
        bu[:n] = prev.user_bias_
        bi[:] = prev.item_bias_

    def _uses_bias(self) -> bool:
        """Whether the fallback keeps the known side's bias (else: the global mean)."""
        return True

    def _rank(self) -> int:
        return int(self.settings.factors)

    def _link(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    def _fallback(self, users, items):
        """μ + the known side's bias, or the global mean for models without biases."""
        if not self._uses_bias():
            return np.full(users.shape[0], self.global_mean_, dtype=np.float32)
        ku = (users >= 0) & (users < self.n_users_)
        ki = (items >= 0) & (items < self.n_items_)
        return _known_side_bias(self.offset_, self.user_bias_, self.item_bias_, np.clip(users, 0, self.n_users_ - 1),
                                np.clip(items, 0, self.n_items_ - 1), ku, ki).astype(np.float32)

    def _predict(self, users, items):
        x = (self.offset_ + self.user_bias_[users].astype(np.float64) + self.item_bias_[items]
             + np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items]))
        out = self._link(x)
        cold = ~(self.user_known_[users] & self.item_known_[items])
        if cold.any():
            out[cold] = self._fallback(np.where(self.user_known_[users[cold]], users[cold], -1),
                                       np.where(self.item_known_[items[cold]], items[cold], -1))
        return out

    def _predict_unknown(self, users, items):
        return self._fallback(users, items)

    def score_items(self, users):
        users = np.asarray(users, dtype=np.int64)
        return self._dense_scores(self.user_factors_[users], self.user_bias_[users],
                                  self.user_known_[users])

    def _dense_scores(self, X: np.ndarray, bu: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Scores of every item for users with factors ``X``, biases ``bu`` (``known``: has data)."""
        x = (self.offset_ + bu[:, None].astype(np.float64) + self.item_bias_[None, :]
             + X @ self.item_factors_.T)
        out = self._link(x)
        if (~known).any():
            it = np.where(self.item_known_, np.arange(self.n_items_), -1)
            out[~known] = self._fallback(np.full(it.size, -1), it)
        cold_i = ~self.item_known_
        if cold_i.any():
            # μ + the user's own bias (the same rule as _fallback, for a user given by its bias)
            fb = (self.offset_ + np.where(known, bu, 0.0) if self._uses_bias()
                  else np.full(known.size, self.global_mean_))
            out[:, cold_i] = fb.astype(np.float32)[:, None]
        return out

    # ------------------------------------------------------------------ fold-in
    def _fold_in_reg(self) -> tuple[float, float]:
        """(λ of the factors, λ of the user bias) in the per-user objective (see the class docstring)."""
        raise NotImplementedError

    def _count_reg(self) -> float:
        """c of a user's factor penalty λ·n + c (PMF's ``reg_count``); 0: the penalty is λ·n alone."""
        return 0.0

    def _fold_in_data(self, ratings):
        """The ratings of items with training data only (the others' factors were never learned)."""
        keep = self.item_known_[ratings.indices]
        return ratings if keep.all() else keep_entries(ratings, keep)

    def _score_new_users(self, ratings):
        ratings = self._fold_in_data(ratings)
        lam_p, lam_b = self._fold_in_reg()
        c = self._count_reg()
        k = self._rank()
        Q = self.item_factors_
        t = ratings.data.astype(np.float64) - self.offset_ - self.item_bias_[ratings.indices]
        if self.base_reg_user_ is not None:     # b_u as the bias model folds it in, then the factors
            rows = np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr))
            bu = np.bincount(rows, weights=t, minlength=ratings.shape[0]) / \
                (self.base_reg_user_ + np.diff(ratings.indptr))
            X = fold_in_ridge(ratings, lambda j: Q[j], t - bu[rows], np.full(k, lam_p), c)
        elif self._uses_bias():
            sol = fold_in_ridge(ratings, lambda j: with_ones(Q[j]), t, np.r_[np.full(k, lam_p), lam_b],
                                np.r_[np.full(k, c), 0.0])
            X, bu = sol[:, :k], sol[:, k]
        else:
            X, bu = fold_in_ridge(ratings, lambda j: Q[j], t, np.full(k, lam_p), c), np.zeros(ratings.shape[0])
        known = np.diff(ratings.indptr) > 0
        return self._dense_scores(X.astype(np.float32), bu.astype(np.float32), known)

    def _get_state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "user_known": self.user_known_, "item_known": self.item_known_,
                "offset": self.offset_,
                "baseline_reg_user": -1.0 if self.base_reg_user_ is None else self.base_reg_user_}

    def _set_state(self, state):
        self.user_factors_ = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(state["item_factors"], dtype=np.float32)
        self.user_bias_ = np.asarray(state["user_bias"], dtype=np.float32)
        self.item_bias_ = np.asarray(state["item_bias"], dtype=np.float32)
        self.user_known_ = np.asarray(state["user_known"], dtype=bool)
        self.item_known_ = np.asarray(state["item_known"], dtype=bool)
        self.offset_ = float(state["offset"])
        reg = float(state.get("baseline_reg_user", -1.0))      # absent in models saved before issue 12
        self.base_reg_user_ = None if reg < 0 else reg
        if self.user_factors_.shape != (self.n_users_, self._rank()) or \
                self.item_factors_.shape != (self.n_items_, self._rank()):
            raise ValueError("factor matrices do not match the saved shape")


def _pair_scores(users, items, P, Q, bu, bi, offset, out):  # pragma: no cover - compiled by _pair_kernel
    """``out[t] = offset + bu[u] + bi[i] + P[u]·Q[i]`` for each pair (u, i) = (users[t], items[t])."""
    k = P.shape[1]
    for t in range(users.shape[0]):
        u = users[t]
        i = items[t]
        x = offset + bu[u] + bi[i]
        for f in range(k):
            x += P[u, f] * Q[i, f]
        out[t] = x


@functools.cache
def _pair_kernel():
    """:func:`_pair_scores` compiled by numba on first use: not at import, so that loading or serving
    an ALS or MF model never loads numba (~57 MiB resident; see recozoo.engine.lazy_sgd)."""
    import numba
    return numba.njit(cache=True, nogil=True, fastmath=True)(_pair_scores)


class ValidCurve:
    """VALID RMSE of a factor model's arrays as they stand mid-fit (the per-epoch curve, :attr:`Model.valid_curve`).

    Why not :meth:`BiasedFactorModel.predict`: that needs the float32 copies a fit
    stores only at its end (copying n_users x k floats per epoch is the cost
    this avoids). Here the training arrays are scored in place by one compiled
    loop over VALID's pairs (no VALID x k gathers: on ML-100K's VALID those
    fresh arrays cost 5 ms of page faults per epoch, the loop a fraction of
    that), then ``predict``'s own link and fallbacks apply: the same figure as
    ``evaluate`` on the fitted model up to float32 rounding of the factors.
    Which pairs are warm (user and item both trained) is fixed by TRAIN, so it
    is computed once.
    """

    def __init__(self, model: "BiasedFactorModel", valid):
        self.model = model
        self.users = np.ascontiguousarray(valid.users, dtype=np.int64)
        self.items = np.ascontiguousarray(valid.items, dtype=np.int64)
        self.ratings = np.asarray(valid.ratings, dtype=np.float64)
        self.ku = model.user_known_[self.users]
        self.ki = model.item_known_[self.items]
        self.cold = ~(self.ku & self.ki)
        self._x = np.empty(self.users.size)

    def rmse(self, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray, offset: float) -> float:
        m, u, i = self.model, self.users, self.items
        _pair_kernel()(u, i, P, Q, bu, bi, float(offset), self._x)
        pred = m._link(self._x).astype(np.float64)
        if self.cold.any():                    # predict's fallback: μ + the known side's bias, or the mean
            c = self.cold
            pred[c] = _known_side_bias(offset, bu, bi, u[c], i[c], self.ku[c], self.ki[c]) \
                if m._uses_bias() else m.global_mean_
        return float(np.sqrt(np.mean((pred - self.ratings) ** 2)))


def with_ones(F: np.ndarray) -> np.ndarray:
    """``[F, 1]``: feature rows with the constant coordinate that carries a bias (float64)."""
    return np.hstack([F.astype(np.float64), np.ones((F.shape[0], 1))])


def keep_entries(csr, keep: np.ndarray):
    """A copy of CSR ``csr`` with only the stored entries where ``keep`` is true (same shape)."""
    import scipy.sparse as sp
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))[keep]
    indptr = np.zeros(csr.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=csr.shape[0]), out=indptr[1:])
    return sp.csr_matrix((csr.data[keep], csr.indices[keep], indptr), shape=csr.shape)
