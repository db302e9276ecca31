"""Implicit feedback: binarisation and the strong-generalisation protocol.

Strong generalisation (Liang et al., WWW 2018; ``../shared/PROTOCOLS.md``
rules 1-6) holds out *users*, not ratings. :func:`strong_generalization_split`
follows the authors' preprocessing (dawenl/vae_cf, notebook
VAE_ML20M_WWW2018) step by step, including its random stream:

1. binarise: keep ratings strictly above ``threshold``; each is one
   interaction (value 1). ``threshold=None`` keeps every row (interaction-only
   data);
2. keep users with at least ``min_interactions`` interactions (no item filter);
3. ``numpy.random.RandomState(seed).permutation(n_users)`` over the users in
   sorted raw-id order; the last ``2N`` of the permutation are held out: the
   first ``N`` of those are VALID users, the last ``N`` TEST users; the rest
   are training users and all their interactions are TRAIN;
4. the item set is the items of TRAIN; held-out interactions with other items
   are dropped;
5. held-out users in sorted raw-id order, VALID then TEST each with a fresh
   ``RandomState(seed)``: a user with at least ``min_interactions`` (after
   step 4) gets ``idx = rng.choice(n, int(scored_fraction * n), replace=False)``
   over its interactions in item order — those are scored, the rest is the
   fold-in part; a user with fewer is fold-in only (never scored).

With ``seed=98765`` (:data:`AUTHORS_SEED`) and the input's per-user rows in
item-id order (ML-20M's ``ratings.csv`` is), the held-out users and the
fold-in/scored parts are exactly the authors'. Step 5 is a loop over held-out
users (one ``permutation`` call each — the stream has to be the legacy
generator's), never over interactions.

The result is a :class:`~recozoo.splits.Split` with ``valid_fold_in`` and
``test_fold_in`` (its docstring has the exact layout).
"""

from __future__ import annotations

import numpy as np

from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DataError, RecozooError
from recozoo.splits import Split

__all__ = ["binarize", "strong_generalization_split", "scaled_heldout_users", "AUTHORS_SEED",
           "ML20M_HELDOUT", "ML20M_USERS"]

#: the seed of the authors' preprocessing (Liang et al. 2018)
AUTHORS_SEED = 98765
#: ML-20M after filtering has 136,677 users, of which 10,000 VALID + 10,000 TEST
ML20M_USERS = 136_677
ML20M_HELDOUT = 10_000
#: smallest N the scaled rule gives on data big enough for it (see scaled_heldout_users)
HELDOUT_FLOOR = 100


def binarize(table: RatingsTable, threshold: float | None, *, name: str) -> RatingsTable:
    """Interactions = ratings strictly above ``threshold`` (value 1), ids compacted.

    ``None`` makes every row an interaction. Users and items left without an
    interaction leave the id maps. A threshold that keeps nothing is a
    one-line error giving the ratings' range.
    """
    if threshold is None:
        keep = None
        kept = table
    else:
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise RecozooError(f"{name}: threshold must be a finite number, got {threshold}")
        keep = np.asarray(table.ratings) > threshold
        if not keep.any():
            r = np.asarray(table.ratings)
            span = f"{float(r.min()):g}..{float(r.max()):g}" if r.size else "none"
            raise DataError(f"{name}: threshold {threshold:g} leaves no interactions (an interaction "
                            f"is a rating strictly above it; the ratings range over {span})")
        kept = table.select(keep)
    ones = RatingsTable(kept.indptr, kept.items, np.ones(kept.nnz, dtype=np.float32),
                        kept.timestamps, kept.user_ids, kept.item_ids)
    return ones.compact()


def scaled_heldout_users(n_users: int) -> int:
    """N held-out users (each of VALID and TEST) for data without a published N.

    ``max(round(n_users · 10,000 / 136,677), min(100, n_users // 10))``: ML-20M's
    share of held-out users, but at least 100 (or a tenth of the users, on
    data smaller than 1,000 users) so that a small data set's TEST still has
    enough users for a mean to mean something. ML-20M itself gets 10,000.
    """
    return max(int(round(n_users * ML20M_HELDOUT / ML20M_USERS)),
               min(HELDOUT_FLOOR, n_users // 10))


def _fold_in_masks(table: RatingsTable, users: np.ndarray, ok_item: np.ndarray,
                   min_interactions: int, scored_fraction: float, seed: int):
    """(fold-in mask, scored mask) over ``table``'s rows of ``users`` (rule 5).

    ``users`` ascending; rows with items outside the item set are in neither.
    """
    indptr = np.asarray(table.indptr, dtype=np.int64)
    n = table.nnz
    fold, scored = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    rng = np.random.RandomState(seed)
    items = np.asarray(table.items)
    for u in users.tolist():
        a, b = indptr[u], indptr[u + 1]
        rows = a + np.flatnonzero(ok_item[items[a:b]])   # this user's rows, item order
        m = rows.size
        if m >= min_interactions:
            pick = rng.permutation(m)[:int(scored_fraction * m)]   # = rng.choice(m, k, replace=False)
            scored[rows[pick]] = True
        fold[rows] = True
    fold &= ~scored
    return fold, scored


def strong_generalization_split(table: RatingsTable, name: str, heldout_users: int | None = None, *,
                                threshold: float | None = None, min_interactions: int = 5,
                                scored_fraction: float = 0.2, seed: int = AUTHORS_SEED) -> Split:
    """Held-out users with a fold-in part (module docstring: the exact steps).

    ``heldout_users`` is N (VALID users = TEST users = N); ``None`` applies
    :func:`scaled_heldout_users` to the users left after step 2.
    """
    min_interactions = int(min_interactions)
    if min_interactions < 1:
        raise RecozooError(f"{name}: min_interactions must be >= 1, got {min_interactions}")
    scored_fraction = float(scored_fraction)
    if not 0 < scored_fraction < 1:
        raise RecozooError(f"{name}: scored_fraction must be in (0, 1), got {scored_fraction}")
    inter = binarize(table, threshold, name=name)                                # rule 1
    n_interactions = inter.nnz
    active = inter.user_counts() >= min_interactions                             # rule 2
    if not active.any():
        raise DataError(f"{name}: no user has {min_interactions} or more interactions "
                        f"({n_interactions} interactions of {inter.n_users} users)")
    inter = inter.select(active[inter.users]).compact()
    n_users = inter.n_users
    n_held = scaled_heldout_users(n_users) if heldout_users is None else int(heldout_users)
    if n_held < 1 and heldout_users is not None:
        raise RecozooError(f"{name}: heldout_users must be >= 1, got {n_held}")
    if n_held < 1 or 2 * n_held >= n_users:
        raise DataError(f"{name}: too small for {max(n_held, 1)} held-out users: {max(n_held, 1)} "
                        f"VALID + {max(n_held, 1)} TEST users need more than the {n_users} users "
                        f"with {min_interactions} or more interactions (lower heldout_users)")
    perm = np.random.RandomState(seed).permutation(n_users)                     # rule 3
    tr_users = np.sort(perm[:n_users - 2 * n_held])
    vd_users = np.sort(perm[n_users - 2 * n_held:n_users - n_held])
    te_users = np.sort(perm[n_users - n_held:])
    users_all = inter.users
    items_all = np.asarray(inter.items)
    train_user = np.ones(n_users, dtype=bool)
    train_user[vd_users] = train_user[te_users] = False
    in_train = train_user[users_all]
    ok_item = np.zeros(inter.n_items, dtype=bool)                                # rule 4
    ok_item[items_all[in_train]] = True
    parts = {"train": in_train}
    unscored = {}
    for part, users in (("valid", vd_users), ("test", te_users)):                # rule 5
        fold, scored = _fold_in_masks(inter, users, ok_item, min_interactions, scored_fraction, seed)
        parts[f"{part}_fold_in"], parts[part] = fold, scored
        sel_users = np.zeros(n_users, dtype=bool)
        sel_users[users] = True
        scored_users = np.zeros(n_users, dtype=bool)
        scored_users[users_all[scored]] = True
        unscored[part] = int(np.count_nonzero(sel_users & ~scored_users))
    dropped = int(np.count_nonzero(~in_train & ~ok_item[items_all]))

    # one user map in blocks (train, valid, test), one item map = TRAIN's items
    order = np.concatenate([tr_users, vd_users, te_users])
    user_lut = np.empty(n_users, dtype=np.int64)
    user_lut[order] = np.arange(n_users)
    user_ids = IdMap(inter.user_ids.raw[order])
    item_keep = np.flatnonzero(ok_item)
    item_lut = np.full(inter.n_items, -1, dtype=np.int64)
    item_lut[item_keep] = np.arange(item_keep.size)
    item_ids = inter.item_ids.take(item_keep)
    tables = {}
    for part, mask in parts.items():
        tables[part] = RatingsTable.from_coo(
            user_lut[users_all[mask]], item_lut[items_all[mask]],
            np.ones(int(mask.sum()), dtype=np.float32),
            None if inter.timestamps is None else np.asarray(inter.timestamps)[mask],
            user_ids=user_ids, item_ids=item_ids, check=False)
    a, b = tr_users.size, tr_users.size + n_held
    info = {"protocol": "strong-generalization", "threshold": threshold,
            "min_interactions": min_interactions, "heldout_users": n_held,
            "scored_fraction": scored_fraction, "seed": seed, "policy": "drop",
            "user_blocks": {"train": [0, a], "valid": [a, b], "test": [b, b + n_held]},
            "interactions": n_interactions, "users_kept": n_users,
            "interactions_kept": inter.nnz,
            "dropped_unknown_item": dropped, "heldout_users_not_scored": unscored}
    return Split(name, tables["train"], tables["valid"], tables["test"], info,
                 tables["valid_fold_in"], tables["test_fold_in"])
