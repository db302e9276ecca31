"""Search spaces (recozoo.search_space): every registered model's space yields valid settings
(Hypothesis over the sampling seed), conditional parts appear only under their choice, the
conformance kit's ``search_space`` check catches a space that yields invalid settings, and
``recozoo models MODEL`` shows the space."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from recozoo.models.baselines import Bias
from recozoo.registry import get_model, list_models
from recozoo.search_space import Categorical, Float, Int, Layers, RandomSuggest, SearchSpace, When
from recozoo.settings import BaseSettings, parse_settings, setting
from recozoo.testing import check_search_space
from cli_helpers import invoke_json

MODELS = [e.name for e in list_models()]


@pytest.mark.parametrize("name", MODELS)
@hyp_settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_sampled_point_is_valid_settings_for_every_registered_model(name, seed):
    cls = get_model(name)
    point = cls.search_space.sample_random(seed)
    parse_settings(cls.Settings, point, model=name)        # raises SettingsError if not valid


@pytest.mark.parametrize("name", MODELS)
def test_every_space_names_only_the_models_settings(name):
    cls = get_model(name)
    check_search_space(cls)


def test_the_models_the_tuner_targets_declare_spaces_and_ease_too():
    for name in ("deeprec", "autorec-i", "biasedmf", "als", "timesvdpp", "glocal-k", "ease"):
        assert get_model(name).search_space, name
    assert not get_model("mean").search_space          # nothing to tune: an empty space


SPACE = SearchSpace(Float("lr", 1e-4, 1e-1, log=True), Int("k", 2, 64, log=True), Int("n", 0, 10, step=5),
                    Categorical("opt", ("adam", "momentum")),
                    When("opt", "momentum", Float("momentum", 0.5, 0.99), fixed={"nesterov": True}),
                    Layers("layers", depth=(1, 3), width=(16, 256)), fixed={"patience": 5})


@hyp_settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_points_respect_ranges_and_conditions(seed):
    p = SPACE.sample_random(seed)
    assert 1e-4 <= p["lr"] <= 1e-1 and 2 <= p["k"] <= 64 and p["n"] in (0, 5, 10)
    assert p["patience"] == 5
    assert ("momentum" in p) == (p["opt"] == "momentum") == ("nesterov" in p)
    if "momentum" in p:
        assert 0.5 <= p["momentum"] <= 0.99 and p["nesterov"] is True
    assert 1 <= len(p["layers"]) <= 3 and all(16 <= w <= 256 for w in p["layers"])


def test_log_scale_draws_are_log_uniform():
    rng = np.random.default_rng(0)
    s = RandomSuggest(rng)
    logs = np.log10([s.suggest_float("x", 1e-4, 1.0, log=True) for _ in range(4000)])
    # each decade gets about a quarter of the draws (a linear draw would put ~90% in the last one)
    counts = np.histogram(logs, bins=[-4, -3, -2, -1, 0])[0] / logs.size
    assert np.all(np.abs(counts - 0.25) < 0.04), counts


def test_a_space_drawing_one_name_twice_or_with_a_bad_range_is_refused():
    with pytest.raises(ValueError, match="drawn twice"):
        SearchSpace(Float("lr", 0.1, 1.0), When("opt", "x", Float("lr", 0.01, 0.1)))
    with pytest.raises(ValueError, match="low > 0"):
        Float("lr", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="choices"):
        Categorical("layers", ((1, 2), (3,)))


def test_describe_lists_conditions_and_fixed_values():
    rows = {(r["name"], r["when"]): r for r in SPACE.describe()}
    assert rows[("momentum", "opt = momentum")]["kind"] == "float"
    assert rows[("nesterov", "opt = momentum")]["kind"] == "fixed"
    assert rows[("patience", "")]["values"] == "5"
    assert rows[("lr", "")]["log"] is True and rows[("layers", "")]["kind"] == "layers"


def test_optuna_trials_sample_the_same_names_as_the_random_suggester():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    study.optimize(lambda t: (seen.append(SPACE.sample(t)), 0.0)[1], n_trials=20)
    for point, trial in zip(seen, study.trials):
        assert set(trial.params) - {"layers_depth"} - {f"layers_{i}" for i in range(3)} <= set(point)
        assert point["layers"] == tuple(trial.params[f"layers_{i}"] for i in range(len(point["layers"])))
        assert math.isclose(point["lr"], trial.params["lr"])


# ----------------------------------------------------------------- the kit's check can fail
@dataclass(frozen=True)
class _NarrowSettings(BaseSettings):
    reg: float = setting(1.0, "shrinkage", min=0.0, max=10.0)


class _BadSpace(Bias):
    """Its space reaches past the setting's declared maximum."""
    name = "bad-space"
    Settings = _NarrowSettings
    search_space = SearchSpace(Float("reg", 0.1, 100.0, log=True))


class _ForeignName(Bias):
    name = "foreign-space"
    search_space = SearchSpace(Float("no_such_setting", 0.1, 1.0))


def test_the_kit_catches_a_space_yielding_invalid_settings():
    with pytest.raises(AssertionError, match=r"check_model\[bad-space\] search_space: .*not valid settings"):
        check_search_space(_BadSpace)
    with pytest.raises(AssertionError, match="does not have: \\['no_such_setting'\\]"):
        check_search_space(_ForeignName)


def test_models_command_shows_the_space():
    out = invoke_json("models", "deeprec")
    rows = out["search_space"]
    assert {"name": "momentum", "kind": "float", "values": "0.5 .. 0.99", "log": False,
            "when": "optimizer = momentum"} in rows
    assert any(r["name"] == "layers" and r["kind"] == "layers" for r in rows)
    assert out["valid_curve"] is True and invoke_json("models", "biasedmf")["valid_curve"] is True
    assert invoke_json("models", "bias")["valid_curve"] is False      # no epochs: tune has nothing to prune on
    assert get_model("ease").search_space.describe()[0]["name"] == "reg"   # the plugin's own


# ----------------------------------------------------------------- params_for: a point back to its draws
class _Replay:
    """A suggester answering each draw from ``params`` (what an Optuna trial does with a queued trial)."""

    def __init__(self, params):
        self.params = params

    def suggest_float(self, name, low, high, *, log=False):
        return self.params[name]

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self.params[name]

    def suggest_categorical(self, name, choices):
        return self.params[name]


@pytest.mark.parametrize("name", MODELS)
@hyp_settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_params_for_a_sampled_point_draws_that_point_again(name, seed):
    space = get_model(name).search_space
    point = space.sample_random(seed)
    assert space.sample(_Replay(space.params_for(point))) == point


@hyp_settings(max_examples=200, deadline=None)
@given(lr=st.floats(-1.0, 10.0, allow_nan=False), k=st.integers(-5, 500), n=st.integers(-3, 30),
       depth=st.integers(1, 5), width=st.integers(1, 5000), opt=st.sampled_from(["adam", "momentum", "sgd"]))
def test_params_for_clips_into_the_space_and_leaves_out_what_it_cannot_draw(lr, k, n, depth, width, opt):
    point = {"lr": lr, "k": k, "n": n, "opt": opt, "momentum": 0.9, "layers": (width,) * depth}
    params = SPACE.params_for(point)
    drawn = SPACE.sample(_Replay({**_every_draw(), **params}))
    assert 1e-4 <= params["lr"] <= 1e-1 and params["lr"] == min(max(lr, 1e-4), 1e-1)
    assert 2 <= params["k"] <= 64 and params["n"] in (0, 5, 10) and abs(params["n"] - min(max(n, 0), 10)) <= 2.5
    assert ("opt" in params) == (opt != "sgd")              # not a choice of the space: drawn as usual
    assert ("momentum" in params) == (opt == "momentum")     # only under its condition
    assert ("layers_depth" in params) == (depth <= 3)        # deeper than the space: drawn as usual
    if depth <= 3:
        assert drawn["layers"] == (min(max(width, 16), 256),) * depth


def _every_draw():
    """A draw for every name of SPACE, for the parts ``params_for`` left out."""
    return {"lr": 0.01, "k": 8, "n": 5, "opt": "adam", "momentum": 0.9, "layers_depth": 2,
            "layers_0": 32, "layers_1": 32, "layers_2": 32}


def test_params_for_keeps_bools_apart_from_numbers_and_reads_tuple_choices():
    space = SearchSpace(Categorical("flag", (0, 1)), Categorical("shape", ("64,32", "128")))
    assert space.params_for({"flag": True, "shape": (64, 32)}) == {"shape": "64,32"}
    assert space.params_for({"flag": 1, "shape": "128"}) == {"flag": 1, "shape": "128"}
