"""RRN's step sequences: which (entity, time step) pairs exist, and batches of them in packed layout.

A *side* is the users or the movies. Its history becomes one sequence of time
steps per entity (steps without a rating skipped); a batch of sequences is laid
out time-major, longest first, as ``pack_padded_sequence`` does, so the LSTM
advances all active sequences of a time step at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Side", "Layout", "ranges", "length_batches"]


class Side:
    """One side's step sequences (users or movies) built from a history table.

    Pairs (entity, step) with at least one rating, sorted by entity then step;
    ``seq_indptr`` gives each entity's pairs; the bag arrays hold each pair's
    ratings of the other side, for the ``EmbeddingBag``.
    """

    def __init__(self, ent, other, r, days, n_ent, width, d0, mu, t_mean, t_std):
        self.width, self.d0, self.n_ent = width, d0, n_ent
        self.t_mean, self.t_std = t_mean, t_std
        step = np.floor_divide(days - d0, width)
        self.smin = int(step.min()) if step.size else 0
        self.K = (int(step.max()) - self.smin + 2) if step.size else 2
        key = ent.astype(np.int64) * self.K + (step - self.smin)
        self.keys, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
        self.pair_ent = self.keys // self.K
        self.pair_step = self.keys % self.K + self.smin
        self.seq_indptr = np.zeros(n_ent + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.pair_ent, minlength=n_ent), out=self.seq_indptr[1:])
        cnt = np.bincount(inv, minlength=self.keys.size)
        self.pair_indptr = np.zeros(self.keys.size + 1, dtype=np.int64)
        np.cumsum(cnt, out=self.pair_indptr[1:])
        o = np.argsort(inv, kind="stable")
        self.bag_idx = other[o].astype(np.int64)
        self.bag_w = ((r[o] - mu) / np.sqrt(cnt[inv[o]])).astype(np.float32)
        self.bag_ind = (1.0 / np.sqrt(cnt[inv[o]])).astype(np.float32)
        self.bag_r = (r[o] - mu).astype(np.float32)          # centred ratings, bag order
        self.rating_pair = inv                       # pair of each input rating
        self.pair_time = self.std_time(self.pair_step)

    def std_time(self, step) -> np.ndarray:
        day = self.d0 + np.asarray(step, dtype=np.float64) * self.width
        return ((day - self.t_mean) / self.t_std).astype(np.float32)

    def prev_pair(self, ent: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Index of the entity's last pair with step < tau, or -1."""
        t = np.clip(tau, self.smin, self.smin + self.K - 1) - self.smin
        pos = np.searchsorted(self.keys, ent * self.K + t, side="left") - 1
        ok = (pos >= 0) & (pos >= self.seq_indptr[ent])
        return np.where(ok, pos, -1)


def ranges(indptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(indptr[i], indptr[i+1])`` for every ``i`` in ``ids``."""
    starts = indptr[ids]
    lens = indptr[ids + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = starts - np.concatenate([[0], np.cumsum(lens)[:-1]])
    return np.repeat(shift, lens) + np.arange(total, dtype=np.int64)


class Layout:
    """A batch of entities' step sequences in packed (time-major) layout.

    Entities are ordered by decreasing length, so at time ``j`` the active
    sequences are the first ``batch_sizes[j]`` ones — the layout
    ``pack_padded_sequence`` builds. ``pairs`` are the batch's (entity, step)
    pairs in entity-major order; ``packed[k]`` is where pair ``k`` sits.
    """

    def __init__(self, side: Side, ents: np.ndarray):
        lens = side.seq_indptr[ents + 1] - side.seq_indptr[ents]
        order = np.argsort(-lens, kind="stable")
        self.ents, lens = ents[order], lens[order]
        self.pairs = ranges(side.seq_indptr, self.ents)
        row = np.repeat(np.arange(self.ents.size), lens)
        self.pos = self.pairs - np.repeat(side.seq_indptr[self.ents], lens)
        self.batch_sizes = np.bincount(self.pos, minlength=int(lens.max()) if lens.size else 0)
        self.offsets = np.concatenate([[0], np.cumsum(self.batch_sizes)])
        self.packed = self.offsets[self.pos] + row
        # packed row of each packed row's previous step (same sequence), -1 on a first step
        prev = np.full(self.packed.size, -1, dtype=np.int64)
        later = self.pos > 0
        prev[self.packed[later]] = self.offsets[self.pos[later] - 1] + row[later]
        self.prev_rows = prev


def length_batches(ents: np.ndarray, lengths: np.ndarray, size: int, rng=None) -> list[np.ndarray]:
    """Entities with >= 1 step in batches of similar length (less padding work per time step)."""
    ents = ents[lengths > 0]
    lengths = lengths[lengths > 0]
    tie = rng.random(ents.size) if rng is not None else np.zeros(ents.size)
    order = np.lexsort((tie, lengths))
    return [ents[order[s:s + size]] for s in range(0, ents.size, size)]
