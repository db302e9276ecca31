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
    """(sum of squared errors over non-zero targets, their count) as torch scalars."""
    import torch
    mask = (target != 0).to(pred.dtype)
    sse = torch.sum(((pred - target) * mask) ** 2)
    return sse, mask.sum()


def masked_mse_torch(pred, target):
    """Differentiable masked MSE; 0 (with zero gradient) when nothing is observed."""
    import torch
    sse, n = masked_sse_torch(pred, target)
    return sse / torch.clamp(n, min=1.0)


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.size == 0:
        return float("nan")
    d = pred - truth
    return float(np.sqrt(np.dot(d, d) / d.size))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.size == 0:
        return float("nan")
    return float(np.mean(np.abs(pred - truth)))


# ------------------------------------------------------------------ ranking
# Inputs: ``recommended`` (n_users x k item indices, best first) and ``relevant``,
# a CSR-like pair (indptr, indices) or a list of arrays of held-out positives per user.
# Users without any relevant item must be filtered out by the caller.

def _hits(recommended: np.ndarray, relevant_csr) -> np.ndarray:
    """Boolean (n_users x k): is recommended[u, j] in user u's relevant set."""
    import scipy.sparse as sp
    rec = np.asarray(recommended)
    n, k = rec.shape
    rel = sp.csr_matrix(relevant_csr) if not sp.issparse(relevant_csr) else relevant_csr.tocsr()
    rows = np.repeat(np.arange(n), k)
    return np.asarray(rel[rows, rec.reshape(-1)] != 0).reshape(n, k)


def _n_relevant(relevant_csr) -> np.ndarray:
    return np.diff(relevant_csr.tocsr().indptr).astype(np.float64)


def recall_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean over users of |top-k ∩ relevant| / min(k, |relevant|)."""
    rec = np.asarray(recommended)[:, :k]
    hits = _hits(rec, relevant_csr)
    denom = np.minimum(rec.shape[1], _n_relevant(relevant_csr))
    return float(np.mean(hits.sum(1) / denom)) if rec.shape[0] else float("nan")


def hit_rate_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Share of users with at least one relevant item in the top k."""
    rec = np.asarray(recommended)[:, :k]
    hits = _hits(rec, relevant_csr)
    return float(np.mean(hits.any(1))) if rec.shape[0] else float("nan")


def ndcg_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Binary-relevance NDCG@k, ideal DCG from min(k, |relevant|) hits at the top."""
    rec = np.asarray(recommended)[:, :k]
    kk = rec.shape[1]
    hits = _hits(rec, relevant_csr)
    disc = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = hits @ disc
    n_rel = np.minimum(kk, _n_relevant(relevant_csr)).astype(int)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[n_rel]
    return float(np.mean(dcg / idcg)) if rec.shape[0] else float("nan")


def map_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean average precision at k (AP normalised by min(k, |relevant|))."""
    rec = np.asarray(recommended)[:, :k]
    kk = rec.shape[1]
    hits = _hits(rec, relevant_csr).astype(np.float64)
    prec = np.cumsum(hits, axis=1) / np.arange(1, kk + 1)
    ap = (prec * hits).sum(1) / np.minimum(kk, _n_relevant(relevant_csr))
    return float(np.mean(ap)) if rec.shape[0] else float("nan")


def ranking_metrics(recommended, relevant_csr, k: int) -> dict[str, float]:
    return {f"ndcg@{k}": ndcg_at_k(recommended, relevant_csr, k),
            f"recall@{k}": recall_at_k(recommended, relevant_csr, k),
            f"map@{k}": map_at_k(recommended, relevant_csr, k),
            f"hitrate@{k}": hit_rate_at_k(recommended, relevant_csr, k)}
