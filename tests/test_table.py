"""Invariants of the one ratings table (recozoo.data.table).

Why these: every loader, split and model goes through ``RatingsTable``; if a
round trip loses a rating, ``to_csr`` silently copies 100M ratings, or a
``select`` miscounts a row, every number downstream is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DataError

FAST = settings(max_examples=60, deadline=None)

# ----------------------------------------------------------------- strategies


@st.composite
def rating_rows(draw, str_ids: bool = False, min_size: int = 0, max_size: int = 60):
    """Distinct (user, item) pairs with ratings and timestamps, as raw columns."""
    pairs = draw(st.lists(st.tuples(st.integers(-3, 40), st.integers(0, 25)),
                          unique=True, min_size=min_size, max_size=max_size))
    n = len(pairs)
    r = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.5, 4.0, 5.0]), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(-10**9, 2 * 10**9), min_size=n, max_size=n))
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    if str_ids:
        u = np.array([f"user{x}" for x in u.tolist()], dtype=object)
        i = np.array([f"it-{x}" for x in i.tolist()], dtype=object)
    return u, i, np.array(r, dtype=np.float32), np.array(ts, dtype=np.int64)


def _row_set(frame: pd.DataFrame) -> set:
    cols = [c for c in ("user", "item", "rating", "timestamp") if c in frame.columns]
    return set(zip(*(frame[c].tolist() for c in cols)))


def _input_set(u, i, r, ts=None) -> set:
    cols = [u.tolist(), i.tolist(), r.tolist()] + ([ts.tolist()] if ts is not None else [])
    return set(zip(*cols))


def _with_empty_ids(u, i, r, ts):
    """A table over id maps that also hold unused ids (before, between and after the used ones)."""
    raw_u = np.unique(np.concatenate([u, [-100, 7, 1000]]))
    raw_i = np.unique(np.concatenate([i, [-5, 13, 999]]))
    uid, iid = IdMap(raw_u), IdMap(raw_i)
    return RatingsTable.from_coo(uid.lookup(u), iid.lookup(i), r, ts, user_ids=uid, item_ids=iid)


# ------------------------------------------------------------------ building


@FAST
@given(rating_rows())
def test_from_raw_round_trip_int_ids(rows):
    u, i, r, ts = rows
    t = RatingsTable.from_raw(u, i, r, ts)
    assert t.nnz == len(u)
    assert _row_set(t.to_frame()) == _input_set(u, i, r, ts)
    # user-major, item-sorted inside each row, no duplicates
    key = t.users.astype(np.int64) * max(t.n_items, 1) + t.items
    assert np.all(np.diff(key) > 0)
    assert t.describe() == {"ratings": len(u), "users": len(set(u.tolist())),
                            "items": len(set(i.tolist()))}


@FAST
@given(rating_rows(str_ids=True))
def test_from_raw_round_trip_str_ids(rows):
    u, i, r, ts = rows
    t = RatingsTable.from_raw(u, i, r, None)
    assert not t.has_timestamps and "timestamp" not in t.to_frame().columns
    assert _row_set(t.to_frame()) == _input_set(u, i, r)


@FAST
@given(rating_rows(), st.randoms(use_true_random=False))
def test_from_coo_any_input_order_and_unused_ids(rows, rnd):
    u, i, r, ts = rows
    perm = np.array(rnd.sample(range(len(u)), len(u)), dtype=np.int64)
    t = _with_empty_ids(u[perm], i[perm], r[perm], ts[perm])
    assert _row_set(t.to_frame()) == _input_set(u, i, r, ts)
    assert t.equals(_with_empty_ids(u, i, r, ts))


def test_empty_table():
    t = RatingsTable.from_coo(np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.zeros(0, int),
                              user_ids=IdMap([1, 2]), item_ids=IdMap([3]))
    assert t.nnz == 0 and t.to_csr().shape == (2, 1) and t.describe()["users"] == 0
    assert t.select(np.zeros(0, bool)).nnz == 0
    assert t.compact().n_users == 0


# --------------------------------------------------------------- conversions


@FAST
@given(rating_rows())
def test_to_csr_is_zero_copy_and_equals_scipy_build(rows):
    u, i, r, ts = rows
    t = _with_empty_ids(u, i, r, ts)
    csr = t.to_csr()
    assert csr.shape == (t.n_users, t.n_items)
    if t.nnz:
        assert np.shares_memory(csr.data, t.ratings)
        assert np.shares_memory(csr.indices, t.items)
    assert np.shares_memory(csr.indptr, t.indptr)
    ref = sp.coo_matrix((r, (t.user_ids.lookup(u), t.item_ids.lookup(i))),
                        shape=(t.n_users, t.n_items)).tocsr()
    ref.sort_indices()
    assert csr.has_canonical_format
    assert np.array_equal(csr.indptr, ref.indptr)
    assert np.array_equal(csr.indices, ref.indices)
    assert np.array_equal(csr.data, ref.data)
    csc = t.to_csc()
    assert sp.isspmatrix_csc(csc) and csc.has_sorted_indices
    assert (csc != csr).nnz == 0
    assert np.array_equal(csc.toarray(), ref.toarray())
    # item_order is the permutation into item-major order (users ascending inside an item)
    order = t.item_order()
    key = t.items[order].astype(np.int64) * max(t.n_users, 1) + t.users[order]
    assert np.all(np.diff(key) > 0) and np.array_equal(np.sort(order), np.arange(t.nnz))


def test_memory_per_rating_with_timestamps_under_20_bytes():
    # Netflix's shape: ~200 ratings per user on average
    rng = np.random.default_rng(0)
    n = 200_000
    u = rng.integers(0, 1_000, n)
    i = rng.integers(0, 5_000, n)
    key = np.unique(u * 5_000 + i)
    u, i = key // 5_000, key % 5_000
    t = RatingsTable.from_raw(u, i, rng.integers(1, 6, key.size).astype(np.float32),
                              rng.integers(0, 2**31, key.size))
    assert t.nbytes / t.nnz < 20
    assert t.items.dtype == np.int32 and t.ratings.dtype == np.float32
    assert t.timestamps.dtype == np.int64


# ---------------------------------------------------------------- subsetting


@FAST
@given(rating_rows(), st.data())
def test_select_keeps_exactly_the_masked_rows(rows, data):
    u, i, r, ts = rows
    t = _with_empty_ids(u, i, r, ts)  # has trailing users without ratings
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=t.nnz, max_size=t.nnz)), dtype=bool)
    s = t.select(mask)
    assert s.user_ids is t.user_ids and s.item_ids is t.item_ids
    full = t.to_frame()
    assert _row_set(s.to_frame()) == _row_set(full[mask])
    assert np.array_equal(s.user_counts(), np.bincount(t.users[mask], minlength=t.n_users))
    # selecting again (now with trailing empty rows) still works
    s2 = s.select(np.ones(s.nnz, dtype=bool))
    assert s2.equals(s)
    with pytest.raises(ValueError):
        t.select(np.ones(t.nnz + 1, dtype=bool))


@FAST
@given(rating_rows(min_size=1), st.data())
def test_remap_onto_subset_and_superset(rows, data):
    u, i, r, ts = rows
    t = RatingsTable.from_raw(u, i, r, ts)
    # superset maps in a shuffled raw order: nothing is dropped
    extra_u = np.concatenate([t.user_ids.raw, [10_000, 10_001]])
    extra_i = np.concatenate([t.item_ids.raw, [5_000]])
    pu = np.array(data.draw(st.permutations(range(extra_u.size))))
    pi = np.array(data.draw(st.permutations(range(extra_i.size))))
    big = t.remap(IdMap(extra_u[pu]), IdMap(extra_i[pi]), drop_unknown=False)
    assert _row_set(big.to_frame()) == _row_set(t.to_frame())
    assert np.all(np.diff(big.users.astype(np.int64) * big.n_items + big.items) > 0)
    # subset maps: ratings with absent ids are dropped, the rest kept
    keep_u = np.array(data.draw(st.lists(st.booleans(), min_size=t.n_users, max_size=t.n_users)))
    keep_u = keep_u.astype(bool)
    sub = t.remap(t.user_ids.take(np.flatnonzero(keep_u)), t.item_ids)
    expected = t.to_frame()
    expected = expected[expected.user.isin(set(t.user_ids.raw[keep_u].tolist()))]
    assert _row_set(sub.to_frame()) == _row_set(expected)
    if not keep_u.all() and t.user_counts()[~keep_u].sum() > 0:
        with pytest.raises(DataError):
            t.remap(t.user_ids.take(np.flatnonzero(keep_u)), t.item_ids, drop_unknown=False)


@FAST
@given(rating_rows(), st.data())
def test_compact_drops_exactly_the_empty_ids(rows, data):
    u, i, r, ts = rows
    t = _with_empty_ids(u, i, r, ts)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=t.nnz, max_size=t.nnz)), dtype=bool)
    s = t.select(mask)
    c = s.compact()
    assert _row_set(c.to_frame()) == _row_set(s.to_frame())
    assert np.all(c.user_counts() > 0) and np.all(c.item_counts() > 0)
    assert c.describe() == s.describe()
    assert set(c.user_ids.to_list()) == set(t.user_ids.raw[np.unique(s.users)].tolist())
    # order of the ids is kept
    assert np.all(np.diff(c.user_ids.raw) > 0) and np.all(np.diff(c.item_ids.raw) > 0)


@FAST
@given(rating_rows())
def test_save_load_round_trip(tmp_path_factory, rows):
    u, i, r, ts = rows
    t = _with_empty_ids(u, i, r, ts)
    folder = tmp_path_factory.mktemp("table")
    t.save(folder)
    back = RatingsTable.load(folder, t.user_ids, t.item_ids)
    assert back.equals(t)


# ---------------------------------------------------------------- bad input


@FAST
@given(rating_rows(min_size=1), st.data())
def test_duplicate_pair_is_a_data_error_naming_the_ids(rows, data):
    u, i, r, ts = rows
    k = data.draw(st.integers(0, len(u) - 1))
    u2, i2 = np.append(u, u[k]), np.append(i, i[k])
    r2, ts2 = np.append(r, np.float32(3.0)), np.append(ts, 0)
    with pytest.raises(DataError) as e:
        RatingsTable.from_raw(u2, i2, r2, ts2, source="ratings.csv")
    msg = str(e.value)
    assert "duplicate" in msg and "ratings.csv" in msg
    assert f"user {u[k].item()!r}" in msg and f"item {i[k].item()!r}" in msg
    assert "\n" not in msg


@FAST
@given(rating_rows(min_size=1, str_ids=True), st.data(),
       st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_rating_is_a_data_error_naming_ids_and_field(rows, data, bad):
    u, i, r, _ = rows
    k = data.draw(st.integers(0, len(u) - 1))
    r = r.copy()
    r[k] = bad
    with pytest.raises(DataError) as e:
        RatingsTable.from_raw(u, i, r, source="x.tsv")
    msg = str(e.value)
    assert e.value.field == "rating" and "'rating'" in msg and "x.tsv" in msg
    assert repr(u[k]) in msg and repr(i[k]) in msg


def test_out_of_range_index_and_length_mismatch():
    ids = IdMap([1, 2])
    with pytest.raises(DataError, match="out of range"):
        RatingsTable.from_coo(np.array([0, 2]), np.array([0, 1]), np.ones(2), user_ids=ids, item_ids=ids)
    with pytest.raises(DataError, match="out of range"):
        RatingsTable.from_coo(np.array([0, -1]), np.array([0, 1]), np.ones(2), user_ids=ids, item_ids=ids)
    with pytest.raises(DataError, match="different lengths"):
        RatingsTable.from_coo(np.array([0, 1]), np.array([0]), np.ones(2), user_ids=ids, item_ids=ids)
    with pytest.raises(DataError):
        IdMap(np.array([1.5, 2.5]))


# --------------------------------------------------------------------- IdMap


@FAST
@given(st.lists(st.integers(-10**12, 10**12), unique=True, max_size=40),
       st.lists(st.integers(-10**12, 10**12), max_size=40))
def test_idmap_lookup_int_ids(raw, queries):
    m = IdMap(np.array(raw, dtype=np.int64))  # unsorted raw order on purpose
    where = {x: k for k, x in enumerate(raw)}
    q = np.array(raw + queries, dtype=np.int64)
    got = m.lookup(q)
    assert got.dtype == np.int64
    assert got.tolist() == [where.get(x, -1) for x in q.tolist()]
    assert m.lookup(q, missing=-7).tolist() == [where.get(x, -7) for x in q.tolist()]
    # the same ids spelled as strings or whole floats are found too
    assert m.lookup(np.array([str(x) for x in raw], dtype=object)).tolist() == list(range(len(raw)))
    small = [x for x in raw if abs(x) < 2**52]
    assert m.lookup(np.array(small, dtype=np.float64)).tolist() == [where[x] for x in small]
    assert m.lookup(np.array([0.5])).tolist() == [-1]
    assert m.lookup(np.array(["not-a-number"])).tolist() == [-1]
    for x in raw[:3]:
        assert m.index(x) == where[x]
    missing = next(x for x in range(10**13, 10**13 + 100) if x not in where)
    with pytest.raises(KeyError):
        m.index(missing)


# numpy's fixed-width str dtype drops trailing NUL characters, so ids never hold them
_ID_CHARS = st.characters(blacklist_characters="\x00")


@FAST
@given(st.lists(st.text(_ID_CHARS, min_size=1, max_size=6), unique=True, max_size=30),
       st.lists(st.text(_ID_CHARS, max_size=6), max_size=30))
def test_idmap_lookup_str_ids(raw, queries):
    m = IdMap(np.array(raw, dtype=object))
    where = {x: k for k, x in enumerate(raw)}
    q = raw + queries
    assert m.lookup(np.array(q, dtype=object)).tolist() == [where.get(x, -1) for x in q]


@FAST
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=60)
       | st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=60))
def test_idmap_encode(values):
    for dtype in (np.int64, np.int32, np.uint64):
        if dtype is not np.int64 and (min(values) < 0 or max(values) >= 2**31):
            continue
        arr = np.array(values, dtype=dtype)
        m, codes = IdMap.encode(arr)
        assert m.raw.tolist() == sorted(set(values))
        assert np.array_equal(m.raw[codes], arr.astype(np.int64))
        assert np.array_equal(m.lookup(arr), codes)
