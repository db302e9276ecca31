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
from recozoo.io import atomic_open
from recozoo.splits import day_number

__all__ = ["SyntheticConfig", "generate", "write_netflix_layout", "NETFLIX_LAYOUTS"]

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

    users, items, days = _draw_pairs(rng, n_users, n_items, n_ratings, act, pop, release, d0, d1, drift)
    ratings = _draw_ratings(rng, users, items, days, n_users, n_items, rank, noise, drift, d0, span)
    return RatingsTable.from_coo(users.astype(np.int32), items.astype(np.int32), ratings,
                                 days * SECONDS_PER_DAY,
                                 user_ids=IdMap(np.arange(1, n_users + 1)),
                                 item_ids=IdMap(np.arange(1, n_items + 1)), check=False)


def _draw_pairs(rng, n_users: int, n_items: int, n_ratings: int, act: np.ndarray, pop: np.ndarray,
                release: np.ndarray, d0: int, d1: int, drift: bool):
    """``n_ratings`` distinct (user, item, day) triples, users by activity and items by popularity."""
    span = d1 - d0
    users = np.empty(0, dtype=np.int64)
    items = np.empty(0, dtype=np.int64)
    days = np.empty(0, dtype=np.int64)
    need = n_ratings
    uniform = False
    for _ in range(64):
        m = int(need * (2.5 if uniform else 1.3)) + 64
        if uniform:
            # Skewed draws stall when the popular pairs are used up (dense data):
            # fill the rest with uniformly drawn pairs, which are new with
            # probability >= 1/2 at the allowed density, so this ends quickly.
            u = rng.integers(0, n_users, m)
            i = rng.integers(0, n_items, m)
            t = release[i] + np.floor(rng.random(m) * (d1 - release[i] + 1)).astype(np.int64)
        else:
            u = rng.choice(n_users, size=m, p=act)
            i = rng.choice(n_items, size=m, p=pop)
            # volume grows over time: density ~ t^2 on [0, 1]
            t = d0 + np.floor(rng.random(m) ** (1 / 3) * (span + 1)).astype(np.int64)
        t = np.minimum(t, d1)
        if drift and not uniform:
            # nobody rates an item before its release; popularity decays after it
            age = t - release[i]
            ok = (age >= 0) & (rng.random(m) < np.exp(-np.maximum(age, 0) / (0.5 * span)))
            u, i, t = u[ok], i[ok], t[ok]
        had = users.size
        users = np.concatenate([users, u])
        items = np.concatenate([items, i])
        days = np.concatenate([days, t])
        key = users * n_items + items
        _, first = np.unique(key, return_index=True)
        if first.size >= n_ratings:
            pick = np.sort(rng.choice(first, size=n_ratings, replace=False))
            return users[pick], items[pick], days[pick]
        if first.size - had < 0.25 * need:
            uniform = True
        users, items, days = users[first], items[first], days[first]
        need = n_ratings - first.size
    raise RecozooError("synthetic: could not draw enough distinct pairs; use more users or items")


def _draw_ratings(rng, users, items, days, n_users: int, n_items: int, rank: int, noise: float, drift: bool,
                  d0: int, span: int) -> np.ndarray:
    """Ratings from biases + latent factors (+ drifting biases) + noise, rounded to 1..5."""
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
    return np.clip(np.rint(score), 1, 5).astype(np.float32)


# ------------------------------------------------------ Netflix raw layouts
NETFLIX_LAYOUTS = ("mv", "tar", "tar.gz", "combined")


def _netflix_blocks(table: RatingsTable, max_ratings: int = 4_000_000):
    """Yield ``(movie_ids, rendered_bytes, block_offsets)`` for groups of movies.

    Item-major text rendered by a numba kernel (why: writing 20M lines with
    Python string formatting would dominate the benchmark's setup time). Imported here: generating
    ratings, the common use of this module, needs no numba compile.
    """
    from recozoo.data._parse import render_netflix
    if table.timestamps is None:
        raise RecozooError("write_netflix_layout: the table needs timestamps")
    r = table.ratings
    if table.nnz and (r.min() < 1 or r.max() > 5 or not np.all(r == np.round(r))):
        raise RecozooError("write_netflix_layout: Netflix ratings must be integers 1-5")
    order = table.item_order()
    counts = table.item_counts()
    users = table.user_ids.raw[table.users[order]].astype(np.int64)
    ratings = r[order].astype(np.int64)
    days = (table.timestamps[order] // SECONDS_PER_DAY).astype(np.int64)
    del order
    present = np.flatnonzero(counts)
    movies = table.item_ids.raw[present].astype(np.int64)
    starts = np.zeros(present.size + 1, dtype=np.int64)
    np.cumsum(counts[present], out=starts[1:])
    b = 0
    while b < present.size:
        e = b + 1
        while e < present.size and starts[e + 1] - starts[b] <= max_ratings:
            e += 1
        s0, s1 = starts[b], starts[e]
        out = np.empty(int(s1 - s0) * 24 + (e - b) * 24, dtype=np.uint8)
        offs = render_netflix(movies[b:e], starts[b:e + 1] - s0, users[s0:s1], ratings[s0:s1],
                              days[s0:s1], out)
        yield movies[b:e], out, offs
        b = e


def write_netflix_layout(table: RatingsTable, out_path, layout: str) -> None:
    """Write ``table`` in a raw Netflix Prize layout (for tests and benchmarks).

    ``layout``: ``"mv"`` (``out_path`` = folder of ``mv_%07d.txt``), ``"tar"``
    (``out_path`` = ``training_set.tar`` holding ``training_set/mv_*.txt``),
    ``"tar.gz"`` (``out_path`` = ``nf_prize_dataset.tar.gz`` holding
    ``download/training_set.tar``, as the original download) or
    ``"combined"`` (``out_path`` = folder of ``combined_data_1..4.txt``).
    Item raw ids must be integers; ratings integers 1-5; dates come from the
    timestamps (UTC days).
    """
    import io
    import tarfile
    import tempfile
    from pathlib import Path

    out_path = Path(out_path)
    if layout not in NETFLIX_LAYOUTS:
        raise RecozooError(f"unknown Netflix layout {layout!r} ({'|'.join(NETFLIX_LAYOUTS)})")
    if layout == "mv":
        out_path.mkdir(parents=True, exist_ok=True)
        for movies, buf, offs in _netflix_blocks(table):
            for k, m in enumerate(movies):
                (out_path / f"mv_{int(m):07d}.txt").write_bytes(buf[offs[k]:offs[k + 1]].tobytes())
        return
    if layout == "combined":
        out_path.mkdir(parents=True, exist_ok=True)
        per_file = max(1, -(-table.nnz // 4))
        k, size = 1, 0
        f = open(out_path / "combined_data_1.txt", "wb")
        try:
            for movies, buf, offs in _netflix_blocks(table, max_ratings=max(per_file // 4, 1)):
                if size >= per_file and k < 4:
                    f.close()
                    k, size = k + 1, 0
                    f = open(out_path / f"combined_data_{k}.txt", "wb")
                f.write(buf[:offs[-1]].tobytes())
                size += int(offs[-1]) // 20
        finally:
            f.close()
        return

    def write_tar(dst) -> None:
        with tarfile.open(fileobj=dst, mode="w") as tf:
            d = tarfile.TarInfo("training_set")
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(d)
            for movies, buf, offs in _netflix_blocks(table):
                for k, m in enumerate(movies):
                    data = buf[offs[k]:offs[k + 1]].tobytes()
                    ti = tarfile.TarInfo(f"training_set/mv_{int(m):07d}.txt")
                    ti.size, ti.mode = len(data), 0o644
                    tf.addfile(ti, io.BytesIO(data))

    with atomic_open(out_path) as f:
        if layout == "tar":
            write_tar(f)
        else:
            with tempfile.TemporaryFile(dir=out_path.parent) as inner:
                write_tar(inner)
                size = inner.tell()
                inner.seek(0)
                with tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as outer:
                    readme = b"Synthetic data in the Netflix Prize layout (recozoo).\n"
                    ti = tarfile.TarInfo("download/README")
                    ti.size = len(readme)
                    outer.addfile(ti, io.BytesIO(readme))
                    ti = tarfile.TarInfo("download/training_set.tar")
                    ti.size = size
                    outer.addfile(ti, inner)
