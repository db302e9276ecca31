"""Load the reference DeepRec layout: ``user<TAB>item<TAB>rating[<TAB>timestamp]`` lines.

A *source* is one file or a folder of files (every regular file in it, sorted
by name, hidden files skipped) — the layout NVIDIA's DeepRecommender writes for
its Netflix and MovieLens splits. The 4th column (Unix seconds) is optional,
but all lines of a source must agree on 3 or 4 columns. Interaction-only
files (``user<TAB>item`` lines, 2 columns) load too: every line is one
interaction with rating 1 (a file of ``user item time`` lines needs the
column mapping of :mod:`recozoo.data.generic`: 3 columns mean a rating).

:func:`read_columns` is the shared engine (MovieLens' ``u.data``,
``ratings.dat`` and ``ratings.csv`` use it with other separators): a numba
loop over fixed-size byte chunks (``CHUNK_BYTES`` in :mod:`recozoo.data._parse`,
via :func:`recozoo.data._parse.delimited_pass`)
that names the file, line and field of the first bad line — a line is never
silently dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from recozoo.data import _parse as P
from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DataError

__all__ = ["Columns", "read_columns", "source_files", "load_tsv", "load_tsv_many", "tables_on_shared_ids"]

_FIELDS = ("user", "item", "rating", "timestamp")
_ERRORS = {
    P.E_USER: "user id is not an integer",
    P.E_ITEM: "item id is not an integer",
    P.E_RATING: "rating is not a number",
    P.E_NAN: "rating is not a finite number",
    P.E_TIME: "timestamp is not an integer (Unix seconds)",
}


@dataclass
class Columns:
    """Raw per-rating columns of one source, before id maps exist."""

    name: str
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray | None

    def __len__(self) -> int:
        return int(self.users.shape[0])


def source_files(path: str | Path) -> list[Path]:
    """The files of a source: the file itself, or a folder's regular non-hidden files by name."""
    path = Path(path).expanduser()
    if path.is_dir():
        with os.scandir(path) as it:
            files = sorted(path / e.name for e in it if e.is_file() and not e.name.startswith("."))
        if not files:
            raise DataError("folder holds no data files", path=path)
        return files
    if not path.is_file():
        raise DataError("no such file or folder", path=path)
    return [path]


def _line_text(buf: np.ndarray, pos: int) -> str:
    nl = np.flatnonzero(buf[pos:pos + 200] == 10)
    text = bytes(buf[pos:pos + (int(nl[0]) if nl.size else 200)]).decode("utf-8", "replace").rstrip("\r")
    return repr(text if len(text) <= 60 else text[:57] + "...")


def read_columns(files: Iterable[tuple[str, Callable]], sep: bytes = b"\t", ncols: int = 0,
                 header: Callable[[str, str], None] | None = None, label: str | None = None) -> Columns:
    """Parse ``user<sep>item<sep>rating[<sep>timestamp]`` lines of several files.

    ``files``: ``(name, open_binary)`` pairs. ``ncols`` 2, 3 or 4, or 0 to take it
    from the first data line (then every line of every file must agree).
    ``header(name, first_line)``, when given, checks and skips each file's
    first line (it raises a :class:`DataError` itself if the line is wrong).
    """
    sep_a = np.frombuffer(sep, dtype=np.uint8)
    parts: list[tuple[np.ndarray, ...]] = []
    first_name = None
    for name, opener in files:
        first_name = first_name or name
        line_base = 0
        with opener() as f:
            try:
                size = os.fstat(f.fileno()).st_size
            except (OSError, AttributeError, ValueError):
                size = None
            for _, data, first, _whole in P.stream_pieces(name, f, size):
                buf = np.frombuffer(data, dtype=np.uint8)
                start = 0
                if first and header is not None:
                    nl = np.flatnonzero(buf[:4096] == 10)
                    end = int(nl[0]) if nl.size else buf.shape[0]
                    header(name, bytes(buf[:end]).decode("utf-8", "replace").strip())
                    start = min(end + 1, buf.shape[0])
                    line_base = 1
                body = buf[start:]
                m = int(np.count_nonzero(body == 10)) + 1
                u = np.empty(m, np.int64)
                i = np.empty(m, np.int64)
                r = np.empty(m, np.float32)
                t = np.empty(m if ncols not in (2, 3) else 0, np.int64)
                st, pos, field, rows, ncols_seen, _ = P.delimited_pass(body, sep_a, ncols, u, i, r, t)
                if st != P.OK:
                    line = line_base + int(np.count_nonzero(body[:pos] == 10)) + 1
                    if st == P.E_FIELDS:
                        want = f"{ncols_seen}" if ncols_seen else "2, 3 or 4"
                        raise DataError(f"expected {want} fields separated by {sep.decode()!r}, found "
                                        f"{field}: {_line_text(body, pos)}", path=name, line=line)
                    msg = (f"{_FIELDS[field]} does not fit a signed 64-bit integer" if st == P.E_RANGE
                           else _ERRORS[st])
                    raise DataError(f"{msg}: {_line_text(body, pos)}", path=name, line=line,
                                    field=_FIELDS[field])
                ncols = ncols_seen
                line_base += m - 1
                parts.append((P.narrow_ints(u[:rows]), P.narrow_ints(i[:rows]), r[:rows].copy(),
                              t[:rows].copy() if ncols == 4 else None))
                del u, i, r, t
    label = label or first_name or "?"
    if not parts or not any(p[0].size for p in parts):
        raise DataError("no ratings found", path=label)

    def cat(k):
        arrs = [p[k] for p in parts]
        if len(arrs) == 1:
            return arrs[0]
        dt = np.result_type(*arrs)
        return np.concatenate([a.astype(dt, copy=False) for a in arrs])

    return Columns(label, cat(0), cat(1), cat(2), cat(3) if ncols == 4 else None)


def _openers(files: list[Path]) -> list[tuple[str, Callable]]:
    return [(str(p), (lambda p=p: open(p, "rb"))) for p in files]


def _read_tsv(path: str | Path) -> Columns:
    files = source_files(path)
    return read_columns(_openers(files), b"\t", 0, label=str(Path(path).expanduser()))


def tables_on_shared_ids(columns: Mapping[str, Columns]) -> dict[str, RatingsTable]:
    """One table per source, all on ONE pair of id maps (the union of their ids).

    Why: a pre-split TRAIN/VALID/TEST must index the same user the same way in
    all three; ids absent from TRAIN keep an index (evaluators decide whether
    to drop them or use a fallback).
    """
    cols = list(columns.values())
    has_ts = {c.timestamps is not None for c in cols}
    if len(has_ts) > 1:
        odd = [c.name for c in cols if c.timestamps is None]
        raise DataError("some sources have a timestamp column and others do not", path=odd[0])

    def encode(arrs):
        dt = np.result_type(*arrs)
        return IdMap.encode(np.concatenate([a.astype(dt, copy=False) for a in arrs]))

    user_ids, u = encode([c.users for c in cols])
    item_ids, i = encode([c.items for c in cols])
    out: dict[str, RatingsTable] = {}
    at = 0
    for key, c in columns.items():
        n = len(c)
        out[key] = RatingsTable.from_coo(u[at:at + n], i[at:at + n], c.ratings, c.timestamps,
                                         user_ids=user_ids, item_ids=item_ids, source=c.name)
        at += n
    return out


def load_tsv(path: str | Path) -> RatingsTable:
    """Load one DeepRec-layout source (a file or a folder of part files)."""
    c = _read_tsv(path)
    return RatingsTable.from_raw(c.users, c.items, c.ratings, c.timestamps, source=c.name)


def load_tsv_many(paths: Mapping[str, str | Path | None]) -> dict[str, RatingsTable]:
    """Load several sources (e.g. ``{"train": P, "valid": P, "test": P}``) onto shared id maps."""
    cols = {k: _read_tsv(p) for k, p in paths.items() if p is not None}
    if not cols:
        raise DataError("no sources given")
    return tables_on_shared_ids(cols)
