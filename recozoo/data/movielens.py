"""Load MovieLens ratings as GroupLens distributes them.

Detected by file name (a folder, the folder one level up, or the ``.zip``):

* ML-100K: ``u.data`` — ``user<TAB>item<TAB>rating<TAB>unix time``; its
  canonical folds ``u1..u5`` and ``ua``/``ub`` are ``<fold>.base``/``<fold>.test``
  in the same layout (:func:`load_ml100k_fold`);
* ML-1M / ML-10M: ``ratings.dat`` — ``user::item::rating::unix time``;
* ML-20M / 25M / latest / latest-small: ``ratings.csv`` with the header
  ``userId,movieId,rating,timestamp``.

Parsing is the numba engine of :mod:`recozoo.data.tsv`; a bad line is a
one-line :class:`DataError` naming the file, line and field.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from recozoo.data.table import RatingsTable
from recozoo.data.tsv import Columns, read_columns, tables_on_shared_ids
from recozoo.errors import DataError

__all__ = ["load_movielens", "load_ml100k_fold", "ML100K_FOLDS", "find_ratings"]

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

#: ratings file name -> (separator, has a header line)
_LAYOUTS = {"u.data": (b"\t", False), "ratings.dat": (b"::", False), "ratings.csv": (b",", True)}
_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")


def _check_csv_header(name: str, line: str) -> None:
    cols = tuple(c.strip().strip('"') for c in line.split(","))
    if cols != _CSV_HEADER:
        raise DataError(f"expected the header {','.join(_CSV_HEADER)}, found {line[:80]!r}",
                        path=name, line=1)


def find_ratings(path: str | Path) -> tuple[str, Path, str | None]:
    """``(kind, file or zip, zip member or None)`` of the ratings file under ``path``."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"not a readable zip ({e})", path=path) from None
        for kind in _LAYOUTS:
            hits = sorted((n for n in names if n.rsplit("/", 1)[-1] == kind), key=len)
            if hits:
                return kind, path, hits[0]
        raise DataError("zip holds no u.data, ratings.dat or ratings.csv", path=path)
    if path.is_file():
        if path.name in _LAYOUTS:
            return path.name, path, None
        if path.suffix in (".base", ".test"):
            return "u.data", path, None
        raise DataError("not a MovieLens ratings file (u.data, ratings.dat, ratings.csv)", path=path)
    if not path.is_dir():
        raise DataError("no such file or folder", path=path)
    for folder in [path] + sorted(p for p in path.iterdir() if p.is_dir()):
        for kind in _LAYOUTS:
            if (folder / kind).is_file():
                return kind, folder / kind, None
    raise DataError("no MovieLens ratings here (u.data, ratings.dat or ratings.csv)", path=path)


def _columns(kind: str, file: Path, member: str | None) -> Columns:
    sep, has_header = _LAYOUTS[kind]
    if member is None:
        opener = (str(file), lambda: open(file, "rb"))
    else:
        z = zipfile.ZipFile(file)
        opener = (f"{file}:{member}", lambda: z.open(member))
    try:
        return read_columns([opener], sep, 4, header=_check_csv_header if has_header else None)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"cannot read ({type(e).__name__}: {e})", path=opener[0]) from None


def load_movielens(path: str | Path) -> RatingsTable:
    """All ratings of a MovieLens release (ML-100K, 1M, 10M, 20M, 25M, latest[-small])."""
    kind, file, member = find_ratings(path)
    c = _columns(kind, file, member)
    return RatingsTable.from_raw(c.users, c.items, c.ratings, c.timestamps, source=c.name)


def _ml100k_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    for folder in (path, path / "ml-100k"):
        if (folder / "u1.base").is_file():
            return folder
    raise DataError("no ML-100K folds here (u1.base ...)", path=path)


def load_ml100k_fold(path: str | Path, fold: str) -> tuple[RatingsTable, RatingsTable]:
    """``(train, test)`` of a canonical ML-100K fold (``u1``..``u5``, ``ua``, ``ub``).

    Both tables share ONE pair of id maps: the union of the ids in
    ``<fold>.base`` and ``<fold>.test`` (u1.test rates a few items that
    u1.base never does; they keep an index so the evaluator can apply its
    unseen-id policy instead of the loader silently dropping them).
    """
    if fold not in ML100K_FOLDS:
        raise DataError(f"unknown ML-100K fold {fold!r} ({', '.join(ML100K_FOLDS)})")
    folder = _ml100k_dir(Path(path))
    cols = {}
    for part in ("base", "test"):
        f = folder / f"{fold}.{part}"
        if not f.is_file():
            raise DataError("missing fold file", path=f)
        cols[part] = _columns("u.data", f, None)
    t = tables_on_shared_ids(cols)
    return t["base"], t["test"]
