"""Fold-in (``Model.score_new_users``) equals its definition, model by model.

Each expected value is computed here independently from the model's learned
arrays and the objective its docstring states (normal equations solved user by
user with ``np.linalg.solve``), never by calling the code under test twice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from recozoo.errors import RecozooError
from recozoo.models.base import FoldIn
from recozoo.topk import top_k_rows
from recozoo.registry import get_model, list_models
from recozoo.testing import tiny_split

from cli_helpers import invoke_json


@pytest.fixture(scope="module")
def split():
    return tiny_split(3)


def _new_users(n_items, seed=0, sizes=(5, 1, 12, 0, 7)):
    """A batch of new users: random distinct items and ratings 1..5 (one user without ratings)."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for b, n in enumerate(sizes):
        items = np.sort(rng.choice(n_items, n, replace=False))
        rows += [b] * n
        cols += items.tolist()
        vals += rng.integers(1, 6, n).astype(float).tolist()
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(sizes), n_items), dtype=np.float32)


def _fit(name, split, **settings):
    return get_model(name)(settings=settings, seed=1).fit(split.train, split.valid)


def _ridge(F, t, reg_diag):
    return np.linalg.solve(F.T @ F + np.diag(reg_diag), F.T @ t)


def _check_factor_model(m, R, lam_p, lam_b, with_bias, count=0.0):
    """The fold-in solves Σ e² + (n λ_p + count)‖p‖² + n λ_b b_u² (count: PMF's reg_count)."""
    got = m.score_new_users(R)
    Q = m.item_factors_.astype(np.float64)
    for b in range(R.shape[0]):
        items, r = R[b].indices, R[b].data.astype(np.float64)
        keep = m.item_known_[items]
        items, r = items[keep], r[keep]
        n, k = items.size, Q.shape[1]
        if n == 0:      # the unknown-user fallback
            want = m.predict(np.full(m.n_items_, -1), np.arange(m.n_items_))
        else:
            t = r - m.offset_ - m.item_bias_[items]
            if with_bias:
                x = _ridge(np.hstack([Q[items], np.ones((n, 1))]), t,
                           n * np.r_[np.full(k, lam_p), lam_b] + np.r_[np.full(k, count), 0.0])
                p, bu = x[:k], x[k]
            else:
                p, bu = _ridge(Q[items], t, n * np.full(k, lam_p) + count), 0.0
            want = m.offset_ + bu + m.item_bias_ + Q @ p
            want[~m.item_known_] = (m.offset_ + bu) if with_bias else m.global_mean_
        np.testing.assert_allclose(got[b], want, rtol=2e-5, atol=2e-5, err_msg=f"user {b}")


def test_als_fold_in_is_the_normal_equation_solution(split):
    m = _fit("als", split, rank=6, iterations=4, reg=0.08)
    _check_factor_model(m, _new_users(m.n_items_), 0.08, 0.08, True)
    m = _fit("als", split, rank=5, iterations=3, reg=0.2, biases=False)
    _check_factor_model(m, _new_users(m.n_items_, seed=1), 0.2, 0.2, False)


def test_biasedmf_and_linear_pmf_fold_in(split):
    m = _fit("biasedmf", split, factors=4, epochs=3, reg=0.05, reg_bias=0.3)
    _check_factor_model(m, _new_users(m.n_items_, seed=2), 0.05, 0.3, True)
    m = _fit("pmf", split, factors=4, epochs=3, link="linear", reg_user=0.4, baseline="none", reg_count=0.0)
    _check_factor_model(m, _new_users(m.n_items_, seed=3), 0.4, 0.0, False)
    m = _fit("pmf", split, factors=4, epochs=3, link="linear", reg_user=0.4, baseline="none", reg_count=3.0)
    _check_factor_model(m, _new_users(m.n_items_, seed=3), 0.4, 0.0, False, count=3.0)


def test_logistic_pmf_fold_in_minimises_its_objective(split):
    m = _fit("pmf", split, factors=4, epochs=5, reg_user=0.1, link="logistic", baseline="none", reg_count=0.0)
    R = _new_users(m.n_items_, seed=4)
    got = m.score_new_users(R)
    lo, span = m.scale_
    V = m.item_factors_.astype(np.float64)
    for b in (0, 2, 4):
        items, r = R[b].indices, R[b].data.astype(np.float64)
        n = items.size
        # the user factor the scores imply: invert the link on all items and solve V U = logit
        z = -np.log(span / (got[b].astype(np.float64) - lo) - 1.0)
        U = np.linalg.lstsq(V, z, rcond=None)[0]

        def f(u):
            return float(((r - lo - span / (1 + np.exp(-V[items] @ u))) ** 2).sum() + n * 0.1 * u @ u)
        rng = np.random.default_rng(b)
        assert all(f(U) <= f(U + 1e-3 * rng.standard_normal(U.size)) + 1e-9 for _ in range(50))
        g = 1 / (1 + np.exp(-V[items] @ U))
        grad = -2 * ((r - lo - span * g) * span * g * (1 - g)) @ V[items] + 2 * n * 0.1 * U
        assert np.abs(grad).max() < 1e-3


def test_bias_fold_in_reproduces_a_training_user(split):
    m = _fit("bias", split, reg_user=4.0, reg_item=6.0)
    users = np.array([0, 5, 17])
    got = m.score_new_users(m.history(users))
    # the last training pass solved b_u after b_i, so folding a user's own ratings in gives b_u back
    np.testing.assert_allclose(got, m.score_items(users), rtol=1e-5, atol=1e-5)
    R = _new_users(m.n_items_, seed=5)
    r, items = R[0].data.astype(np.float64), R[0].indices
    bu = (r - m.global_mean_ - m.item_bias_[items]).sum() / (4.0 + items.size)
    np.testing.assert_allclose(m.score_new_users(R)[0], m.global_mean_ + bu + m.item_bias_, rtol=1e-5)


def test_converged_als_fold_in_reproduces_training_users(split):
    m = _fit("als", split, rank=4, iterations=60, reg=0.1)
    users = np.flatnonzero(np.diff(m.seen_items().indptr) > 0)[:10]
    np.testing.assert_allclose(m.score_new_users(m.history(users)), m.score_items(users), atol=2e-3)


def test_timesvdpp_fold_in_is_svdpp_at_no_drift(split):
    m = _fit("timesvdpp", split, factors=3, epochs=3, scaling=True)
    R = _new_users(m.n_items_, seed=6)
    got = m.score_new_users(R)
    s = m.settings
    known = np.bincount(m.seen_items().indices, minlength=m.n_items_) > 0
    from recozoo.models.timesvdpp import bin_of
    last = bin_of(np.array([m.default_day_]), m.d_min_, m.d_max_, s.n_bins)[0]
    ib = (m.bi_ + m.bib_[:, last]).astype(np.float64)
    Q, Y = m.Q_.astype(np.float64), m.Y_.astype(np.float64)
    for b in (0, 1, 2, 4):
        items, r = R[b].indices, R[b].data.astype(np.float64)
        items, r = items[known[items]], r[known[items]]
        n = items.size
        z = Y[items].sum(0) / np.sqrt(n)
        t = r - m.mu_ - ib[items] - Q[items] @ z
        x = _ridge(np.hstack([Q[items], np.ones((n, 1))]), t,
                   n * np.r_[np.full(3, s.reg_factors), s.reg_bu])
        want = m.mu_ + x[3] + ib + Q @ (x[:3] + z)
        np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-4)


def test_implicit_als_fold_in_is_the_exact_user_half_step(split):
    m = _fit("als-implicit", split, factors=5, iterations=3, alpha=2.0, reg=0.3)
    R = _new_users(m.n_items_, seed=7)
    got = m.score_new_users(R)
    Y = m.item_factors_.astype(np.float64)
    for b in (0, 1, 2):
        items, r = R[b].indices, R[b].data.astype(np.float64)
        c = 1 + 2.0 * r
        A = Y.T @ Y + 0.3 * np.eye(5) + (Y[items].T * (c - 1)) @ Y[items]
        x = np.linalg.solve(A, Y[items].T @ c)
        np.testing.assert_allclose(got[b], Y @ x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got[3], Y @ m.mean_user_factor_, rtol=1e-5, atol=1e-6)


def test_ease_fold_in_is_x_times_b(split):
    m = _fit("ease", split, reg=5.0)
    users = np.array([1, 2, 3])
    np.testing.assert_allclose(m.score_new_users(m.history(users)), m.score_items(users), rtol=1e-5,
                               atol=1e-6)
    R = _new_users(m.n_items_, seed=8)
    x = (R.toarray() != 0).astype(np.float64)
    want = x @ m.weights_
    want[3] = m.popularity_
    np.testing.assert_allclose(m.score_new_users(R), want, rtol=1e-5, atol=1e-6)


def test_blend_fold_in_is_the_weighted_sum_of_its_components(split):
    m = _fit("blend", split, components="bias; als rank=3 iterations=2")
    assert m.can_fold_in()
    R = _new_users(m.n_items_, seed=11)
    want = m.weights_[0] + sum(w * c.score_new_users(R) for w, c in zip(m.weights_[1:], m.components_))
    np.testing.assert_allclose(m.score_new_users(R), want, rtol=1e-5, atol=1e-5)
    m = _fit("blend", split, components="bias; autorec-i hidden=4 epochs=2")
    assert not m.can_fold_in()
    with pytest.raises(RecozooError, match="cannot score a new user"):
        m.score_new_users(R)


def _forward_np(net, x, act):
    """The autoencoder's forward pass written out in numpy from its weights (eval mode: no dropout)."""
    w = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    h = act(x @ w["w_in"] + w["b_in"])
    n_enc = sum(k.startswith("enc_w.") for k in w)
    for j in range(n_enc):
        h = act(h @ w[f"enc_w.{j}"].T + w[f"enc_b.{j}"])
    for j in range(n_enc):
        h = act(h @ w[f"dec_w.{j}"].T + w[f"dec_b.{j}"])
    return h @ w["w_out"].T + w["b_out"]


def _selu(z):
    return 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(np.minimum(z, 0)))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _without_item_ratings(table, items):
    """``table`` with every rating of ``items`` removed (same id maps): columns never seen in training."""
    from recozoo.data.table import RatingsTable
    keep = ~np.isin(table.items, items)
    return RatingsTable.from_coo(table.users[keep], table.items[keep], table.ratings[keep], None,
                                 user_ids=table.user_ids, item_ids=table.item_ids)


@pytest.mark.parametrize("name,settings_,act", [
    # DeepRec's settings that "auto" would choose from the data pinned to the plain network on raw ratings
    ("deeprec", {"layers": "12,6", "epochs": 3, "optimizer": "adam", "lr": 0.01, "dropout": 0.3, "mode": "user",
                 "activation": "selu", "refeed": 1, "baseline": "none", "batch_size": 128}, _selu),
    ("autorec-u", {"hidden": 8, "epochs": 5, "baseline": "none"}, _sigmoid)])
def test_user_mode_autoencoder_fold_in_is_the_forward_pass(split, name, settings_, act):
    cold = np.array([2, 11])                      # items without training ratings
    train = _without_item_ratings(split.train, cold)
    m = get_model(name)(settings=settings_, seed=1).fit(train)
    assert m.can_fold_in() and get_model(name).folds_in is not FoldIn.NO
    R = _new_users(m.n_items_, seed=8)
    R = sp.csr_matrix((np.r_[R.data, 4.0], np.r_[R.indices, cold[0]], R.indptr + np.r_[0, np.ones(5, int)]),
                      shape=R.shape)          # user 0 also rated a cold item: its entry is left out
    R.sort_indices()
    got = m.score_new_users(R)
    x = R.toarray().astype(np.float64)
    x[:, cold] = 0.0
    want = _forward_np(m.net_, x, act)
    rated = np.diff(R.indptr) > 0
    kept = x != 0
    want[:, cold] = (x.sum(1) / np.maximum(kept.sum(1), 1))[:, None]       # the row's mean rating
    want[~rated] = m.predict(np.full(m.n_items_, -1), np.arange(m.n_items_))   # unknown-user fallback
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # folding a training user's own TRAIN row in gives exactly that user's scores
    users = np.flatnonzero(np.diff(m.seen_items().indptr) > 0)[:9]
    np.testing.assert_array_equal(m.score_new_users(m.history(users)), m.score_items(users))
    items, _ = m.recommend_new_users(R, k=5)
    assert not set(items[0].tolist()) & set(R[0].indices.tolist())


@pytest.mark.parametrize("name,settings_", [("deeprec", {"layers": "8", "epochs": 1, "mode": "item"}),
                                            ("autorec-i", {"hidden": 4, "epochs": 1}),
                                            ("glocal-k", {"layers": "4,4", "pre_epochs": 1, "fine_epochs": 0})])
def test_item_mode_networks_say_they_cannot_fold_in(split, name, settings_):
    m = _fit(name, split, **settings_)
    assert not m.can_fold_in()
    with pytest.raises(RecozooError, match="cannot score a new user.*new input column") as e:
        m.score_new_users(_new_users(m.n_items_))
    assert "\n" not in str(e.value)
    assert get_model("rrn").folds_in is FoldIn.NO and "LSTM" in get_model("rrn").fold_in_method


def test_batched_fold_in_equals_one_user_at_a_time(split):
    for name, st_ in (("als", {"rank": 4, "iterations": 2}), ("biasedmf", {"factors": 4, "epochs": 2}),
                      ("timesvdpp", {"factors": 3, "epochs": 2}), ("pmf", {"factors": 3, "epochs": 2})):
        m = _fit(name, split, **st_)
        R = _new_users(m.n_items_, seed=9, sizes=tuple(range(0, 40, 3)))
        batch = m.score_new_users(R)
        for b in range(R.shape[0]):
            np.testing.assert_allclose(batch[b], m.score_new_users(R[b])[0], rtol=1e-6, atol=1e-6,
                                       err_msg=name)


def test_fold_in_input_checks(split):
    m = _fit("als", split, rank=3, iterations=1)
    with pytest.raises(RecozooError, match="item columns"):
        m.score_new_users(sp.csr_matrix((1, m.n_items_ + 1)))
    bad = sp.csr_matrix(([np.nan], ([0], [1])), shape=(1, m.n_items_))
    with pytest.raises(RecozooError, match="finite"):
        m.score_new_users(bad)
    with pytest.raises(RecozooError, match="twice"):
        m.score_new_user([3, 3], [4.0, 5.0])
    items, scores = m.recommend_new_user([3, 7], [5.0, 1.0], k=5)
    assert not {3, 7} & set(items.tolist()) and np.all(np.diff(scores) <= 0)


def test_every_model_declares_its_fold_in():
    for e in list_models():
        assert isinstance(e.cls.folds_in, FoldIn), e.name
        assert e.cls.fold_in_method and "\n" not in e.cls.fold_in_method, e.name
    rows = {r["name"]: r for r in invoke_json("models")}
    assert rows["als"]["folds_in"] == "yes" and rows["ease"]["folds_in"] == "yes"
    assert rows["autorec-i"]["folds_in"] == "no" and rows["autorec-u"]["folds_in"] == "yes"
    assert rows["deeprec"]["folds_in"] == "depends on settings" and rows["glocal-k"]["folds_in"] == "no"
    assert "fold_in_method" in invoke_json("models", "als")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=6, max_size=6), min_size=1, max_size=5),
       st.integers(1, 6))
def test_top_k_rows_breaks_ties_by_index(rows, k):
    s = np.array(rows, dtype=np.float32)
    s[s == 0] = -np.inf                          # excluded entries, ties among them too
    items, scores = top_k_rows(s, k)
    for r in range(s.shape[0]):
        want = np.lexsort((np.arange(6), -s[r]))[:k]
        assert items[r].tolist() == want.tolist()
        assert scores[r].tolist() == s[r, want].tolist()
