"""Live interactions: events posted to a server, kept durably in SQLite beside the run.

Why SQLite: one file, no service to run, transactions, and readers in other
processes (``--workers``, ``recozoo fit --warm-start``) see what one process
committed. The database runs in WAL mode with ``synchronous=FULL``: a commit
returns only after the write-ahead log is on disk, so an event whose POST got
its 200 survives a ``kill -9`` (or a power cut) of the server right after.

Schema (one table)::

    events(id INTEGER PRIMARY KEY AUTOINCREMENT, user, item, rating REAL NULL, at REAL)

``user`` and ``item`` are the raw ids as the run knows them (SQLite keeps
integers as integers and strings as text); ``rating`` is NULL for an implicit
event (a click, a view). Ids only grow, so "every event after id N" is how a
warm-started run records what it has already learned (``events_through``).

:class:`EventLog` is a process's in-memory view of the table: per user, the
latest value per item (a later event on the same item replaces an earlier
one), refreshed incrementally (only rows after the last id read, and only
when SQLite's ``data_version`` says another connection committed).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from recozoo.errors import RecozooError

__all__ = ["InteractionStore", "EventLog", "EVENTS_FILE", "read_events", "learned_through"]

#: the database's file name inside a run directory
EVENTS_FILE = "interactions.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user NOT NULL,
    item NOT NULL,
    rating REAL,
    at REAL NOT NULL
)
"""


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        else:
            con = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute(_SCHEMA)
        con.execute("SELECT count(*) FROM events").fetchone()
        return con
    except sqlite3.DatabaseError as e:
        raise RecozooError(f"{path}: not a usable interactions database ({e})") from None


class InteractionStore:
    """Append-only event log in SQLite (thread-safe: one connection behind a lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = _connect(self.path)
        self._lock = threading.Lock()

    def add(self, events: Iterable[tuple[object, object, float | None]]) -> list[int]:
        """Append ``(user, item, rating or None)`` events in one transaction; their ids.

        Returns once the transaction is durable (WAL, ``synchronous=FULL``).
        """
        now = time.time()
        rows = [(u, i, r, now) for u, i, r in events]
        with self._lock:
            cur = self._con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for row in rows:
                    cur.execute("INSERT INTO events (user, item, rating, at) VALUES (?, ?, ?, ?)", row)
                    ids.append(int(cur.lastrowid))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids

    def since(self, last_id: int) -> list[tuple[int, object, object, float | None]]:
        """Events with id > ``last_id``, oldest first: (id, user, item, rating)."""
        with self._lock:
            return self._con.execute("SELECT id, user, item, rating FROM events WHERE id > ? ORDER BY id",
                                     (int(last_id),)).fetchall()

    def data_version(self) -> int:
        """Changes whenever *another* connection commits (SQLite's ``PRAGMA data_version``)."""
        with self._lock:
            return int(self._con.execute("PRAGMA data_version").fetchone()[0])

    def last_id(self) -> int:
        with self._lock:
            row = self._con.execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def count(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()


def learned_through(config: dict, db: str | Path) -> int:
    """The last event id of ``db`` that the run with ``config`` already learned (a warm start from that
    database records it as ``warm_start.events_through``); 0 otherwise."""
    ws = config.get("warm_start") or {}
    if ws.get("events_db") and Path(ws["events_db"]).resolve() == Path(db).resolve():
        return int(ws.get("events_through", 0))
    return 0


def read_events(path: str | Path, after: int = 0) -> list[tuple[int, object, object, float | None]]:
    """Every event with id > ``after`` of the database at ``path`` (read-only; for warm starts)."""
    path = Path(path)
    if not path.is_file():
        return []
    con = _connect(path, readonly=True)
    try:
        return con.execute("SELECT id, user, item, rating FROM events WHERE id > ? ORDER BY id",
                           (int(after),)).fetchall()
    finally:
        con.close()


class EventLog:
    """In-memory per-user view of an :class:`InteractionStore` (latest value per (user, item)).

    ``through``: events with id <= through are ignored (a warm-started run has
    already learned them). :meth:`refresh` pulls only new rows.
    """

    def __init__(self, store: InteractionStore, through: int = 0):
        self.store = store
        self.through = int(through)
        self._by_user: dict[object, dict[object, float | None]] = {}
        self._last = 0
        self._version: int | None = None
        self._lock = threading.Lock()
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Read events committed since the last refresh (by this or any other process)."""
        version = self.store.data_version()
        with self._lock:
            if not force and version == self._version:
                return
            self._version = version
            for eid, user, item, rating in self.store.since(self._last):
                self._last = eid
                if eid > self.through:
                    self._by_user.setdefault(user, {})[item] = rating

    def add(self, events: list[tuple[object, object, float | None]]) -> list[int]:
        """Store events durably, then make them visible here (this connection's own commits do not
        change ``data_version``, so the rows are pulled explicitly)."""
        ids = self.store.add(events)
        with self._lock:
            for eid, user, item, rating in self.store.since(self._last):
                self._last = eid
                if eid > self.through:
                    self._by_user.setdefault(user, {})[item] = rating
        return ids

    def events_for(self, user) -> dict[object, float | None] | None:
        """{item: rating or None} of ``user``'s live events, or None when there are none."""
        with self._lock:             # (add() runs on another thread)
            ev = self._by_user.get(user)
            return dict(ev) if ev else None

    def users(self) -> int:
        return len(self._by_user)

    @property
    def last_id(self) -> int:
        return self._last
