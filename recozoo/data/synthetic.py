"""A seeded generator of Netflix-like ratings: no download, any size.

Why: the offline quick start, the tests and the benchmarks need data with the
structure that matters for speed and accuracy — skewed user activity and item
popularity (log-normal / Zipf-like), ratings 1-5 from latent factors plus
biases and noise, and day-resolution dates spanning years with volume growing
over time (as Netflix's did). With ``drift=True`` there is real temporal
dynamics for the temporal models: each user's bias drifts linearly over time,
item biases drift, and items have a release day before which nobody rates them
and after which their popularity decays.

Everything is vectorised; 20M ratings take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import RecozooError

__all__ = ["SyntheticConfig", "generate"]

SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 20_000
    n_items: int = 2_000
    n_ratings: int = 500_000
    seed: int = 0
    drift: bool = False
    start: str = "1999-11-11"
    end: str = "2005-12-31"
    rank: int = 8
    noise: float = 0.6
    #: log-normal sigma of user activity and Zipf exponent of item popularity
    user_skew: float = 1.2
    item_skew: float = 1.0


def _days(date: str) -> int:
    from recozoo.splits import day_number
    return day_number(date)


def generate(n_users: int = 20_000, n_items: int = 2_000, n_ratings: int = 500_000, seed: int = 0,
             drift: bool = False, start: str = "1999-11-11", end: str = "2005-12-31", rank: int = 8,
             noise: float = 0.6, user_skew: float = 1.2, item_skew: float = 1.0) -> RatingsTable:
    """Generate a ratings table; raw ids are 1..n_users and 1..n_items.

    ``n_ratings`` is exact (pairs are distinct) as long as it is at most half
    of ``n_users * n_items``.
    """
    if n_users < 1 or n_items < 1 or n_ratings < 1:
        raise RecozooError("synthetic: n_users, n_items and n_ratings must be >= 1")
    if n_ratings > n_users * n_items // 2:
        raise RecozooError(f"synthetic: {n_ratings} ratings is over half of {n_users} x {n_items} pairs")
    rng = np.random.default_rng(seed)
    d0, d1 = _days(start), _days(end)
    if d1 <= d0:
        raise RecozooError("synthetic: end must be after start")
    span = d1 - d0

    # skewed activity and popularity
    act = rng.lognormal(0.0, user_skew, n_users)
    act /= act.sum()
    pop = 1.0 / np.arange(1, n_items + 1) ** item_skew
    pop = pop[rng.permutation(n_items)]
    pop /= pop.sum()
    release = np.full(n_items, d0, dtype=np.int64)
    if drift:
        # items appear over time; a fifth exist from the start
        release = d0 + (rng.random(n_items) ** 0.7 * span * 0.9).astype(np.int64)
        release[rng.random(n_items) < 0.2] = d0

    users = np.empty(0, dtype=np.int64)
    items = np.empty(0, dtype=np.int64)
    days = np.empty(0, dtype=np.int64)
    need = n_ratings
    for _ in range(50):
        m = int(need * 1.3) + 64
        u = rng.choice(n_users, size=m, p=act)
        i = rng.choice(n_items, size=m, p=pop)
        # volume grows over time: density ~ t^2 on [0, 1]
        t = d0 + np.floor(rng.random(m) ** (1 / 3) * (span + 1)).astype(np.int64)
        t = np.minimum(t, d1)
        if drift:
            # nobody rates an item before its release; popularity decays after it
            age = t - release[i]
            ok = (age >= 0) & (rng.random(m) < np.exp(-np.maximum(age, 0) / (0.5 * span)))
            u, i, t = u[ok], i[ok], t[ok]
        users = np.concatenate([users, u])
        items = np.concatenate([items, i])
        days = np.concatenate([days, t])
        key = users * n_items + items
        _, first = np.unique(key, return_index=True)
        if first.size >= n_ratings:
            pick = np.sort(rng.choice(first, size=n_ratings, replace=False))
            users, items, days = users[pick], items[pick], days[pick]
            break
        users, items, days = users[first], items[first], days[first]
        need = n_ratings - first.size
    else:
        raise RecozooError("synthetic: could not draw enough distinct pairs; use more users or items")

    # ratings from biases + latent factors + noise, rounded to 1..5
    p = rng.normal(0, 1 / np.sqrt(rank), (n_users, rank)).astype(np.float32)
    q = rng.normal(0, 1 / np.sqrt(rank), (n_items, rank)).astype(np.float32)
    bu = rng.normal(0, 0.35, n_users)
    bi = rng.normal(0, 0.45, n_items)
    score = 3.6 + bu[users] + bi[items] + 1.1 * np.einsum("ij,ij->i", p[users], q[items])
    if drift:
        tt = (days - d0) / span - 0.5
        slope_u = rng.normal(0, 0.9, n_users)
        slope_i = rng.normal(0, 0.6, n_items)
        score = score + slope_u[users] * tt + slope_i[items] * tt
    score = score + rng.normal(0, noise, score.shape[0])
    ratings = np.clip(np.rint(score), 1, 5).astype(np.float32)
    return RatingsTable.from_coo(users.astype(np.int32), items.astype(np.int32), ratings,
                                 days * SECONDS_PER_DAY,
                                 user_ids=IdMap(np.arange(1, n_users + 1)),
                                 item_ids=IdMap(np.arange(1, n_items + 1)), check=False)
