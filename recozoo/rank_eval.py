"""The ranking evaluator: full ranking of every scored user, in blocks, one pass for all cut-offs.

:func:`rank_part` ranks *all* items for each user of a part (no sampled
negatives), removes everything known before that part, keeps the top
``max(ks)`` with :func:`recozoo.topk.top_k_rows` (ties to the lower item index)
and scores the lists against the part's positives with the definitions of
:mod:`recozoo.metrics` — per user, so that comparisons can bootstrap them.

Who is scored, and how (docs/evaluation.md):

* **held-out users** (splits with a fold-in part, i.e. strong
  generalisation): each user of the part with a scored interaction, through
  the model's fold-in of the user's fold-in part
  (:meth:`~recozoo.models.base.Model.score_new_users`, the path that serves a
  brand-new user online). Excluded from the ranking: the fold-in part.
* **known users** (every other protocol): each user with a TRAIN rating and a
  positive in the part, through :meth:`~recozoo.models.base.Model.score_items`.
  Excluded: everything known before the part — TRAIN when VALID is scored,
  TRAIN ∪ VALID when TEST is — whatever the model itself was fitted on, so a
  model refitted on TRAIN ∪ VALID and a plain one are ranked alike.

Positives: every interaction on implicit splits (``info["implicit"]`` or a
fold-in part); a rating ``>= threshold`` on rated ones.

Cost: users go in blocks of about 16M scores (64 MiB of float32); each block is
ranked in chunks of :data:`ROWS` users on ``threads`` threads (numpy releases the
GIL); nothing loops in Python per user.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recozoo.errors import RecozooError
from recozoo.metrics import coverage_at_k, per_user_from_hits, popularity_per_user
from recozoo.splits import Split
from recozoo.topk import top_k_rows

__all__ = ["RankedPart", "rank_part", "rank_scores", "evaluate_ranking", "default_ks", "is_implicit",
           "BLOCK_SCORES", "IMPLICIT_KS"]

#: scores held at once per block (users x items)
BLOCK_SCORES = 1 << 24
#: users ranked together inside a block (one thread's job)
ROWS = 64
#: the cut-offs of the implicit-feedback literature (NDCG@100, Recall@20, Recall@50; Liang et al. 2018)
IMPLICIT_KS = (20, 50, 100)


@dataclass
class RankedPart:
    """One part ranked: the users scored, per-user metric values, and the summary figures."""

    part: str
    #: the users scored (ascending indices)
    users: np.ndarray
    ks: tuple[int, ...]
    #: each user's top ``max(ks)`` item indices, best first (-1 where fewer items could be ranked)
    items: np.ndarray
    #: "ndcg@100" -> one float64 per user of :attr:`users` (also "popularity@K")
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    #: means, coverage@K, counts and seconds (what a run summary stores)
    summary: dict[str, Any] = field(default_factory=dict)


def is_implicit(split: Split) -> bool:
    """Whether every stored interaction of the split is a positive (binarised or held-out users)."""
    return bool(split.info.get("implicit")) or split.has_fold_in


def default_ks(split: Split) -> tuple[int, ...]:
    """The cut-offs a run reports: :data:`IMPLICIT_KS` on implicit splits, 10 on rated ones."""
    return IMPLICIT_KS if is_implicit(split) else (10,)


def _positives(split: Split, part: str, threshold: float | None) -> sp.csr_matrix:
    """The part's positives as a (users x items) CSR of ones, built from copies (the split's arrays
    may be read-only memory maps)."""
    csr = split.table(part).to_csr()
    data = np.asarray(csr.data)
    keep = data != 0 if threshold is None else data >= threshold
    before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    indptr = before[np.asarray(csr.indptr, dtype=np.int64)]
    return sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), np.asarray(csr.indices)[keep],
                          indptr), shape=csr.shape)


def _known_before(split: Split, part: str) -> tuple[sp.csr_matrix, str]:
    """What is excluded from each user's ranking when ``part`` is scored, and its name."""
    if split.has_fold_in:
        return split.fold_in(part).to_csr(), f"{part}_fold_in"
    known = split.train.to_csr()
    if part == "test" and split.valid is not None and split.valid.nnz:
        return (known + split.valid.to_csr()).tocsr(), "train+valid"
    return known, "train"


def _scored_users(split: Split, part: str, pos: sp.csr_matrix) -> np.ndarray:
    has_pos = np.diff(pos.indptr) > 0
    if split.has_fold_in:
        users = split.held_out_users(part)
        return users[has_pos[users]]
    return np.flatnonzero(has_pos & (split.train.user_counts() > 0))


def _block_scores(model, users: np.ndarray, fold_in: sp.csr_matrix | None) -> np.ndarray:
    if fold_in is None:
        out = np.asarray(model.score_items(users), dtype=np.float32)
    else:
        out = np.asarray(model.score_new_users(fold_in[users]), dtype=np.float32)
    return out if out.flags.writeable else out.copy()   # excluded items are set to -inf in place


def _rank_rows(scores: np.ndarray, known: sp.csr_matrix, pos: sp.csr_matrix, k: int):
    """Top-k items and their hits for a few rows: ``known`` items excluded, an excluded or NaN-scored
    slot (a list shorter than k) never a hit nor an item (-1)."""
    n = scores.shape[1]
    rows = np.repeat(np.arange(known.shape[0]), np.diff(known.indptr))
    scores[rows, known.indices] = -np.inf
    items, top = top_k_rows(scores, k)
    ok = top > -np.inf
    # hits: each (row, item) looked up among the positives' sorted (row, item) keys
    keys = np.repeat(np.arange(pos.shape[0], dtype=np.int64), np.diff(pos.indptr)) * n + pos.indices
    want = np.arange(items.shape[0], dtype=np.int64)[:, None] * n + items
    at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
    hits = (keys[at] == want) & ok if keys.size else np.zeros(items.shape, dtype=bool)
    return np.where(ok, items, -1), hits


def rank_scores(scores: np.ndarray, known: sp.csr_matrix, pos: sp.csr_matrix, ks) -> dict[str, np.ndarray]:
    """Per-user metrics at every K of ``ks`` for rows of scores ranked exactly as :func:`rank_part`
    ranks (``known`` items excluded, ties to the lower index) against the rows of ``pos``.

    What a training loop that selects epochs on a ranking metric calls on its own scores (Mult-VAE on
    held-out VALID users), so that the figure it selects on is the one the evaluator reports.
    ``scores`` is modified (excluded items set to -inf).
    """
    ks = sorted({int(k) for k in ks})
    _, hits = _rank_rows(scores, known, pos, min(ks[-1], scores.shape[1]))
    n_rel = np.diff(pos.indptr).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out.update(per_user_from_hits(hits, n_rel, k))
    return out


def rank_part(model, split: Split, part: str = "test", ks=(10,), *, threshold: float = 4.0,
              threads: int | None = None, block: int | None = None) -> RankedPart:
    """Rank every scored user of ``part`` over all items; per-user metrics at every K of ``ks``."""
    if part not in ("valid", "test"):
        raise RecozooError(f"ranking metrics are computed on valid or test, not {part!r}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise RecozooError(f"ranking cut-offs must be >= 1, got {list(ks)}")
    implicit = is_implicit(split)
    pos = _positives(split, part, None if implicit else threshold)
    known, excluded = _known_before(split, part)
    users = _scored_users(split, part, pos)
    fold_in = known if split.has_fold_in else None
    if fold_in is not None and not model.can_fold_in():
        raise RecozooError(f"{model.name} cannot fold in held-out users ({model.fold_in_method}); "
                           f"{split.name} scores them through their fold-in part")
    n_items = split.train.n_items
    kmax = min(ks[-1], n_items)
    t0 = time.perf_counter()
    items, hits = _rank_blocks(model, users, known, pos, fold_in, kmax, n_items, threads, block)
    seconds = time.perf_counter() - t0
    n_rel = np.diff(pos.indptr)[users].astype(np.float64)
    per_user: dict[str, np.ndarray] = {}
    pop = _item_popularity(split)
    for k in ks:
        per_user.update(per_user_from_hits(hits, n_rel, k))
        per_user[f"popularity@{k}"] = popularity_per_user(items, pop, k)
    summary: dict[str, Any] = {
        "part": part, "k": ks[-1], "ks": list(ks), "threshold": None if implicit else threshold,
        "n_users": int(users.size), "scored_by": "fold-in" if fold_in is not None else "known users",
        "excluded": excluded, "recommend_seconds": seconds}
    for name, v in per_user.items():
        summary[name] = float(np.mean(v)) if v.size else float("nan")
    for k in ks:
        summary[f"coverage@{k}"] = coverage_at_k(items, n_items, k) if users.size else float("nan")
    return RankedPart(part, users, ks, items, per_user, summary)


def _rank_blocks(model, users, known, pos, fold_in, k, n_items, threads, block):
    """(items, hits), each (users x k): scores block by block, each block ranked in chunks of
    :data:`ROWS` users spread over ``threads`` threads (chunks keep the masks in cache)."""
    threads = max(1, int(threads or min(2, _cpus())))
    step = int(block or max(1, BLOCK_SCORES // max(n_items, 1)))
    items = np.full((users.size, k), -1, dtype=np.int64)
    hits = np.zeros((users.size, k), dtype=bool)
    with ThreadPoolExecutor(threads) as pool:
        for s in range(0, users.size, step):
            u = users[s:s + step]
            scores = _block_scores(model, u, fold_in)
            if scores.shape != (u.size, n_items):
                raise RecozooError(f"{model.name}: scores of shape {scores.shape}, expected "
                                   f"{(u.size, n_items)}")
            starts = range(0, u.size, ROWS)
            done = pool.map(lambda a: _rank_rows(scores[a:a + ROWS], known[u[a:a + ROWS]],
                                                 pos[u[a:a + ROWS]], k), starts)
            for a, (it, h) in zip(starts, done):
                items[s + a:s + a + it.shape[0]], hits[s + a:s + a + it.shape[0]] = it, h
    return items, hits


def _item_popularity(split: Split) -> np.ndarray:
    """Share of training users who interacted with each item."""
    n_train_users = max(int(np.count_nonzero(split.train.user_counts())), 1)
    return split.train.item_counts().astype(np.float64) / n_train_users


def _cpus() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # (not on every platform)
        return os.cpu_count() or 1


def evaluate_ranking(model, split: Split, part: str = "test", *, k: int = 10, ks=None,
                     threshold: float = 4.0) -> dict[str, Any]:
    """The summary of :func:`rank_part` at ``k`` (or every K of ``ks``): metric means, coverage,
    mean popularity, the users counted and the seconds spent ranking."""
    return rank_part(model, split, part, ks if ks is not None else (k,), threshold=threshold).summary
