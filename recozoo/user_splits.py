"""Per-user holdouts: every user keeps a TRAIN history and lends some ratings to VALID/TEST.

Three protocols (``recozoo data prepare NAME --source FILE --protocol P``), one
mechanism: each user's ratings are put in an order, TEST takes a number of
them from one end, VALID then takes a number from the same end of what is left
(VALID is carved from the training part *by the same protocol*), and TRAIN
keeps the rest.

* :func:`user_random_split` (``user-random``; "weak generalisation" on implicit
  data) — the order is a seeded random permutation of each user's ratings:
  ``u = numpy.random.default_rng(seed).integers(0, 2**32, nnz, dtype=uint32)``
  drawn over the table's ratings in user-major, item-sorted order; a user's
  TEST ratings are its ``⌊test_fraction·n⌋`` ratings with the smallest ``u``
  (equal draws: the smaller item first), VALID the next
  ``⌊valid_fraction·(n - n_test)⌋``.
* :func:`user_time_split` (``user-time``) — the order is time: TEST is the
  latest ``⌊test_fraction·n⌋`` of each user's ratings, VALID the latest
  ``⌊valid_fraction·(n - n_test)⌋`` of the rest. Ties in time are broken by
  item order (the later item index counts as later), so the split needs no seed.
* :func:`leave_last_k_split` (``leave-last-k``) — TEST is each user's last
  ``k`` ratings by time, VALID the ``valid_k`` before them; a user keeps all
  of its ratings in TRAIN when it has ``k`` or fewer (it would have no
  history left), and gives VALID nothing when ``valid_k`` more would empty
  TRAIN.

Why ⌊·⌋ (floor, in double precision): it is the rule of Liang et al.'s
strong-generalisation code (``int(0.2 * n)``), and it never leaves a user
without TRAIN history (``⌊f·n⌋ < n`` for ``f < 1``). A user with fewer than
``1/test_fraction`` ratings keeps them all in TRAIN.

Every user with a TEST or VALID rating has TRAIN ratings; an *item* can still
appear only in VALID/TEST, so these splits keep the whole id universe and
prescribe the ``fallback`` policy (the model's documented fallback scores it).
"""

from __future__ import annotations

import numpy as np

from recozoo.data.table import RatingsTable
from recozoo.errors import DataError, RecozooError
from recozoo.splits import Split

__all__ = ["user_random_split", "user_time_split", "leave_last_k_split", "rank_within_user",
           "floor_share"]


def rank_within_user(table: RatingsTable, key: np.ndarray) -> np.ndarray:
    """Each rating's 0-based position among its user's ratings ordered by ``key``.

    Ties keep the table's order (item index), so the ranking is deterministic.
    Vectorised: one stable sort over all ratings — of the int64 ``user << 32 |
    key`` when ``key`` is integral and spans less than 2^32 (the random draws,
    Unix seconds), else a two-key ``lexsort`` (about 10x slower). Either way the
    user-major blocks stay where they are, so ``order[j]`` lies in ``j``'s block.
    """
    key = np.asarray(key)
    users = table.users
    n = table.nnz
    span = int(key.max()) - int(key.min()) if n and key.dtype.kind in "iu" else None
    if span is not None and span < 1 << 32 and table.n_users < 1 << 31:
        composite = (users.astype(np.int64) << 32) | (key - key.min()).astype(np.int64)
        order = np.argsort(composite, kind="stable")
        del composite
    else:
        order = np.lexsort((key, users))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64) - np.asarray(table.indptr, np.int64)[users]
    return rank


def floor_share(fraction: float, n: np.ndarray) -> np.ndarray:
    """``⌊fraction·n⌋`` per user, in double precision (as ``int(fraction * n)`` in Python)."""
    return np.floor(float(fraction) * np.asarray(n, dtype=np.float64)).astype(np.int64)


def _check_fraction(name: str, what: str, value: float, *, zero_ok: bool) -> float:
    value = float(value)
    if not (0 <= value < 1) or (value == 0 and not zero_ok):
        lo = "0 <=" if zero_ok else "0 <"
        raise RecozooError(f"{name}: {what} must be {lo} {what} < 1, got {value}")
    return value


def _assemble(table: RatingsTable, name: str, pos: np.ndarray, n_test: np.ndarray,
              n_valid: np.ndarray, info: dict) -> Split:
    """TEST = ratings at positions ``< n_test`` of their user, VALID the next ``n_valid``."""
    users = table.users
    t = n_test[users]
    test = pos < t
    valid = (pos >= t) & (pos < t + n_valid[users])
    del users, t
    info = {**info, "policy": "fallback",
            "users_in_test": int(np.count_nonzero(n_test)),
            "users_in_valid": int(np.count_nonzero(n_valid))}
    return Split(name, table.select(~(test | valid)), table.select(valid), table.select(test), info)


def user_random_split(table: RatingsTable, name: str, test_fraction: float = 0.2,
                      valid_fraction: float = 0.1, seed: int = 0) -> Split:
    """Seeded per-user random holdout (module docstring: exact rule)."""
    tf = _check_fraction(name, "test_fraction", test_fraction, zero_ok=False)
    vf = _check_fraction(name, "valid_fraction", valid_fraction, zero_ok=True)
    n = table.user_counts()
    n_test = floor_share(tf, n)
    n_valid = floor_share(vf, n - n_test)
    draws = np.random.default_rng(seed).integers(0, 1 << 32, table.nnz, dtype=np.uint32)
    pos = rank_within_user(table, draws)
    return _assemble(table, name, pos, n_test, n_valid,
                     {"protocol": "user-random", "test_fraction": tf, "valid_fraction": vf,
                      "seed": seed})


def _latest_first(table: RatingsTable, name: str, protocol: str) -> np.ndarray:
    """Position of each rating counted from its user's latest (0 = the latest)."""
    if not table.has_timestamps:
        raise DataError(f"{name}: protocol {protocol} orders each user's ratings by time, and "
                        "this data has no timestamps")
    rank = rank_within_user(table, np.asarray(table.timestamps))
    return table.user_counts()[table.users] - 1 - rank


def user_time_split(table: RatingsTable, name: str, test_fraction: float = 0.2,
                    valid_fraction: float = 0.1, seed: int = 0) -> Split:
    """Per-user chronological holdout: each user's latest ratings go to TEST, then VALID.

    ``seed`` is accepted (every protocol takes one) and recorded, but unused:
    the split is deterministic.
    """
    tf = _check_fraction(name, "test_fraction", test_fraction, zero_ok=False)
    vf = _check_fraction(name, "valid_fraction", valid_fraction, zero_ok=True)
    pos = _latest_first(table, name, "user-time")
    n = table.user_counts()
    n_test = floor_share(tf, n)
    n_valid = floor_share(vf, n - n_test)
    return _assemble(table, name, pos, n_test, n_valid,
                     {"protocol": "user-time", "test_fraction": tf, "valid_fraction": vf,
                      "seed": seed, "ties": "item order"})


def leave_last_k_split(table: RatingsTable, name: str, k: int = 1, valid_k: int | None = None,
                       seed: int = 0) -> Split:
    """Per user: the last ``k`` ratings by time are TEST, the ``valid_k`` before them VALID.

    ``valid_k`` defaults to ``k``; 0 gives no VALID. Deterministic (``seed`` unused).
    """
    k = int(k)
    valid_k = k if valid_k is None else int(valid_k)
    if k < 1 or valid_k < 0:
        raise RecozooError(f"{name}: leave-last-k needs k >= 1 and valid_k >= 0, got k={k}, "
                           f"valid_k={valid_k}")
    pos = _latest_first(table, name, "leave-last-k")
    n = table.user_counts()
    n_test = np.where(n > k, k, 0)
    n_valid = np.where(n - n_test > valid_k, valid_k, 0)
    return _assemble(table, name, pos, n_test, n_valid,
                     {"protocol": "leave-last-k", "k": k, "valid_k": valid_k, "seed": seed,
                      "ties": "item order"})
