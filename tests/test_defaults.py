"""Defaults that travel (issue 12 item 4): "auto" settings resolved from TRAIN's shape, explicit
settings and presets untouched, the resolved values recorded in the run (tiny data, a few seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from recozoo.data.synthetic import generate
from recozoo.defaults import (DEEPREC_SMALL, DEEPREC_SPARSE, SMALL_DATA_RATINGS, DataShape, deeprec_rule,
                              resolve, rrn_rule)
from recozoo.errors import SettingsError
from recozoo.models.deeprec import DeepRec, DeepRecSettings
from recozoo.registry import get_model
from recozoo.runs import RunConfig, fit_run, resolve_settings
from recozoo.settings import AUTO, auto_fields, parse_settings

TINY = {"layers": "8", "epochs": 2}


@pytest.fixture(scope="module")
def table():
    return generate(120, 40, 1500, seed=3)


def test_auto_is_a_value_only_where_declared():
    s = parse_settings(DeepRecSettings, {"layers": "Auto", "epochs": "auto"})
    assert s.layers == AUTO and s.epochs == AUTO and "layers" in auto_fields(s)
    with pytest.raises(SettingsError, match="tied"):
        parse_settings(DeepRecSettings, {"tied": "auto"})
    with pytest.raises(SettingsError, match="epochs"):
        parse_settings(DeepRecSettings, {"epochs": "0"})      # a number is still checked


def test_fit_resolves_auto_from_train_and_keeps_explicit(table):
    m = DeepRec(settings=TINY, seed=0)
    assert auto_fields(m.settings)
    m.fit(table)
    assert auto_fields(m.settings) == []
    assert m.settings.layers == (8,) and m.settings.epochs == 2          # explicit values win
    rule = deeprec_rule(DataShape.of(table))
    assert m.settings.optimizer == rule["optimizer"] and m.settings.mode == rule["mode"]
    assert resolve(m.settings, deeprec_rule, table) is m.settings       # resolving twice: no-op
    # a refit repeats the resolved recipe, not "auto"
    assert auto_fields(m.refit_copy().settings) == []


def test_presets_win_over_the_rule():
    s = resolve_settings(DeepRec, {}, "paper", "netflix-3m")
    assert auto_fields(s) == []
    assert (s.layers, s.dropout, s.patience, s.weight_decay) == ((128, 256, 256), 0.65, 0, 0.0)
    small = resolve_settings(DeepRec, {"epochs": 7}, "ml-100k", "ml-100k")
    assert small.mode == "item" and small.optimizer == "rprop" and small.epochs == 7


def test_deeprec_rule_branches():
    small = deeprec_rule(DataShape(943, 1682, 80_000))                 # ml-100k: 80 per user
    assert small == {**DEEPREC_SMALL, "mode": "item", "baseline": "none"} and small["patience"] > 0
    sparse = deeprec_rule(DataShape(10_000, 1_000, 160_000))          # synthetic: 16 per user
    assert sparse == DEEPREC_SPARSE and sparse["baseline"] == "bias" and sparse["patience"] > 0
    assert deeprec_rule(DataShape(400_000, 17_000, SMALL_DATA_RATINGS))["optimizer"] == "adam"
    big = deeprec_rule(DataShape(311_315, 17_736, 13_675_402))      # netflix-3m: the paper's network
    assert big["layers"] == (128, 256, 256) and big["dropout"] == 0.65 and big["patience"] > 0
    full = deeprec_rule(DataShape(477_412, 17_768, 98_074_901))
    assert full["layers"] == (512, 512, 1024)
    for values in (small, sparse, big, full):
        parse_settings(DeepRecSettings, values)                     # every branch is valid settings


def test_shape_counts_only_rows_with_ratings(table):
    shape = DataShape.of(table)
    assert shape.n_ratings == table.nnz
    assert shape.n_users == int((table.user_counts() > 0).sum()) <= table.n_users
    assert shape.per_user == pytest.approx(table.nnz / shape.n_users)
    assert set(shape.to_json()) >= {"n_users", "n_items", "n_ratings", "density"}


def test_run_records_the_resolved_settings(tmp_path):
    run = tmp_path / "run"
    params = {"n_users": 150, "n_items": 40, "n_ratings": 2000}
    s = fit_run(RunConfig("deeprec", "synthetic", dict(TINY), data_params=params), run)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["settings"]["optimizer"] == AUTO                  # what was asked
    resolved = cfg["resolved_settings"]
    assert resolved["layers"] == [8] and resolved["optimizer"] != AUTO
    assert s["settings"] == resolved
    # the recorded values reproduce the run
    again = fit_run(RunConfig("deeprec", "synthetic", resolved, data_params=params), tmp_path / "again")
    assert again["metrics"]["test"]["rmse"] == pytest.approx(s["metrics"]["test"]["rmse"], abs=1e-6)


def test_factor_rules_follow_ratings_per_user():
    from recozoo.defaults import als_rule, biasedmf_rule
    sparse, dense = DataShape(86_000, 10_000, 166_000), DataShape(943, 1650, 76_000)
    assert als_rule(sparse) == {"reg": 1.0, "baseline": "bias"}
    assert als_rule(dense) == {"reg": 0.1, "baseline": "none"}
    no_bias = parse_settings(get_model("als").Settings, {"biases": False})
    assert als_rule(sparse, no_bias)["baseline"] == "none"        # never contradicts biases=false
    assert biasedmf_rule(dense) == {"factors": 100, "reg": 0.02}
    assert biasedmf_rule(sparse) == {"factors": 20, "reg": 0.1}


def test_pmf_count_shrinkage_rule_and_explicit_values(table):
    from recozoo.defaults import pmf_rule
    from recozoo.models.mf import PMF
    assert pmf_rule(DataShape(86_000, 10_000, 166_000)) == {"reg_count": 10.0}     # Netflix sample: 1.9/user
    assert pmf_rule(DataShape(9_760, 1_000, 191_722)) == {"reg_count": 3.0}        # synthetic: 19.6/user
    assert pmf_rule(DataShape(943, 1650, 76_000)) == {"reg_count": 3.0}            # ml-100k: 80/user
    assert resolve_settings(PMF, {}, "paper", "x").reg_count == 0.0                # the paper's model kept
    tiny = {"factors": 3, "epochs": 3}
    auto = PMF(settings=tiny, seed=0).fit(table)
    assert auto.settings.reg_count == pmf_rule(DataShape.of(table))["reg_count"]
    explicit = PMF(settings={**tiny, "reg_count": 0.0}, seed=0).fit(table)
    assert explicit.settings.reg_count == 0.0
    # c shrinks the factors: a larger prior weight gives smaller factors, on users and items alike
    assert np.abs(auto.user_factors_).sum() < np.abs(explicit.user_factors_).sum()
    assert np.abs(auto.item_factors_).sum() < np.abs(explicit.item_factors_).sum()


def test_pmf_fold_in_solves_the_count_shrunk_objective(table):
    """A new user's factor minimises Σ (r − μ − b_u − b_i − p·q_i)² + (λ_U·n + c)‖p‖² (items fixed)."""
    from recozoo.models.mf import PMF
    m = PMF(settings={"factors": 3, "epochs": 3, "reg_count": 4.0}, seed=0).fit(table)
    row = table.to_csr()[[0]]
    scores = m.score_new_users(row)[0]
    cols, r = row.indices, row.data.astype(np.float64)
    Q = m.item_factors_.astype(np.float64)[cols]
    t = r - m.offset_ - m.item_bias_[cols]
    bu = t.sum() / (m.base_reg_user_ + cols.size)                    # b_u as the bias model folds it in
    lam = m.settings.reg_user * cols.size + 4.0
    p = np.linalg.solve(Q.T @ Q + lam * np.eye(3), Q.T @ (t - bu))
    want = m.offset_ + bu + m.item_bias_ + m.item_factors_.astype(np.float64) @ p
    np.testing.assert_allclose(scores, want, atol=1e-4)


@pytest.mark.parametrize("model,settings", [
    ("deeprec", {**TINY, "mode": "user", "optimizer": "adam", "lr": 0.01, "batch_size": 32, "eval_every": 1,
                 "baseline": "bias"}),
    ("autorec-u", {"hidden": 8, "epochs": 3, "baseline": "bias"}),
    ("pmf", {"factors": 3, "epochs": 2}),
    ("pmf", {"factors": 3, "epochs": 2, "reg_count": 5.0}),
    ("als", {"rank": 3, "iterations": 2, "baseline": "bias"}),
    ("rrn", {"epochs": 2, "hidden": 8, "embed": 8, "dynamic": 4, "stationary": 4, "baseline": "bias"}),
    ("glocal-k", {"layers": "4,4", "pre_epochs": 3, "fine_epochs": 2, "eval_every": 1}),
])
def test_bias_baseline_is_added_back_everywhere(table, tmp_path, model, settings):
    """Under baseline=bias: cold pairs get the bias model's μ + b_u/b_i, save/load and score_items
    agree with predict, and (autoencoders: fold-in is the forward pass) a training user's own TRAIN row
    folds in to its scores."""
    from recozoo.models.base import load_model
    from recozoo.models.baselines import Bias
    m = get_model(model)(settings=settings, seed=0).fit(table)
    assert m.settings.baseline == "bias"
    bias = Bias(seed=0).fit(table)
    items = np.arange(table.n_items)
    unknown = m.predict(np.full(items.size, table.n_users + 5), items)
    np.testing.assert_allclose(unknown, bias.predict(np.full(items.size, table.n_users + 5), items), atol=1e-5)
    users = np.arange(5)
    dense = m.score_items(users)
    np.testing.assert_allclose(dense[:, :7], m.predict(np.repeat(users, 7), np.tile(items[:7], 5))
                               .reshape(5, 7), atol=1e-5)
    m.save(tmp_path / "m.rcz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.rcz").score_items(users), dense)
    if model in ("deeprec", "autorec-u"):
        rows = table.to_csr()[users]
        np.testing.assert_array_equal(m.score_new_users(rows), dense)      # bit for bit, as without it


def test_autorec_rules_and_their_preset():
    """I-AutoRec: the paper's network on raw ratings from 30 ratings per user, a 100-unit one on the bias
    model's residuals below; U-AutoRec always on the residuals; an implicit loss never gets a baseline;
    ``--preset ml-100k`` pins what "auto" would fill, so it predicts as before the rules."""
    from recozoo.defaults import autorec_i_rule, autorec_u_rule
    from recozoo.models.autorec import AutoRecSettings, IAutoRec
    dense, sparse = DataShape(943, 1650, 76_000), DataShape(10_000, 1_000, 192_000)
    few = DataShape(86_000, 10_000, 166_000)                          # the Netflix sample: 1.9 per user
    assert autorec_i_rule(dense) == {"hidden": 500, "baseline": "none", "eval_every": 5}
    assert autorec_i_rule(sparse) == {"hidden": 100, "baseline": "bias", "eval_every": 5}
    assert autorec_i_rule(few) == autorec_u_rule(few) == {"hidden": 20, "baseline": "bias", "eval_every": 1}
    assert autorec_u_rule(dense) == autorec_u_rule(sparse) == {"hidden": 500, "baseline": "bias", "eval_every": 5}
    implicit = parse_settings(AutoRecSettings, {"loss": "multinomial"})
    assert autorec_i_rule(sparse, implicit)["baseline"] == autorec_u_rule(dense, implicit)["baseline"] == "none"
    preset = resolve_settings(IAutoRec, {}, "ml-100k", "ml-100k")
    assert auto_fields(preset) == [] and (preset.hidden, preset.baseline, preset.eval_every) == (500, "none", 1)


def test_autorec_fit_resolves_from_train(table):
    """The tiny table has ~12 ratings per user: I-AutoRec fits the residuals with 100 units, unless told."""
    assert DataShape.of(table).per_user < 30
    m = get_model("autorec-i")(settings={"epochs": 2}, seed=0).fit(table)
    assert (m.settings.hidden, m.settings.baseline) == (100, "bias") and m.base_ is not None
    m = get_model("autorec-i")(settings={"epochs": 2, "hidden": 8, "baseline": "none"}, seed=0).fit(table)
    assert (m.settings.hidden, m.settings.baseline) == (8, "none") and m.base_ is None


def test_glocalk_refuses_a_matrix_above_max_cells(table):
    with pytest.raises(SettingsError, match=r"max_cells=100 \(a dense model"):
        get_model("glocal-k")(settings={"max_cells": 100, "layers": "4"}, seed=0).fit(table)


@hyp_settings(max_examples=100, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**5), st.integers(1, 10**9), st.booleans())
def test_rrn_rule_takes_the_bias_baseline_whenever_rrn_has_biases(n_users, n_items, n_ratings, biases):
    """Whatever the data's shape: RRN on the bias model's residuals, unless biases=false (the paper's
    formula), which the rule never contradicts (baseline=bias with biases=false is refused); the
    stationary factors start from ALS exactly when the baseline is the bias model's."""
    s = parse_settings(get_model("rrn").Settings, {"biases": biases})
    out = rrn_rule(DataShape(n_users, n_items, n_ratings), s)
    base = "bias" if biases else "none"
    assert out == {"baseline": base, "stationary_init": "als" if biases else "random"}
    assert s.replace(**out).baseline == out["baseline"]           # the resolved settings validate


def test_rrn_fit_resolves_the_baseline_and_keeps_explicit(table):
    tiny = {"epochs": 1, "hidden": 4, "embed": 4, "dynamic": 2, "stationary": 2}
    rrn = get_model("rrn")
    assert rrn(settings=tiny, seed=0).fit(table).settings.baseline == "bias"
    assert rrn(settings={**tiny, "biases": False}, seed=0).fit(table).settings.baseline == "none"
    assert rrn(settings={**tiny, "baseline": "none"}, seed=0).fit(table).base_ is None
    # ALS-initialised factors only on the bias model's residuals, and an explicit baseline=none is obeyed
    assert rrn(settings=tiny, seed=0).fit(table).settings.stationary_init == "als"
    assert rrn(settings={**tiny, "baseline": "none"}, seed=0).fit(table).settings.stationary_init == "random"


@hyp_settings(max_examples=200, deadline=None)
@given(st.integers(1, 500_000), st.integers(1, 20_000), st.floats(1.0, 400.0))
def test_glocalk_rule_is_the_papers_network_from_30_ratings_per_user(n_users, n_items, per_user):
    """GLocal-K's rule reads ratings per user only: the paper's network on raw ratings (the old defaults,
    which the blend's ml-100k preset relies on) from SPARSE_USERS up, the sparse recipe on the bias
    model's residuals below; every value is a concrete setting of the model."""
    from recozoo.defaults import GLOCALK_PAPER, GLOCALK_SPARSE, SPARSE_USERS, glocalk_rule
    from recozoo.models.glocalk import GLocalKSettings
    shape = DataShape(n_users, n_items, max(1, round(n_users * per_user)))
    out = glocalk_rule(shape)
    assert out == (GLOCALK_PAPER if shape.per_user >= SPARSE_USERS else GLOCALK_SPARSE)
    assert out["baseline"] == ("none" if shape.per_user >= SPARSE_USERS else "bias")
    s = GLocalKSettings().replace(**out)
    s.validate()
    assert auto_fields(s) == []


def test_glocalk_rule_keeps_the_old_defaults_where_they_won():
    """ml-100k u1 and ml-100k-time (80 and 106 per user, where the old defaults beat ``bias``) resolve
    to exactly the old values: the reference's ML-100K network, so the blend preset predicts as before."""
    from recozoo.defaults import glocalk_rule
    for shape in (DataShape(943, 1644, 76_065), DataShape(751, 1616, 79_999)):
        assert glocalk_rule(shape) == {"layers": (500, 500), "fine_epochs": 300, "baseline": "none"}
    assert glocalk_rule(DataShape(9_760, 1_000, 191_722))["baseline"] == "bias"      # synthetic
