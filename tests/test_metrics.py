"""Masked loss and ranking metrics (recozoo.metrics).

Why: the masked MSE is DeepRec's training loss and the RMSE everyone reports;
an unobserved entry that leaks into it (or into its gradient) silently trains
the model towards zero ratings. Ranking metrics are checked against small cases
worked out by hand and against a plain per-user Python version.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recozoo.metrics import (hit_rate_at_k, mae, map_at_k, masked_mse, masked_mse_torch, masked_sse_torch,
                             ndcg_at_k, ranking_metrics, ranking_per_user, recall_at_k,
                             recall_std_at_k, rmse)

FAST = settings(max_examples=80, deadline=None)


@st.composite
def pred_target(draw):
    """A (users x items) prediction and a sparse-ish 0..5 target (0 = unobserved)."""
    shape = draw(st.tuples(st.integers(1, 7), st.integers(1, 9)))
    target = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 0.0, 1.0, 2.5, 4.0, 5.0])))
    pred = draw(hnp.arrays(np.float64, shape, elements=st.floats(-10, 10, allow_nan=False)))
    return pred, target


def _torch_loss(pred: np.ndarray, target: np.ndarray):
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    loss = masked_mse_torch(p, torch.tensor(target, dtype=torch.float64))
    loss.backward()
    return loss, p.grad.numpy()


# ---------------------------------------------------------------- masked loss


@FAST
@given(pred_target(), st.floats(-1e6, 1e6, allow_nan=False))
def test_unobserved_entries_never_change_the_loss(pt, junk):
    pred, target = pt
    mask = target != 0
    other = np.where(mask, pred, junk)
    assert masked_mse(other, target) == masked_mse(pred, target) or (
        np.isnan(masked_mse(other, target)) and not mask.any())
    assert _torch_loss(other, target)[0].item() == _torch_loss(pred, target)[0].item()


def test_non_finite_predictions_at_masked_entries_are_ignored():
    target = np.array([[0.0, 3.0], [4.0, 0.0]])
    pred = np.array([[np.inf, 2.0], [4.5, np.nan]])
    assert masked_mse(pred, target) == pytest.approx((1 + 0.25) / 2)
    loss, grad = _torch_loss(pred, target)
    assert loss.item() == pytest.approx((1 + 0.25) / 2)
    assert grad[0, 0] == 0 and grad[1, 1] == 0 and np.all(np.isfinite(grad))


@FAST
@given(pred_target())
def test_loss_is_plain_mse_over_observed_entries(pt):
    pred, target = pt
    mask = target != 0
    if not mask.any():
        assert math.isnan(masked_mse(pred, target))
        loss, grad = _torch_loss(pred, target)
        assert loss.item() == 0 and np.all(grad == 0)
        return
    plain = float(np.mean((pred[mask] - target[mask]) ** 2))
    assert masked_mse(pred, target) == pytest.approx(plain, rel=1e-12, abs=1e-300)
    # RMSE^2 = MMSE, with rmse over the observed pairs
    assert rmse(pred[mask], target[mask]) ** 2 == pytest.approx(masked_mse(pred, target), rel=1e-12)
    assert mae(pred[mask], target[mask]) == pytest.approx(np.mean(np.abs(pred[mask] - target[mask])))


@FAST
@given(pred_target(), st.data())
def test_loss_is_invariant_under_permuting_users_and_items(pt, data):
    pred, target = pt
    rows = np.array(data.draw(st.permutations(range(pred.shape[0]))), dtype=np.int64)
    cols = np.array(data.draw(st.permutations(range(pred.shape[1]))), dtype=np.int64)
    a = masked_mse(pred, target)
    b = masked_mse(pred[rows][:, cols], target[rows][:, cols])
    assert (math.isnan(a) and math.isnan(b)) or b == pytest.approx(a, rel=1e-12)
    ta = _torch_loss(pred, target)[0].item()
    tb = _torch_loss(pred[rows][:, cols], target[rows][:, cols])[0].item()
    assert tb == pytest.approx(ta, rel=1e-12)


@FAST
@given(pred_target())
def test_torch_gradient_is_zero_exactly_at_masked_entries(pt):
    pred, target = pt
    mask = target != 0
    loss, grad = _torch_loss(pred, target)
    assert np.all(grad[~mask] == 0.0)
    n = max(int(mask.sum()), 1)
    assert np.allclose(grad[mask], 2 * (pred[mask] - target[mask]) / n, rtol=1e-12, atol=1e-15)


@FAST
@given(pred_target())
def test_numpy_and_torch_agree(pt):
    pred, target = pt
    if not (target != 0).any():
        return
    loss, _ = _torch_loss(pred, target)
    assert loss.item() == pytest.approx(masked_mse(pred, target), rel=1e-12)
    sse, n = masked_sse_torch(torch.tensor(pred), torch.tensor(target))
    assert int(n.item()) == int((target != 0).sum())
    assert (sse / n).item() == pytest.approx(masked_mse(pred, target), rel=1e-12)
    # float32 (the training dtype) agrees to float32 precision
    l32 = masked_mse_torch(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert l32.dtype == torch.float32
    assert l32.item() == pytest.approx(masked_mse(pred, target), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_count_and_sum_exactly_enough(dtype):
    # mixed-precision training: the count of observed entries must stay exact
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(40 * 101)
    target[torch.randperm(target.numel(), generator=g)[:2021]] = 3.0
    target = target.reshape(40, 101)
    pred = (target + torch.randn(40, 101, generator=g) * 0.5).to(dtype).requires_grad_()
    sse, n = masked_sse_torch(pred, target.to(dtype))
    assert int(n.item()) == 2021  # not representable in bfloat16 (8 significant bits)
    ref = masked_mse(pred.detach().double().numpy(), target.double().numpy())
    loss = masked_mse_torch(pred, target.to(dtype))
    assert loss.item() == pytest.approx(ref, rel=1e-3)
    loss.backward()
    assert torch.all(pred.grad[target == 0] == 0)


def test_rmse_mae_reject_mismatched_shapes_and_handle_empty():
    assert math.isnan(rmse(np.zeros(0), np.zeros(0))) and math.isnan(mae(np.zeros(0), np.zeros(0)))
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(math.sqrt(2.5))
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        rmse(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError):
        mae(np.zeros(2), np.zeros(3))


# ------------------------------------------------------------------- ranking


def _csr(lists, n_items):
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    cols = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, int)
    return sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(lists), n_items))


def test_hand_computed_small_case():
    rec = np.array([[1, 2, 3], [4, 5, 6]])
    rel = _csr([[2, 7], [9]], 10)
    # user 0: one hit, at rank 2, 2 relevant; user 1: no hit
    assert recall_at_k(rec, rel, 3) == pytest.approx((1 / 2 + 0) / 2)
    assert hit_rate_at_k(rec, rel, 3) == pytest.approx(0.5)
    assert ndcg_at_k(rec, rel, 3) == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3))) / 2)
    assert map_at_k(rec, rel, 3) == pytest.approx(((1 / 2) / 2) / 2)
    # @1 the hit is out of reach
    for f in (recall_at_k, hit_rate_at_k, ndcg_at_k, map_at_k):
        assert f(rec, rel, 1) == 0.0


def test_hand_computed_several_hits():
    rec = np.array([[0, 1, 2, 3]])
    rel = _csr([[0, 2, 3]], 5)
    assert recall_at_k(rec, rel, 4) == pytest.approx(1.0)
    assert ndcg_at_k(rec, rel, 4) == pytest.approx((1 + 1 / 2 + 1 / math.log2(5))
                                                   / (1 + 1 / math.log2(3) + 1 / 2))
    assert map_at_k(rec, rel, 4) == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)
    assert recall_at_k(rec, rel, 2) == pytest.approx(1 / 2)  # 1 hit / min(2, 3)
    assert map_at_k(rec, rel, 2) == pytest.approx(1 / 2)
    assert ndcg_at_k(rec, rel, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    perfect = np.array([[3, 0, 2, 4]])
    for f in (recall_at_k, hit_rate_at_k, ndcg_at_k, map_at_k):
        assert f(perfect, rel, 3) == pytest.approx(1.0)
    assert ranking_metrics(rec, rel, 4) == {
        "ndcg@4": ndcg_at_k(rec, rel, 4), "recall@4": 1.0, "recall_std@4": 1.0,
        "map@4": map_at_k(rec, rel, 4), "hitrate@4": 1.0}
    # the two recalls differ once K < |relevant|: 1 hit of 3 relevant at K = 2
    assert recall_at_k(rec, rel, 2) == pytest.approx(1 / 2)
    assert recall_std_at_k(rec, rel, 2) == pytest.approx(1 / 3)


def test_fewer_recommendations_than_k_still_count_at_k():
    # two recommended items, both relevant, three relevant: recall@5 = 2 / min(5, 3)
    rec = np.array([[0, 1]])
    rel = _csr([[0, 1, 2]], 4)
    assert recall_at_k(rec, rel, 5) == pytest.approx(2 / 3)
    assert map_at_k(rec, rel, 5) == pytest.approx((1 + 1) / 3)
    assert ndcg_at_k(rec, rel, 5) == pytest.approx((1 + 1 / math.log2(3))
                                                   / (1 + 1 / math.log2(3) + 1 / 2))


def test_relevant_as_lists_or_pointer_pair():
    rec = np.array([[1, 2, 3], [4, 5, 6]])
    lists = [np.array([2, 7]), np.array([9])]
    csr = _csr(lists, 10)
    pair = (csr.indptr, csr.indices)
    for f in (recall_at_k, hit_rate_at_k, ndcg_at_k, map_at_k):
        assert f(rec, lists, 3) == f(rec, csr, 3) == f(rec, pair, 3)
    with pytest.raises(ValueError):
        recall_at_k(rec, [np.array([1])], 3)  # one user's positives for two users


def _naive(rec_row, rel_set, k):
    top = list(rec_row[:k])
    hits = [1.0 if x in rel_set else 0.0 for x in top]
    m = min(k, len(rel_set))
    recall = sum(hits) / m
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(m))
    ap = sum(sum(hits[:j + 1]) / (j + 1) for j, h in enumerate(hits) if h) / m
    return recall, dcg / idcg, ap, float(any(hits)), sum(hits) / len(rel_set)


@FAST
@given(st.integers(1, 6), st.integers(5, 15), st.integers(1, 6), st.data())
def test_ranking_metrics_match_a_naive_per_user_version(n_users, n_items, k, data):
    rec = np.array([data.draw(st.permutations(range(n_items)))[:k] for _ in range(n_users)])
    rel = [sorted(data.draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=n_items)))
           for _ in range(n_users)]
    got = ranking_metrics(rec, _csr(rel, n_items), k)
    ref = np.mean([_naive(rec[u], set(rel[u]), k) for u in range(n_users)], axis=0)
    assert got[f"recall@{k}"] == pytest.approx(ref[0])
    assert got[f"ndcg@{k}"] == pytest.approx(ref[1])
    assert got[f"map@{k}"] == pytest.approx(ref[2])
    assert got[f"hitrate@{k}"] == pytest.approx(ref[3])
    assert got[f"recall_std@{k}"] == pytest.approx(ref[4])
    assert all(0 <= v <= 1 + 1e-12 for v in got.values())
    # per user too, at several cut-offs from one ranking (users with fewer positives than K included)
    per = ranking_per_user(rec, _csr(rel, n_items), [1, k])
    for kk in (1, k):
        ref = np.array([_naive(rec[u], set(rel[u]), kk) for u in range(n_users)])
        for j, name in enumerate(("recall", "ndcg", "map", "hitrate", "recall_std")):
            np.testing.assert_allclose(per[f"{name}@{kk}"], ref[:, j], rtol=1e-12)


def test_explicit_zeros_and_duplicates_in_relevant_are_not_extra_items():
    rec = np.array([[0, 1, 2]])
    rel = sp.csr_matrix((np.array([1.0, 0.0, 1.0]), np.array([0, 1, 0]), np.array([0, 3])), shape=(1, 3))
    before = rel.data.copy()
    # relevant = {0}: one hit at rank 1, |relevant| = 1
    assert recall_at_k(rec, rel, 3) == 1.0 and ndcg_at_k(rec, rel, 3) == 1.0 and map_at_k(rec, rel, 3) == 1.0
    assert np.array_equal(rel.data, before)  # the caller's matrix is left alone
    assert recall_at_k(np.array([[-1, 0]]), [np.array([0, 2])], 2) == 0.5  # -1 padding is a miss
