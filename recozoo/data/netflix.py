"""Load the Netflix Prize ratings from any of its raw layouts into one table.

Layouts (:func:`load_netflix` detects which):

* ``training_set/`` — a folder of ``mv_*.txt`` files: first line
  ``<movie_id>:``, then ``<user_id>,<rating>,<YYYY-MM-DD>`` lines;
* ``training_set.tar`` — the same files in a tar;
* ``nf_prize_dataset.tar.gz`` — the original download, which holds
  ``download/training_set.tar``; both archives are *streamed*, nothing is
  extracted to disk;
* ``combined_data_*.txt`` — the re-packed layout (many ``<movie_id>:`` blocks
  per file), one file or a folder of them.

Every layout gives the identical table: raw user and movie ids as ints,
timestamps = day * 86400 (UTC seconds), user-major and item-sorted.

How it stays fast and small (why two passes): the text is item-major but the
table is user-major. Pass 1 validates every line and counts ratings per raw
user id (a growable lookup table: Netflix user ids are < 2.65M); pass 2
re-reads the text and scatters each rating straight into its final slot. So
the only per-rating memory is the final table (16 bytes: int32 item, float32
rating, int64 time) — no intermediate columns, no argsort — plus the raw bytes
of the chunk being parsed. Both passes are numba loops over bytes
(:mod:`recozoo.data._parse`).
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from recozoo.data import _parse as P
from recozoo.data._parse import stream_pieces
from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DataError

__all__ = ["load_netflix", "detect_layout"]

_MV = re.compile(r"^mv_\d+\.txt$")
_COMBINED = re.compile(r"^combined_data_\d+\.txt$")

Pieces = Iterator[tuple[str, bytes, bool, bool]]   # (name, data, first piece?, whole file?)

_MESSAGES = {
    P.E_HEADER: ("movie", "movie header is not '<movie_id>:'"),
    P.E_NO_HEADER: ("movie", "rating line before any '<movie_id>:' movie header"),
    P.E_USER: ("user", "user id is not a non-negative integer"),
    P.E_RATING: ("rating", "rating is not an integer 1-5"),
    P.E_DATE: ("date", "date is not a valid YYYY-MM-DD"),
}


class Batch:
    """Text for one kernel call: whole small files concatenated, or one piece
    of a big file. A new file starts at each offset in ``resets``."""

    __slots__ = ("buf", "resets", "names", "starts", "line0")

    def __init__(self, buf, resets, names, starts, line0):
        self.buf, self.resets, self.names, self.starts, self.line0 = buf, resets, names, starts, line0

    def where(self, pos: int) -> tuple[str, int]:
        """(file name, 1-based line number) of byte ``pos``."""
        k = int(np.searchsorted(self.starts, pos, side="right")) - 1
        return self.names[k], self.line0[k] + int(np.count_nonzero(self.buf[self.starts[k]:pos] == 10))


# ------------------------------------------------------------------ sources
def _batches(pieces: Pieces, limit: int | None = None) -> Iterator[Batch]:
    """Group whole small files into one reused ~``limit``-byte buffer.

    Why: 17,770 small files would otherwise cost one kernel call and one
    Python round-trip each; reusing one buffer keeps the memory of a pass at
    one chunk. Each batch must be consumed before the next is requested (both
    passes do so).
    """
    limit = limit or P.CHUNK_BYTES // 16  # 1 MiB: plenty per kernel call
    store = np.empty(limit, dtype=np.uint8)
    starts: list[int] = []
    names: list[str] = []
    size = 0

    def flush() -> Batch:
        s = np.asarray(starts, dtype=np.int64)
        out = Batch(store[:size], s, list(names), s, [1] * len(names))
        starts.clear()
        names.clear()
        return out

    line_base = 0
    for name, data, first, whole in pieces:
        if whole:
            n = len(data)
            if size and size + n > limit:
                yield flush()
                size = 0
            if n > limit:  # a file bigger than the buffer: on its own
                yield Batch(np.frombuffer(data, dtype=np.uint8), np.zeros(1, np.int64), [name],
                            np.zeros(1, np.int64), [1])
                continue
            store[size:size + n] = np.frombuffer(data, dtype=np.uint8)
            starts.append(size)
            names.append(name)
            size += n
            continue
        if size:
            yield flush()
            size = 0
        if first:
            line_base = 0
        buf = np.frombuffer(data, dtype=np.uint8)
        yield Batch(buf, np.zeros(1 if first else 0, dtype=np.int64), [name],
                    np.zeros(1, dtype=np.int64), [line_base + 1])
        line_base += int(np.count_nonzero(buf == 10))
    if size:
        yield flush()


def _files(files: list[Path]) -> Callable[[], Pieces]:
    def pieces() -> Pieces:
        for p in files:
            with open(p, "rb") as f:
                yield from stream_pieces(str(p), f, os.fstat(f.fileno()).st_size)
    return pieces


class _Tail:
    """A read-only stream that remembers its size and last 1 KiB.

    Why: Python's tarfile ends a *truncated* archive silently when the cut
    falls on a header; a complete tar is a whole number of 512-byte blocks
    ending in two zero blocks, which this lets us check after the last member.
    """

    def __init__(self, f):
        self.f, self.total, self.tail = f, 0, b""

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.total += len(b)
        self.tail = (self.tail + b)[-1024:] if len(b) < 1024 else b[-1024:]
        return b

    def check_complete(self, label: str) -> None:
        while self.read(1 << 20):
            pass
        if self.total % 512 or len(self.tail) < 1024 or self.tail.strip(b"\0"):
            raise DataError("truncated or corrupt archive (no end-of-archive marker)", path=label)


def _tar_members(label: str, f) -> Pieces:
    """Stream the ``mv_*.txt`` members of the tar read from ``f``."""
    found = False
    tail = _Tail(f)
    with tarfile.open(fileobj=tail, mode="r|") as tf:
        for m in tf:
            if m.isfile() and _MV.match(os.path.basename(m.name)):
                found = True
                name = f"{label}:{m.name}"
                got = 0
                for piece in stream_pieces(name, tf.extractfile(m), m.size):
                    got += len(piece[1])
                    yield piece
                if got != m.size:
                    raise DataError(f"truncated or corrupt archive (member has {got} of {m.size} "
                                    "bytes)", path=name)
    tail.check_complete(label)
    if not found:
        raise DataError("no mv_*.txt files in the archive", path=label)


def _tar(path: Path) -> Callable[[], Pieces]:
    def pieces() -> Pieces:
        with open(path, "rb") as f:
            yield from _tar_members(str(path), f)
    return pieces


def _tar_gz(path: Path) -> Callable[[], Pieces]:
    """The original ``nf_prize_dataset.tar.gz``: stream ``training_set.tar`` inside it."""
    def pieces() -> Pieces:
        found = False
        with tarfile.open(path, mode="r|gz") as outer:
            for m in outer:
                base = os.path.basename(m.name)
                if m.isfile() and base == "training_set.tar":
                    found = True
                    yield from _tar_members(f"{path}:{m.name}", outer.extractfile(m))
                elif m.isfile() and _MV.match(base):
                    found = True
                    yield from stream_pieces(f"{path}:{m.name}", outer.extractfile(m), m.size)
        if not found:
            raise DataError("no training_set.tar or mv_*.txt files in the archive", path=path)
    return pieces


def _guard(pieces: Pieces, path: Path) -> Pieces:
    """Turn archive failures (a truncated gzip or tar) into one-line DataErrors."""
    try:
        yield from pieces
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"truncated or corrupt archive ({type(e).__name__}: {e})", path=path) from None
    except OSError as e:
        raise DataError(f"cannot read ({type(e).__name__}: {e})", path=path) from None


def detect_layout(path: str | Path) -> tuple[str, Callable[[], Pieces]]:
    """``(layout, chunks)``: layout is mv|tar|tar.gz|combined; ``pieces()`` streams the text."""
    path = Path(path).expanduser()
    if path.is_dir():
        with os.scandir(path) as it:  # scandir: no stat() per file (17,770 of them)
            files = sorted(e.name for e in it if e.is_file() and not e.name.startswith("."))
        mv = [path / n for n in files if _MV.match(n)]
        if mv:
            return "mv", _files(mv)
        comb = [path / n for n in files if _COMBINED.match(n)]
        if comb:
            return "combined", _files(comb)
        for sub in ("training_set", "download"):
            if (path / sub).is_dir():
                return detect_layout(path / sub)
        for arch in ("training_set.tar", "nf_prize_dataset.tar.gz"):
            if (path / arch).is_file():
                return detect_layout(path / arch)
        raise DataError("no Netflix Prize data here (expected mv_*.txt, combined_data_*.txt, "
                        "training_set.tar or nf_prize_dataset.tar.gz)", path=path)
    if not path.exists():
        raise DataError("no such file or folder", path=path)
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz", _tar_gz(path)
    if name.endswith(".tar"):
        return "tar", _tar(path)
    return "combined", _files([path])


# ------------------------------------------------------------------ parsing
def _error(status: int, batch: Batch, pos: int) -> DataError:
    buf = batch.buf
    name, line = batch.where(pos)
    nl = np.flatnonzero(buf[pos:pos + 200] == 10)
    text = bytes(buf[pos:pos + (int(nl[0]) if nl.size else 200)]).decode("utf-8", "replace").rstrip("\r")
    shown = repr(text if len(text) <= 60 else text[:57] + "...")
    if status == P.E_FIELDS:
        found = text.count(",") + 1
        return DataError(f"expected 3 comma-separated fields user,rating,date, found {found}: {shown}",
                         path=name, line=line)
    field, msg = _MESSAGES.get(status, (None, f"cannot parse (code {status})"))
    return DataError(f"{msg}: {shown}", path=name, line=line, field=field)


def _grow(a: np.ndarray, need: int) -> np.ndarray:
    b = np.zeros(max(a.shape[0] + a.shape[0] // 2, need + need // 8 + 1), dtype=a.dtype)
    b[:a.shape[0]] = a
    return b


#: raw ids below this are counted in tables indexed by raw id (Netflix's users are < 2.65M); a
#: larger one switches the load to the row path, whose memory follows the ratings, not the id range
DENSE_ID_LIMIT = 1 << 24


class _SparseIds(Exception):
    """An id too large for the dense count tables (caught by :func:`load_netflix`)."""


def _count_pass(batches: Iterator[Batch]):
    """Pass 1: validate every line; count ratings per raw user id and per raw movie id."""
    user_counts = np.zeros(1 << 16, dtype=np.int32)  # grows to the largest user id
    movie_counts = np.zeros(1 << 15, dtype=np.int64)
    z32, z64, zf = np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32)
    movie = -1
    for b in batches:
        pos = 0
        while True:
            resets = b.resets if pos == 0 else b.resets - pos
            st, p, val, movie, _ = P.netflix_pass(b.buf[pos:], resets, movie, False, user_counts,
                                                  movie_counts, z32, z32, z64, z32, zf, z64)
            pos += p
            if st == P.OK:
                break
            if st in (P.GROW_USER, P.GROW_MOVIE) and val >= DENSE_ID_LIMIT:
                raise _SparseIds
            if st == P.GROW_USER:
                user_counts = _grow(user_counts, val)
            elif st == P.GROW_MOVIE:
                movie_counts = _grow(movie_counts, val)
            else:
                raise _error(st, b, pos)
    return user_counts, movie_counts


def _fill_pass(batches: Iterator[Batch], user_code, movie_code, indptr, items, ratings, ts,
               path) -> None:
    """Pass 2: scatter every rating into its user-major slot."""
    cursor = indptr[:-1].copy()
    movie = -1
    for b in batches:
        st, p, val, movie, _ = P.netflix_pass(b.buf, b.resets, movie, True, user_code, movie_code,
                                              user_code, movie_code, cursor, items, ratings, ts)
        if st != P.OK:
            raise DataError("the data changed while it was read", path=b.where(p)[0])
    if not np.array_equal(cursor, indptr[1:]):
        raise DataError("the data changed while it was read", path=path)


def _rows_pass(batches: Iterator[Batch], path: Path) -> RatingsTable:
    """The whole load for sparse ids: one row per rating, then the usual id maps (np.unique)."""
    parts = []
    movie = -1
    for b in batches:
        m = int(np.count_nonzero(b.buf == 10)) + 1
        u, it = np.empty(m, np.int64), np.empty(m, np.int64)
        r, d = np.empty(m, np.float32), np.empty(m, np.int64)
        st, pos, movie, rows = P.netflix_rows(b.buf, b.resets, movie, u, it, r, d)
        if st != P.OK:
            raise _error(st, b, pos)
        parts.append((P.narrow_ints(u[:rows]), P.narrow_ints(it[:rows]), r[:rows].copy(),
                      P.narrow_ints(d[:rows])))
        del u, it, r, d
    if not any(p[0].size for p in parts):
        raise DataError("no ratings found", path=path)
    users, items, ratings, days = (np.concatenate([p[k] for p in parts]) for k in range(4))
    del parts
    return RatingsTable.from_raw(users, items, ratings, days.astype(np.int64) * 86400, source=str(path))


def load_netflix(path: str | Path) -> RatingsTable:
    """Load Netflix Prize ratings from ``path`` (any layout, see the module doc).

    Raises a one-line :class:`DataError` naming the file, line and field of a
    malformed line, for an empty file, and for a truncated archive. Ids of
    ``DENSE_ID_LIMIT`` and above take the row path (:func:`_rows_pass`).
    """
    path = Path(path).expanduser()
    _, pieces = detect_layout(path)
    try:
        user_counts, movie_counts = _count_pass(_batches(_guard(pieces(), path)))
    except _SparseIds:
        return _rows_pass(_batches(_guard(pieces(), path)), path)

    user_raw = np.flatnonzero(user_counts)
    movie_raw = np.flatnonzero(movie_counts)
    per_user = user_counts[user_raw]
    n = int(per_user.sum(dtype=np.int64))
    if n == 0:
        raise DataError("no ratings found", path=path)
    idx = np.int32 if n < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(user_raw.size + 1, dtype=idx)
    np.cumsum(per_user, out=indptr[1:])
    del per_user
    # the count tables become raw id -> index lookups (in place for the big one)
    user_code = user_counts
    user_code[:] = -1
    user_code[user_raw] = np.arange(user_raw.size, dtype=np.int32)
    movie_code = np.full(movie_counts.shape[0], -1, dtype=np.int32)
    movie_code[movie_raw] = np.arange(movie_raw.size, dtype=np.int32)
    del movie_counts

    items = np.empty(n, dtype=idx)
    ratings = np.empty(n, dtype=np.float32)
    ts = np.empty(n, dtype=np.int64)
    _fill_pass(_batches(_guard(pieces(), path)), user_code, movie_code, indptr, items, ratings, ts, path)
    del user_code, movie_code
    # the text is item-major, so rows come out item-sorted when movies come in id
    # order; otherwise (e.g. an archive in another order) sort the rows that need it
    u, k = P.sort_rows(indptr, items, ratings, ts)
    if u >= 0:
        raise DataError(f"movie {int(movie_raw[items[k]])} is rated twice by user {int(user_raw[u])}",
                        path=path)
    return RatingsTable(indptr, items, ratings, ts, IdMap(user_raw), IdMap(movie_raw))
