"""The simplest honest baselines: the global mean, and regularised user/item biases.

They exercise the whole path (data, registry, fit, evaluate, save/load) and are
the bar every other model must clear.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recozoo.models.base import FoldIn, Model
from recozoo.search_space import Float, SearchSpace
from recozoo.settings import BaseSettings, setting
from dataclasses import dataclass


@dataclass(frozen=True)
class MeanSettings(BaseSettings):
    pass


class GlobalMean(Model):
    """Predicts the mean training rating for every pair."""

    name = "mean"
    Settings = MeanSettings
    summary = "global mean of the training ratings"
    fallback = "the global mean (it is the only prediction)"
    folds_in = FoldIn.YES
    fold_in_method = "the global mean for every item (the model has no user part)"
    warm_starts = True
    warm_start_method = "closed form: refitted on TRAIN + events (no learned state to start from)"

    def _fit(self, train, valid, reporter, run_dir, resume):
        pass

    def _predict(self, users, items):
        return np.full(users.shape[0], self.global_mean_, dtype=np.float32)

    def _score_new_users(self, ratings):
        return np.full(ratings.shape, self.global_mean_, dtype=np.float32)

    def score_items(self, users):
        return np.full((len(users), self.n_items_), self.global_mean_, dtype=np.float32)

    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state):
        pass


@dataclass(frozen=True)
class BiasSettings(BaseSettings):
    reg_user: float = setting(10.0, "shrinkage of user biases (ratings-equivalent prior count)", min=0)
    reg_item: float = setting(25.0, "shrinkage of item biases (ratings-equivalent prior count)", min=0)
    iterations: int = setting(10, "alternating passes (item then user biases)", min=1, max=1000)


class Bias(Model):
    """r̂ = μ + b_u + b_i, regularised (Koren's baseline predictor), fitted by
    alternating closed-form updates: b_i = Σ(r − μ − b_u) / (reg_item + n_i), then
    b_u likewise; each pass is two ``bincount`` calls."""

    name = "bias"
    Settings = BiasSettings
    summary = "global mean + regularised user and item biases"
    fallback = "unknown user: μ + b_i; unknown item: μ + b_u; both unknown: μ"
    folds_in = FoldIn.YES
    fold_in_method = "b_u = Σ(r − μ − b_i) / (reg_user + n), the training update, with the item biases fixed"
    #: what ``recozoo tune bias`` tries: the two shrinkages
    search_space = SearchSpace(Float("reg_user", 0.1, 100.0, log=True), Float("reg_item", 0.1, 100.0, log=True))
    warm_starts = True
    warm_start_method = ("alternating closed-form passes refitted on TRAIN + events (they converge to the "
                         "same biases from any start)")

    def _fit(self, train, valid, reporter, run_dir, resume):
        s = self.settings
        u = train.users
        i = np.asarray(train.items)
        r = np.asarray(train.ratings, dtype=np.float64) - self.global_mean_
        nu = np.bincount(u, minlength=train.n_users)
        ni = np.bincount(i, minlength=train.n_items)
        bu = np.zeros(train.n_users)
        bi = np.zeros(train.n_items)
        reporter.start("bias", total=s.iterations)
        for _ in range(s.iterations):
            # max(.., 1e-12): with reg 0 a user/item without ratings keeps bias 0, not 0/0
            bi = np.bincount(i, weights=r - bu[u], minlength=train.n_items) / np.maximum(s.reg_item + ni, 1e-12)
            bu = np.bincount(u, weights=r - bi[i], minlength=train.n_users) / np.maximum(s.reg_user + nu, 1e-12)
            reporter.advance(1)
        reporter.finish()
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)

    def _predict(self, users, items):
        return (self.global_mean_ + self.user_bias_[users] + self.item_bias_[items]).astype(np.float32)

    def _predict_unknown(self, users, items):
        bu = np.where((users >= 0) & (users < self.n_users_),
                      self.user_bias_[np.clip(users, 0, self.n_users_ - 1)], 0.0)
        bi = np.where((items >= 0) & (items < self.n_items_),
                      self.item_bias_[np.clip(items, 0, self.n_items_ - 1)], 0.0)
        return (self.global_mean_ + bu + bi).astype(np.float32)

    def score_items(self, users):
        return (self.global_mean_ + self.user_bias_[np.asarray(users)][:, None]
                + self.item_bias_[None, :]).astype(np.float32)

    def _score_new_users(self, ratings):
        """b_u = Σ(r − μ − b_i) / (reg_user + n): the training update of b_u, item biases fixed."""
        rows = np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr))
        resid = ratings.data.astype(np.float64) - self.global_mean_ - self.item_bias_[ratings.indices]
        n = np.diff(ratings.indptr)
        # max(.., 1e-12): with reg 0 a user without ratings keeps b_u = 0, as in training
        bu = np.bincount(rows, weights=resid, minlength=ratings.shape[0]) / \
            np.maximum(self.settings.reg_user + n, 1e-12)
        return (self.global_mean_ + bu[:, None] + self.item_bias_[None, :]).astype(np.float32)

    def _get_state(self):
        return {"user_bias": self.user_bias_, "item_bias": self.item_bias_}

    def _set_state(self, state):
        self.user_bias_ = np.asarray(state["user_bias"], dtype=np.float32)
        self.item_bias_ = np.asarray(state["item_bias"], dtype=np.float32)
        if self.user_bias_.shape != (self.n_users_,) or self.item_bias_.shape != (self.n_items_,):
            raise ValueError("bias vectors do not match the saved shape")

