"""The Optuna study behind ``recozoo tune``: where it lives, how it resumes.

By default the study is an SQLite file in the output folder (``study.sqlite3``);
``--storage URL`` takes any Optuna RDB URL (``postgresql://…``, ``mysql://…``,
another ``sqlite:///…``) so that several machines can work on one study.

Resuming after ``kill -9``: finished trials (completed or pruned) are kept;
the trial that was running is left RUNNING in the database. With the default
storage, ``recozoo tune`` holds an exclusive lock on ``tune.lock`` in the
output folder while it runs, so when it starts, any RUNNING trial belongs to a
dead process: it is marked FAIL and its parameters are queued again (the
killed trial is redone). With a shared ``--storage`` other machines may be
mid-trial, so instead every worker sends a heartbeat and a trial silent for
``GRACE_S`` is failed and retried by whichever worker notices it (Optuna's
heartbeat mechanism).
"""

from __future__ import annotations

import fcntl
import os
import re
import warnings
from pathlib import Path
from typing import Any

from recozoo.errors import RecozooError
from recozoo.search import LOWER_IS_BETTER

__all__ = ["open_storage", "open_study", "StudyLock", "redo_interrupted", "counts", "safe_url",
           "HEARTBEAT_S", "GRACE_S", "STUDY_FILE", "quiet_optuna", "folder_files"]

STUDY_FILE = "study.sqlite3"
HEARTBEAT_S = 30
GRACE_S = 120
#: what a study records at creation; a rerun must ask for the same (else it is another study)
IDENTITY = ("model", "dataset", "metric", "seed", "split_seed", "data_params", "fixed")


def quiet_optuna():
    """Optuna, with its per-trial INFO lines and experimental-feature warnings silenced (we report)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def safe_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and best.json)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def default_url(out: Path) -> str:
    return f"sqlite:///{(Path(out) / STUDY_FILE).resolve()}"


def open_storage(url: str, *, shared: bool):
    """An Optuna RDB storage at ``url`` (heartbeats when ``shared``); a one-line error if it cannot open."""
    quiet_optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    kwargs: dict[str, Any] = {}
    if shared:
        kwargs = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S,
                  "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2)}
    try:
        if url.startswith("sqlite:///"):
            from recozoo.tune.claim import ClaimSafeRDBStorage
            return ClaimSafeRDBStorage(url, engine_kwargs=_sqlite_engine(url), **kwargs)
        return RDBStorage(url, **kwargs)
    except Exception as e:  # noqa: BLE001 - sqlalchemy/driver errors of every kind: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RecozooError(f"--storage {safe_url(url)}: cannot open the study database ({first})") from None


def _sqlite_engine(url: str) -> dict[str, Any]:
    """SQLite in WAL mode with ``synchronous=NORMAL``: a commit is not an fsync (trials commit several
    times each), yet a killed process loses nothing committed (only a power cut could); readers and
    the one writer of ``--jobs`` workers do not block each other."""
    import sqlite3
    path = url[len("sqlite:///"):]

    def connect():
        con = sqlite3.connect(path, timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con
    return {"creator": connect}


def open_study(storage, name: str, identity: dict[str, Any], sampler, pruner):
    """Create the study ``name`` or load it; a loaded study must have been started for the same run."""
    optuna = quiet_optuna()
    direction = "minimize" if identity["metric"] in LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                direction=direction, load_if_exists=True)
    attrs = study.user_attrs
    if not attrs:
        for k in IDENTITY:
            study.set_user_attr(k, identity[k])
        study.set_user_attr("seconds", 0.0)
        return study
    diff = [k for k in IDENTITY if attrs.get(k) != identity[k]]
    if diff:
        raise RecozooError(f"study {name!r} was started with other {', '.join(diff)} "
                           f"({', '.join(f'{k}={attrs.get(k)!r}' for k in diff)}); use another --out, "
                           "--storage or a fresh folder")
    return study


class StudyLock:
    """An exclusive lock on ``tune.lock`` in the output folder: one ``recozoo tune`` per folder."""

    def __init__(self, out: Path):
        self.path = Path(out) / "tune.lock"
        self._fd: int | None = None

    def __enter__(self) -> "StudyLock":
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise RecozooError(f"{self.path.parent}: another recozoo tune is running on this folder") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def redo_interrupted(study, storage) -> list[int]:
    """Mark RUNNING trials (their process is gone: we hold the lock) FAIL and queue their parameters
    again; returns their numbers (each FAIL row keeps its number; the redo is a new trial whose
    ``redo_of`` names it). Only for the default storage, under :class:`StudyLock`."""
    optuna = quiet_optuna()
    redone = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        if t.params:            # killed before it drew its point: the sampler draws a fresh one anyway
            study.enqueue_trial(dict(t.params), user_attrs={"redo_of": t.number})
        redone.append(t.number)
    return redone


def counts(study) -> dict[str, int]:
    """Trials per state: complete, pruned, failed, running, waiting."""
    out = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
             "WAITING": "waiting"}
    for t in study.get_trials(deepcopy=False):
        out[names[t.state.name]] += 1
    return out


def folder_files(out: Path) -> dict[str, bytes]:
    """A study folder as ``{relative path: bytes}``, to carry to another machine and back: the SQLite
    study as one consistent file (SQLite's backup reads through a write-ahead log a killed run left),
    without its ``-wal``/``-shm`` companions or the lock."""
    import sqlite3
    import tempfile
    out = Path(out)
    files: dict[str, bytes] = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if not p.is_file() or rel == "tune.lock" or rel.startswith(f"{STUDY_FILE}-"):
            continue
        if rel != STUDY_FILE:
            files[rel] = p.read_bytes()
            continue
        with tempfile.TemporaryDirectory(prefix="recozoo-study-") as tmp:
            copy = Path(tmp) / STUDY_FILE
            src, dst = sqlite3.connect(p), sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
            files[rel] = copy.read_bytes()
    return files
