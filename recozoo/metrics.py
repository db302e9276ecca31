"""Rating and ranking metrics, in numpy and (for losses) torch.

Masked MSE is the loss of the DeepRec paper and of AutoRec: only entries whose
*target* is non-zero count, and the sum of their squared errors is divided by
their count. ``RMSE = sqrt(MMSE)``. The torch version is differentiable and its
gradient is exactly zero at masked entries.
"""

from __future__ import annotations

import numpy as np

__all__ = ["masked_mse", "masked_mse_torch", "masked_sse_torch", "rmse", "mae",
           "recall_at_k", "recall_std_at_k", "ndcg_at_k", "map_at_k", "hit_rate_at_k", "ranking_metrics",
           "ranking_hits", "per_user_from_hits", "ranking_per_user", "RANKING_METRICS", "coverage_at_k",
           "popularity_per_user"]


def masked_mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over entries with ``target != 0`` (nan if there are none)."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mask = target != 0
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    d = (pred - target)[mask]
    return float(np.sum(d * d) / n)      # not np.dot: see rmse


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


def _errors(pred: np.ndarray, truth: np.ndarray, what: str) -> np.ndarray:
    """``pred - truth`` in float64, once their shapes are checked equal."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    # broadcasting (n,1) against (n,) would silently score n*n pairs
    if pred.shape != truth.shape:
        raise ValueError(f"{what}: predictions {pred.shape} and truth {truth.shape} differ in shape")
    return pred - truth


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    d = _errors(pred, truth, "rmse").reshape(-1)
    if d.size == 0:
        return float("nan")
    # numpy's pairwise sum, not np.dot: BLAS splits a long dot product across its threads, so
    # its last bits depend on the thread count, and `compare --jobs N` (cores // N threads per
    # worker) must give the table of the sequential run to the last digit
    return float(np.sqrt(np.sum(d * d) / d.size))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    d = _errors(pred, truth, "mae")
    if d.size == 0:
        return float("nan")
    return float(np.mean(np.abs(d)))


# ------------------------------------------------------------------ ranking
# Inputs: ``recommended`` (n_users x k item indices, best first; -1 pads a short
# list) and ``relevant``, the scored positives per user: a scipy sparse matrix
# (users x items), a CSR-like pair (indptr, indices), or a list of arrays (one
# per user). Users without any relevant item must be filtered out by the caller.
#
# Definitions (docs/evaluation.md; PROTOCOLS.md rule 6). With hits h_1..h_K (1 if
# the item at rank j is relevant), R relevant items and m = min(K, R):
#   ndcg@K       = sum_j h_j / log2(j + 1)  /  sum_{j<=m} 1 / log2(j + 1)
#   recall@K     = sum_j h_j / m   (Liang et al. 2018's Recall@K: the published figures)
#   recall_std@K = sum_j h_j / R   (the standard recall; Dacrema et al. 2019)
#   map@K        = sum_j h_j * precision@j / m
#   hitrate@K    = 1 if any h_j else 0
# "@K" uses K (not the number of columns given) in the denominators, so a list
# shorter than K is not rewarded for being short.

#: the per-user ranking metrics, in the order they are reported
RANKING_METRICS = ("ndcg", "recall", "recall_std", "map", "hitrate")


def _relevant_csr(relevant, n_users: int, n_items_seen: int):
    """The relevant sets as a canonical CSR matrix with one row per recommended user."""
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


def ranking_hits(recommended, relevant) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, n_relevant)``: whether each recommended item is relevant (bool, the shape of
    ``recommended``) and the number of relevant items per user (float64)."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError("recommended must be a 2-d array (users x ranked items)")
    n, cols = rec.shape
    rel = _relevant_csr(relevant, n, int(rec.max()) + 1 if rec.size else 0)
    n_cols = rel.shape[1]
    valid = (rec >= 0) & (rec < n_cols)   # -1 padding is a miss, never the last item
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(rel.indptr))
    rel_keys = rows * n_cols + rel.indices          # sorted: the CSR is canonical
    rec_keys = np.arange(n, dtype=np.int64)[:, None] * n_cols + np.where(valid, rec, 0)
    hits = np.isin(rec_keys, rel_keys, assume_unique=False) & valid
    return hits, np.diff(rel.indptr).astype(np.float64)


def per_user_from_hits(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every metric of :data:`RANKING_METRICS` at ``k``, one float64 value per user (keys "ndcg@k" ...).

    ``hits`` is (users x at least min(k, columns)) in rank order; users with
    ``n_rel == 0`` give nan (the caller filters them out)."""
    h = np.asarray(hits[:, :k], dtype=np.float64)
    n_rel = np.asarray(n_rel, dtype=np.float64)
    m = np.minimum(k, n_rel)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[m.astype(np.int64)]
    n_hit = h.sum(1)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {f"ndcg@{k}": (h @ disc[:h.shape[1]]) / idcg,
                f"recall@{k}": n_hit / m,
                f"recall_std@{k}": n_hit / n_rel,
                f"map@{k}": (prec * h).sum(1) / m,
                f"hitrate@{k}": (n_hit > 0).astype(np.float64)}


def ranking_per_user(recommended, relevant, ks) -> dict[str, np.ndarray]:
    """Per-user values of every ranking metric at every cut-off in ``ks`` (one ranking, many K)."""
    hits, n_rel = ranking_hits(recommended, relevant)
    out: dict[str, np.ndarray] = {}
    for k in sorted({int(k) for k in ks}):
        out.update(per_user_from_hits(hits, n_rel, k))
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _one(name: str, recommended, relevant, k: int | None) -> float:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError("recommended must be a 2-d array (users x ranked items)")
    kk = rec.shape[1] if k is None else int(k)
    return _mean(ranking_per_user(rec[:, :kk], relevant, [kk])[f"{name}@{kk}"])


def recall_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean over users of |top-k ∩ relevant| / min(k, |relevant|) (Liang et al.'s Recall@K)."""
    return _one("recall", recommended, relevant_csr, k)


def recall_std_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant| (the standard recall)."""
    return _one("recall_std", recommended, relevant_csr, k)


def hit_rate_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Share of users with at least one relevant item in the top k."""
    return _one("hitrate", recommended, relevant_csr, k)


def ndcg_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Binary-relevance NDCG@k, ideal DCG from min(k, |relevant|) hits at the top."""
    return _one("ndcg", recommended, relevant_csr, k)


def map_at_k(recommended, relevant_csr, k: int | None = None) -> float:
    """Mean average precision at k (AP normalised by min(k, |relevant|))."""
    return _one("map", recommended, relevant_csr, k)


def ranking_metrics(recommended, relevant_csr, k: int) -> dict[str, float]:
    """Means over users of every metric of :data:`RANKING_METRICS` at ``k``."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError("recommended must be a 2-d array (users x ranked items)")
    return {name: _mean(v) for name, v in ranking_per_user(rec[:, :k], relevant_csr, [k]).items()}


# ------------------------------------------------------------ beyond accuracy

def coverage_at_k(recommended, n_items: int, k: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one user's top ``k``."""
    rec = np.asarray(recommended)[:, :k]
    rec = rec[(rec >= 0) & (rec < n_items)]
    return float(np.unique(rec).size / n_items) if n_items else float("nan")


def popularity_per_user(recommended, item_popularity: np.ndarray, k: int) -> np.ndarray:
    """Mean popularity of each user's top-``k`` items (``item_popularity[i]``: the share of
    training users who interacted with item i); -1 padding is skipped."""
    rec = np.asarray(recommended)[:, :k]
    pop = np.asarray(item_popularity, dtype=np.float64)
    ok = (rec >= 0) & (rec < pop.size)
    vals = np.where(ok, pop[np.where(ok, rec, 0)], 0.0)
    with np.errstate(invalid="ignore"):
        return vals.sum(1) / ok.sum(1)
