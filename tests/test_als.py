"""ALS-WR (recozoo.models.als): the batched solves are the exact ridge solutions,
and the model learns something real on ML-100K."""

from __future__ import annotations

import numpy as np
import pytest

from recozoo.evaluate import evaluate
from recozoo.models.als import ALS, solve_ridge_rows
from recozoo.models.baselines import GlobalMean


def test_batched_solves_match_direct_least_squares():
    """Every row's solution equals lstsq on [F_I; sqrt(λ n) I] x = [t; 0] (a small dense problem)."""
    rng = np.random.default_rng(3)
    n_rows, n_cols, d, reg = 7, 9, 4, 0.3
    mask = rng.random((n_rows, n_cols)) < 0.6
    mask[2] = False                      # a row without observations gets 0
    targets_dense = rng.normal(3, 1, (n_rows, n_cols))
    feats = rng.normal(0, 1, (n_cols, d))
    indptr = np.concatenate([[0], np.cumsum(mask.sum(1))])
    cols = np.nonzero(mask)[1]
    targets = targets_dense[mask]
    got = solve_ridge_rows(indptr, cols, targets, feats, reg)
    for r in range(n_rows):
        idx = np.flatnonzero(mask[r])
        if idx.size == 0:
            assert np.all(got[r] == 0)
            continue
        A = np.vstack([feats[idx], np.sqrt(reg * idx.size) * np.eye(d)])
        b = np.concatenate([targets_dense[r, idx], np.zeros(d)])
        want = np.linalg.lstsq(A, b, rcond=None)[0]
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-10)


def test_solves_are_blocked_without_changing_the_result(monkeypatch):
    """Tiny memory budget -> many blocks; same answer as one block."""
    import recozoo.models.als as als
    rng = np.random.default_rng(0)
    indptr = np.concatenate([[0], np.cumsum(rng.integers(0, 5, 50))])
    cols = rng.integers(0, 20, indptr[-1])
    t = rng.normal(size=indptr[-1])
    f = rng.normal(size=(20, 3))
    one = solve_ridge_rows(indptr, cols, t, f, 0.1)
    monkeypatch.setattr(als, "_GRAM_BLOCK_BYTES", 8 * 9 * 4)   # 4 rows per block
    np.testing.assert_allclose(solve_ridge_rows(indptr, cols, t, f, 0.1), one, rtol=1e-12)


def test_objective_never_increases():
    """ALS is coordinate descent on the weighted-λ objective: each pass lowers it."""
    from recozoo.data.synthetic import generate
    table = generate(n_users=150, n_items=80, n_ratings=3000, seed=1)
    objs = []
    for it in (1, 2, 4, 8):
        m = ALS(settings={"rank": 5, "reg": 0.1, "iterations": it, "biases": False}, seed=0).fit(table)
        u, i, r = table.users, table.items, table.ratings.astype(np.float64)
        X, Y = m.user_factors_.astype(np.float64), m.item_factors_.astype(np.float64)
        err = np.sum((r - np.einsum("ij,ij->i", X[u], Y[i])) ** 2)
        pen = 0.1 * (np.sum(table.user_counts() * (X ** 2).sum(1))
                     + np.sum(table.item_counts() * (Y ** 2).sum(1)))
        objs.append(err + pen)
    assert all(b <= a * (1 + 1e-5) for a, b in zip(objs, objs[1:])), objs


@pytest.mark.parametrize("biases", [True, False])
def test_beats_global_mean_on_ml100k_valid(ml100k_split, biases):
    split = ml100k_split
    base = evaluate(GlobalMean().fit(split.train), split, "valid")["rmse"]
    m = ALS(settings={"rank": 10, "reg": 0.12, "iterations": 6, "biases": biases}, seed=0)
    got = evaluate(m.fit(split.train), split, "valid")["rmse"]
    assert got < base - 0.05, (got, base)


def test_cold_pairs_get_the_documented_fallback(ml100k_split):
    m = ALS(settings={"rank": 4, "iterations": 2}, seed=0).fit(ml100k_split.train)
    cold_items = np.flatnonzero(ml100k_split.train.item_counts() == 0)
    assert cold_items.size  # u1.test holds items u1.base lacks
    p = m.predict(np.zeros(cold_items.size, np.int64), cold_items)
    np.testing.assert_allclose(p, m.offset_ + m.user_bias_[0], rtol=1e-6)
