"""The shared evaluator: policies, counts, clipping, ranking metrics."""

from __future__ import annotations

import numpy as np
import pytest

from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import RecozooError
from recozoo.evaluate import evaluate, evaluate_ranking
from recozoo.models.baselines import Bias, GlobalMean
from recozoo.splits import Split


def _split():
    """4 users x 4 items; user 3 and item 3 have no TRAIN rating."""
    users, items = IdMap(np.array([10, 11, 12, 13])), IdMap(np.array([100, 101, 102, 103]))
    tr = RatingsTable.from_coo(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 0]),
                               np.array([5, 3, 4, 2, 1], np.float32), user_ids=users, item_ids=items)
    te = RatingsTable.from_coo(np.array([0, 1, 3, 2]), np.array([2, 0, 0, 3]),
                               np.array([4, 5, 3, 2], np.float32), user_ids=users, item_ids=items)
    return Split("tiny", tr, None, te, {"policy": "fallback"})


def test_policies_count_what_they_scored():
    sp = _split()
    m = GlobalMean().fit(sp.train)
    f = evaluate(m, sp, "test", policy="fallback")
    d = evaluate(m, sp, "test", policy="drop")
    assert (f["n_total"], f["n_scored"], f["n_fallback"], f["n_dropped"]) == (4, 4, 2, 0)
    assert (d["n_total"], d["n_scored"], d["n_fallback"], d["n_dropped"]) == (4, 2, 0, 2)
    assert f["n_unknown_user"] == 1 and f["n_unknown_item"] == 1
    mu = 3.0
    assert d["rmse"] == pytest.approx(np.sqrt(((4 - mu) ** 2 + (5 - mu) ** 2) / 2))
    assert f["rmse"] == pytest.approx(np.sqrt(((4 - mu) ** 2 + (5 - mu) ** 2 + 0 + 1) / 4))
    assert f["mae"] == pytest.approx((1 + 2 + 0 + 1) / 4)
    assert f["policy"] == "fallback" and d["policy"] == "drop"


def test_clipping_is_reported_beside_unclipped():
    sp = _split()
    m = Bias(settings={"reg_user": 0.0, "reg_item": 0.0, "iterations": 50}).fit(sp.train)
    out = evaluate(m, sp, "test", policy="drop", clip=(1.0, 5.0))
    assert "rmse_clipped" in out and out["rmse_clipped"] <= out["rmse"] + 1e-12
    assert out["clip"] == [1.0, 5.0]


def test_unknown_policy_and_missing_part():
    sp = _split()
    m = GlobalMean().fit(sp.train)
    with pytest.raises(RecozooError, match="policy"):
        evaluate(m, sp, "test", policy="maybe")
    with pytest.raises(RecozooError, match="no valid part"):
        evaluate(m, sp, "valid")


def test_ranking_metrics_from_recommend():
    sp = _split()
    m = Bias(settings={"reg_user": 0.0, "reg_item": 0.0}).fit(sp.train)
    r = evaluate_ranking(m, sp, "test", k=2, threshold=4.0)
    # positives: user 0 -> item 2 (4.0), user 1 -> item 0 (5.0); user 3 has no train data
    assert r["n_users"] == 2
    items0, _ = m.recommend(0, k=2)
    items1, _ = m.recommend(1, k=2)
    hits = [2 in items0, 0 in items1]
    assert r["hitrate@2"] == pytest.approx(np.mean(hits))
    assert r["recall@2"] == pytest.approx(np.mean(hits))
    assert 0.0 <= r["ndcg@2"] <= 1.0


def test_bias_fallback_keeps_known_side():
    sp = _split()
    m = Bias(settings={"reg_user": 0.0, "reg_item": 0.0, "iterations": 30}).fit(sp.train)
    # out-of-range user with a known item: mu + b_i
    p = m.predict([99], [0])[0]
    assert p == pytest.approx(m.global_mean_ + m.item_bias_[0], abs=1e-5)
    p2 = m.predict([99], [99])[0]
    assert p2 == pytest.approx(m.global_mean_)


def test_ranking_never_modifies_the_split():
    sp = _split()
    before = (sp.test.indptr.copy(), sp.test.items.copy(), sp.test.ratings.copy())
    m = Bias().fit(sp.train)
    evaluate_ranking(m, sp, "test", k=2, threshold=4.5)
    assert all(np.array_equal(a, b) for a, b in zip(before, (sp.test.indptr, sp.test.items, sp.test.ratings)))


def test_ranking_on_read_only_memory_mapped_split(tmp_path):
    from recozoo.splits import Split
    sp = _split()
    sp.save(tmp_path / "s")
    ro = Split.load(tmp_path / "s", mmap=True)
    m = Bias().fit(ro.train)
    assert evaluate_ranking(m, ro, "test", k=2)["n_users"] == 2


def test_ranking_when_trailing_users_have_no_ratings():
    users, items = IdMap(np.arange(5)), IdMap(np.arange(3))
    tr = RatingsTable.from_coo(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([5, 4, 3], np.float32),
                               user_ids=users, item_ids=items)
    te = RatingsTable.from_coo(np.array([0]), np.array([1]), np.array([5], np.float32),
                               user_ids=users, item_ids=items)
    sp = Split("t", tr, None, te)
    assert evaluate_ranking(Bias().fit(tr), sp, "test", k=1)["n_users"] == 1


@pytest.mark.parametrize("policy", ["drop", "fallback"])
def test_errors_are_the_scored_pairs_in_order(policy):
    """evaluate_with_errors: prediction - truth for exactly the pairs the figures cover (compare's bootstrap
    reads them instead of predicting TEST a second time)."""
    from recozoo.evaluate import evaluate_with_errors
    sp = _split()
    m = Bias().fit(sp.train)
    figures, err = evaluate_with_errors(m, sp, "test", policy=policy)
    assert figures == {**evaluate(m, sp, "test", policy=policy), "predict_seconds": figures["predict_seconds"]}
    t = sp.test
    keep = np.ones(t.nnz, bool) if policy == "fallback" else np.array([True, True, False, False])
    want = m.predict(t.users[keep], t.items[keep]).astype(np.float64) - t.ratings[keep]
    assert err.dtype == np.float32 and np.array_equal(err, want.astype(np.float32))
    assert np.sqrt(np.mean(err.astype(np.float64) ** 2)) == pytest.approx(figures["rmse"], rel=1e-6)


def test_errors_of_a_temporal_model_are_at_the_ratings_times():
    """A temporal model is scored at each rating's own time, and so are its errors (their RMSE is the figure)."""
    from recozoo.data.synthetic import generate
    from recozoo.evaluate import evaluate_with_errors
    from recozoo.models.timesvdpp import TimeSVDpp
    from recozoo.splits import time_fraction_split
    sp = time_fraction_split(generate(200, 40, 4000, seed=3, drift=True, start="2005-01-01", end="2005-04-30"),
                             "t", 0.8, seed=0)
    m = TimeSVDpp(settings={"factors": 4, "epochs": 2}, seed=0).fit(sp.train, sp.valid)
    figures, err = evaluate_with_errors(m, sp, "test")
    assert np.sqrt(np.mean(err.astype(np.float64) ** 2)) == pytest.approx(figures["rmse"], rel=1e-6)
    at_time = m.predict_table(sp.test) - sp.test.ratings
    assert np.allclose(err, at_time, atol=1e-6)
