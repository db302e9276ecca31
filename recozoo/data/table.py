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

    def show(self, index: int) -> str:
        """The raw id of ``index`` as users write it (``123``, ``'abc'``), for messages.

        Why: numpy 2 scalars repr as ``np.int64(123)``, which is noise in an error line.
        """
        return repr(self.raw[int(index)].item())

    def take(self, indices: np.ndarray) -> "IdMap":
        return IdMap(self.raw[np.asarray(indices)])

    def to_list(self) -> list:
        return self.raw.tolist()


_BLOCK = 1 << 18  # 256K ratings: a few MB of temporaries per step


def _bincount(values: np.ndarray, n: int) -> np.ndarray:
    """``np.bincount`` in blocks (why: it first casts int32 input to int64, a
    temporary of 8 bytes per rating — 800 MB on Netflix)."""
    out = np.zeros(n, dtype=np.int64)
    for a in range(0, values.shape[0], _BLOCK):
        out += np.bincount(values[a:a + _BLOCK], minlength=n)[:n]
    return out


def _count_before(mask: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """For each (sorted) position ``p`` in ``bounds``: how many of ``mask[:p]`` are true.

    Blockwise (why: ``np.cumsum`` of a whole bool mask allocates a temporary as
    long as the table, in int64, whatever ``out`` dtype is given).
    """
    out = np.empty(bounds.shape[0], dtype=np.int64)
    n = mask.shape[0]
    total, lo = 0, 0
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        cs = np.cumsum(mask[a:b], dtype=np.int64)
        hi = int(np.searchsorted(bounds, b, side="left"))
        pos = bounds[lo:hi].astype(np.int64) - a
        vals = np.zeros(hi - lo, dtype=np.int64)
        inside = pos > 0
        vals[inside] = cs[pos[inside] - 1]
        out[lo:hi] = total + vals
        total += int(cs[-1])
        lo = hi
    out[lo:] = total
    return out


def _increasing(a: np.ndarray) -> bool:
    return a.size < 2 or bool(np.all(a[1:] > a[:-1]))


def _is_user_major(users: np.ndarray, items: np.ndarray, n_items: int, block: int = 1 << 20) -> bool:
    """Whether (user, item) pairs are strictly increasing, checked in blocks.

    Why blocks: the one-shot check needs an int64 key per rating (8 bytes each,
    800 MB on Netflix) just to learn that the input is already sorted.
    """
    n = users.shape[0]
    prev = -1
    m = max(n_items, 1)
    for a in range(0, n, block):
        key = users[a:a + block].astype(np.int64) * m + items[a:a + block]
        if key[0] <= prev or not bool(np.all(key[1:] > key[:-1])):
            return False
        prev = int(key[-1])
    return True


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
                                f"{user_ids.show(users[k])} item {item_ids.show(items[k])}",
                                path=source, field="rating")
        if n and _is_user_major(users, items, n_i):
            order = None  # already user-major and duplicate-free
            key = None
        else:
            key = users.astype(np.int64) * max(n_i, 1) + items.astype(np.int64)
            order = np.argsort(key, kind="stable")
            key = key[order]
            if check and n > 1:
                dup = np.flatnonzero(key[1:] == key[:-1])
                if dup.size:
                    u, i = divmod(int(key[dup[0]]), max(n_i, 1))
                    raise DataError(f"{dup.size} duplicate (user, item) pairs, e.g. user "
                                    f"{user_ids.show(u)} item {item_ids.show(i)}", path=source)
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
        return _bincount(self.items, self.n_items)

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
        # new row pointers = running count of kept ratings, read at the old row
        # boundaries (np.add.reduceat cannot: it fails on trailing empty rows)
        kept = _count_before(mask, self.indptr)
        indptr = kept.astype(_smallest_index_dtype(int(kept[-1])), copy=False)
        return RatingsTable(indptr, np.ascontiguousarray(self.items[mask].astype(indptr.dtype, copy=False)),
                            self.ratings[mask],
                            None if self.timestamps is None else self.timestamps[mask],
                            self.user_ids, self.item_ids)

    def union(self, other: "RatingsTable", *, source: str | None = None) -> "RatingsTable":
        """Every rating of both tables (same id maps), e.g. TRAIN ∪ VALID for a refit.

        The parts of a split are disjoint; a (user, item) pair in both is a
        :class:`DataError` naming it (never silently kept once). Timestamps are
        kept only when both tables have them.
        """
        same = lambda a, b: a is b or a == b   # noqa: E731 - parts of one split share the map objects
        if not (same(self.user_ids, other.user_ids) and same(self.item_ids, other.item_ids)):
            raise DataError("union: the tables have different id maps", path=source)
        ts = None
        if self.timestamps is not None and other.timestamps is not None:
            ts = np.concatenate([self.timestamps, other.timestamps])
        return RatingsTable.from_coo(np.concatenate([self.users, other.users]),
                                     np.concatenate([self.items, other.items]),
                                     np.concatenate([self.ratings, other.ratings]), ts,
                                     user_ids=self.user_ids, item_ids=self.item_ids, source=source)

    def remap(self, user_ids: IdMap, item_ids: IdMap, *, drop_unknown: bool = True) -> "RatingsTable":
        """Re-index onto other id maps (ratings whose ids are absent are dropped)."""
        fast = self._remap_monotone(user_ids, item_ids, drop_unknown)
        if fast is not None:
            return fast
        u = user_ids.lookup(self.user_ids.raw)[self.users]
        i = item_ids.lookup(self.item_ids.raw)[self.items]
        keep = (u >= 0) & (i >= 0)
        if not drop_unknown and not keep.all():
            raise DataError(f"{int((~keep).sum())} ratings have ids absent from the target maps")
        return RatingsTable.from_coo(u[keep], i[keep], self.ratings[keep],
                                     None if self.timestamps is None else self.timestamps[keep],
                                     user_ids=user_ids, item_ids=item_ids, check=False)

    def _remap_monotone(self, user_ids: IdMap, item_ids: IdMap, drop_unknown: bool):
        """:meth:`remap` without a sort, when the new maps keep the old order.

        Why: a split remaps each part onto the train universe, a subset of the
        ids in the same order; then rows and their items stay sorted, so the
        result is built by masking (no int64 keys, no argsort), and the rating
        and time columns are shared, not copied, when nothing is dropped (as
        ``from_coo`` already shares sorted input). Returns ``None`` when the
        maps reorder ids (the general path then sorts).
        """
        ulut = user_ids.lookup(self.user_ids.raw)
        ilut = item_ids.lookup(self.item_ids.raw)
        ku, ki = ulut >= 0, ilut >= 0
        if not (_increasing(ulut[ku]) and _increasing(ilut[ki])):
            return None
        n = self.nnz
        row_len = np.diff(self.indptr)
        drop_rows = not ku.all() and bool(row_len[~ku].any())
        keep = None
        if not ki.all() and _bincount(self.items, self.n_items)[~ki].any():
            keep = ki[self.items]  # (only built when some rating's item really goes)
        if drop_rows:
            rows = np.repeat(ku, row_len)
            keep = rows if keep is None else np.logical_and(keep, rows, out=keep)
            del rows
        dropped = np.zeros(0, dtype=np.int64) if keep is None else np.flatnonzero(~keep)
        if dropped.size == 0:
            keep = None  # nothing dropped: share the rating and time columns
        if not drop_unknown and dropped.size:
            raise DataError(f"{dropped.size} ratings have ids absent from the target maps")
        idx = _smallest_index_dtype(n - dropped.size)
        # kept per old row = row length - dropped in the row (dropped ratings are few)
        per_row = row_len - np.bincount(np.searchsorted(self.indptr, dropped, side="right") - 1,
                                        minlength=self.n_users)[:self.n_users]
        counts = np.zeros(len(user_ids), dtype=np.int64)
        counts[ulut[ku]] = per_row[ku]
        indptr = np.zeros(len(user_ids) + 1, dtype=idx)
        np.cumsum(counts, out=indptr[1:])
        del dropped, per_row
        same_items = ki.all() and len(item_ids) == self.n_items
        items = self.items if keep is None else self.items[keep]
        if same_items:
            items = items.astype(idx, copy=False)
        else:
            items = np.take(ilut.astype(idx), items)
        pick = (lambda a: a) if keep is None else (lambda a: a[keep])
        return RatingsTable(indptr, np.ascontiguousarray(items), pick(self.ratings),
                            None if self.timestamps is None else pick(self.timestamps),
                            user_ids, item_ids)

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
