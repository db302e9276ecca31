"""One ratings source (a file or a folder) as one table, whatever its layout.

What ``recozoo data prepare NAME --source PATH --protocol P`` reads before
splitting. ``--format auto`` (the default) without a column mapping detects:

* a MovieLens release — ``u.data``, ``ratings.dat``, a ``ratings.csv`` with
  GroupLens' header, a folder holding one of them, or a GroupLens ``.zip``
  (:mod:`recozoo.data.movielens`);
* the Netflix Prize layouts — ``training_set/`` (``mv_*.txt``),
  ``combined_data_*.txt``, ``training_set.tar``, ``nf_prize_dataset.tar.gz``
  (:mod:`recozoo.data.netflix`);
* ``.csv`` / ``.parquet`` files (or a folder of them) — by column name:
  ``user``, ``item``, ``rating`` and, when the file has one, ``timestamp``
  (:mod:`recozoo.data.generic`);
* anything else (e.g. a folder of ``.tsv`` part files) — the DeepRec TSV
  layout ``user<TAB>item[<TAB>rating[<TAB>unix time]]`` (:mod:`recozoo.data.tsv`).

``--format tsv|csv|parquet`` forces a reader; a column mapping (``--columns
user=…,item=…,rating=…,timestamp=…``, ``rating=none`` for interaction-only
files) always goes through the generic reader.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Mapping

from recozoo.data.table import RatingsTable
from recozoo.errors import DataError

__all__ = ["load_ratings_source", "FORMATS", "detect_kind"]

FORMATS = ("auto", "tsv", "csv", "parquet")

_NETFLIX_FILE = re.compile(r"^(combined_data_\d+\.txt|mv_\d+\.txt|training_set\.tar|"
                           r"nf_prize_dataset\.tar\.gz)$")
_ML_HEADER = "userId,movieId,rating,timestamp"


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.readline(4096).decode("utf-8", "replace").strip().replace('"', "")
    except OSError as e:
        raise DataError(f"cannot read ({type(e).__name__}: {e})", path=path) from None


def _is_movielens_file(path: Path) -> bool:
    if path.name in ("u.data", "ratings.dat"):
        return True
    if path.name == "ratings.csv":
        return _first_line(path).replace(" ", "") == _ML_HEADER
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.rsplit("/", 1)[-1] in ("u.data", "ratings.dat", "ratings.csv")
                           for n in z.namelist())
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"not a readable zip ({e})", path=path) from None
    return False


def _data_files(folder: Path) -> list[Path]:
    from recozoo.data.tsv import source_files
    return source_files(folder)


def detect_kind(path: str | Path) -> str:
    """``movielens``, ``netflix``, ``csv``, ``parquet`` or ``tsv`` (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("no such file or folder", path=path)
    if path.is_dir():
        if any(_is_movielens_file(path / n) for n in ("u.data", "ratings.dat", "ratings.csv")
               if (path / n).is_file()):
            return "movielens"
        files = _data_files(path)
        if any(_NETFLIX_FILE.match(f.name) for f in files) or (path / "training_set").is_dir():
            return "netflix"
        suffixes = {f.suffix.lower() for f in files}
        for kind, ext in (("csv", {".csv"}), ("parquet", {".parquet", ".pq"})):
            if suffixes and suffixes <= ext:
                return kind
        return "tsv"
    if _is_movielens_file(path):
        return "movielens"
    if _NETFLIX_FILE.match(path.name):
        return "netflix"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "tsv"


def _has_timestamp_column(path: Path, kind: str) -> bool:
    first = path if path.is_file() else _data_files(path)[0]
    if kind == "parquet":
        import pyarrow.parquet as pq
        try:
            return "timestamp" in pq.read_schema(first).names
        except Exception as e:  # pyarrow raises many types for a bad file
            raise DataError(f"cannot read Parquet ({type(e).__name__}: {e})", path=first) from None
    names = [c.strip() for c in re.split(r"[,;\t|]", _first_line(first))]
    return "timestamp" in names


def load_ratings_source(path: str | Path, fmt: str = "auto",
                        columns: Mapping[str, object] | None = None) -> RatingsTable:
    """All ratings of one source (module docstring: how the layout is chosen)."""
    from recozoo.data.generic import check_column_options, load_table
    path = Path(path).expanduser()
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r} ({'|'.join(FORMATS)})", path=path)
    columns = check_column_options(columns)
    kind = detect_kind(path) if fmt == "auto" else fmt
    if columns:
        kw = {"user": "user", "item": "item", "rating": "rating", **columns}
        return load_table(path, format=None if fmt == "auto" else fmt, **kw)
    if kind == "movielens":
        from recozoo.data.movielens import load_movielens
        return load_movielens(path)
    if kind == "netflix":
        from recozoo.data.netflix import load_netflix
        return load_netflix(path)
    if kind in ("csv", "parquet"):
        ts = "timestamp" if _has_timestamp_column(path, kind) else None
        return load_table(path, user="user", item="item", rating="rating", timestamp=ts, format=kind)
    from recozoo.data.tsv import load_tsv
    return load_tsv(path)
