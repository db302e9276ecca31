"""Small real data for the torch-model tests (DeepRec, AutoRec, engine, DDP).

Generated with recozoo's seeded generator: a few hundred users, skewed activity,
so each test trains in well under a second. Torch runs single-threaded here:
the CI box has 2 cores shared by parallel jobs, and two OpenMP threads fighting
other processes are ~10x slower than one (measured).
"""

from __future__ import annotations

import functools

import numpy as np


#: DeepRec's settings that are "auto" since issue 12 (recozoo.defaults), at the fixed defaults these tests
#: were written for: user rows, SELU, one re-feed, no weight decay, VALID every epoch, no early stopping
DEEPREC_FIXED = {"mode": "user", "activation": "selu", "refeed": 1, "weight_decay": 0.0, "eval_every": 1,
                 "patience": 0, "baseline": "none"}


@functools.lru_cache(maxsize=None)
def small_split(n_users: int = 240, n_items: int = 150, n_ratings: int = 12000, seed: int = 0):
    from recozoo.data.synthetic import generate
    from recozoo.splits import random_split
    table = generate(n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=seed)
    return random_split(table, "small", test_fraction=0.1, valid_fraction=0.1, seed=seed)


def rmse_on(model, table) -> float:
    u = table.users.astype(np.int64)
    i = np.asarray(table.items, dtype=np.int64)
    p = model.predict(u, i)
    return float(np.sqrt(np.mean((p - table.ratings) ** 2)))


def one_thread():
    """Generator body for an autouse fixture: single-threaded torch, restored afterwards."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def interrupt_after(epoch: int):
    """A reporter that raises KeyboardInterrupt when epoch ``epoch`` is logged (after the previous
    epoch's checkpoint): what a resume test interrupts a fit with."""
    from recozoo.progress import Reporter

    class _Interrupt(Reporter):
        def log(self, record):
            if record["epoch"] == epoch:
                raise KeyboardInterrupt
    return _Interrupt()
