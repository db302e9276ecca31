"""Numba kernels that turn raw rating text (bytes) into columns.

Why numba over bytes: the Netflix Prize data is 100M short lines; Python's
``split``/``int``/``strptime`` per line runs at ~0.2M lines/s, pandas cannot
read the ``<movie_id>:`` block headers, and every loader must name the exact
line and field of a bad input. A byte loop compiled with numba does all three
at hundreds of MB/s on one core.

Kernels never raise: they return a status code and the byte offset where they
stopped; the Python side (``netflix.py``, ``tsv.py``) turns a non-zero code
into a one-line :class:`~recozoo.errors.DataError` with file, line and field.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from numba import njit

from recozoo.errors import DataError

# status codes shared with the Python side
OK = 0
GROW_USER = 1       # a user id does not fit the counts table: grow it and resume at ``pos``
GROW_MOVIE = 2      # same for movie ids
E_HEADER = 10       # "<movie_id>:" header is not a number
E_NO_HEADER = 11    # a rating line before any movie header
E_USER = 12
E_RATING = 13
E_DATE = 14
E_FIELDS = 15       # wrong number of fields
E_ITEM = 16
E_TIME = 17
E_NAN = 18          # rating is not a finite number
E_CHANGED = 19      # fill pass met a line the count pass did not see
E_RANGE = 20        # an integer beyond the signed 64-bit range

INT_OK, INT_BAD, INT_RANGE = 0, 1, 2
INT64_MAX = 9_223_372_036_854_775_807

MAX_ID = 2_147_483_647

NL, CR, COLON, COMMA, MINUS, PLUS, DOT = 10, 13, 58, 44, 45, 43, 46


@njit(cache=True, nogil=True)
def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def civil_from_days(z):
    """(year, month, day) of a day number (inverse of :func:`days_from_civil`)."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return y + (m <= 2), m, d


@njit(cache=True, nogil=True)
def _days_in_month(y, m):
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@njit(cache=True, nogil=True)
def _uint(buf, a, b):
    """Unsigned decimal in ``buf[a:b]``; -1 if empty, not all digits or > 2**31-1."""
    if b <= a or b - a > 10:
        return -1
    v = 0
    for k in range(a, b):
        c = buf[k] - 48
        if c < 0 or c > 9:
            return -1
        v = v * 10 + c
    if v > MAX_ID:
        return -1
    return v


@njit(cache=True, nogil=True)
def _parse_date(buf, a, b):
    """Day number of ``YYYY-MM-DD`` in ``buf[a:b]``, or -2**40 when malformed."""
    bad = -(1 << 40)
    if b - a != 10 or buf[a + 4] != MINUS or buf[a + 7] != MINUS:
        return bad
    y = _uint(buf, a, a + 4)
    m = _uint(buf, a + 5, a + 7)
    d = _uint(buf, a + 8, a + 10)
    if y < 0 or m < 0 or d < 0:
        return bad
    if m < 1 or m > 12 or d < 1 or d > _days_in_month(y, m):
        return bad
    return days_from_civil(y, m, d)


@njit(cache=True, nogil=True, inline="always")
def _line_bounds(buf, i):
    """``(e, le)`` of the line starting at ``i``: ``e`` its newline (or the end), ``le`` its text's end
    (before a ``\\r``)."""
    n = buf.shape[0]
    e = i
    while e < n and buf[e] != NL:
        e += 1
    le = e
    if le > i and buf[le - 1] == CR:
        le -= 1
    return e, le


@njit(cache=True, nogil=True, inline="always")
def _rating_line(buf, i, le):
    """``(status, user, rating, day)`` of the Netflix rating line ``user,rating,YYYY-MM-DD`` in
    ``buf[i:le]`` (status ``OK`` or the ``E_*`` code of the first bad field)."""
    c1 = i
    while c1 < le and buf[c1] != COMMA:
        c1 += 1
    if c1 == le:
        return E_FIELDS, 0, 0, 0
    c2 = c1 + 1
    while c2 < le and buf[c2] != COMMA:
        c2 += 1
    if c2 == le:
        return E_FIELDS, 0, 0, 0
    uid = _uint(buf, i, c1)
    if uid < 0:
        return E_USER, 0, 0, 0
    if c2 - c1 != 2:
        return E_RATING, 0, 0, 0
    r = buf[c1 + 1] - 48
    if r < 1 or r > 5:
        return E_RATING, 0, 0, 0
    for k in range(c2 + 1, le):
        if buf[k] == COMMA:
            return E_FIELDS, 0, 0, 0
    day = _parse_date(buf, c2 + 1, le)
    if day == -(1 << 40):
        return E_DATE, 0, 0, 0
    return OK, uid, r, day


@njit(cache=True, nogil=True, inline="always")
def _put_row(rows, users, items, ratings, u, it, r):
    """Write one ``(user, item, rating)`` at index ``rows`` of the row kernels' column outputs
    (:func:`netflix_rows`, :func:`delimited_pass`); returns the next row's index."""
    users[rows] = u
    items[rows] = it
    ratings[rows] = r
    return rows + 1


@njit(cache=True, nogil=True)
def netflix_rows(buf, resets, movie, users_out, movies_out, ratings_out, days_out):
    """Parse Netflix text like :func:`netflix_pass`, writing one row per rating (raw user id, raw
    movie id, rating, day) instead of counting into tables indexed by raw id.

    Why: the path for sparse ids (a user id of 2**31 - 1, a movie header ``2000000000:``), whose
    memory follows the number of ratings and distinct ids, not the raw id range. The outputs are
    sized for every line of ``buf``. Returns ``(status, pos, movie, rows)``.
    """
    n = buf.shape[0]
    i = 0
    rows = 0
    nr = resets.shape[0]
    j = 0
    while i < n:
        while j < nr and resets[j] < i:
            j += 1
        if j < nr and resets[j] == i:
            movie = -1
            j += 1
        e, le = _line_bounds(buf, i)
        if le > i and buf[le - 1] == COLON:
            v = _uint(buf, i, le - 1)
            if v < 0:
                return E_HEADER, i, movie, rows
            movie = v
        elif le > i:
            if movie < 0:
                return E_NO_HEADER, i, movie, rows
            st, uid, r, day = _rating_line(buf, i, le)
            if st != OK:
                return st, i, movie, rows
            days_out[rows] = day
            rows = _put_row(rows, users_out, movies_out, ratings_out, uid, movie, r)
        i = e + 1
    return OK, n, movie, rows


@njit(cache=True, nogil=True)
def netflix_pass(buf, resets, movie, fill, user_counts, movie_counts,
                 user_code, movie_code, cursor, items_out, ratings_out, ts_out):
    """Parse Netflix lines: ``<movie_id>:`` headers and ``user,rating,YYYY-MM-DD`` ratings.

    ``buf`` may hold several files: at each offset in ``resets`` (sorted) a new
    file starts, which must open with a movie header. ``movie`` is the raw id
    of the block the text starts in (-1: none yet).
    Count mode (``fill`` false) validates every line and counts ratings per raw
    user id and per raw movie id into the ``*_counts`` tables (growable: status
    ``GROW_*`` asks the caller to enlarge one and call again from ``pos``).
    Fill mode scatters each rating to ``cursor[user_code[uid]]`` (user-major),
    never past the end of the output (status ``E_CHANGED`` if the text changed
    since the count pass; the caller also checks the final cursors).

    Returns ``(status, pos, value, movie, n_lines)``: ``pos`` is the start of
    the line where it stopped, ``value`` the offending id for ``GROW_*``.
    """
    n = buf.shape[0]
    i = 0
    lines = 0
    nu = user_counts.shape[0]
    nm = movie_counts.shape[0]
    if fill:
        nu = user_code.shape[0]
        nm = movie_code.shape[0]
    n_out = items_out.shape[0]
    nr = resets.shape[0]
    j = 0
    mcode = -1
    if fill and movie >= 0:
        mcode = movie_code[movie]
    while i < n:
        while j < nr and resets[j] < i:
            j += 1
        if j < nr and resets[j] == i:
            movie = -1
            mcode = -1
            j += 1
        e, le = _line_bounds(buf, i)
        if le == i:  # blank line: carries no data
            i = e + 1
            lines += 1
            continue
        if buf[le - 1] == COLON:
            v = _uint(buf, i, le - 1)
            if v < 0:
                return E_HEADER, i, 0, movie, lines
            if v >= nm:
                if fill:
                    return E_CHANGED, i, v, movie, lines
                return GROW_MOVIE, i, v, movie, lines
            movie = v
            if fill:
                mcode = movie_code[movie]
                if mcode < 0:
                    return E_CHANGED, i, v, movie, lines
            i = e + 1
            lines += 1
            continue
        if movie < 0:
            return E_NO_HEADER, i, 0, movie, lines
        st, uid, r, day = _rating_line(buf, i, le)
        if st != OK:
            return st, i, 0, movie, lines
        if fill:
            if uid >= nu or user_code[uid] < 0:
                return E_CHANGED, i, uid, movie, lines
            u = user_code[uid]
            p = cursor[u]
            if p >= n_out:
                return E_CHANGED, i, uid, movie, lines
            cursor[u] = p + 1
            items_out[p] = mcode
            ratings_out[p] = r
            ts_out[p] = day * 86400
        else:
            if uid >= nu:
                return GROW_USER, i, uid, movie, lines
            user_counts[uid] += 1
            movie_counts[movie] += 1
        i = e + 1
        lines += 1
    return OK, n, 0, movie, lines


@njit(cache=True, nogil=True)
def sort_rows(indptr, items, ratings, ts):
    """Sort each CSR row by item (only rows that are not sorted yet).

    Returns ``(row, position)`` of the first duplicate (user, item) pair, or
    ``(-1, -1)``.
    """
    n_rows = indptr.shape[0] - 1
    for u in range(n_rows):
        a = indptr[u]
        b = indptr[u + 1]
        ok = True
        for k in range(a + 1, b):
            if items[k] <= items[k - 1]:
                ok = False
                break
        if ok:
            continue
        order = np.argsort(items[a:b], kind="mergesort")
        it = items[a:b][order]
        rt = ratings[a:b][order]
        tt = ts[a:b][order]
        items[a:b] = it
        ratings[a:b] = rt
        ts[a:b] = tt
        for k in range(a + 1, b):
            if items[k] == items[k - 1]:
                return u, k
    return -1, -1


# ------------------------------------------------------- delimited numeric lines
@njit(cache=True, nogil=True, inline="always")
def _sign(buf, k):
    """``(negative, k')`` of a number starting at ``buf[k]``: an optional ``+``/``-`` read, ``k'`` its
    first digit's offset (``_float`` and ``_int64`` share it)."""
    if buf[k] == MINUS or buf[k] == PLUS:
        return buf[k] == MINUS, k + 1
    return False, k


@njit(cache=True, nogil=True)
def _float(buf, a, b):
    """(ok, value) of a decimal float ``[+-]digits[.digits][e[+-]digits]`` in buf[a:b]."""
    if b <= a:
        return False, 0.0
    neg, k = _sign(buf, a)
    mant = 0.0
    nd = 0
    while k < b and 48 <= buf[k] <= 57:
        mant = mant * 10.0 + (buf[k] - 48)
        k += 1
        nd += 1
    scale = 0
    if k < b and buf[k] == DOT:
        k += 1
        while k < b and 48 <= buf[k] <= 57:
            mant = mant * 10.0 + (buf[k] - 48)
            scale -= 1
            k += 1
            nd += 1
    if nd == 0:
        return False, 0.0
    if k < b and (buf[k] == 101 or buf[k] == 69):  # e / E
        k += 1
        eneg = False
        if k < b:
            eneg, k = _sign(buf, k)
        ev = 0
        ne = 0
        while k < b and 48 <= buf[k] <= 57:
            ev = ev * 10 + (buf[k] - 48)
            k += 1
            ne += 1
            if ev > 400:
                return False, 0.0
        if ne == 0:
            return False, 0.0
        scale += -ev if eneg else ev
    if k != b:
        return False, 0.0
    v = mant / 10.0 ** (-scale) if scale < 0 else mant * 10.0 ** scale  # division: exact for 0.5, 3.5
    if neg:
        v = -v
    return True, v


@njit(cache=True, nogil=True, inline="always")   # (inlined: a call per field costs ~20% of a pass)
def _int64(buf, a, b):
    """(code, value) of a signed decimal integer in buf[a:b] (also accepts ``N.0``): code
    ``INT_OK``, ``INT_BAD`` (not an integer) or ``INT_RANGE`` (beyond ±(2**63 - 1)).

    The digits accumulate in int64, which wraps silently: a 19-digit value above 2**63 - 1 (all
    below 2**64) comes out negative, so one check after the loop finds it (no test per digit).
    """
    if b <= a:
        return INT_BAD, 0
    neg, k = _sign(buf, a)
    v = 0
    d0 = k
    while k < b and 48 <= buf[k] <= 57:
        v = v * 10 + (buf[k] - 48)
        k += 1
    nd = k - d0
    if nd == 0:
        return INT_BAD, 0
    code = INT_OK
    if nd >= 19:    # rare: leading zeros do not count
        while d0 < k - 1 and buf[d0] == 48:
            d0 += 1
        if k - d0 > 19 or (k - d0 == 19 and v < 0):
            code = INT_RANGE
    if k < b and buf[k] == DOT:  # "12.0" written by float-minded tools
        k += 1
        while k < b and buf[k] == 48:
            k += 1
    if k != b:
        return INT_BAD, 0
    return code, -v if neg else v


@njit(cache=True, nogil=True)
def delimited_pass(buf, sep, ncols, users, items, ratings, ts):
    """Parse ``user<sep>item[<sep>rating[<sep>timestamp]]`` lines (``sep`` 1+ bytes).

    ``ncols`` is 2, 3 or 4, or 0 to take it from the first data line (2 fields:
    an interaction-only line, its rating is 1). Fills the
    output arrays (sized for every line of ``buf``) and returns
    ``(status, pos, field, n_rows, ncols, n_lines)``; ``field`` is the 0-based
    column of the error (for ``E_FIELDS``: the number of fields seen).
    """
    n = buf.shape[0]
    ls = sep.shape[0]
    s0 = sep[0]
    i = 0
    rows = 0
    lines = 0
    starts = np.empty(6, dtype=np.int64)
    ends = np.empty(6, dtype=np.int64)
    while i < n:
        e, le = _line_bounds(buf, i)
        # a blank (or whitespace-only) line carries no data
        blank = True
        for k in range(i, le):
            if buf[k] != 32 and buf[k] != 9:
                blank = False
                break
        if blank:
            i = e + 1
            lines += 1
            continue
        nf = 0
        a = i
        k = i
        while k <= le - ls:
            match = buf[k] == s0
            if match and ls > 1:
                for q in range(1, ls):
                    if buf[k + q] != sep[q]:
                        match = False
                        break
            if match:
                if nf < 5:
                    starts[nf] = a
                    ends[nf] = k
                nf += 1
                k += ls
                a = k
            else:
                k += 1
        if nf < 5:
            starts[nf] = a
            ends[nf] = le
        nf += 1
        if ncols == 0:
            if nf < 2 or nf > 4:
                return E_FIELDS, i, nf, rows, ncols, lines
            ncols = nf
        if nf != ncols:
            return E_FIELDS, i, nf, rows, ncols, lines
        code, u = _int64(buf, starts[0], ends[0])
        if code != INT_OK:
            return E_USER if code == INT_BAD else E_RANGE, i, 0, rows, ncols, lines
        code, it = _int64(buf, starts[1], ends[1])
        if code != INT_OK:
            return E_ITEM if code == INT_BAD else E_RANGE, i, 1, rows, ncols, lines
        r = 1.0
        if ncols >= 3:
            ok, r = _float(buf, starts[2], ends[2])
            if not ok:
                return E_RATING, i, 2, rows, ncols, lines
            if not np.isfinite(r):
                return E_NAN, i, 2, rows, ncols, lines
        if ncols == 4:
            code, t = _int64(buf, starts[3], ends[3])
            if code != INT_OK:
                return E_TIME if code == INT_BAD else E_RANGE, i, 3, rows, ncols, lines
            ts[rows] = t
        rows = _put_row(rows, users, items, ratings, u, it, r)
        i = e + 1
        lines += 1
    return OK, n, 0, rows, ncols, lines


def narrow_ints(a: np.ndarray) -> np.ndarray:
    """int64 -> int32 when every value fits (halves the memory of raw id columns)."""
    if a.size and a.min() >= np.iinfo(np.int32).min and a.max() <= np.iinfo(np.int32).max:
        return a.astype(np.int32)
    return a


# ------------------------------------------------------------ reading text
#: bytes read at a time from a big file (the memory bound of a pass)
CHUNK_BYTES = 16 << 20


def stream_pieces(name: str, f, size: int | None = None,
                  chunk: int | None = None) -> Iterator[tuple[str, memoryview | bytes, bool, bool]]:
    """Pieces ``(name, data, first, whole)`` of a binary file object, each ending
    at a line end (a file's last piece may not): ``first`` marks a file's first
    piece, ``whole`` a file read in one piece (only known when ``size`` is).
    An empty file is a :class:`DataError`.

    Memory: one ``chunk``-sized buffer per piece, filled with ``readinto`` (no
    copies of the chunk); a consumer must be done with a piece before asking
    for the next one only if it keeps no reference to it. ``size`` (when known)
    lets a small file be read in one exact call.
    """
    chunk = chunk or CHUNK_BYTES
    if size is not None and size <= chunk:
        data = f.read()
        if not data:
            raise DataError("empty file", path=name)
        yield name, data, True, True
        return
    carry = b""
    first = True
    while True:
        buf = bytearray(len(carry) + chunk)
        buf[:len(carry)] = carry
        got = f.readinto(memoryview(buf)[len(carry):])
        end = len(carry) + (got or 0)
        if not got:
            if carry:
                yield name, memoryview(buf)[:end], first, False
            elif first:
                raise DataError("empty file", path=name)
            return
        cut = buf.rfind(b"\n", 0, end) + 1
        if cut == 0:  # one line longer than a chunk: keep reading
            carry = bytes(buf[:end])
            continue
        carry = bytes(buf[cut:end])
        yield name, memoryview(buf)[:cut], first, False
        first = False


# ------------------------------------------------------------------ writers
@njit(cache=True, nogil=True)
def _put_uint(out, p, v):
    if v == 0:
        out[p] = 48
        return p + 1
    tmp = np.empty(20, dtype=np.uint8)
    k = 0
    while v > 0:
        tmp[k] = 48 + v % 10
        v //= 10
        k += 1
    for q in range(k):
        out[p + q] = tmp[k - 1 - q]
    return p + k


@njit(cache=True, nogil=True)
def render_netflix(movies, starts, users, ratings, days, out):
    """Render movie blocks ``<movie>:\\n`` + ``user,rating,YYYY-MM-DD\\n`` lines into ``out``.

    Block ``b`` covers ratings ``starts[b]:starts[b+1]``. Returns the byte
    offset where each block begins (plus the end) so callers can cut files.
    """
    nb = movies.shape[0]
    offs = np.empty(nb + 1, dtype=np.int64)
    p = 0
    for b in range(nb):
        offs[b] = p
        p = _put_uint(out, p, movies[b])
        out[p] = COLON
        out[p + 1] = NL
        p += 2
        for k in range(starts[b], starts[b + 1]):
            p = _put_uint(out, p, users[k])
            out[p] = COMMA
            out[p + 1] = 48 + ratings[k]
            out[p + 2] = COMMA
            p += 3
            y, m, d = civil_from_days(days[k])
            out[p] = 48 + y // 1000
            out[p + 1] = 48 + (y // 100) % 10
            out[p + 2] = 48 + (y // 10) % 10
            out[p + 3] = 48 + y % 10
            out[p + 4] = MINUS
            out[p + 5] = 48 + m // 10
            out[p + 6] = 48 + m % 10
            out[p + 7] = MINUS
            out[p + 8] = 48 + d // 10
            out[p + 9] = 48 + d % 10
            out[p + 10] = NL
            p += 11
    offs[nb] = p
    return offs
