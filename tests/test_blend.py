"""The VALID-fitted linear blend: its weights are the ridge solution on VALID, TEST is never read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from recozoo.errors import RecozooError, SettingsError
from recozoo.models.blend import Blend, component_spec, parse_components
from recozoo.registry import get_model, list_models
from recozoo.settings import BaseSettings, parse_settings, setting

from _torch_small import rmse_on, small_split

COMP = "bias reg_user=2; biasedmf epochs=10 factors=8"


def test_parse_components():
    assert parse_components(" a x=1 y=2,3 ;; b ") == [("a", {"x": "1", "y": "2,3"}), ("b", {})]


@pytest.mark.parametrize("bad", ["", "blend", "nosuchmodel", "bias nosuch=1", "als-implicit"])
def test_bad_components_fail_at_construction(bad):
    with pytest.raises((SettingsError, RecozooError)):
        Blend({"components": bad})


def test_weights_are_the_valid_ridge_fit_and_beat_the_components():
    split = small_split()
    m = Blend({"components": COMP, "ridge": 0.0}, seed=0).fit(split.train, split.valid)
    v = split.valid
    X = np.column_stack([np.ones(v.nnz)] + [c.predict(v.users, v.items) for c in m.components_])
    w, *_ = np.linalg.lstsq(X, v.ratings.astype(np.float64), rcond=None)
    assert np.allclose(m.weights_, w, atol=1e-4)
    assert rmse_on(m, v) <= min(rmse_on(c, v) for c in m.components_) + 1e-6    # least squares on VALID
    assert m.valid_cv_rmse_ >= rmse_on(m, v) - 1e-6                             # CV is not in-sample
    with pytest.raises(RecozooError, match="VALID"):
        Blend({"components": COMP}).fit(split.train)


# ------------------------------------------------------- components written from chosen settings
_RATING_MODELS = sorted(e.name for e in list_models() if get_model(e.name).predicts_ratings and e.name != "blend")


@pytest.mark.parametrize("name", _RATING_MODELS)
@hyp_settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_component_spec_reads_back_as_the_settings_it_was_written_from(name, seed):
    """``compare --tune`` writes each tuned row as a blend component: any point of the model's space
    (and the defaults) must read back through ``components`` as equal settings."""
    cls = get_model(name)
    settings = parse_settings(cls.Settings, cls.search_space.sample_random(seed), model=name)
    for s in (settings, cls.Settings()):
        [(got_name, values)] = parse_components(component_spec(name, s))
        assert got_name == name and parse_settings(cls.Settings, values, model=name) == s


def test_a_component_spec_names_only_what_differs_and_refuses_what_it_cannot_carry():
    from recozoo.models.mf import BiasedMFSettings
    from recozoo.models.deeprec import DeepRecSettings
    assert component_spec("biasedmf", BiasedMFSettings()) == "biasedmf"
    assert component_spec("biasedmf", BiasedMFSettings(factors=7, reg=0.125)) == "biasedmf factors=7 reg=0.125"
    assert "layers=[64,32]" in component_spec("deeprec", DeepRecSettings(layers=(64, 32)))

    @dataclass(frozen=True)
    class Texts(BaseSettings):
        label: str = setting("a", "a text")
    with pytest.raises(SettingsError, match="cannot be written as a blend component"):
        component_spec("texts", Texts(label="two words"))


def test_a_blend_uses_the_device_when_a_component_does():
    """What `compare` asks before resolving `--device auto` (which imports torch): a blend of
    torch-free models computes on no device; one with a torch component hands that one its device."""
    from recozoo.models.blend import Blend, BlendSettings
    assert not Blend.uses_device
    assert Blend.uses_device_with(BlendSettings(components="bias; biasedmf factors=4")) is False
    assert Blend.uses_device_with(BlendSettings(components="bias; deeprec layers=8")) is True
    assert get_model("deeprec").uses_device_with(get_model("deeprec").Settings()) is True
