"""The conformance kit (recozoo.testing.check_model) on every registered model,
and on deliberately broken models to prove each check can fail."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from recozoo.models.baselines import Bias
from recozoo.registry import list_models
from recozoo.settings import BaseSettings, setting
from recozoo.testing import check_model


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e.name)
def test_every_registered_model_conforms(entry):
    report = check_model(entry.cls)
    assert report["save_load"] == "ok" and report["recommend"] == "ok" and report["fold_in"] == "ok"
    assert report["ratings"] == ("ok" if entry.cls.predicts_ratings else "skipped")


def test_a_factory_works_too():
    assert check_model(lambda settings=None, seed=0: Bias(settings=settings, seed=seed))["fit"] == "ok"


# ---------------------------------------------------------------- broken models
class Clips(Bias):
    """Returns float64."""
    name = "broken-dtype"

    def predict(self, users, items):
        return super().predict(users, items).astype(np.float64)


class SeesSeen(Bias):
    """Recommends items the user rated."""
    name = "broken-recommend"

    def recommend(self, users, k=10, exclude_seen=True):
        return super().recommend(users, k, exclude_seen=False)


class Forgets(Bias):
    """Loses its item biases on save."""
    name = "broken-save"

    def _get_state(self):
        return {"user_bias": self.user_bias_, "item_bias": np.zeros_like(self.item_bias_)}


class Random(Bias):
    """Ignores its seed."""
    name = "broken-seed"

    def _fit(self, train, valid, reporter, run_dir, resume):
        super()._fit(train, valid, reporter, run_dir, resume)
        self.user_bias_ = self.user_bias_ + 0.01 * np.random.default_rng().normal(size=self.user_bias_.size) \
            .astype(np.float32)


class Crashes(Bias):
    """Raises on unseen ids instead of falling back."""
    name = "broken-unseen"

    def _predict_unknown(self, users, items):
        raise IndexError("no such user")


@dataclass(frozen=True)
class LaxSettings(BaseSettings):
    reg_user: float = setting(10.0, "shrinkage", min=0)
    reg_item: float = setting(25.0, "shrinkage", min=0)
    iterations: int = 10  # no help, no bounds


class Lax(Bias):
    """Settings without help text."""
    name = "broken-settings"
    Settings = LaxSettings


class Scores(Bias):
    """A ranking model that claims to predict ratings."""
    name = "broken-ratings"

    def _predict(self, users, items):
        return (super()._predict(users, items) * 40).astype(np.float32)

    def score_items(self, users):
        return super().score_items(users) * 40

    def _predict_unknown(self, users, items):
        return super()._predict_unknown(users, items) * 40


class MixesUsers(Bias):
    """Folds a batch in as one pooled user (each answer depends on its batch companions)."""
    name = "broken-fold-in"

    def _score_new_users(self, ratings):
        pooled = super()._score_new_users(sp.csr_matrix(ratings.sum(axis=0)))
        return np.repeat(pooled, ratings.shape[0], axis=0)


class AcceptsAnything(Bias):
    """Accepts a setting the caller says is bad (range checks missing in validate)."""
    name = "broken-bad-settings"


class WritesIntoItsInput(Bias):
    """Shifts the training ratings in place: fine on an in-memory table, fatal on a prepared split's
    read-only memory maps (what `recozoo fit` trains on from the second run on)."""
    name = "broken-prepared"

    def _fit(self, train, valid, reporter, run_dir, resume):
        train.ratings[:] -= 0.0
        super()._fit(train, valid, reporter, run_dir, resume)


class SilentCurve(Bias):
    """Declares a per-epoch VALID curve (so tune would prune on it) and never logs one."""
    name = "broken-valid-curve"
    valid_curve = True


@pytest.mark.parametrize("cls,check,kwargs", [
    (Clips, "predict", {}),
    (SilentCurve, "valid_curve", {}),
    (SeesSeen, "recommend", {}),
    (Forgets, "save_load", {}),
    (Random, "determinism", {}),
    (Crashes, "unseen", {}),
    (Lax, "settings", {}),
    (Scores, "ratings", {}),
    (MixesUsers, "fold_in", {}),
    (AcceptsAnything, "bad_settings", {"bad_settings": [{"iterations": 3}]}),
    (WritesIntoItsInput, "prepared", {}),
])
def test_the_kit_catches_a_broken_model(cls, check, kwargs):
    with pytest.raises(AssertionError, match=rf"check_model\[{cls.name}\] {check}:"):
        check_model(cls, **kwargs)


def test_unregistered_model_can_still_be_checked_and_registry_is_left_clean():
    from recozoo.registry import get_model
    from recozoo.errors import RegistryError

    class Fine(Bias):
        name = "fine-unregistered"
    assert check_model(Fine)["save_load"] == "ok"
    with pytest.raises(RegistryError):
        get_model("fine-unregistered")
