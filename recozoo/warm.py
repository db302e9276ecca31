"""Warm start: continue training a run from its weights on TRAIN + the live events it logged.

``recozoo fit MODEL --warm-start RUN_DIR`` is the incremental update: the
server stored events in ``RUN_DIR/interactions.sqlite3`` (see
:mod:`recozoo.serve.store`); the new fit starts from the run's learned state
instead of a random one, on the run's dataset and split, with

* **data**: TRAIN plus every *rated* event (the latest event per (user, item)
  wins, and replaces a TRAIN rating of the same pair; its timestamp, where the
  data has them, is the day after TRAIN's last rating). Implicit events (no
  rating) become interactions of value 1 for ranking-only models and are
  skipped by rating models. Events on a (user, item) pair that is in VALID or
  TEST are dropped (they would leak the held-out answer into training);
  VALID and TEST stay exactly the run's, so the metrics compare.
* **ids**: users seen only in events are appended to the user id map (every
  old index keeps its meaning); an event's item must be in the run's catalogue
  (the server only accepts those), otherwise the warm start stops with a
  one-line error.
* **initial state**: what :meth:`recozoo.models.base.Model.warm_start_from` says
  per model (factor models: the run's factors and biases, new users' factors
  initialised as a fresh fit would; models without weights to start from, e.g.
  the closed-form ones, simply refit). Settings are the run's unless ``--set``
  overrides them (e.g. ``epochs`` for how much more training).
* **record**: the new run's ``config.json`` says where it came from and which
  events it learned (``warm_start.events_through``): a server that swaps to it
  ignores those events and folds in only later ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recozoo.errors import RecozooError

__all__ = ["warm_start_split", "read_run_config"]


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RecozooError(f"--warm-start: {run_dir} is not a run directory (no config.json)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise RecozooError(f"{path}: unreadable ({e})") from None


def _with_users(table, user_ids):
    """``table`` over a user map extended at the end (the new users have no ratings in it)."""
    from recozoo.data.table import RatingsTable
    if table is None:
        return None
    extra = len(user_ids) - table.n_users
    indptr = np.concatenate([table.indptr, np.full(extra, table.indptr[-1], dtype=table.indptr.dtype)])
    return RatingsTable(indptr, table.items, table.ratings, table.timestamps, user_ids, table.item_ids)


def warm_start_split(run_dir: str | Path, split, ranking: bool):
    """(split with TRAIN + events and extended user ids, info dict) — see the module docstring."""
    from recozoo.data.table import IdMap, RatingsTable
    from recozoo.serve.store import EVENTS_FILE, read_events
    from recozoo.splits import Split

    run_dir = Path(run_dir)
    db = run_dir / EVENTS_FILE
    events = read_events(db)
    info: dict[str, Any] = {"from": str(run_dir.resolve()), "events_db": str(db.resolve()),
                            "events_through": max((e[0] for e in events), default=0),
                            "events_read": len(events)}
    latest: dict[tuple, float | None] = {}
    for _, user, item, rating in events:
        latest[(user, item)] = rating
    users_raw = [u for u, _ in latest]
    items_raw = [i for _, i in latest]
    vals = np.array([np.nan if r is None else r for r in latest.values()], dtype=np.float64)
    if ranking:
        vals = np.where(np.isnan(vals), 1.0, vals)
    implicit_skipped = int(np.isnan(vals).sum())
    keep = ~np.isnan(vals)
    train = split.train
    item_idx = train.item_ids.lookup(np.asarray(items_raw)) if items_raw else np.zeros(0, np.int64)
    if (item_idx < 0).any():
        bad = [items_raw[j] for j in np.flatnonzero(item_idx < 0)[:3]]
        raise RecozooError(f"--warm-start: {db}: events name items outside the run's catalogue "
                           f"({', '.join(map(repr, bad))}); a run cannot learn new items by warm start")
    user_idx = train.user_ids.lookup(np.asarray(users_raw)) if users_raw else np.zeros(0, np.int64)
    new_raw = list(dict.fromkeys(u for u, j in zip(users_raw, user_idx) if j < 0))
    if new_raw:
        if train.user_ids.raw.dtype.kind in "iu" and not all(isinstance(u, int) for u in new_raw):
            raise RecozooError(f"--warm-start: {db}: a user id is not an integer in an integer-id run")
        raw = np.concatenate([train.user_ids.raw, np.asarray(new_raw, dtype=train.user_ids.raw.dtype)])
        user_ids = IdMap(raw)
        user_idx = user_ids.lookup(np.asarray(users_raw))
    else:
        user_ids = train.user_ids
    n_i = train.n_items
    key = user_idx.astype(np.int64) * n_i + item_idx
    held = np.zeros(key.size, dtype=bool)
    for part in (split.valid, split.test):
        if part is not None and part.nnz:
            pk = part.users.astype(np.int64) * n_i + part.items
            held |= np.isin(key, pk)
    use = keep & ~held
    info.update({"events_used": int(use.sum()), "implicit_skipped": implicit_skipped,
                 "heldout_dropped": int((keep & held).sum()), "new_users": len(new_raw)})
    tk = train.users.astype(np.int64) * n_i + train.items
    stay = ~np.isin(tk, key[use])
    u = np.concatenate([train.users[stay].astype(np.int64), user_idx[use]])
    i = np.concatenate([train.items[stay].astype(np.int64), item_idx[use]])
    r = np.concatenate([train.ratings[stay], vals[use].astype(np.float32)])
    ts = None
    if train.has_timestamps:   # events happened after training: the day after TRAIN's last rating
        ts_new = np.full(int(use.sum()), int(np.max(train.timestamps)) + 86400, dtype=np.int64)
        ts = np.concatenate([train.timestamps[stay], ts_new])
    new_train = RatingsTable.from_coo(u, i, r, ts, user_ids=user_ids, item_ids=train.item_ids,
                                      source=str(db))
    out = Split(split.name, new_train, _with_users(split.valid, user_ids), _with_users(split.test, user_ids),
                {**split.info, "warm_start": info})
    return out, info
