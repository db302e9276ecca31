"""Implicit ALS (recozoo.models.als_implicit) through the implicit library."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from recozoo.evaluate import evaluate, evaluate_ranking
from recozoo.errors import RecozooError
from recozoo.models.als_implicit import ImplicitALS
from recozoo.models.baselines import Bias, GlobalMean


@pytest.fixture(scope="module")
def fitted(ml100k_split):
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # implicit's threadpool warning must not fire
        return ImplicitALS(settings={"factors": 32, "iterations": 8}, seed=0).fit(ml100k_split.train)


def test_ranks_better_than_mean_and_bias_on_ml100k_valid(ml100k_split, fitted):
    def ndcg(model):
        return evaluate_ranking(model, ml100k_split, "valid", k=10)["ndcg@10"]
    got = ndcg(fitted)
    assert got > ndcg(GlobalMean().fit(ml100k_split.train)) + 0.02
    assert got > ndcg(Bias().fit(ml100k_split.train)) + 0.02


def test_recommend_is_the_dense_ranking_and_agrees_with_predict(ml100k_split, fitted):
    users = np.arange(20)
    items, scores = fitted.recommend(users, k=10)
    seen = ml100k_split.train.to_csr()
    for row, u in enumerate(users):
        assert not set(items[row]) & set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
        np.testing.assert_allclose(scores[row], fitted.predict(np.full(10, u), items[row]), rtol=1e-5)
    # the same as a dense ranking of x_u . y_i over unseen items
    dense = fitted.user_factors_[users] @ fitted.item_factors_.T
    dense[seen[users].nonzero()] = -np.inf
    want = np.argsort(-dense, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(items, want)   # ties: the lower item index first


def test_no_rmse_is_ever_reported(ml100k_split, fitted):
    assert ImplicitALS.predicts_ratings is False
    with pytest.raises(RecozooError):
        evaluate(fitted, ml100k_split, "valid")


def test_confidence_schemes():
    m = ImplicitALS(settings={"alpha": 2.0, "confidence": "linear"})
    np.testing.assert_allclose(m._confidence(np.array([0.0, 1.0, 5.0])), [1, 3, 11])
    m = ImplicitALS(settings={"alpha": 2.0, "confidence": "binary"})
    np.testing.assert_allclose(m._confidence(np.array([1.0, 5.0])), [3, 3])
    m = ImplicitALS(settings={"alpha": 2.0, "confidence": "log", "epsilon": 1.0})
    np.testing.assert_allclose(m._confidence(np.array([1.0])), [1 + 2 * np.log(2)], rtol=1e-6)


def test_loaded_model_recommends_the_same_without_warnings(tmp_path, fitted):
    from recozoo.models.base import load_model
    path = fitted.save(tmp_path / "m.rz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(path)
        a = loaded.recommend(np.arange(5), k=7)
    b = fitted.recommend(np.arange(5), k=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])


def test_fit_leaves_the_training_table_untouched():
    """min_rating drops ratings from a *copy*: the shared table keeps all of them."""
    from recozoo.data.synthetic import generate
    t = generate(n_users=50, n_items=30, n_ratings=600, seed=0)
    before = (t.indptr.copy(), t.items.copy(), t.ratings.copy())
    ImplicitALS(settings={"factors": 3, "iterations": 1, "min_rating": 4}, seed=0).fit(t)
    for a, b in zip(before, (t.indptr, t.items, t.ratings)):
        np.testing.assert_array_equal(a, b)
