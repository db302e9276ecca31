"""Writing files so that a reader never sees half of one, and JSON for numpy values.

Every file recozoo writes (models, checkpoints, run records, prepared-data
records, leaderboards) goes through :func:`atomic_open`: a crash or a full disk
leaves the previous file in place, never a truncated one. This module imports
nothing from the rest of recozoo, so any module may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_json", "json_default"]


@contextlib.contextmanager
def atomic_open(path: str | Path):
    """A binary file object whose contents appear at ``path`` only if the block succeeds.

    Writes go to a temp file in the same folder (same file system), which is
    fsynced and renamed over ``path``; on any error it is removed and ``path``
    keeps whatever it held before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename."""
    with atomic_open(path) as f:
        f.write(data)


def json_default(o: Any) -> Any:
    """``json.dumps(..., default=json_default)`` for records and logs.

    numpy scalars and arrays (and torch tensors: anything with ``.tolist()``)
    become Python numbers and lists; other objects (paths, dtypes) their
    ``str``: a record must never fail to be written because a figure arrived
    as ``np.float32``.
    """
    try:
        return o.tolist()
    except AttributeError:
        return str(o)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """``obj`` as JSON (numpy values through :func:`json_default`) plus a newline, atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=json_default) + "\n"
    atomic_write_bytes(path, text.encode())
