"""An SQLite study on which two workers never claim the same queued trial.

Optuna hands a queued trial (``recozoo tune``'s defaults trial, a killed trial's
redo) to one worker by reading it with ``SELECT ... FOR UPDATE`` and then
marking it RUNNING. A database server locks the row; SQLite ignores ``FOR
UPDATE``, so two workers that start together both read the trial as waiting,
both claim it, both run it, and the second to finish fails on a trial that
"has already finished" (seen as a flaky ``--jobs``/cluster test). Here every
claim takes an exclusive lock on a file beside the database (``FILE-claim``)
around Optuna's own read-then-update, so the second worker reads RUNNING and
goes on to the next trial.

Why not SQLite's own lock (``BEGIN IMMEDIATE`` on every transaction): Optuna
nests connections while it sets a storage up, and the second connection then
waits for the first one's write lock for ever (tried: a 60 s timeout, then an
error).
"""

from __future__ import annotations

import fcntl
import os

from optuna.storages import RDBStorage
from optuna.trial import TrialState

__all__ = ["ClaimSafeRDBStorage", "claim_lock_path"]


def claim_lock_path(url: str) -> str:
    """The lock file of the SQLite database at ``url`` (``sqlite:///PATH`` -> ``PATH-claim``)."""
    return url[len("sqlite:///"):] + "-claim"


class ClaimSafeRDBStorage(RDBStorage):
    """Optuna's RDB storage for an ``sqlite:///`` URL, with claiming a trial (setting it RUNNING)
    serialised across processes by a file lock; everything else is Optuna's."""

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        if state != TrialState.RUNNING:
            return super().set_trial_state_values(trial_id, state, values)
        fd = os.open(claim_lock_path(self.url), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return super().set_trial_state_values(trial_id, state, values)
        finally:
            os.close(fd)        # closing the file releases the lock
