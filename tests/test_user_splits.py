"""Own-data protocols (user-random, user-time, leave-last-k, random, time) against pandas oracles.

Each oracle is a plain pandas statement of the rule in ``recozoo.user_splits``'
docstring (groupby, sort, cumcount), sharing no code with the vectorised
implementation; the results are compared as sets of raw rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from recozoo.data.table import RatingsTable
from recozoo.errors import DataError, RecozooError, SettingsError
from recozoo.protocols import PROTOCOLS, apply_protocol, protocol_params
from recozoo.user_splits import leave_last_k_split, user_random_split, user_time_split

FAST = settings(max_examples=50, deadline=None)


@st.composite
def user_ratings(draw):
    """Users with 1-25 ratings, integer star ratings, times with many ties."""
    counts = draw(st.lists(st.integers(1, 25), min_size=1, max_size=30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_times = draw(st.sampled_from([3, 1000]))           # 3 distinct times: ties everywhere
    # seconds, or a span past 2^32 (milliseconds over decades): the other sorting path
    step = draw(st.sampled_from([60, 10**8]))
    rows = []
    for u, k in enumerate(counts):
        items = rng.choice(60, size=k, replace=False)
        rows += [(10 + 3 * u, 100 + int(i), float(rng.integers(1, 6)), int(rng.integers(0, n_times)) * step)
                 for i in items]
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def _table(df: pd.DataFrame) -> RatingsTable:
    return RatingsTable.from_raw(df.user.to_numpy(np.int64), df.item.to_numpy(np.int64),
                                 df.rating.to_numpy(np.float32), df.timestamp.to_numpy(np.int64))


def _rows(t) -> set:
    f = t.to_frame() if isinstance(t, RatingsTable) else t
    return set(zip(f.user.tolist(), f.item.tolist(), f.rating.astype(float).tolist(), f.timestamp.tolist()))


def oracle_per_user(df: pd.DataFrame, order_key: str, ascending: bool, n_test, n_valid):
    """Sort each user's ratings by ``order_key`` (ties: item), number them, cut TEST then VALID.

    ``n_test(n)`` and ``n_valid(rest)`` are the per-user counts the rule gives.
    """
    d = df.sort_values(["user", order_key, "item"], ascending=[True, ascending, ascending])
    d = d.assign(pos=d.groupby("user").cumcount(), n=d.groupby("user")["item"].transform("size"))
    t = d.n.map(n_test)
    v = (d.n - t).map(n_valid)
    test = d[d.pos < t]
    valid = d[(d.pos >= t) & (d.pos < t + v)]
    train = d[d.pos >= t + v]
    return train, valid, test


def _check(s, df, expected) -> None:
    train, valid, test = expected
    assert _rows(s.train) == _rows(train)
    assert _rows(s.valid) == _rows(valid)
    assert _rows(s.test) == _rows(test)
    # an exact partition of the input
    assert s.train.nnz + s.valid.nnz + s.test.nnz == len(df)
    assert _rows(s.train) | _rows(s.valid) | _rows(s.test) == _rows(df)
    # every user with a held-out rating keeps a TRAIN history
    held = set(s.valid.to_frame().user) | set(s.test.to_frame().user)
    assert held <= set(s.train.to_frame().user)
    assert s.info["policy"] == "fallback"


def floor_of(fraction):
    return lambda n: int(fraction * n)       # Python's int(): the floor, in double precision


@FAST
@given(user_ratings(), st.integers(0, 2**32 - 1), st.sampled_from([(0.2, 0.1), (0.5, 0.0), (0.3, 0.25)]))
def test_user_random_matches_oracle(df, seed, fractions):
    tf, vf = fractions
    s = user_random_split(_table(df), "ur", tf, vf, seed=seed)
    # the documented draw: one uint32 per rating in (user, item) order; smallest first
    draws = np.random.default_rng(seed).integers(0, 2**32, len(df), dtype=np.uint32)
    d = df.sort_values(["user", "item"]).assign(u=draws)
    _check(s, df, oracle_per_user(d, "u", True, floor_of(tf), floor_of(vf)))
    again = user_random_split(_table(df), "ur", tf, vf, seed=seed)
    assert again.test.equals(s.test) and again.valid.equals(s.valid)
    event(f"some user in test: {s.test.nnz > 0}")


def test_user_random_seed_changes_the_draw_not_the_counts():
    df = pd.DataFrame({"user": np.repeat(np.arange(40), 20), "item": np.tile(np.arange(20), 40),
                       "rating": 3.0, "timestamp": 0})
    a = user_random_split(_table(df), "ur", 0.2, 0.1, seed=1)
    b = user_random_split(_table(df), "ur", 0.2, 0.1, seed=2)
    assert not a.test.equals(b.test)
    np.testing.assert_array_equal(a.test.user_counts(), b.test.user_counts())
    assert np.all(a.test.user_counts() == 4) and np.all(a.valid.user_counts() == 1)


@FAST
@given(user_ratings(), st.sampled_from([(0.2, 0.1), (0.5, 0.0), (0.34, 0.5)]))
def test_user_time_matches_oracle(df, fractions):
    tf, vf = fractions
    s = user_time_split(_table(df), "ut", tf, vf)
    # latest first; among equal times the larger item counts as later
    _check(s, df, oracle_per_user(df, "timestamp", False, floor_of(tf), floor_of(vf)))
    # TEST is never earlier than TRAIN for any user
    f = {p: getattr(s, p).to_frame() for p in ("train", "valid", "test")}
    last_train = f["train"].groupby("user").timestamp.max()
    first_test = f["test"].groupby("user").timestamp.min()
    assert (first_test >= last_train.reindex(first_test.index)).all()
    event(f"ties in time: {df.duplicated(['user', 'timestamp']).any()}")


@FAST
@given(user_ratings(), st.integers(1, 4), st.integers(0, 3))
def test_leave_last_k_matches_oracle(df, k, valid_k):
    s = leave_last_k_split(_table(df), "lk", k, valid_k)
    expected = oracle_per_user(df, "timestamp", False, lambda n: k if n > k else 0,
                               lambda rest: valid_k if rest > valid_k else 0)
    _check(s, df, expected)
    assert s.info["k"] == k and s.info["valid_k"] == valid_k


def test_time_protocols_refuse_data_without_timestamps():
    t = RatingsTable.from_raw(np.array([1, 1, 2]), np.array([1, 2, 1]), np.array([3.0, 4.0, 5.0]))
    for protocol in ("time", "user-time", "leave-last-k"):
        assert PROTOCOLS[protocol].needs_time
        with pytest.raises(DataError) as e:
            apply_protocol(t, "mydata", protocol, source="/data/ratings.tsv")
        msg = str(e.value)
        assert msg.startswith("/data/ratings.tsv: ") and "no timestamps" in msg and "\n" not in msg
    for protocol in ("random", "user-random"):
        apply_protocol(t, "mydata", protocol)


@FAST
@given(user_ratings(), st.integers(0, 1000), st.sampled_from(["random", "user-random", "time",
                                                              "user-time", "leave-last-k"]))
def test_threshold_binarises_before_any_protocol(df, seed, protocol):
    if (df.rating > 3.5).sum() == 0:
        with pytest.raises(DataError, match="leaves no interactions"):
            apply_protocol(_table(df), "b", protocol, seed, {"threshold": "3.5"})
        return
    s = apply_protocol(_table(df), "b", protocol, seed, {"threshold": "3.5"})
    plain = apply_protocol(_table(df[df.rating > 3.5]), "b", protocol, seed, {})
    for part in ("train", "valid", "test"):
        t = getattr(s, part)
        assert np.all(t.ratings == 1.0)
        assert {r[:2] for r in _rows(t)} == {r[:2] for r in _rows(getattr(plain, part))}
    assert s.info["params"]["threshold"] == 3.5 and s.info["implicit"]
    rated = apply_protocol(_table(df), "b", protocol, seed, {})
    assert rated.info["implicit"] == bool((df.rating == 1).all())


@FAST
@given(user_ratings(), st.integers(0, 10**6), st.sampled_from([(0.1, 0.1), (0.2, 0.0), (0.5, 0.5)]))
def test_random_protocol_carves_valid_from_the_training_part(df, seed, fractions):
    tf, vf = fractions
    s = apply_protocol(_table(df), "r", "random", seed, {"test_fraction": tf, "valid_fraction": vf})
    # the documented draw: one uniform r per rating in (user, item) order
    d = df.sort_values(["user", "item"]).assign(r=np.random.default_rng(seed).random(len(df)))
    test = d[d.r < tf]
    valid = d[(d.r >= tf) & (d.r < tf + (1 - tf) * vf)]
    assert _rows(s.test) == _rows(test) and _rows(s.valid) == _rows(valid)
    assert s.train.nnz + s.valid.nnz + s.test.nnz == len(df)
    assert s.info["valid_fraction"] == vf


def test_valid_share_of_the_training_part():
    n = 200_000
    t = RatingsTable.from_raw(np.arange(n) // 50, np.arange(n) % 50, np.ones(n, np.float32))
    s = apply_protocol(t, "r", "random", 3, {"test_fraction": 0.2, "valid_fraction": 0.25})
    rest = n - s.test.nnz
    assert abs(s.test.nnz - 0.2 * n) < 6 * np.sqrt(n * 0.16)
    assert abs(s.valid.nnz - 0.25 * rest) < 6 * np.sqrt(rest * 0.25 * 0.75)


def test_protocol_parameters_are_checked_and_canonical():
    assert protocol_params("user-time", {"test_fraction": "0.3"}) == {
        "test_fraction": 0.3, "valid_fraction": 0.1, "threshold": None}
    assert protocol_params("strong", {"heldout_users": "250", "threshold": "none"})["heldout_users"] == 250
    assert protocol_params("leave-last-k", {"k": "2"})["k"] == 2
    for protocol, params, needle in (
            ("user-time", {"k": 1}, "has no parameter k"),
            ("user-time", {"test_fraction": "abc"}, "want a number"),
            ("user-time", {"test_fraction": 1.0}, "0 < test_fraction < 1"),
            ("user-random", {"valid_fraction": -0.1}, "0 <= valid_fraction < 1"),
            ("leave-last-k", {"k": "1.5"}, "want an integer"),
            ("leave-last-k", {"k": 0}, ">= 1"),
            ("strong", {"heldout_users": "many"}, "want an integer"),
            ("random", {"threshold": "inf"}, "finite"),
            ("nope", {}, "unknown protocol 'nope'")):
        with pytest.raises(SettingsError, match=needle) as e:
            protocol_params(protocol, params)
        assert "\n" not in str(e.value)
    with pytest.raises(RecozooError):
        user_time_split(RatingsTable.from_raw([1], [1], [1.0], [5]), "x", test_fraction=0)
