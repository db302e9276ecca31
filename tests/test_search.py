"""Hyperparameter search (recozoo.search): selection on VALID only."""

from __future__ import annotations

import numpy as np
import pytest

from recozoo.errors import SettingsError
from recozoo.evaluate import evaluate
from recozoo.registry import get_model
from recozoo.search import _candidates, search
from recozoo.testing import tiny_split


def test_grid_is_the_full_product_and_random_is_a_seeded_subset():
    grid = {"a": [1, 2, 3], "b": ["x", "y"]}
    full = _candidates(grid, None, 0)
    assert len(full) == 6 and {tuple(c.values()) for c in full} == {(a, b) for a in (1, 2, 3) for b in "xy"}
    some = _candidates(grid, 4, seed=5)
    assert len(some) == 4 and len({tuple(c.values()) for c in some}) == 4
    assert some == _candidates(grid, 4, seed=5)
    assert all(c in full for c in some)


def test_best_is_the_lowest_valid_rmse_and_test_is_never_read():
    split = tiny_split()
    res = search("bias", split, {"reg_user": [0.0, 5.0, 1000.0], "reg_item": [1.0, 1000.0]})
    assert len(res.results) == 6
    assert res.best["rmse"] == min(r["rmse"] for r in res.results)
    # the reported score is VALID's: recompute it
    m = get_model("bias")(settings=res.best["settings"]).fit(split.train, split.valid)
    assert res.best["rmse"] == pytest.approx(evaluate(m, split, "valid")["rmse"])
    # TEST cannot influence the choice: poisoning TEST changes nothing
    split.test.ratings[:] = np.float32(1e6)
    try:
        again = search("bias", split, {"reg_user": [0.0, 5.0, 1000.0], "reg_item": [1.0, 1000.0]})
    finally:
        from recozoo import testing
        testing._TINY.clear()
    assert again.best["settings"] == res.best["settings"]


def test_bad_candidate_fails_before_fitting():
    with pytest.raises(SettingsError, match="reg_user"):
        search("bias", tiny_split(), {"reg_user": [1.0, -3.0]})
    with pytest.raises(SettingsError, match="ranking metric"):
        search("als-implicit", tiny_split(), {"factors": [2]})


def test_a_diverging_candidate_is_recorded_not_chosen():
    split = tiny_split()
    res = search("biasedmf", split, {"lr": [0.005, 50.0]}, base={"epochs": 5, "factors": 4})
    bad = [r for r in res.results if "error" in r]
    assert len(bad) == 1 and "diverged" in bad[0]["error"]
    assert res.best["settings"]["lr"] == 0.005
