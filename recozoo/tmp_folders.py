"""Temp folders that become cache entries (a parsed source table, a prepared split).

A cache entry is written whole into a temp folder beside its final place and
moved there in one rename (:func:`replace_dir`), so a reader sees all of it or
nothing. Why a sweep: a writer killed mid-save (SIGKILL, a full disk, a lost
machine) leaves its temp folder behind, and a big split's leftovers would
accumulate. A temp folder is named ``.tmp-HOST-PID-*``; :func:`sweep_stale_tmp`
removes those whose writer is gone (a dead pid on this host, or older than
:data:`STALE_TMP_SECONDS` when the pid cannot be checked) and keeps a live
writer's.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["new_tmp", "replace_dir", "sweep_stale_tmp", "STALE_TMP_SECONDS"]


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


#: a temp folder of another machine (or of a process whose pid cannot be checked) is stale after this
STALE_TMP_SECONDS = 24 * 3600


def _tmp_prefix() -> str:
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"
    return f".tmp-{host}-{os.getpid()}-"


def _tmp_is_stale(path: Path) -> bool:
    """Whether a ``.tmp-HOST-PID-*`` folder's writer is gone (dead pid here, or old)."""
    parts = path.name.split("-")
    host = _tmp_prefix().split("-")[1]
    if len(parts) >= 4 and parts[1] == host and parts[2].isdigit():
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError, ValueError):
            pass
    try:
        return time.time() - path.stat().st_mtime > STALE_TMP_SECONDS
    except OSError:
        return False


def sweep_stale_tmp(parent: Path) -> None:
    """Remove the temp folders a killed save left in ``parent`` (a live writer's are kept)."""
    if not parent.is_dir():
        return
    for p in parent.glob(".tmp-*"):
        if p.is_dir() and _tmp_is_stale(p):
            shutil.rmtree(p, ignore_errors=True)


def new_tmp(parent: Path) -> Path:
    """A temp folder in ``parent`` to write a cache entry into, once the stale ones are gone."""
    sweep_stale_tmp(parent)
    return Path(tempfile.mkdtemp(prefix=_tmp_prefix(), dir=_ensure(parent)))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written temp folder into place (a concurrent winner is kept)."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "done").exists() and not (final / "split.json").exists():
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
