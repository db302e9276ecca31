"""recozoo.topk.top_k_rows: exact top-k with ties to the lower index, on every path (~3 s)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recozoo.topk import top_k_rows


def _reference(s: np.ndarray, k: int) -> np.ndarray:
    key = np.where(np.isnan(s), -np.inf, s)
    return np.stack([np.lexsort((np.arange(s.shape[1]), -row))[:k] for row in key])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.integers(1, 400), st.integers(1, 12), st.sampled_from(["few", "many", "wide"]),
       st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64, np.int64]))
def test_matches_a_stable_sort(n_rows, n, k, values, seed, dtype):
    """Short rows (partition), long float32 rows (sampled threshold), heavy ties, -inf and NaN."""
    rng = np.random.default_rng(seed)
    if values == "few":          # ties everywhere, also at the k-th place
        s = rng.integers(0, 3, (n_rows, n)).astype(np.float64)
    elif values == "many":
        s = rng.standard_normal((n_rows, n))
    else:
        s = np.round(rng.standard_normal((n_rows, n)), 1)
    if dtype is not np.int64:
        s[rng.random(s.shape) < 0.2] = -np.inf
        s[rng.random(s.shape) < 0.05] = np.nan
    s = s.astype(dtype) if dtype is not np.int64 else s.astype(np.int64)
    items, scores = top_k_rows(s, k)
    want = _reference(s.astype(np.float64), min(k, n))
    np.testing.assert_array_equal(items, want)
    np.testing.assert_array_equal(scores, np.take_along_axis(s, want, axis=1))


def test_long_rows_take_the_sampled_path_and_stay_exact():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((150, 5000)).astype(np.float32)     # (rows go in chunks of 64)
    s[:10] = np.round(s[:10])                       # rows with thousands of ties at the threshold
    s[10:20, ::2] = -np.inf
    s[20, :] = 0.0                                  # one constant row
    s[21, :4990] = -np.inf                          # fewer finite scores than k
    s[22] = -0.0                                    # -0.0 == 0.0: a tie, not an order
    s[22, 7] = 0.0
    items, _ = top_k_rows(s, 100)
    np.testing.assert_array_equal(items, _reference(s, 100))


def test_shape_errors():
    with pytest.raises(ValueError, match="2-d"):
        top_k_rows(np.zeros(5), 2)
    items, scores = top_k_rows(np.array([[1.0, 3.0]]), 10)     # k capped at n
    assert items.tolist() == [[1, 0]] and scores.tolist() == [[3.0, 1.0]]
