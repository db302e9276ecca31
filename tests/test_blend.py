"""The VALID-fitted linear blend: its weights are the ridge solution on VALID, TEST is never read."""

from __future__ import annotations

import numpy as np
import pytest

from recozoo.errors import RecozooError, SettingsError
from recozoo.models.blend import Blend, parse_components

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
