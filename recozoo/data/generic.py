"""Load any CSV / TSV / Parquet file of ratings through a column mapping.

For data that is neither Netflix, MovieLens nor the DeepRec TSV layout:
``load_table("r.csv", user="uid", item="sku", rating="stars", timestamp="when")``.
Columns are named (``header=True``) or 0-based positions (``header=False``).
A timestamp column may hold Unix seconds or dates pandas can parse.
``rating=None`` (``rating=none`` in a ``--columns`` mapping) reads an
interaction-only file: every row is one interaction with rating 1. A source
may be a folder: its regular non-hidden files, by name, read with the same
mapping (like the TSV layout's part files).

Why pandas here (and numba for the fixed layouts): arbitrary files need
quoting, headers, column selection and date parsing, which pandas' C reader
does well; the validation afterwards still names the file, line and field of
the first bad value (a row is never silently dropped).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from recozoo.data.table import RatingsTable
from recozoo.data.tsv import Columns, tables_on_shared_ids
from recozoo.errors import DataError

__all__ = ["load_table", "load_tables_many", "COLUMN_OPTIONS", "check_column_options"]

#: what a column mapping (``--columns``) may set
COLUMN_OPTIONS = ("user", "item", "rating", "timestamp", "sep", "header", "string_ids")
#: a mapping value that means "this file has no such column" (rating, timestamp)
_ABSENT = ("", "none", "-")


def check_column_options(columns: Mapping[str, object] | None) -> dict:
    """The mapping with absent columns as ``None``; unknown keys are a one-line error."""
    out = dict(columns or {})
    unknown = sorted(set(out) - set(COLUMN_OPTIONS))
    if unknown:
        raise DataError(f"unknown column option {unknown[0]!r} (known: {', '.join(COLUMN_OPTIONS)})")
    for k in ("rating", "timestamp"):
        if isinstance(out.get(k), str) and out[k].strip().lower() in _ABSENT:
            out[k] = None
    for k in ("user", "item"):
        if k in out and (out[k] is None or str(out[k]).strip().lower() in _ABSENT):
            raise DataError(f"the column mapping needs a {k} column, got {k}={out[k]!r}")
    return out

_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _format(path: Path, format: str | None) -> str:
    if format not in (None, "auto"):
        if format not in ("csv", "tsv", "parquet"):
            raise DataError(f"unknown format {format!r} (csv|tsv|parquet)", path=path)
        return format
    suf = "".join(path.suffixes[-2:]).lower()
    if suf.endswith((".parquet", ".pq")):
        return "parquet"
    if suf.endswith((".tsv", ".tab")):
        return "tsv"
    return "csv"


def _sniff_sep(path: Path) -> str:
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    if not first.strip():
        raise DataError("empty file", path=path)
    for sep in ("\t", "::", ",", ";", "|"):
        if sep in first:
            return sep
    return r"\s+"


def _to_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("0", "false", "no", "n", "")
    return bool(v)


def _col(spec, header: bool):
    if spec is None:
        return None
    if not header and isinstance(spec, str) and spec.strip().isdigit():
        return int(spec)
    if not header and not isinstance(spec, (int, np.integer)):
        raise DataError(f"with header=False columns are 0-based positions, not {spec!r}")
    return spec


def _read_frame(path: Path, cols: dict, sep, format, header: bool):
    import pandas as pd
    fmt = _format(path, format)
    wanted = [c for c in cols.values() if c is not None]
    if fmt == "parquet":
        import pyarrow.parquet as pq
        try:
            names = pq.read_schema(path).names
            missing = [c for c in wanted if c not in names]
            if missing:
                raise DataError(f"no column {missing[0]!r} (columns: {', '.join(names)})", path=path)
            return pq.read_table(path, columns=list(dict.fromkeys(wanted))).to_pandas(), None
        except DataError:
            raise
        except Exception as e:  # pyarrow raises many types for a bad file
            raise DataError(f"cannot read Parquet ({type(e).__name__}: {e})", path=path) from None
    if sep is None:
        sep = "\t" if fmt == "tsv" else _sniff_sep(path)
    engine = "python" if len(sep) > 1 and sep != r"\s+" else "c"
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, engine=engine,
                         skip_blank_lines=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError("empty file", path=path) from None
    except pd.errors.ParserError as e:
        m = _PANDAS_LINE.search(str(e))
        if m:
            raise DataError(f"expected {m.group(1)} fields, found {m.group(3)}", path=path,
                            line=int(m.group(2))) from None
        raise DataError(f"cannot parse ({e})", path=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read ({type(e).__name__}: {e})", path=path) from None
    if header:
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise DataError(f"no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))})",
                            path=path)
    else:
        bad = [c for c in wanted if c >= df.shape[1]]
        if bad:
            raise DataError(f"no column {bad[0]} (the file has {df.shape[1]})", path=path)
    # a blank line carries no data (every column empty); anything else is validated
    blank = df.isna().all(axis=1).to_numpy()
    lines = np.arange(df.shape[0]) + (2 if header else 1)
    if blank.any():
        df, lines = df[~blank], lines[~blank]
    return df, lines


def _fail(path, lines, k: int, field: str, msg: str, value) -> DataError:
    where = {"line": int(lines[k])} if lines is not None else {}
    row = "" if lines is not None else f"row {k + 1}: "
    return DataError(f"{row}{msg}: {str(value)[:60]!r}", path=path, field=field, **where)


_INT64_MAX = np.iinfo(np.int64).max
#: the largest magnitude a float64 holds for every integer below it (beyond, ids would merge)
_EXACT_IN_FLOAT = 2 ** 53


def _ints(s, path, lines, field: str) -> np.ndarray:
    """Integer ids, exactly: never through float64 beyond 2**53, never wrapped past int64."""
    v = s.to_numpy()
    if v.dtype.kind == "i":
        return v
    if v.dtype.kind == "u":      # pandas reads ids above 2**63 - 1 as uint64
        big = v > _INT64_MAX
        if big.any():
            k = int(np.flatnonzero(big)[0])
            raise _fail(path, lines, k, field, f"{field} does not fit a signed 64-bit integer", v[k])
        return v.astype(np.int64)
    if v.dtype.kind == "f":      # "12.0" or a missing value somewhere in the column
        ok = np.isfinite(v) & (v == np.round(v))
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise _fail(path, lines, k, field, f"{field} is not an integer", v[k])
        big = np.abs(v) > _EXACT_IN_FLOAT
        if big.any():
            k = int(np.flatnonzero(big)[0])
            raise _fail(path, lines, k, field, f"{field} is a decimal number too large to read exactly "
                        "(write ids without a decimal point)", f"{v[k]:.0f}")
        return v.astype(np.int64)
    return _ints_from_text(s, path, lines, field)


def _ints_from_text(s, path, lines, field: str) -> np.ndarray:
    """Ids that pandas kept as text or Python ints (e.g. beyond uint64): parsed as decimal text."""
    v = s.to_numpy()
    text = s.astype(str).str.strip()
    ok = text.str.fullmatch(r"[+-]?\d+(?:\.0*)?").to_numpy(dtype=bool, na_value=False) & ~s.isna().to_numpy()
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        raise _fail(path, lines, k, field, f"{field} is not an integer", v[k])
    digits = text.str.replace(r"\.0*$", "", regex=True).str.lstrip("+")
    mag = digits.str.lstrip("-").str.lstrip("0")
    n = mag.str.len().to_numpy()
    big = (n > 19) | ((n == 19) & (mag > str(_INT64_MAX)).to_numpy(dtype=bool))
    if big.any():
        k = int(np.flatnonzero(big)[0])
        raise _fail(path, lines, k, field, f"{field} does not fit a signed 64-bit integer", v[k])
    return digits.to_numpy(dtype=str).astype(np.int64)


def _strings(s, path, lines, field: str) -> np.ndarray:
    bad = s.isna().to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _fail(path, lines, k, field, f"{field} is missing", "")
    return s.astype(str).to_numpy()


def _ratings(s, path, lines) -> np.ndarray:
    import pandas as pd
    v = s.to_numpy()
    num = v.astype(np.float64) if v.dtype.kind in "iuf" else \
        pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(num)
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        raise _fail(path, lines, k, "rating", "rating is not a finite number", v[k])
    return num.astype(np.float32)


def _times(s, path, lines) -> np.ndarray:
    import pandas as pd
    v = s.to_numpy()
    if v.dtype.kind in "iu":
        return v.astype(np.int64)
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isfinite(num).all() and (num == np.round(num)).all():
        return num.astype(np.int64)
    if np.isfinite(num).any():  # mixed numbers and text: not one timestamp format
        k = int(np.flatnonzero(~(np.isfinite(num) & (num == np.round(num))))[0])
        raise _fail(path, lines, k, "timestamp", "timestamp is not Unix seconds", v[k])
    dt = pd.to_datetime(s, utc=True, errors="coerce", format="mixed")
    bad = dt.isna().to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _fail(path, lines, k, "timestamp", "timestamp is not a date", v[k])
    return ((dt - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _read_columns(path, *, user, item, rating, timestamp=None, sep=None, format=None,
                  header=True, string_ids=False) -> Columns:
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep,
                            format=format, header=header, string_ids=string_ids)
    if not path.is_file():
        raise DataError("no such file", path=path)
    header = _to_bool(header)
    absent = lambda c: isinstance(c, str) and c.strip().lower() in _ABSENT   # noqa: E731
    rating = None if absent(rating) else rating
    timestamp = None if absent(timestamp) else timestamp
    cols = {"user": _col(user, header), "item": _col(item, header), "rating": _col(rating, header),
            "timestamp": _col(timestamp, header)}
    df, lines = _read_frame(path, cols, sep, format, header)
    if df.shape[0] == 0:
        raise DataError("no ratings found", path=path)
    ids = _strings if _to_bool(string_ids) else _ints
    u = ids(df[cols["user"]], path, lines, "user")
    i = ids(df[cols["item"]], path, lines, "item")
    r = (np.ones(df.shape[0], dtype=np.float32) if cols["rating"] is None
         else _ratings(df[cols["rating"]], path, lines))
    t = None if cols["timestamp"] is None else _times(df[cols["timestamp"]], path, lines)
    return Columns(str(path), u, i, r, t)


def _read_folder(path: Path, **kw) -> Columns:
    """Every data file of a folder with one mapping, as one source."""
    from recozoo.data.tsv import source_files
    parts = [_read_columns(f, **kw) for f in source_files(path)]
    if len({p.timestamps is None for p in parts}) > 1:
        odd = next(p.name for p in parts if p.timestamps is None)
        raise DataError("some files have a timestamp column and others do not", path=odd)

    def cat(arrs):
        return arrs[0] if len(arrs) == 1 else np.concatenate(arrs)

    ts = None if parts[0].timestamps is None else cat([p.timestamps for p in parts])
    return Columns(str(path), cat([p.users for p in parts]), cat([p.items for p in parts]),
                   cat([p.ratings for p in parts]), ts)


def load_table(path, *, user, item, rating, timestamp=None, sep=None, format=None, header=True,
               string_ids: bool = False) -> RatingsTable:
    """Load one CSV/TSV/Parquet file (or a folder of them). ``format``: csv|tsv|parquet
    (default: by extension). ``rating=None``: interaction-only, every row rates 1.

    ``sep`` defaults to tab for .tsv and is sniffed from the first line
    otherwise. Ids must be integers unless ``string_ids`` (then kept as text).
    """
    c = _read_columns(path, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep,
                      format=format, header=header, string_ids=string_ids)
    return RatingsTable.from_raw(c.users, c.items, c.ratings, c.timestamps, source=c.name)


def load_tables_many(paths: Mapping[str, str | Path | None], *, fmt: str | None = None,
                     format: str | None = None, user="user", item="item", rating="rating",
                     timestamp=None, sep=None, header=True,
                     string_ids: bool = False) -> dict[str, RatingsTable]:
    """:func:`load_table` for several files (train/valid/test) onto ONE pair of id maps."""
    fmt = format or fmt
    cols = {k: _read_columns(p, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep,
                             format=fmt, header=header, string_ids=string_ids)
            for k, p in paths.items() if p is not None}
    if not cols:
        raise DataError("no sources given")
    return tables_on_shared_ids(cols)
