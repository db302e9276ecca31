"""Evaluation protocols: how a ratings table becomes TRAIN / VALID / TEST.

All three tables of a :class:`Split` share one pair of id maps, so index ``u``
is the same user everywhere. Model selection uses VALID only; TEST is scored
once by the selected model.

Protocols (the rules, exactly as implemented):

* :func:`time_split` — the Netflix rules: train = ratings whose *day* lies in
  the inclusive train interval; a test-interval rating is kept only if its user
  has a train rating; each kept rating goes to VALID or TEST with probability
  1/2 (seeded); ratings of items without a train rating are then removed from
  VALID and TEST; the id universe is the train set's users and items.
* :func:`time_fraction_split` — the same rules with dataset-relative windows:
  train = the earliest ``train_fraction`` of ratings by timestamp.
* :func:`holdout_split` — given train/test tables (e.g. ML-100K ``u1.base`` /
  ``u1.test``): VALID is a seeded slice of train; TEST is kept whole, unseen
  ids included, so the evaluator's ``fallback`` policy can score every pair.
* :func:`random_split` — seeded per-rating random TRAIN/VALID/TEST fractions.

Per-user holdouts (``user-random``, ``user-time``, ``leave-last-k``) live in
:mod:`recozoo.user_splits`, strong generalisation (held-out users with a
fold-in part) in :mod:`recozoo.strong_generalization`, and the named
protocols of ``recozoo data prepare NAME --source FILE --protocol P`` in
:mod:`recozoo.protocols`.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DataError, RecozooError

__all__ = ["Split", "PARTS", "time_split", "time_fraction_split", "holdout_split", "random_split",
           "day_number", "NETFLIX_PRESETS"]

SECONDS_PER_DAY = 86400

#: (train first day, train last day, test first day, test last day), inclusive
NETFLIX_PRESETS: dict[str, tuple[str, str, str, str]] = {
    "netflix-3m": ("2005-09-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "netflix-6m": ("2005-06-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "netflix-1y": ("2004-06-01", "2005-05-31", "2005-06-01", "2005-06-30"),
    "netflix-full": ("1999-12-01", "2005-11-30", "2005-12-01", "2005-12-31"),
}


def day_number(date: str | _dt.date) -> int:
    """Days since 1970-01-01 of an ISO date (UTC)."""
    if isinstance(date, str):
        try:
            date = _dt.date.fromisoformat(date.strip())
        except ValueError as e:
            raise RecozooError(f"bad date {date!r} (want YYYY-MM-DD): {e}") from None
    return (date - _dt.date(1970, 1, 1)).days


#: every table a split can hold, in the order they are saved and described
PARTS = ("train", "valid", "test", "valid_fold_in", "test_fold_in")


@dataclass
class Split:
    """TRAIN / VALID / TEST tables over shared id maps, plus how they were made.

    Every table of a split shares ONE user :class:`IdMap` and ONE item
    :class:`IdMap`, so index ``u`` is the same user in all of them.

    **Held-out users (strong generalisation).** Protocols that hold out whole
    users (:func:`recozoo.strong_generalization.strong_generalization_split`)
    also fill ``valid_fold_in`` and ``test_fold_in``:

    * ``train`` — every interaction of the training users, and nothing of a
      held-out user (a held-out user's row in TRAIN is empty);
    * ``valid_fold_in`` / ``test_fold_in`` — the fold-in part (80%) of each
      VALID / TEST user: what a model is given at prediction time (its
      fold-in, the path that serves a brand-new user) and what is excluded
      from that user's ranking;
    * ``valid`` / ``test`` — the scored part (20%) of the same users. A
      held-out user whose history was too short to split (fewer than
      ``min_interactions`` after the item filter) has all of it in the fold-in
      table and nothing here, so it is never scored;
    * user indices come in blocks: training users ``0..a-1``, VALID users
      ``a..b-1``, TEST users ``b..c-1`` (each block sorted by raw id), given as
      ``info["user_blocks"] = {"train": [0, a], "valid": [a, b], "test": [b, c]}``
      (see :meth:`user_block`). Models sized by ``train.n_users`` therefore
      have a (never trained) row for each held-out user, and
      ``train.to_csr()[:a]`` is the training matrix without empty rows;
    * the item map is exactly the training users' items (no item of a
      held-out user outside it survives), so every item index is in TRAIN.

    For every other protocol both fold-in tables are ``None`` and VALID/TEST
    users are TRAIN users (:attr:`has_fold_in` tells them apart).
    """

    name: str
    train: RatingsTable
    valid: RatingsTable | None
    test: RatingsTable
    info: dict[str, Any] = field(default_factory=dict)
    valid_fold_in: RatingsTable | None = None
    test_fold_in: RatingsTable | None = None
    #: the prepared-split cache key it was loaded under (``prepared/<name>/<key>/``), None when built
    #: in memory; a run records it to find its split again (recozoo.run_split.load_run_split)
    key: str | None = field(default=None, compare=False, repr=False)

    @property
    def user_ids(self) -> IdMap:
        return self.train.user_ids

    @property
    def item_ids(self) -> IdMap:
        return self.train.item_ids

    @property
    def default_policy(self) -> str:
        """Evaluator policy for unseen ids this protocol prescribes (drop|fallback)."""
        return self.info.get("policy", "drop")

    def table(self, which: str) -> RatingsTable:
        if which not in PARTS:
            raise RecozooError(f"unknown split part {which!r} ({'|'.join(PARTS)})")
        t = getattr(self, which)
        if t is None:
            raise RecozooError(f"{self.name} has no {which} part")
        return t

    @property
    def has_valid(self) -> bool:
        """Whether there is a non-empty VALID part (to select on, or to refit with)."""
        return self.valid is not None and self.valid.nnz > 0

    @property
    def has_fold_in(self) -> bool:
        """Whether VALID/TEST are held-out users scored through a fold-in part."""
        return self.test_fold_in is not None

    def fold_in(self, part: str) -> RatingsTable | None:
        """The fold-in table of ``part``'s held-out users ("valid"|"test"), or None."""
        if part not in ("valid", "test"):
            raise RecozooError(f"only valid and test have a fold-in part, not {part!r}")
        return getattr(self, f"{part}_fold_in")

    def user_block(self, part: str) -> tuple[int, int]:
        """``(first, end)`` user indices of ``part``'s users ("train"|"valid"|"test").

        Only for splits with held-out users (:attr:`has_fold_in`); elsewhere
        VALID/TEST users are TRAIN users and there are no blocks.
        """
        blocks = self.info.get("user_blocks")
        if not blocks or part not in blocks:
            raise RecozooError(f"{self.name} holds out no users (no user blocks)")
        a, b = blocks[part]
        return int(a), int(b)

    def held_out_users(self, part: str) -> np.ndarray:
        """User indices of ``part``'s held-out users that have a scored interaction."""
        a, b = self.user_block(part)
        return a + np.flatnonzero(self.table(part).user_counts()[a:b] > 0)

    def train_and_valid(self) -> RatingsTable:
        """TRAIN ∪ VALID: what a model is refitted on once VALID has chosen its settings.

        With held-out users, the VALID users' fold-in part joins too: all of
        their history is known before TEST.
        """
        if not self.has_valid:
            return self.train
        out = self.train.union(self.valid, source=f"{self.name} train+valid")
        if self.valid_fold_in is not None and self.valid_fold_in.nnz:
            out = out.union(self.valid_fold_in, source=f"{self.name} train+valid+valid_fold_in")
        return out

    def describe(self) -> dict[str, dict[str, int]]:
        """``{"train": {"ratings", "users", "items"}, "valid": ..., "test": ...}``.

        Splits with held-out users add ``valid_fold_in`` and ``test_fold_in``.
        """
        return {part: getattr(self, part).describe() for part in PARTS
                if getattr(self, part) is not None}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "user_ids.npy", self.user_ids.raw, allow_pickle=False)
        np.save(folder / "item_ids.npy", self.item_ids.raw, allow_pickle=False)
        for part in PARTS:
            t = getattr(self, part)
            if t is not None:
                t.save(folder / part)
        (folder / "split.json").write_text(json.dumps({"name": self.name, "info": self.info},
                                                      default=str))

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> "Split":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "split.json").read_text())
            users = IdMap(np.load(folder / "user_ids.npy", allow_pickle=False))
            items = IdMap(np.load(folder / "item_ids.npy", allow_pickle=False))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read prepared split: {e}", path=folder) from None
        parts = {p: (RatingsTable.load(folder / p, users, items, mmap=mmap)
                     if (folder / p).exists() else None) for p in PARTS}
        return cls(meta["name"], parts["train"], parts["valid"], parts["test"], meta.get("info", {}),
                   parts["valid_fold_in"], parts["test_fold_in"])


def _coin(seed: int, n: int) -> np.ndarray:
    """n fair coin flips from a seeded generator (True = VALID)."""
    return np.random.default_rng(seed).random(n) < 0.5


def _finish_time_split(name: str, table: RatingsTable, train_mask: np.ndarray,
                       test_mask: np.ndarray, seed: int, info: dict) -> Split:
    """Apply rules 2-5 given the train and test-interval masks over ``table``."""
    users = table.users
    train_users = np.zeros(table.n_users, dtype=bool)
    train_users[users[train_mask]] = True
    kept = test_mask & train_users[users]                              # rule 2
    n_kept = int(kept.sum())
    to_valid = np.zeros(table.nnz, dtype=bool)
    to_valid[kept] = _coin(seed, n_kept)                               # rule 3
    train_items = np.zeros(table.n_items, dtype=bool)
    train_items[table.items[train_mask]] = True
    known_item = train_items[table.items]
    valid_mask = kept & to_valid & known_item                          # rule 4
    test_final = kept & ~to_valid & known_item
    del users
    train = table.select(train_mask)
    u_keep = np.flatnonzero(train.user_counts() > 0)                   # rule 5: train universe
    i_keep = np.flatnonzero(train.item_counts() > 0)
    uid, iid = table.user_ids.take(u_keep), table.item_ids.take(i_keep)
    train = train.remap(uid, iid)
    valid = table.select(valid_mask).remap(uid, iid)
    test = table.select(test_final).remap(uid, iid)
    info = dict(info)
    info.update({"seed": seed, "policy": "drop",
                 "test_interval_ratings": int(test_mask.sum()),
                 "kept_test_interval_ratings": n_kept,
                 "removed_unknown_user": int(test_mask.sum()) - n_kept,
                 "removed_unknown_item": n_kept - valid.nnz - test.nnz})
    return Split(name, train, valid, test, info)


def time_split(table: RatingsTable, name: str, train_start: str, train_end: str,
               test_start: str, test_end: str, seed: int = 0) -> Split:
    """The Netflix protocol on inclusive day intervals (ISO dates, UTC)."""
    if not table.has_timestamps:
        raise RecozooError(f"{name}: a time split needs timestamps, and this data has none")
    a, b, c, d = (day_number(x) for x in (train_start, train_end, test_start, test_end))
    if a > b or c > d:
        raise RecozooError(f"{name}: an interval ends before it starts "
                           f"(train {train_start}..{train_end}, test {test_start}..{test_end})")
    if a <= d and c <= b:  # a rating in both intervals would be trained on and tested
        raise RecozooError(f"{name}: train {train_start}..{train_end} and test "
                           f"{test_start}..{test_end} overlap")
    day = table.timestamps // SECONDS_PER_DAY
    train_mask = (day >= a) & (day <= b)
    test_mask = (day >= c) & (day <= d)
    del day
    return _finish_time_split(name, table, train_mask, test_mask, seed,
                              {"protocol": "time", "train": [train_start, train_end],
                               "test": [test_start, test_end]})


def time_fraction_split(table: RatingsTable, name: str, train_fraction: float = 0.8,
                        seed: int = 0) -> Split:
    """Netflix rules with dataset-relative windows: train = earliest ``train_fraction``."""
    if not table.has_timestamps:
        raise RecozooError(f"{name}: a time split needs timestamps, and this data has none")
    if not 0 < train_fraction < 1:
        raise RecozooError(f"train_fraction must be in (0, 1), got {train_fraction}")
    ts = np.asarray(table.timestamps)
    # min(): float rounding of train_fraction * size must not index past the end
    cut = np.sort(ts)[min(int(train_fraction * ts.size), ts.size - 1)] if ts.size else 0
    train_mask = ts < cut
    return _finish_time_split(name, table, train_mask, ~train_mask, seed,
                              {"protocol": "time-fraction", "train_fraction": train_fraction,
                               "cut_timestamp": int(cut)})


def holdout_split(train: RatingsTable, test: RatingsTable, name: str, valid_fraction: float = 0.05,
                  seed: int = 0, info: dict | None = None) -> Split:
    """Given train/test on shared maps: VALID = seeded ``valid_fraction`` slice of train."""
    for what in ("user_ids", "item_ids"):
        mine, theirs = getattr(train, what), getattr(test, what)
        if mine is not theirs and mine != theirs:
            raise RecozooError(f"holdout_split: train and test must share id maps ({what} differ)")
    if not 0 <= valid_fraction < 1:
        raise RecozooError(f"holdout_split: valid_fraction must be in [0, 1), got {valid_fraction}")
    rng = np.random.default_rng(seed)
    to_valid = rng.random(train.nnz) < valid_fraction
    out_info = {"protocol": "holdout", "valid_fraction": valid_fraction, "seed": seed,
                "policy": "fallback"}
    out_info.update(info or {})
    return Split(name, train.select(~to_valid), train.select(to_valid), test, out_info)


def random_split(table: RatingsTable, name: str, test_fraction: float = 0.1,
                 valid_fraction: float = 0.1, seed: int = 0) -> Split:
    """Seeded per-rating split: TEST = ``test_fraction``, VALID = ``valid_fraction`` of all."""
    if test_fraction <= 0 or valid_fraction < 0 or test_fraction + valid_fraction >= 1:
        raise RecozooError("random_split: need 0 < test_fraction, 0 <= valid_fraction, sum < 1")
    r = np.random.default_rng(seed).random(table.nnz)
    test_mask = r < test_fraction
    valid_mask = (r >= test_fraction) & (r < test_fraction + valid_fraction)
    return Split(name, table.select(~(test_mask | valid_mask)), table.select(valid_mask),
                 table.select(test_mask),
                 {"protocol": "random", "test_fraction": test_fraction,
                  "valid_fraction": valid_fraction, "seed": seed, "policy": "fallback"})
