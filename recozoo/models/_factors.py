"""Scoring, fallbacks and persistence shared by the biased latent-factor models.

ALS, PMF and biased MF all predict ``link(offset + b_u + b_i + p_u·q_i)`` and
fall back the same way for users/items without training ratings, so that logic
lives here once; each model only learns the arrays (``user_factors_``,
``item_factors_``, ``user_bias_``, ``item_bias_``, ``user_known_``,
``item_known_``, ``offset_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recozoo.models.base import Model

__all__ = ["BiasedFactorModel"]


class BiasedFactorModel(Model):
    """A model scored as ``link(offset + b_u + b_i + p_u·q_i)``."""

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
        bu = np.where(ku, self.user_bias_[np.clip(users, 0, self.n_users_ - 1)], 0.0)
        bi = np.where(ki, self.item_bias_[np.clip(items, 0, self.n_items_ - 1)], 0.0)
        return (self.offset_ + bu + bi).astype(np.float32)

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
        x = (self.offset_ + self.user_bias_[users][:, None].astype(np.float64) + self.item_bias_[None, :]
             + self.user_factors_[users] @ self.item_factors_.T)
        out = self._link(x)
        cold_u = ~self.user_known_[users]
        if cold_u.any():
            it = np.where(self.item_known_, np.arange(self.n_items_), -1)
            out[cold_u] = self._fallback(np.full(it.size, -1), it)
        cold_i = ~self.item_known_
        if cold_i.any():
            for_u = np.where(self.user_known_[users], users, -1)
            out[:, cold_i] = self._fallback(for_u, np.full(users.size, -1))[:, None]
        return out

    def _get_state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "user_known": self.user_known_, "item_known": self.item_known_,
                "offset": self.offset_}

    def _set_state(self, state):
        self.user_factors_ = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(state["item_factors"], dtype=np.float32)
        self.user_bias_ = np.asarray(state["user_bias"], dtype=np.float32)
        self.item_bias_ = np.asarray(state["item_bias"], dtype=np.float32)
        self.user_known_ = np.asarray(state["user_known"], dtype=bool)
        self.item_known_ = np.asarray(state["item_known"], dtype=bool)
        self.offset_ = float(state["offset"])
        if self.user_factors_.shape != (self.n_users_, self._rank()) or \
                self.item_factors_.shape != (self.n_items_, self._rank()):
            raise ValueError("factor matrices do not match the saved shape")
