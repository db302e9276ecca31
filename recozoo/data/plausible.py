"""Ratings that cannot be meant: a one-line warning, or an error under ``--rating-range``.

Why: a rating of ``1e30`` among 1-5 stars parses (it is a finite number) and then
silently ruins every figure (a ``bias`` model scores an RMSE of ~1e26). A range
check needs the scale, which recozoo does not know for arbitrary data, so by default
only ratings orders of magnitude beyond the bulk are flagged (a warning, since
heavy-tailed data such as play counts are legitimate); ``--rating-range LO,HI``
makes any rating outside ``[LO, HI]`` an error.

Cost: one min/max per table, plus quantiles of a strided sample of at most
2**20 TRAIN ratings; the tables are counted only when something is out of bounds.
"""

from __future__ import annotations

import warnings

import numpy as np

from recozoo.errors import DataError, RecozooWarning

__all__ = ["rating_bounds", "check_ratings", "IMPLAUSIBLE_FACTOR"]

#: a rating whose magnitude exceeds this many times the bulk's (the larger of |25th| and |75th|
#: percentile, at least 1) is implausible: 1-5 stars flag |r| > 5,000
IMPLAUSIBLE_FACTOR = 1000.0
_SAMPLE = 1 << 20


def rating_bounds(table) -> tuple[float, float] | None:
    """(min, max) of a table's ratings; None when it holds none."""
    if table is None or table.nnz == 0:
        return None
    r = table.ratings
    return float(np.min(r)), float(np.max(r))


def _outside(tables, lo: float, hi: float) -> tuple[int, float, float]:
    """How many ratings of ``tables`` lie outside ``[lo, hi]``, and their min and max."""
    n, a, b = 0, np.inf, -np.inf
    for t in tables:
        r = np.asarray(t.ratings)
        bad = r[(r < lo) | (r > hi)]
        if bad.size:
            n += int(bad.size)
            a, b = min(a, float(bad.min())), max(b, float(bad.max()))
    return n, a, b


def _plural(n: int, x: float, y: float) -> str:
    """``1 rating (1e+30)`` / ``3 ratings (from -4 to 1e+30)``."""
    values = f"{x:g}" if x == y else f"from {x:g} to {y:g}"
    return f"{n:,} rating{'s' if n != 1 else ''} ({values})"


def check_ratings(split, name: str, rating_range: tuple[float, float] | None = None) -> None:
    """Raise a :class:`DataError` for ratings outside ``rating_range``; else warn (one line,
    :class:`RecozooWarning`) about implausible ones, with their count and range."""
    tables = [t for t in (split.train, split.valid, split.test, split.valid_fold_in, split.test_fold_in)
              if t is not None and t.nnz]
    if not tables:
        return
    bounds = [rating_bounds(t) for t in tables]
    lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
    if rating_range is not None:
        a, b = rating_range
        if lo < a or hi > b:
            n, x, y = _outside(tables, a, b)
            raise DataError(f"{name}: {_plural(n, x, y)} outside --rating-range {a:g},{b:g}")
        return
    r = np.asarray(tables[0].ratings)
    sample = r[::max(1, r.shape[0] // _SAMPLE)].astype(np.float64)
    q25, q75 = np.quantile(sample, [0.25, 0.75])
    limit = IMPLAUSIBLE_FACTOR * max(abs(q25), abs(q75), 1.0)
    if max(abs(lo), abs(hi)) > limit:
        n, x, y = _outside(tables, -limit, limit)
        warnings.warn(f"{name}: {_plural(n, x, y)} {'lies' if n == 1 else 'lie'} orders of magnitude beyond "
                      f"the others (half of them within {q25:g} to {q75:g}); check the data, or pass "
                      "--rating-range LO,HI to refuse ratings outside a range", RecozooWarning, stacklevel=2)
