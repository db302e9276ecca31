"""Split protocols (recozoo.splits) checked against an independent naive version.

Why: published Netflix numbers are only comparable if TRAIN/VALID/TEST follow
PROTOCOLS.md's rules 1-5 exactly. The reference here is a deliberately plain
pandas implementation of those rules (dates via pandas, not ``day_number``),
compared as sets of (raw user, raw item, rating, timestamp) rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from recozoo.data.synthetic import generate
from recozoo.data.table import RatingsTable
from recozoo.errors import RecozooError
from recozoo.splits import (NETFLIX_PRESETS, Split, holdout_split, random_split, time_fraction_split,
                            time_split)

FAST = settings(max_examples=60, deadline=None)
PROTOCOLS = Path(__file__).resolve().parents[2] / "shared" / "PROTOCOLS.md"

# netflix-3m, but any window works: the generated dates straddle every boundary
WINDOW = NETFLIX_PRESETS["netflix-3m"]
DAY0 = pd.Timestamp(WINDOW[0])
LAST_SECOND = 86_399


def _ts(day_offset: int, second: int) -> int:
    """Unix seconds of ``second`` into the day ``day_offset`` days after the train start."""
    return int((DAY0 + pd.Timedelta(days=day_offset)).timestamp()) + second


@st.composite
def timed_ratings(draw):
    """Raw ratings with dates around the window, many exactly at day boundaries."""
    # which of the 8 x 8 (user, item) pairs are rated: a dense little matrix, so
    # users and items recur across the intervals
    rated = draw(st.lists(st.booleans(), min_size=64, max_size=64))
    pairs = [divmod(k, 8) for k, on in enumerate(rated) if on]
    n = len(pairs)
    # days: 3 before the train start .. 3 after the test end, boundary days and
    # the two intervals favoured (so that rules 2 and 4 both have work to do)
    span = (pd.Timestamp(WINDOW[3]) - DAY0).days
    b = (pd.Timestamp(WINDOW[1]) - DAY0).days
    edges = [-1, 0, b, b + 1, span, span + 1]
    day = st.one_of(st.sampled_from(edges), st.integers(0, b), st.integers(b + 1, span),
                    st.integers(-3, span + 3))
    sec = st.one_of(st.sampled_from([0, LAST_SECOND]), st.integers(0, LAST_SECOND))
    days = draw(st.lists(day, min_size=n, max_size=n))
    secs = draw(st.lists(sec, min_size=n, max_size=n))
    r = draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]), min_size=n, max_size=n))
    return pd.DataFrame({"user": [p[0] for p in pairs], "item": [100 + p[1] for p in pairs],
                         "rating": np.array(r, dtype=np.float32),
                         "timestamp": [_ts(d, s) for d, s in zip(days, secs)]})


def _table(df: pd.DataFrame) -> RatingsTable:
    return RatingsTable.from_raw(df.user.to_numpy(np.int64), df.item.to_numpy(np.int64),
                                 df.rating.to_numpy(np.float32), df.timestamp.to_numpy(np.int64))


def _rows(t: RatingsTable | pd.DataFrame) -> set:
    f = t.to_frame() if isinstance(t, RatingsTable) else t
    return set(zip(f.user.tolist(), f.item.tolist(), f.rating.astype(float).tolist(),
                   f.timestamp.tolist()))


def naive_netflix_rules(df: pd.DataFrame, train_mask: pd.Series, test_mask: pd.Series):
    """Rules 1, 2, 4 and 5 of PROTOCOLS.md, row by row in pandas (rule 3 is the coin)."""
    train = df[train_mask]
    interval = df[test_mask]
    kept = interval[interval.user.isin(set(train.user))]                  # rule 2
    valid_or_test = kept[kept.item.isin(set(train.item))]                 # rules 4, 5
    return train, interval, kept, valid_or_test


def naive_time_masks(df: pd.DataFrame, window) -> tuple[pd.Series, pd.Series]:
    date = pd.to_datetime(df.timestamp, unit="s").dt.normalize()          # UTC calendar day
    a, b, c, d = (pd.Timestamp(x) for x in window)
    return (date >= a) & (date <= b), (date >= c) & (date <= d)


def _check_split_invariants(s: Split) -> None:
    tr, va, te = s.train, s.valid, s.test
    assert va.user_ids is tr.user_ids and te.user_ids is tr.user_ids
    assert va.item_ids is tr.item_ids and te.item_ids is tr.item_ids
    # the id universe is exactly the train set's users and items (rule 5)
    assert np.all(tr.user_counts() > 0) and np.all(tr.item_counts() > 0)
    for part in (va, te):
        assert np.all(tr.user_counts()[part.users] > 0)
        assert np.all(tr.item_counts()[part.items] > 0)
    pairs = lambda t: set(zip(t.users.tolist(), t.items.tolist()))  # noqa: E731
    assert not pairs(va) & pairs(te)
    assert not pairs(tr) & (pairs(va) | pairs(te))


# ------------------------------------------------------------------ time split


@FAST
@given(timed_ratings(), st.integers(0, 2**32 - 1))
def test_time_split_matches_naive_rules(df, seed):
    s = time_split(_table(df), "t", *WINDOW, seed=seed)
    train_mask, test_mask = naive_time_masks(df, WINDOW)
    train, interval, kept, expected = naive_netflix_rules(df, train_mask, test_mask)
    assert _rows(s.train) == _rows(train)
    assert _rows(s.valid) | _rows(s.test) == _rows(expected)
    _check_split_invariants(s)
    event(f"valid+test nonempty: {len(expected) > 0}")
    event(f"rule 4 removed some: {len(kept) > len(expected)}")
    # train dates inside the inclusive window, checked with plain datetime arithmetic
    if s.train.nnz:
        dates = pd.to_datetime(s.train.timestamps, unit="s")
        assert dates.min() >= pd.Timestamp(WINDOW[0])
        assert dates.max() < pd.Timestamp(WINDOW[1]) + pd.Timedelta(days=1)
    info = s.info
    assert info["seed"] == seed and info["policy"] == "drop"
    assert info["test_interval_ratings"] == len(interval)
    assert info["kept_test_interval_ratings"] == len(kept)
    assert info["removed_unknown_user"] == len(interval) - len(kept)
    assert info["removed_unknown_item"] == len(kept) - len(expected)
    assert s.valid.nnz + s.test.nnz + info["removed_unknown_item"] == info["kept_test_interval_ratings"]
    d = s.describe()
    assert d["train"]["ratings"] == len(train) and d["train"]["users"] == train.user.nunique()
    assert d["valid"]["ratings"] + d["test"]["ratings"] == len(expected)


def test_time_split_inclusive_day_boundaries():
    b = (pd.Timestamp(WINDOW[1]) - DAY0).days
    end = (pd.Timestamp(WINDOW[3]) - DAY0).days
    cases = [  # (day offset, second, expected part)
        (-1, LAST_SECOND, None), (0, 0, "train"), (0, LAST_SECOND, "train"),
        (b, LAST_SECOND, "train"), (b + 1, 0, "interval"), (end, LAST_SECOND, "interval"),
        (end + 1, 0, None)]
    # user 1 rates probe item 10+k at each instant (and item 100 inside the train
    # window, so rule 2 keeps them); user 2 rates every probe item in train (rule 4)
    rows = [(1, 10 + k, 4.0, _ts(d, sec)) for k, (d, sec, _) in enumerate(cases)]
    rows.append((1, 100, 3.0, _ts(1, 5)))
    rows += [(2, 10 + k, 2.0, _ts(2, 7)) for k in range(len(cases))]
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    s = time_split(_table(df), "t", *WINDOW, seed=0)
    train = {r[1] for r in _rows(s.train) if r[0] == 1}
    interval = {r[1] for r in _rows(s.valid) | _rows(s.test) if r[0] == 1}
    for k, (_, _, part) in enumerate(cases):
        assert (10 + k in train) == (part == "train"), cases[k]
        assert (10 + k in interval) == (part == "interval"), cases[k]


def test_valid_share_is_near_one_half():
    # every test-interval rating survives rules 2 and 4, so VALID ~ Binomial(n, 1/2)
    rng = np.random.default_rng(1)
    n_users, n_items, n = 2_000, 300, 60_000
    u = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n)])
    i = np.concatenate([np.arange(n_users) % n_items, rng.integers(0, n_items, n)])
    key, first = np.unique(u * n_items + i, return_index=True)
    u, i = key // n_items, key % n_items
    in_train = first < n_users
    day = np.where(in_train, 10, 95)  # day 10 of the train window / a test-interval day
    ts = np.array([_ts(0, 0)]) + day * 86_400
    table = RatingsTable.from_raw(u, i, np.ones(u.size, np.float32), ts)
    m = int((~in_train).sum())
    for seed in range(3):
        s = time_split(table, "t", *WINDOW, seed=seed)
        assert s.valid.nnz + s.test.nnz == m
        assert abs(s.valid.nnz - m / 2) <= 6 * np.sqrt(m * 0.25)


def test_same_seed_same_split_other_seed_other_split():
    table = generate(300, 120, 8_000, seed=3)
    a = time_split(table, "t", "1999-11-11", "2004-12-31", "2005-01-01", "2005-12-31", seed=7)
    b = time_split(table, "t", "1999-11-11", "2004-12-31", "2005-01-01", "2005-12-31", seed=7)
    c = time_split(table, "t", "1999-11-11", "2004-12-31", "2005-01-01", "2005-12-31", seed=8)
    assert a.valid.nnz > 50
    assert a.train.equals(b.train) and a.valid.equals(b.valid) and a.test.equals(b.test)
    assert c.train.equals(a.train)
    assert not c.valid.equals(a.valid)
    assert _rows(c.valid) | _rows(c.test) == _rows(a.valid) | _rows(a.test)


def test_split_does_not_depend_on_input_row_order():
    table = generate(200, 80, 4_000, seed=5)
    f = table.to_frame().sample(frac=1.0, random_state=0)
    shuffled = RatingsTable.from_raw(f.user.to_numpy(), f.item.to_numpy(), f.rating.to_numpy(),
                                     f.timestamp.to_numpy())
    a = time_split(table, "t", "1999-11-11", "2004-12-31", "2005-01-01", "2005-12-31", seed=1)
    b = time_split(shuffled, "t", "1999-11-11", "2004-12-31", "2005-01-01", "2005-12-31", seed=1)
    assert _rows(a.valid) == _rows(b.valid) and _rows(a.test) == _rows(b.test)


def _protocol_presets(text: str) -> dict[str, tuple[str, ...]]:
    rows = re.findall(r"^\|\s*(netflix-\w+)\s*\|\s*([\d-]+)\s*\.\.\s*([\d-]+)\s*\|"
                      r"\s*([\d-]+)\s*\.\.\s*([\d-]+)\s*\|", text, flags=re.M)
    return {r[0]: tuple(r[1:]) for r in rows}


def test_netflix_presets_match_protocols():
    expected = {  # copied from ../shared/PROTOCOLS.md
        "netflix-3m": ("2005-09-01", "2005-11-30", "2005-12-01", "2005-12-31"),
        "netflix-6m": ("2005-06-01", "2005-11-30", "2005-12-01", "2005-12-31"),
        "netflix-1y": ("2004-06-01", "2005-05-31", "2005-06-01", "2005-06-30"),
        "netflix-full": ("1999-12-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    }
    assert NETFLIX_PRESETS == expected
    if PROTOCOLS.exists():  # the source of truth, when the shared folder is there
        assert _protocol_presets(PROTOCOLS.read_text()) == expected


def test_netflix_preset_on_generated_drift_data():
    table = generate(400, 150, 20_000, seed=2, drift=True)
    s = time_split(table, "netflix-full", *NETFLIX_PRESETS["netflix-full"], seed=0)
    df = table.to_frame()
    train_mask, test_mask = naive_time_masks(df, NETFLIX_PRESETS["netflix-full"])
    train, _, _, expected = naive_netflix_rules(df, train_mask, test_mask)
    assert s.valid.nnz > 100
    assert _rows(s.train) == _rows(train)
    assert _rows(s.valid) | _rows(s.test) == _rows(expected)
    _check_split_invariants(s)


def test_time_split_rejects_bad_windows():
    table = generate(50, 30, 300, seed=0)
    with pytest.raises(RecozooError):
        time_split(table, "t", "2005-13-01", "2005-11-30", "2005-12-01", "2005-12-31")
    with pytest.raises(RecozooError):  # overlapping train and test intervals
        time_split(table, "t", "2005-01-01", "2005-12-01", "2005-12-01", "2005-12-31")
    with pytest.raises(RecozooError):  # an empty (reversed) interval
        time_split(table, "t", "2005-11-30", "2005-01-01", "2005-12-01", "2005-12-31")
    no_time = RatingsTable.from_raw(np.array([1]), np.array([1]), np.array([3.0]))
    with pytest.raises(RecozooError, match="timestamps"):
        time_split(no_time, "t", *WINDOW)


# -------------------------------------------------------- time fraction split


@FAST
@given(timed_ratings(), st.sampled_from([0.3, 0.5, 0.8, 0.9]), st.integers(0, 1000))
def test_time_fraction_split_matches_naive_rules(df, fraction, seed):
    if df.empty:
        return
    s = time_fraction_split(_table(df), "tf", fraction, seed=seed)
    cut = s.info["cut_timestamp"]
    ts = np.sort(df.timestamp.to_numpy())
    # the cut is the timestamp of the rating at the train_fraction quantile
    assert cut == ts[int(fraction * ts.size)]
    train_mask = df.timestamp < cut
    assert train_mask.sum() <= fraction * len(df) + 1e-9
    train, interval, kept, expected = naive_netflix_rules(df, train_mask, ~train_mask)
    assert _rows(s.train) == _rows(train)
    assert _rows(s.valid) | _rows(s.test) == _rows(expected)
    _check_split_invariants(s)
    assert s.info["test_interval_ratings"] == len(interval)
    assert s.info["kept_test_interval_ratings"] == len(kept)


def test_time_fraction_split_distinct_times_takes_the_exact_fraction():
    n = 1_000
    table = RatingsTable.from_raw(np.arange(n) % 37, np.arange(n) % 41 + (np.arange(n) // 37) * 41,
                                  np.ones(n, np.float32), np.random.default_rng(0).permutation(n) * 60)
    s = time_fraction_split(table, "tf", 0.8, seed=0)
    assert s.train.nnz == 800
    assert s.info["test_interval_ratings"] == 200
    with pytest.raises(RecozooError):
        time_fraction_split(table, "tf", 1.0)


# ---------------------------------------------------------- holdout and random


@FAST
@given(st.integers(0, 10**6), st.sampled_from([0.0, 0.05, 0.3]))
def test_holdout_split(seed, fraction):
    full = generate(60, 40, 600, seed=1)
    r = np.random.default_rng(0).random(full.nnz) < 0.2
    train, test = full.select(~r), full.select(r)
    s = holdout_split(train, test, "h", valid_fraction=fraction, seed=seed)
    assert s.test is test and s.info["policy"] == "fallback"
    assert s.train.user_ids is train.user_ids and s.valid.item_ids is train.item_ids
    assert _rows(s.train) | _rows(s.valid) == _rows(train)
    assert not _rows(s.train) & _rows(s.valid)
    if fraction == 0:
        assert s.valid.nnz == 0
    again = holdout_split(train, test, "h", valid_fraction=fraction, seed=seed)
    assert again.valid.equals(s.valid)


def test_holdout_split_checks_its_inputs():
    full = generate(60, 40, 600, seed=1)
    other_items = RatingsTable.from_raw(full.user_ids.raw[full.users], full.items + 5000,
                                        full.ratings, full.timestamps)
    other = other_items.remap(full.user_ids, other_items.item_ids)
    with pytest.raises(RecozooError, match="share"):
        holdout_split(full, other, "h")
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(RecozooError):
            holdout_split(full, full, "h", valid_fraction=bad)


@FAST
@given(st.integers(0, 10**6), st.sampled_from([(0.1, 0.1), (0.2, 0.0), (0.5, 0.3)]))
def test_random_split_partitions_the_ratings(seed, fractions):
    table = generate(80, 50, 1_500, seed=4)
    tf, vf = fractions
    s = random_split(table, "r", test_fraction=tf, valid_fraction=vf, seed=seed)
    parts = [_rows(s.train), _rows(s.valid), _rows(s.test)]
    assert parts[0] | parts[1] | parts[2] == _rows(table)
    assert sum(map(len, parts)) == table.nnz
    n = table.nnz
    for got, p in ((s.test.nnz, tf), (s.valid.nnz, vf)):
        assert abs(got - p * n) <= 6 * np.sqrt(n * p * (1 - p)) + 1e-9
    again = random_split(table, "r", test_fraction=tf, valid_fraction=vf, seed=seed)
    assert again.test.equals(s.test) and again.valid.equals(s.valid)
    other = random_split(table, "r", test_fraction=tf, valid_fraction=vf, seed=seed + 1)
    assert not other.test.equals(s.test)


def test_random_split_rejects_bad_fractions():
    table = generate(20, 20, 100, seed=0)
    for tf, vf in ((0.0, 0.1), (0.5, 0.5), (0.1, -0.1)):
        with pytest.raises(RecozooError):
            random_split(table, "r", tf, vf)


# ----------------------------------------------------------------- persistence


def test_split_save_load_round_trip(tmp_path):
    table = generate(100, 60, 2_000, seed=0)
    s = time_split(table, "t", "1999-11-11", "2004-12-31", "2005-01-01", "2005-12-31", seed=3)
    s.save(tmp_path / "s")
    back = Split.load(tmp_path / "s")
    assert back.name == "t" and back.info == s.info
    for part in ("train", "valid", "test"):
        assert back.table(part).equals(s.table(part))
    assert back.describe() == s.describe()
    with pytest.raises(RecozooError):
        s.table("nope")
