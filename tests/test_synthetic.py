"""The seeded Netflix-like generator (recozoo.data.synthetic).

Why: the offline quick start, most tests and the benchmarks run on this data;
it must be reproducible, exactly as large as asked, valid (no duplicate pairs,
ratings 1-5, dates in range) and shaped like Netflix (skewed activity), and
``drift=True`` must carry a real temporal signal for the temporal models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recozoo.data.synthetic import generate
from recozoo.errors import RecozooError

FAST = settings(max_examples=30, deadline=None)


def _top_share(counts: np.ndarray, fraction: float = 0.1) -> float:
    c = np.sort(counts)[::-1]
    return c[: max(1, int(round(fraction * c.size)))].sum() / c.sum()


@FAST
@given(st.integers(2, 60), st.integers(2, 60), st.data(), st.integers(0, 2**32 - 1), st.booleans())
def test_exact_size_distinct_pairs_valid_values(n_users, n_items, data, seed, drift):
    n = data.draw(st.integers(1, n_users * n_items // 2))
    t = generate(n_users, n_items, n, seed=seed, drift=drift, start="2001-03-04", end="2003-01-31")
    assert t.nnz == n
    assert t.n_users == n_users and t.n_items == n_items
    assert t.user_ids.to_list() == list(range(1, n_users + 1))
    assert t.item_ids.to_list() == list(range(1, n_items + 1))
    key = t.users.astype(np.int64) * n_items + t.items
    assert np.unique(key).size == n
    assert set(np.unique(t.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    dates = pd.to_datetime(t.timestamps, unit="s")
    assert dates.min() >= pd.Timestamp("2001-03-04")
    assert dates.max() < pd.Timestamp("2003-02-01")


def test_seeded_determinism():
    a = generate(300, 100, 5_000, seed=11, drift=True)
    b = generate(300, 100, 5_000, seed=11, drift=True)
    c = generate(300, 100, 5_000, seed=12, drift=True)
    assert a.equals(b)
    assert not a.equals(c)
    assert not generate(300, 100, 5_000, seed=11).equals(a)  # drift changes the data


def test_dense_requests_are_still_exact():
    # a third of all pairs with skewed popularity: the popular pairs run out
    for drift in (False, True):
        t = generate(400, 150, 20_000, seed=2, drift=drift)
        assert t.nnz == 20_000
        assert np.unique(t.users.astype(np.int64) * 150 + t.items).size == 20_000
    t = generate(10, 10, 50, seed=0)  # exactly half
    assert t.nnz == 50


def test_activity_and_popularity_are_skewed_and_volume_grows():
    t = generate(5_000, 1_000, 150_000, seed=0)
    assert _top_share(t.user_counts()) > 0.3   # top 10% of users: far more than 10%
    assert _top_share(t.item_counts()) > 0.3
    assert np.mean(t.ratings) == pytest.approx(3.6, abs=0.4)
    assert len(np.unique(t.ratings)) == 5
    years = pd.to_datetime(t.timestamps, unit="s").year
    per_year = np.bincount(years - years.min())
    assert per_year[-1] > 3 * per_year[1]  # later years hold more ratings
    assert years.min() == 1999 and years.max() == 2005


def _user_slopes(t, min_ratings: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per-user least-squares slope of rating on time, on two random halves of each user's ratings."""
    users = t.users
    x = (t.timestamps - t.timestamps.min()) / (t.timestamps.max() - t.timestamps.min())
    half = np.random.default_rng(0).random(t.nnz) < 0.5
    out = []
    for h in (half, ~half):
        df = pd.DataFrame({"u": users[h], "x": x[h], "y": t.ratings[h].astype(np.float64)})
        g = df.groupby("u")
        mx, my = g.x.transform("mean"), g.y.transform("mean")
        df["sxy"], df["sxx"] = (df.x - mx) * (df.y - my), (df.x - mx) ** 2
        s = df.groupby("u")[["sxy", "sxx"]].sum()
        s["n"] = g.size()
        out.append((s.sxy / s.sxx).where(s.n >= min_ratings // 2))
    both = pd.concat(out, axis=1).dropna()
    return both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()


def test_drift_gives_users_a_measurable_rating_trend():
    kw = dict(n_users=1_500, n_items=800, n_ratings=150_000, seed=3)
    a1, a2 = _user_slopes(generate(drift=True, **kw))
    b1, b2 = _user_slopes(generate(drift=False, **kw))
    assert a1.size > 300 and b1.size > 300
    # with drift a user's trend is real: it replicates across two disjoint halves
    # of the user's ratings, and trends are larger; without drift it is noise
    r_drift = np.corrcoef(a1, a2)[0, 1]
    r_none = np.corrcoef(b1, b2)[0, 1]
    assert r_drift > 0.3
    assert abs(r_none) < 0.15
    assert np.mean(a1 * a2) > 5 * max(np.mean(b1 * b2), 1e-3)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(RecozooError, match="over half"):
        generate(10, 10, 51)
    with pytest.raises(RecozooError, match=">= 1"):
        generate(0, 10, 1)
    with pytest.raises(RecozooError, match="after start"):
        generate(10, 10, 5, start="2005-01-01", end="2004-01-01")
    with pytest.raises(RecozooError, match="2005-02-30"):
        generate(10, 10, 5, end="2005-02-30")
