"""The one in-memory ratings table every loader produces and every model reads.

Layout (why: 100M Netflix ratings must fit in well under 2 GB, and models want
CSR rows without a copy):

* ratings are stored **user-major** (sorted by user, then item), so the user
  column is implied by ``indptr`` (CSR row pointers) and never stored: per
  rating we keep ``items`` (int32, 4 B), ``ratings`` (float32, 4 B) and
  ``timestamps`` (int64 Unix seconds, 8 B) — 16 bytes per rating;
* :meth:`RatingsTable.to_csr` wraps those very arrays in a
  ``scipy.sparse.csr_matrix`` (users x items) without copying;
  :meth:`RatingsTable.to_csc` builds the item-major copy once and caches it;
* raw ids (ints or strings) live in two :class:`IdMap` objects, shared by the
  train/valid/test tables of a split, so index ``i`` means the same user in all
  three.

``users`` (one int32 per rating) is derived on demand with ``np.repeat``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from recozoo.errors import DataError

__all__ = ["IdMap", "RatingsTable"]


class IdMap:
    """Raw ids <-> dense indices ``0..n-1``.

    ``raw[i]`` is the raw id of index ``i``. Raw ids are integers (int64) or
    strings; they must be unique. Lookups are vectorised (``searchsorted``).
    """

    __slots__ = ("raw", "_sorter")

    def __init__(self, raw: np.ndarray | Iterable):
        raw = np.asarray(raw)
        if raw.dtype.kind in "iu":
            raw = raw.astype(np.int64, copy=False)
        elif raw.dtype.kind in "OUS":
            raw = raw.astype(str)
        elif raw.size == 0:
            raw = raw.astype(np.int64)
        else:
            raise DataError(f"ids must be integers or strings, not {raw.dtype}")
        self.raw = raw
        self._sorter = None

    @classmethod
    def encode(cls, values: np.ndarray) -> tuple["IdMap", np.ndarray]:
        """Build the map of the distinct ``values`` (sorted) and their int32 codes."""
        values = np.asarray(values)
        if values.dtype.kind in "iu" and values.size:
            lo, hi = int(values.min()), int(values.max())
            if lo >= 0 and hi < max(4 * values.size, 1 << 20):
                # dense-ish integer ids: a bincount beats a sort by far
                present = np.bincount(values, minlength=hi + 1) > 0
                raw = np.flatnonzero(present)
                lut = np.full(hi + 1, -1, dtype=np.int32)
                lut[raw] = np.arange(raw.size, dtype=np.int32)
                return cls(raw), lut[values]
        raw, codes = np.unique(values, return_inverse=True)
        return cls(raw), codes.astype(np.int32, copy=False).reshape(-1)

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def __eq__(self, other) -> bool:
        return isinstance(other, IdMap) and self.raw.dtype.kind == other.raw.dtype.kind \
            and np.array_equal(self.raw, other.raw)

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)}, dtype={self.raw.dtype})"

    def _sorted(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._sorter is None:
            r = self.raw
            if r.size < 2 or bool(np.all(r[1:] > r[:-1])):
                self._sorter = np.empty(0, dtype=np.int64)  # already sorted
            else:
                self._sorter = np.argsort(r, kind="stable")
        if self._sorter.size == 0:
            return self.raw, None
        return self.raw[self._sorter], self._sorter

    def lookup(self, raw_ids, missing: int = -1) -> np.ndarray:
        """Indices (int64) of ``raw_ids``; ids not in the map get ``missing``."""
        q = np.asarray(raw_ids)
        if self.raw.dtype.kind == "U":
            q = q.astype(str)
        elif q.dtype.kind in "OUS":
            try:
                q = q.astype(np.int64)
            except ValueError:
                return np.full(q.shape, missing, dtype=np.int64)
        elif q.dtype.kind == "f":
            if q.size and not np.all(np.isfinite(q) & (q == np.round(q))):
                return np.full(q.shape, missing, dtype=np.int64)
            q = q.astype(np.int64)
        srt, sorter = self._sorted()
        if srt.size == 0:
            return np.full(q.shape, missing, dtype=np.int64)
        pos = np.searchsorted(srt, q)
        pos_c = np.minimum(pos, srt.size - 1)
        found = srt[pos_c] == q
        idx = pos_c if sorter is None else sorter[pos_c]
        return np.where(found, idx, missing).astype(np.int64)

    def index(self, raw_id) -> int:
        """Index of one raw id; a one-line :class:`KeyError` if unknown."""
        i = int(self.lookup(np.asarray([raw_id]))[0])
        if i < 0:
            raise KeyError(f"unknown id {raw_id!r}")
        return i

    def take(self, indices: np.ndarray) -> "IdMap":
        return IdMap(self.raw[np.asarray(indices)])

    def to_list(self) -> list:
        return self.raw.tolist()


def _smallest_index_dtype(n: int):
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


class RatingsTable:
    """Ratings of ``n_users`` x ``n_items``, user-major, with optional timestamps.

    Build one with :meth:`from_coo` (index arrays over given id maps) or
    :meth:`from_raw` (raw ids; the maps are built). Tables of one split share
    their :class:`IdMap` objects.
    """

    __slots__ = ("indptr", "items", "ratings", "timestamps", "user_ids", "item_ids", "_csc")

    def __init__(self, indptr: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                 timestamps: np.ndarray | None, user_ids: IdMap, item_ids: IdMap):
        self.indptr = indptr
        self.items = items
        self.ratings = ratings
        self.timestamps = timestamps
        self.user_ids = user_ids
        self.item_ids = item_ids
        self._csc = None
        if indptr.shape[0] != len(user_ids) + 1 or int(indptr[-1]) != items.shape[0]:
            raise DataError("inconsistent ratings table: indptr does not match the ratings")
        if ratings.shape != items.shape or (timestamps is not None and timestamps.shape != items.shape):
            raise DataError("inconsistent ratings table: columns of different lengths")

    # ----------------------------------------------------------------- building
    @classmethod
    def from_coo(cls, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                 timestamps: np.ndarray | None = None, *, user_ids: IdMap, item_ids: IdMap,
                 source: str | None = None, check: bool = True) -> "RatingsTable":
        """Build from per-rating index arrays over the given id maps.

        Sorts to user-major order. With ``check``: indices in range, ratings
        finite, no (user, item) pair twice — each a :class:`DataError` naming
        ``source`` and the offending ids.
        """
        n_u, n_i = len(user_ids), len(item_ids)
        users = np.asarray(users)
        items = np.asarray(items)
        ratings = np.asarray(ratings, dtype=np.float32)
        n = users.shape[0]
        if items.shape[0] != n or ratings.shape[0] != n or (timestamps is not None and len(timestamps) != n):
            raise DataError("columns of different lengths", path=source)
        if check and n:
            if users.min() < 0 or users.max() >= n_u or items.min() < 0 or items.max() >= n_i:
                raise DataError("user or item index out of range of the id maps", path=source)
            bad = ~np.isfinite(ratings)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise DataError(f"rating is {ratings[k]} (not a finite number) for user "
                                f"{user_ids.raw[users[k]]!r} item {item_ids.raw[items[k]]!r}",
                                path=source, field="rating")
        key = users.astype(np.int64) * max(n_i, 1) + items.astype(np.int64)
        if n and bool(np.all(key[1:] > key[:-1])):
            order = None  # already user-major and duplicate-free
        else:
            order = np.argsort(key, kind="stable")
            key = key[order]
            if check and n > 1:
                dup = np.flatnonzero(key[1:] == key[:-1])
                if dup.size:
                    u, i = divmod(int(key[dup[0]]), max(n_i, 1))
                    raise DataError(f"{dup.size} duplicate (user, item) pairs, e.g. user "
                                    f"{user_ids.raw[u]!r} item {item_ids.raw[i]!r}", path=source)
        counts = np.bincount(users, minlength=n_u) if n else np.zeros(n_u, dtype=np.int64)
        idx_dtype = _smallest_index_dtype(n)
        indptr = np.zeros(n_u + 1, dtype=idx_dtype)
        np.cumsum(counts, out=indptr[1:])
        del key
        take = (lambda a: a) if order is None else (lambda a: a[order])
        items_s = np.ascontiguousarray(take(items).astype(idx_dtype, copy=False))
        ratings_s = np.ascontiguousarray(take(ratings))
        ts_s = None if timestamps is None else np.ascontiguousarray(
            take(np.asarray(timestamps)).astype(np.int64, copy=False))
        return cls(indptr, items_s, ratings_s, ts_s, user_ids, item_ids)

    @classmethod
    def from_raw(cls, raw_users, raw_items, ratings, timestamps=None, *,
                 source: str | None = None) -> "RatingsTable":
        """Build from raw ids; the id maps are the sorted distinct ids."""
        user_ids, u = IdMap.encode(np.asarray(raw_users))
        item_ids, i = IdMap.encode(np.asarray(raw_items))
        return cls.from_coo(u, i, ratings, timestamps, user_ids=user_ids, item_ids=item_ids,
                            source=source)

    @classmethod
    def empty_like(cls, other: "RatingsTable") -> "RatingsTable":
        idx = other.items.dtype
        return cls(np.zeros(other.n_users + 1, dtype=other.indptr.dtype), np.zeros(0, idx),
                   np.zeros(0, np.float32), None if other.timestamps is None else np.zeros(0, np.int64),
                   other.user_ids, other.item_ids)

    # ------------------------------------------------------------------ shape
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def nnz(self) -> int:
        return int(self.items.shape[0])

    def __len__(self) -> int:
        return self.nnz

    @property
    def has_timestamps(self) -> bool:
        return self.timestamps is not None

    @property
    def users(self) -> np.ndarray:
        """User index of every rating (int32), derived from ``indptr`` on each call."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.indptr))

    def user_counts(self) -> np.ndarray:
        return np.diff(self.indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    @property
    def nbytes(self) -> int:
        n = self.indptr.nbytes + self.items.nbytes + self.ratings.nbytes
        return n + (0 if self.timestamps is None else self.timestamps.nbytes)

    def __repr__(self) -> str:
        return (f"RatingsTable(users={self.n_users}, items={self.n_items}, ratings={self.nnz}, "
                f"timestamps={self.has_timestamps})")

    def describe(self) -> dict:
        """Counts of ratings and of users/items that have at least one rating."""
        return {"ratings": self.nnz,
                "users": int(np.count_nonzero(np.diff(self.indptr))),
                "items": int(np.count_nonzero(self.item_counts()))}

    # ------------------------------------------------------------ conversions
    def to_csr(self) -> sp.csr_matrix:
        """users x items CSR over this table's own arrays (no copy)."""
        m = sp.csr_matrix((self.ratings, self.items, self.indptr),
                          shape=(self.n_users, self.n_items), copy=False)
        m.has_sorted_indices = True
        return m

    def to_csc(self) -> sp.csc_matrix:
        """users x items CSC (item-major copy, built once and cached)."""
        if self._csc is None:
            self._csc = self.to_csr().tocsc()
            self._csc.sort_indices()
        return self._csc

    def item_order(self) -> np.ndarray:
        """Permutation of ratings into item-major order (stable)."""
        return np.argsort(self.items, kind="stable")

    # ------------------------------------------------------------- subsetting
    def select(self, mask: np.ndarray) -> "RatingsTable":
        """The ratings where ``mask`` is true (bool over ratings), same id maps."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.items.shape:
            raise ValueError("mask must have one entry per rating")
        counts = np.add.reduceat(mask.astype(np.int64), self.indptr[:-1]) if self.nnz else None
        if counts is not None:
            counts[np.diff(self.indptr) == 0] = 0
        indptr = np.zeros(self.n_users + 1, dtype=_smallest_index_dtype(int(mask.sum())))
        if counts is not None:
            np.cumsum(counts, out=indptr[1:])
        return RatingsTable(indptr, np.ascontiguousarray(self.items[mask].astype(indptr.dtype)),
                            self.ratings[mask],
                            None if self.timestamps is None else self.timestamps[mask],
                            self.user_ids, self.item_ids)

    def remap(self, user_ids: IdMap, item_ids: IdMap, *, drop_unknown: bool = True) -> "RatingsTable":
        """Re-index onto other id maps (ratings whose ids are absent are dropped)."""
        u = user_ids.lookup(self.user_ids.raw)[self.users]
        i = item_ids.lookup(self.item_ids.raw)[self.items]
        keep = (u >= 0) & (i >= 0)
        if not drop_unknown and not keep.all():
            raise DataError(f"{int((~keep).sum())} ratings have ids absent from the target maps")
        return RatingsTable.from_coo(u[keep], i[keep], self.ratings[keep],
                                     None if self.timestamps is None else self.timestamps[keep],
                                     user_ids=user_ids, item_ids=item_ids, check=False)

    def compact(self) -> "RatingsTable":
        """Drop users and items that have no rating (indices renumbered)."""
        ku = np.flatnonzero(self.user_counts() > 0)
        ki = np.flatnonzero(self.item_counts() > 0)
        return self.remap(self.user_ids.take(ku), self.item_ids.take(ki))

    def equals(self, other: "RatingsTable") -> bool:
        """Same ids, same ratings, same times (exact)."""
        same_ts = (self.timestamps is None and other.timestamps is None) or (
            self.timestamps is not None and other.timestamps is not None
            and np.array_equal(self.timestamps, other.timestamps))
        return (self.user_ids == other.user_ids and self.item_ids == other.item_ids
                and np.array_equal(self.indptr, other.indptr) and np.array_equal(self.items, other.items)
                and np.array_equal(self.ratings, other.ratings) and same_ts)

    def to_frame(self):
        """A pandas DataFrame with raw ids (for inspection and export)."""
        import pandas as pd
        cols = {"user": self.user_ids.raw[self.users], "item": self.item_ids.raw[self.items],
                "rating": self.ratings}
        if self.timestamps is not None:
            cols["timestamp"] = self.timestamps
        return pd.DataFrame(cols)

    # ------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> None:
        """Write the columns as ``.npy`` files (memory-mappable) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "indptr.npy", self.indptr)
        np.save(folder / "items.npy", self.items)
        np.save(folder / "ratings.npy", self.ratings)
        if self.timestamps is not None:
            np.save(folder / "timestamps.npy", self.timestamps)
        (folder / "table.json").write_text(json.dumps({"n_users": self.n_users, "n_items": self.n_items,
                                                       "nnz": self.nnz}))

    @classmethod
    def load(cls, folder: str | Path, user_ids: IdMap, item_ids: IdMap, *,
             mmap: bool = True) -> "RatingsTable":
        folder = Path(folder)
        mode = "r" if mmap else None
        try:
            ts_path = folder / "timestamps.npy"
            return cls(np.load(folder / "indptr.npy", mmap_mode=mode),
                       np.load(folder / "items.npy", mmap_mode=mode),
                       np.load(folder / "ratings.npy", mmap_mode=mode),
                       np.load(ts_path, mmap_mode=mode) if ts_path.exists() else None,
                       user_ids, item_ids)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read cached table: {e}", path=folder) from None
