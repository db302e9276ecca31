"""Defaults that travel: settings chosen from the training data's shape when left at ``"auto"``.

Why: one data set's best settings do not carry to another (DeepRec's old
defaults were the Netflix-full network, which loses to the bias baseline on
MovieLens 100K). A setting declared with ``auto=True`` (:func:`recozoo.settings.setting`)
defaults to ``"auto"``; when the model fits, :func:`resolve` replaces every
``"auto"`` by the model's rule applied to :class:`DataShape` — the training
data's size and density, nothing else (never VALID or TEST). Explicit settings
and ``--preset`` values are never touched, and the fitted model (its saved
settings, ``summary.json``, ``config.json``'s ``resolved_settings``) records the
values used, so a run is reproducible.

The rules and the data sets they were chosen on are in docs/defaults.md;
``benchmarks/bench_defaults.py`` re-measures them against ``bias``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from recozoo.errors import SettingsError
from recozoo.settings import AUTO, auto_fields

__all__ = ["DataShape", "resolve",
           "SMALL_DATA_RATINGS", "SPARSE_USERS", "FEW_RATINGS",
           "DEEPREC_SMALL", "DEEPREC_SPARSE", "TIMESVDPP_BELLKOR", "TIMESVDPP_SMALL", "AUTOREC_FEW",
           "deeprec_rule", "als_rule", "biasedmf_rule", "pmf_rule", "timesvdpp_rule",
           "autorec_i_rule", "autorec_u_rule", "rrn_rule", "GLOCALK_PAPER", "GLOCALK_SPARSE", "glocalk_rule"]


@dataclass(frozen=True)
class DataShape:
    """What a rule may read: the training table's size and density."""

    n_users: int
    n_items: int
    n_ratings: int

    @classmethod
    def of(cls, train) -> "DataShape":
        """The shape of a :class:`~recozoo.data.table.RatingsTable` (users/items with a rating)."""
        return cls(int(np.count_nonzero(train.user_counts())), int(np.count_nonzero(train.item_counts())),
                   int(train.nnz))

    @property
    def per_user(self) -> float:
        """Mean ratings per user with a rating."""
        return self.n_ratings / max(self.n_users, 1)

    @property
    def per_item(self) -> float:
        """Mean ratings per item with a rating."""
        return self.n_ratings / max(self.n_items, 1)

    @property
    def density(self) -> float:
        return self.n_ratings / max(self.n_users * self.n_items, 1)

    def to_json(self) -> dict[str, Any]:
        return {"n_users": self.n_users, "n_items": self.n_items, "n_ratings": self.n_ratings,
                "per_user": round(self.per_user, 2), "per_item": round(self.per_item, 2),
                "density": round(self.density, 6)}


def resolve(settings, rule: Callable[[DataShape, Any], dict[str, Any]] | None, train):
    """``settings`` with every ``"auto"`` replaced by ``rule(DataShape.of(train), settings)``'s value
    (a rule reads the other settings only to stay consistent with them, e.g. ALS's ``biases``).

    Settings without an ``"auto"`` come back as they are (so resolving twice is a no-op).
    """
    names = auto_fields(settings)
    if not names:
        return settings
    values = rule(DataShape.of(train), settings) if rule is not None else {}
    missing = [n for n in names if n not in values]
    if missing:
        raise SettingsError(f"settings {', '.join(missing)} are 'auto' but the model has no rule for them")
    return settings.replace(**{n: values[n] for n in names})


# ------------------------------------------------------------------ rules
#: up to this many training ratings DeepRec and TimeSVD++ use their small-data recipes; above, the
#: settings their papers tuned on the Netflix Prize data (13.7M-98M ratings) (docs/defaults.md)
SMALL_DATA_RATINGS = 5_000_000

#: fewer training ratings per user than this is "sparse users": user factors cannot be learned well,
#: so the models regularise harder or lean on the bias baseline (the Netflix sample has 1.9 per user,
#: synthetic ~16-20, ml-100k 80, ml-100k-time 106; DeepRec, biased MF, I-AutoRec)
SPARSE_USERS = 30.0

#: fewer training ratings per user than this: even regularised user factors barely learn (the Netflix
#: sample, 1.9 per user), so ALS fits the bias model's residuals, PMF shrinks its factors towards that
#: model and both AutoRecs take a small network on its residuals (:data:`AUTOREC_FEW`)
FEW_RATINGS = 5.0


def _residuals_if(wanted: bool, settings) -> str:
    """``baseline``: ``"bias"`` when ``wanted`` and the loss fits ratings (an implicit loss has no
    ratings to take residuals of), else ``"none"``."""
    implicit = settings is not None and settings.loss != "mse"
    return "bias" if wanted and not implicit else "none"


#: DeepRec on small data with many ratings per user: chosen on ml-100k u1 VALID (docs/deeprec.md), a
#: shallow, item-based, L2-regularised, full-batch Rprop autoencoder on the raw ratings
DEEPREC_SMALL: dict[str, Any] = {
    "layers": (500,), "activation": "sigmoid", "dropout": 0.0, "refeed": 0, "optimizer": "rprop",
    "lr": 0.01, "batch_size": 0, "weight_decay": 0.002, "epochs": 600, "eval_every": 5, "patience": 10,
}

#: DeepRec on small data with few ratings per user (synthetic, the Netflix sample): a narrow user-based
#: network on the residuals of the bias model, heavy code dropout, Adam, early stopping after 3 epochs
DEEPREC_SPARSE: dict[str, Any] = {
    "mode": "user", "layers": (128,), "activation": "selu", "dropout": 0.8, "refeed": 0, "optimizer": "adam",
    "lr": 0.001, "batch_size": 128, "weight_decay": 0.001, "epochs": 30, "eval_every": 1, "patience": 3,
    "baseline": "bias",
}

#: the paper's networks by training size (Kuchaiev & Ginsburg 2017, best per Netflix split:
#: 13.7M ratings (3 months), 29-41M (6 months, 1 year), 98M (full)), with early stopping on VALID
_DEEPREC_PAPER = ((20_000_000, (128, 256, 256), 0.65), (60_000_000, (256, 256, 512), 0.8),
                  (None, (512, 512, 1024), 0.8))


def deeprec_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """DeepRec, by training size and ratings per user (docs/defaults.md has the data behind each):

    * up to :data:`SMALL_DATA_RATINGS` ratings and at least :data:`SPARSE_USERS` per user:
      :data:`DEEPREC_SMALL` on raw ratings (item rows);
    * up to :data:`SMALL_DATA_RATINGS` ratings, fewer per user: :data:`DEEPREC_SPARSE`;
    * above: the paper's network for that size (user rows, SELU, SGD momentum, one re-feed) on the
      raw ratings, early stopping after 5 epochs without VALID improvement.
    """
    if shape.n_ratings <= SMALL_DATA_RATINGS:
        if shape.per_user >= SPARSE_USERS:
            return {**DEEPREC_SMALL, "mode": "item", "baseline": "none"}
        return {**DEEPREC_SPARSE, "baseline": _residuals_if(True, settings)}
    layers, dropout = next((lay, dp) for cap, lay, dp in _DEEPREC_PAPER
                           if cap is None or shape.n_ratings <= cap)
    return {"mode": "user", "layers": layers, "activation": "selu", "dropout": dropout, "refeed": 1,
            "optimizer": "momentum", "lr": 0.005, "batch_size": 128, "weight_decay": 0.0, "epochs": 100,
            "eval_every": 1, "patience": 5, "baseline": "none"}


def als_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """ALS: λ = 2 / (ratings per user), within [0.1, 1] (0.1 = the ML-100K VALID choice, kept on dense
    data); under 5 ratings per user the factors fit the residuals of the bias model (whose shrinkage
    does not fade with the user's count as the weighted λ·n_u does); never with ``biases=false``."""
    return {"reg": float(min(1.0, max(0.1, 2.0 / max(shape.per_user, 1e-9)))),
            "baseline": "bias" if shape.per_user < FEW_RATINGS and (settings is None or settings.biases) else "none"}


def biasedmf_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """Biased MF: Surprise's SVD defaults (100 factors, reg 0.02) from :data:`SPARSE_USERS` ratings per
    user up; below, 20 factors and reg 0.1 (Surprise's defaults lost to ``bias`` there)."""
    if shape.per_user >= SPARSE_USERS:
        return {"factors": 100, "reg": 0.02}
    return {"factors": 20, "reg": 0.1}


def pmf_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """PMF's ``reg_count`` c (each user's and item's factor penalty is λ·n + c over its n ratings): 3 from
    :data:`FEW_RATINGS` ratings per user up (best VALID on synthetic and ml-100k-time, within 0.002 of
    c = 5 on ml-100k; c = 0 lost to all three by 0.01-0.02), 10 below (the Netflix sample: c = 3 lost to
    ``bias`` on VALID; from 10 up the factors shrink to the bias model's predictions)."""
    return {"reg_count": 3.0 if shape.per_user >= FEW_RATINGS else 10.0}


#: TimeSVD++ above :data:`SMALL_DATA_RATINGS`: the BellKor 2009 report's rates, tuned on 100M ratings
TIMESVDPP_BELLKOR: dict[str, Any] = {"lr_bu": 3e-3, "lr_bi": 2e-3, "lr_decay": 0.9, "epochs": 30}

#: TimeSVD++ up to :data:`SMALL_DATA_RATINGS`: BellKor's bias rates under-train b_u and b_i there (lost to
#: ``bias`` on ``synthetic``); chosen on VALID of synthetic, ml-100k u1 and ml-100k-time (better than
#: BellKor's on all three)
TIMESVDPP_SMALL: dict[str, Any] = {"lr_bu": 0.01, "lr_bi": 0.01, "lr_decay": 0.95, "epochs": 60}


def timesvdpp_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """TimeSVD++'s bias learning rates, decay and passes: :data:`TIMESVDPP_SMALL` up to
    :data:`SMALL_DATA_RATINGS` training ratings, :data:`TIMESVDPP_BELLKOR` above (early stopping on
    VALID, ``patience``, ends either sooner when VALID stops improving)."""
    return dict(TIMESVDPP_SMALL if shape.n_ratings <= SMALL_DATA_RATINGS else TIMESVDPP_BELLKOR)


# ------------------------------------------------------------------ autoencoder rules (AutoRec, GLocal-K, ...)
#: both AutoRecs under :data:`FEW_RATINGS` ratings per user (the Netflix sample, 1.9), on the bias model's
#: residuals: 20 hidden units, VALID scored after every full-batch Rprop step (VALID is best after a handful;
#: every 5 missed it) — chosen on the Netflix sample's VALID (20 units beat 5, 100 and 500 for both; at 500
#: units and VALID every 5 both lost to ``bias`` on TEST)
AUTOREC_FEW: dict[str, Any] = {"hidden": 20, "eval_every": 1}


def autorec_i_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """I-AutoRec: the paper's network (500 hidden units) on raw ratings from :data:`SPARSE_USERS` ratings
    per user up; fewer, 100 hidden units on the residuals of the bias model (``baseline=bias``): every
    input column and output row of an item's vector is a user, whose weights are then learned from a
    handful of ratings (on ``synthetic`` VALID the 500-unit network on raw ratings lost to ``bias``);
    under :data:`FEW_RATINGS`, :data:`AUTOREC_FEW`."""
    sparse = shape.per_user < SPARSE_USERS
    out = {"hidden": 100 if sparse else 500, "baseline": _residuals_if(sparse, settings), "eval_every": 5}
    return {**out, **AUTOREC_FEW} if shape.per_user < FEW_RATINGS else out


def autorec_u_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """U-AutoRec: the paper's 500 hidden units, always on the residuals of the bias model
    (``baseline=bias``): on raw ratings it lost to ``bias`` on ml-100k u1 (80 ratings per user) and
    ``synthetic`` alike (docs/defaults.md); under :data:`FEW_RATINGS`, :data:`AUTOREC_FEW`."""
    out = {"hidden": 500, "baseline": _residuals_if(True, settings), "eval_every": 5}
    return {**out, **AUTOREC_FEW} if shape.per_user < FEW_RATINGS else out


# ------------------------------------------------------------------ RRN
def rrn_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """RRN on the residuals of the bias model (``baseline=bias``) whenever it has biases at all (with
    ``biases=false``, the paper's formula, ``none``): RRN's own stationary biases take one SGD step per
    user (movie) and batch under a per-rating L2 penalty, so a user or movie with few ratings is not
    shrunk towards zero as the bias model shrinks it; on the raw ratings RRN lost to ``bias`` on TEST of
    ``synthetic`` and ml-100k-time (docs/defaults.md), on every size and density measured. There the
    stationary factors start from ALS (``stationary_init=als``): by SGD they barely moved off the bias
    model, which ALS's closed-form solves do not need to (docs/defaults.md); under ``none``, random."""
    base = "bias" if settings is None or settings.biases else "none"
    if settings is not None and settings.baseline != AUTO:
        base = settings.baseline
    return {"baseline": base, "stationary_init": "als" if base == "bias" else "random"}


#: GLocal-K from :data:`SPARSE_USERS` ratings per user up: the paper's 2 x 500 network, pre-training and the
#: reference's 300 fine-tuning iterations, on raw ratings (the defaults before the rule, which beat ``bias``
#: on ml-100k u1 and ml-100k-time; the blend's ml-100k preset uses them)
GLOCALK_PAPER: dict[str, Any] = {"layers": (500, 500), "fine_epochs": 300, "baseline": "none"}

#: GLocal-K under :data:`SPARSE_USERS` ratings per user: 2 x 100 on the bias model's residuals, pre-training
#: (the local kernel) only — chosen on ``synthetic`` VALID (docs/defaults.md)
GLOCALK_SPARSE: dict[str, Any] = {"layers": (100, 100), "fine_epochs": 0, "baseline": "bias"}


def glocalk_rule(shape: DataShape, settings=None) -> dict[str, Any]:
    """GLocal-K: :data:`GLOCALK_PAPER` from :data:`SPARSE_USERS` ratings per user up, else
    :data:`GLOCALK_SPARSE`. As for I-AutoRec, an item's vector runs over users, so every input column and
    output row of the network is a user, learned from that user's few ratings: on raw ratings the network
    lost to ``bias`` (whatever its width); on the residuals it starts from the bias model. Fine-tuning is
    left out there: on ``synthetic`` VALID it only lost what pre-training had gained, at ~6x the cost per
    iteration (each one convolves the whole items x users matrix)."""
    return dict(GLOCALK_PAPER if shape.per_user >= SPARSE_USERS else GLOCALK_SPARSE)
