"""Rating and ranking metrics, in numpy and (for losses) torch.

Masked MSE is the loss of the DeepRec paper and of AutoRec: only entries whose
*target* is non-zero count, and the sum of their squared errors is divided by
their count. ``RMSE = sqrt(MMSE)``. The torch version is differentiable and its
gradient is exactly zero at masked entries.
"""

from __future__ import annotations

import numpy as np

__all__ = ["masked_mse", "masked_mse_torch", "masked_sse_torch", "rmse", "mae",
           "recall_at_k", "ndcg_at_k", "map_at_k", "hit_rate_at_k", "ranking_metrics"]


def masked_mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over entries with ``target != 0`` (nan if there are none)."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mask = target != 0
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    d = (pred - target)[mask]
    return float(np.dot(d, d) / n)


def masked_sse_torch(pred, target):
    """(sum of squared errors over non-zero targets, their count) as torch scalars.

    Masked entries are *selected away* (``torch.where``), not multiplied by 0, so
    an inf/nan prediction there cannot turn the loss into nan and their
    gradient is exactly 0. Half-precision inputs (mixed-precision training) are
    summed and counted in float32: bfloat16 cannot even count past 256 exactly.
    """
    import torch
    mask = target != 0
    acc = torch.promote_types(pred.dtype, torch.float32)
    diff = torch.where(mask, pred.to(acc) - target.to(acc), torch.zeros((), dtype=acc, device=pred.device))
    sse = torch.sum(diff * diff)
    return sse, mask.sum().to(acc)


def masked_mse_torch(pred, target):
    """Differentiable masked MSE; 0 (with zero gradient) when nothing is observed."""
    import torch
    sse, n = masked_sse_torch(pred, target)
    return sse / torch.clamp(n, min=1.0)


def _same_shape(pred: np.ndarray, truth: np.ndarray, what: str) -> None:
    # broadcasting (n,1) against (n,) would silently score n*n pairs
    if pred.shape != truth.shape:
        raise ValueError(f"{what}: predictions {pred.shape} and truth {truth.shape} differ in shape")


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    _same_shape(pred, truth, "rmse")
    if pred.size == 0:
        return float("nan")
    d = (pred - truth).reshape(-1)
    return float(np.sqrt(np.dot(d, d) / d.size))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    _same_shape(pred, truth, "mae")
    if pred.size == 0:
        return float("nan")
    return float(np.mean(np.abs(pred - truth)))


# ------------------------------------------------------------------ ranking
# Inputs: ``recommended`` (n_users x k item indices, best first) and ``relevant``,
# the held-out positives per user: a scipy sparse matrix (users x items), a
# CSR-like pair (indptr, indices), or a list of arrays (one per user).
# Users without any relevant item must be filtered out by the caller.
# Metrics "@k" use k (not the number of columns given) in their denominators,
# so a list shorter than k is not rewarded for being short.

def _relevant_csr(relevant, n_users: int, n_items_seen: int):
    """The relevant sets as a CSR matrix with one row per recommended user."""
    import scipy.sparse as sp
    if sp.issparse(relevant):
        rel = relevant.tocsr()
    elif isinstance(relevant, tuple) and len(relevant) == 2:
        indptr, indices = (np.asarray(a, dtype=np.int64) for a in relevant)
        n_cols = max(n_items_seen, int(indices.max()) + 1 if indices.size else 0)
        rel = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(indptr.size - 1, n_cols))
    else:
        rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in relevant]
        cols = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        n_cols = max(n_items_seen, int(cols.max()) + 1 if cols.size else 0)
        rel = sp.csr_matrix((np.ones(cols.size), (np.repeat(np.arange(len(rows)), [r.size for r in rows]),
                                                  cols)), shape=(len(rows), n_cols))
    if rel.shape[0] != n_users:
        raise ValueError(f"relevant sets for {rel.shape[0]} users, recommendations for {n_users}")
    if not rel.has_canonical_format or (rel.data == 0).any():
        rel = rel.copy()  # never modify the caller's matrix
        rel.sum_duplicates()
        rel.eliminate_zeros()  # an explicit 0 is not a relevant item
    return rel


def _prepare(recommended, relevant, k: int | None):
    """(top-k recommendations, hits (n_users x k'), |relevant| per user, k)."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError("recommended must be a 2-d array (users x ranked items)")
    rec = rec[:, :k]
    kk = rec.shape[1] if k is None else int(k)
    n, cols = rec.shape
    rel = _relevant_csr(relevant, n, int(rec.max()) + 1 if rec.size else 0)
    valid = (rec >= 0) & (rec < rel.shape[1])   # -1 padding is a miss, never the last item
    hits = np.zeros((n, cols), dtype=bool)
    if valid.any():
        r, c = np.nonzero(valid)
        hits[r, c] = np.asarray(rel[r, rec[r, c]]).reshape(-1) != 0
    n_rel = np.diff(rel.indptr).astype(np.float64)
    return rec, hits, n_rel, kk


def recall_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean over users of |top-k ∩ relevant| / min(k, |relevant|)."""
    rec, hits, n_rel, kk = _prepare(recommended, relevant_csr, k)
    return float(np.mean(hits.sum(1) / np.minimum(kk, n_rel))) if rec.shape[0] else float("nan")


def hit_rate_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Share of users with at least one relevant item in the top k."""
    rec, hits, _, _ = _prepare(recommended, relevant_csr, k)
    return float(np.mean(hits.any(1))) if rec.shape[0] else float("nan")


def ndcg_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Binary-relevance NDCG@k, ideal DCG from min(k, |relevant|) hits at the top."""
    rec, hits, n_rel, kk = _prepare(recommended, relevant_csr, k)
    disc = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = hits @ disc[:hits.shape[1]]
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(kk, n_rel).astype(int)]
    return float(np.mean(dcg / idcg)) if rec.shape[0] else float("nan")


def map_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean average precision at k (AP normalised by min(k, |relevant|))."""
    rec, hits, n_rel, kk = _prepare(recommended, relevant_csr, k)
    h = hits.astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    ap = (prec * h).sum(1) / np.minimum(kk, n_rel)
    return float(np.mean(ap)) if rec.shape[0] else float("nan")


def ranking_metrics(recommended, relevant_csr, k: int) -> dict[str, float]:
    return {f"ndcg@{k}": ndcg_at_k(recommended, relevant_csr, k),
            f"recall@{k}": recall_at_k(recommended, relevant_csr, k),
            f"map@{k}": map_at_k(recommended, relevant_csr, k),
            f"hitrate@{k}": hit_rate_at_k(recommended, relevant_csr, k)}
