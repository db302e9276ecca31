"""Refitting on TRAIN ∪ VALID with the recipe VALID chose (recozoo.search.refit, `recozoo fit --refit`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DataError, RecozooError
from recozoo.models.base import load_model
from recozoo.registry import get_model
from recozoo.runs import MODEL_FILE, RunConfig, fit_run
from recozoo.search import refit
from recozoo.splits import Split

from _torch_small import one_thread, small_split
from cli_helpers import invoke_cli

_one_thread = pytest.fixture(autouse=True)(one_thread)

AUTOREC = {"hidden": 16, "optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 40,
           "eval_every": 1, "patience": 4}


def _table(n_users, n_items, pairs, ratings, ts=None):
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    return RatingsTable.from_coo(u, i, np.asarray(ratings, np.float32), ts,
                                 user_ids=IdMap(np.arange(n_users)), item_ids=IdMap(np.arange(n_items)))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_union_of_disjoint_parts_is_the_whole_table(data):
    n_u, n_i = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    cells = data.draw(st.lists(st.tuples(st.integers(0, n_u - 1), st.integers(0, n_i - 1)), unique=True,
                               max_size=n_u * n_i))
    ratings = data.draw(st.lists(st.floats(1, 5, width=32), min_size=len(cells), max_size=len(cells)))
    ts = np.arange(len(cells), dtype=np.int64) * 7
    whole = _table(n_u, n_i, cells, ratings, ts)
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=whole.nnz, max_size=whole.nnz)), dtype=bool)
    a, b = whole.select(mask), whole.select(~mask)
    for u in (a.union(b), b.union(a)):
        assert np.array_equal(u.indptr, whole.indptr) and np.array_equal(u.items, whole.items)
        assert np.array_equal(u.ratings, whole.ratings) and np.array_equal(u.timestamps, whole.timestamps)


def test_union_refuses_overlap_and_foreign_id_maps():
    t = _table(3, 3, [(0, 0), (1, 2)], [4, 5])
    with pytest.raises(DataError, match="duplicate"):
        t.union(t.select(np.array([False, True])), source="x")
    other = RatingsTable.from_coo(np.array([0]), np.array([0]), np.array([3.0]),
                                  user_ids=IdMap(np.array([10, 11, 12])), item_ids=t.item_ids)
    with pytest.raises(DataError, match="id maps"):
        t.union(other)


def test_refit_settings_repeat_the_valid_chosen_length_exactly():
    """Fitting TRAIN alone for best_epoch epochs reproduces the selected model bit for bit (CPU)."""
    split = small_split()
    chosen = get_model("autorec-i")(settings=AUTOREC, seed=3).fit(split.train, split.valid)
    over = chosen.refit_settings()
    assert over == {"epochs": chosen.best_epoch_, "patience": 0}
    assert 1 <= chosen.best_epoch_ < len(chosen.history_)   # it did stop early, past its best
    again = get_model("autorec-i")(settings={**AUTOREC, **over}, seed=3).fit(split.train)
    u, i = split.test.users, split.test.items
    assert np.array_equal(again.predict(u, i), chosen.predict(u, i))


def test_refit_trains_on_train_and_valid_and_never_reads_test():
    split = small_split()
    chosen = get_model("autorec-i")(settings=AUTOREC, seed=3).fit(split.train, split.valid)
    final = refit(chosen, split)
    full = split.train_and_valid()
    assert full.nnz == split.train.nnz + split.valid.nnz
    assert final.global_mean_ == pytest.approx(float(np.mean(full.ratings, dtype=np.float64)))
    assert final.settings.epochs == chosen.best_epoch_ and final.seed == chosen.seed
    # a VALID pair is now "seen": recommend never returns it
    u = int(split.valid.users[0])
    items, scores = final.recommend(u, k=final.n_items_)
    rated = split.valid.items[split.valid.indptr[u]:split.valid.indptr[u + 1]]
    assert rated.size and np.all(np.isneginf(scores[np.isin(items, rated)]))
    # TEST plays no part: the same refit with TEST's ratings poisoned predicts the same
    poisoned = Split(split.name, split.train, split.valid, split.test.select(np.ones(split.test.nnz, bool)))
    poisoned.test.ratings[:] = np.float32(1e6)
    same = refit(chosen, poisoned)
    assert np.array_equal(same.predict(split.test.users, split.test.items),
                          final.predict(split.test.users, split.test.items))
    with pytest.raises(RecozooError, match="VALID"):
        refit(chosen, Split(split.name, split.train, None, split.test))


def test_fixed_length_models_refit_as_they_are():
    split = small_split()
    als = get_model("als")(settings={"rank": 4, "iterations": 3}).fit(split.train, split.valid)
    assert als.refit_settings() == {}
    mf = get_model("biasedmf")(settings={"factors": 4, "epochs": 3}).fit(split.train, split.valid)
    assert refit(mf, split).settings.epochs == 3


def test_glocalk_refits_each_stage_for_its_own_length(tmp_path):
    split = small_split()
    s = {"layers": "8,8", "pre_epochs": 6, "fine_epochs": 4, "eval_every": 2, "patience": 1}
    m = get_model("glocal-k")(settings=s, seed=0).fit(split.train, split.valid)
    over = m.refit_settings()
    assert set(over) == {"pre_epochs", "fine_epochs", "patience"} and over["patience"] == 0
    assert over["pre_epochs"] == m.stage_best_epochs_["pretrain"] <= 6
    assert over["fine_epochs"] == m.stage_best_epochs_["finetune"] <= 4
    m.save(tmp_path / "g.zip")
    assert load_model(tmp_path / "g.zip").refit_settings() == over


def test_blend_refit_keeps_valid_weights_and_refits_components(tmp_path):
    split = small_split()
    comp = "bias reg_user=2; autorec-i hidden=8 optimizer=adam lr=0.01 batch_size=32 epochs=20 eval_every=1 patience=3"
    plain = get_model("blend")(settings={"components": comp}, seed=0).fit(split.train, split.valid)
    assert plain.refit_settings() == {"refit": True}
    final = refit(plain, split)
    assert final.settings.refit and np.allclose(final.weights_, plain.weights_)
    full = split.train_and_valid()
    mean = float(np.mean(full.ratings, dtype=np.float64))
    assert final.global_mean_ == pytest.approx(mean)
    assert all(c.global_mean_ == pytest.approx(mean) for c in final.components_)
    ar_plain, ar_final = plain.components_[1], final.components_[1]
    assert ar_final.settings.epochs == ar_plain.best_epoch_ and ar_final.settings.patience == 0
    final.save(tmp_path / "b.zip")
    back = load_model(tmp_path / "b.zip")
    u, i = split.test.users, split.test.items
    assert np.array_equal(back.predict(u, i), final.predict(u, i))
    assert np.array_equal(back.predict(np.array([10 ** 6]), np.array([0])),
                          final.predict(np.array([10 ** 6]), np.array([0])))


def test_fit_run_refit_without_valid_fails_before_fitting(tmp_path):
    split = small_split()
    cfg = RunConfig(model="bias", dataset="small", settings={}, refit=True)
    with pytest.raises(RecozooError, match="--refit.*VALID"):
        fit_run(cfg, tmp_path / "r", split=Split(split.name, split.train, None, split.test))
    assert not (tmp_path / "r" / MODEL_FILE).exists()


@pytest.fixture(scope="module")
def env(ml100k_env):
    return ml100k_env


def test_cli_fit_refit_on_ml100k(env, tmp_path):
    sets = ["--set", "hidden=100", "--set", "epochs=40", "--set", "eval_every=2", "--set", "patience=3"]
    out = invoke_cli("fit", "autorec-i", "--dataset", "ml-100k", *sets, "--refit", "--out", tmp_path / "run",
                     "-q", env=env).stdout
    assert "refit on 80000 train+valid ratings" in " ".join(out.split())
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    r = s["refit"]
    assert r["train_ratings"] == 80000     # all of u1.base: 76,000 TRAIN + 4,000 VALID
    assert r["overrides"]["patience"] == 0 and 2 <= r["overrides"]["epochs"] <= 40
    assert s["settings"]["epochs"] == 40 and r["settings"]["epochs"] == r["overrides"]["epochs"]
    assert s["metrics"]["test"]["rmse"] < 0.96 and s["metrics"]["valid"]["rmse"] < 0.96   # global mean: 1.15
    # the saved model is the refitted one
    m = load_model(tmp_path / "run" / MODEL_FILE)
    assert m.settings.epochs == r["overrides"]["epochs"]
