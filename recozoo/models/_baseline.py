"""The bias baseline μ + b_u + b_i under a residual model (``baseline=bias``).

Why: a model that learns the residual r − (μ + b_u + b_i) of the regularised
bias model (:class:`recozoo.models.baselines.Bias`, fitted on TRAIN with its
defaults) starts from that baseline instead of from nothing, so on sparse data
(few ratings per user) it does not lose to it: on the Netflix sample and on
``synthetic`` the autoencoders fitted to raw ratings did (docs/defaults.md).
The model adds the baseline back when it predicts; pairs it cannot score get
the baseline alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recozoo.data.table import RatingsTable

__all__ = ["BiasBaseline"]


class BiasBaseline:
    """μ, b_u and b_i of a fitted bias model; :meth:`at` scores pairs, out-of-range ids included."""

    def __init__(self, mu: float, user_bias: np.ndarray, item_bias: np.ndarray, reg_user: float):
        self.mu = float(mu)
        #: the bias model's shrinkage of b_u, which a new user's b_u is folded in with
        self.reg_user = float(reg_user)
        self.user_bias = np.asarray(user_bias, dtype=np.float32)
        self.item_bias = np.asarray(item_bias, dtype=np.float32)

    @classmethod
    def fit(cls, train: RatingsTable) -> "BiasBaseline":
        from recozoo.models.baselines import Bias
        b = Bias(seed=0).fit(train)
        base = cls(b.global_mean_, b.user_bias_, b.item_bias_, b.settings.reg_user)
        # b_u by the fold-in formula itself (the bias model's last update, to float rounding), so that
        # folding a training user's TRAIN row in reproduces its inputs and scores bit for bit
        base.user_bias = base.fold_in(train.to_csr())[0].astype(np.float32)
        return base

    def at(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """μ + b_u + b_i (float64); an id out of range contributes no bias."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        nu, ni = self.user_bias.size, self.item_bias.size
        bu = np.where((users >= 0) & (users < nu), self.user_bias[np.clip(users, 0, nu - 1)], 0.0)
        bi = np.where((items >= 0) & (items < ni), self.item_bias[np.clip(items, 0, ni - 1)], 0.0)
        return self.mu + bu + bi

    def dense(self, users: np.ndarray, user_bias: np.ndarray | None = None) -> np.ndarray:
        """The baseline of every item for each user in ``users`` (len(users) x n_items, float64);
        ``user_bias``: those users' b_u when they are not the training users' (fold-in)."""
        bu = self.user_bias[np.asarray(users)] if user_bias is None else user_bias
        return self.mu + bu[:, None].astype(np.float64) + self.item_bias[None, :]

    def residuals(self, table: RatingsTable) -> RatingsTable:
        """``table`` with each rating replaced by rating − baseline (same maps, order, timestamps;
        the same arithmetic as :meth:`fold_in`)."""
        users = table.users
        ok = users < self.user_bias.size
        bu = np.where(ok, self.user_bias[np.minimum(users, self.user_bias.size - 1)], 0.0)
        res = (np.asarray(table.ratings, dtype=np.float64) - self.mu - self.item_bias[table.items]
               - bu.astype(np.float64)).astype(np.float32)
        return RatingsTable(table.indptr, table.items, res, table.timestamps, table.user_ids, table.item_ids)

    def fold_in(self, ratings):
        """New users' b_u and their ratings minus the baseline: ``(b_u, residual CSR)``.

        b_u = Σ(r − μ − b_i) / (reg_user + n), the bias model's own last training update (item
        biases fixed), so a training user's TRAIN row gets back its training b_u.
        """
        rows = np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr))
        resid = ratings.data.astype(np.float64) - self.mu - self.item_bias[ratings.indices]
        bu = (np.bincount(rows, weights=resid, minlength=ratings.shape[0]) /
              (self.reg_user + np.diff(ratings.indptr))).astype(np.float32)
        out = ratings.copy()
        out.data = (resid - bu[rows].astype(np.float64)).astype(np.float32)
        return bu, out

    def state(self) -> dict[str, Any]:
        return {"baseline_mu": self.mu, "baseline_user_bias": self.user_bias, "baseline_item_bias": self.item_bias,
                "baseline_reg_user": self.reg_user}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "BiasBaseline":
        return cls(state["baseline_mu"], state["baseline_user_bias"], state["baseline_item_bias"],
                   state["baseline_reg_user"])
