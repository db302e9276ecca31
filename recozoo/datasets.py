"""Named datasets, the data home, and the prepared-split cache.

A *dataset* (``ml-100k``, ``netflix-3m``, ``synthetic`` …) is a raw *source*
plus a protocol that turns it into a :class:`~recozoo.splits.Split`. Several
datasets share one source (the four Netflix presets all read the Netflix Prize
files; ``ml-100k`` and ``ml-100k-time`` both read ML-100K).

Data home: ``$RECOZOO_DATA`` (default ``~/.cache/recozoo``)::

    raw/<source>/            downloads (``recozoo data fetch``)
    sources/<source>.json    where the user's copy lives (``--source PATH``)
    tables/<source>/<key>/   the parsed raw table (shared by every preset of a source)
    prepared/<name>/<key>/   the split, one ``.npy`` per column (memory-mapped on load)
    user/<name>.json         datasets registered by ``data prepare NAME --train ...`` (pre-split
                             files) or ``data prepare NAME --source FILE --protocol P`` (one
                             source split by a protocol: its path, format, column mapping,
                             protocol and canonical parameters — all a rebuild needs)

The loaders are imported inside the dataset builders: they compile numba
parsers, which a fit from an already prepared split never needs.

Cache keys hash the source's fingerprint (every file's relative path, size and
mtime), the protocol version, the seed and the parameters, so a changed source
invalidates the cache and a second ``fit`` starts by memory-mapping a few files.
Cache entries are written through :mod:`recozoo.tmp_folders` (temp folder, one
rename, stale leftovers swept); a run's split is found again by
:mod:`recozoo.run_split`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from recozoo import registry
from recozoo.data.table import IdMap, RatingsTable
from recozoo.errors import DatasetNotFound, RecozooError, SettingsError
from recozoo.io import atomic_write_bytes
from recozoo.splits import (NETFLIX_PRESETS, Split, holdout_split, random_split, time_fraction_split,
                            time_split)
from recozoo.tmp_folders import new_tmp, replace_dir, sweep_stale_tmp

__all__ = ["DatasetSpec", "data_home", "load_split", "build_split", "builtin_datasets",
           "register_user_dataset", "register_protocol_dataset", "user_dataset", "user_datasets",
           "get_spec", "resolve_source", "record_source", "check_dataset_name",
           "source_table", "SOURCES_INFO", "IMPLICIT_PUBLISHED_HELDOUT"]

#: bump when a protocol implementation changes, to invalidate caches
PROTOCOL_VERSION = 1

ML100K_VALID_FRACTION = 0.05


def data_home() -> Path:
    return Path(os.environ.get("RECOZOO_DATA") or Path.home() / ".cache" / "recozoo").expanduser()


@dataclass
class DatasetSpec:
    """A named dataset: ``build(source_path, seed, params) -> Split``."""

    name: str
    description: str
    build: Callable[[Path | None, int, dict], Split]
    source: str | None = None            # raw source key; None = needs no files (synthetic)
    params: dict[str, Any] = field(default_factory=dict)   # defaults, overridable
    published: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> figure + source
    user_defined: bool = False


# ----------------------------------------------------------------- sources
#: how to obtain each raw source (shown when it is missing)
SOURCES_INFO: dict[str, str] = {
    "ml-100k": "run `recozoo data fetch ml-100k`, or `recozoo data prepare ml-100k --source PATH` "
               "with PATH the folder holding u.data and u1.base..ub.test",
    "netflix": "the Netflix Prize data cannot be downloaded by recozoo; see `recozoo data fetch netflix` "
               "for where to get it, then `recozoo data prepare netflix-3m --source PATH`",
}


def _source_hint(source: str) -> str:
    return SOURCES_INFO.get(source, f"run `recozoo data fetch {source}`, or pass --source PATH")


def _record_path(source: str) -> Path:
    return data_home() / "sources" / f"{source}.json"


def resolve_source(source: str, given: str | Path | None = None) -> Path:
    """Where the raw files of ``source`` are: given > recorded > downloaded.

    Records nothing: a given path is remembered by :func:`record_source` only once a
    split has been read from it (:func:`load_split`), so a bad ``--source`` never
    replaces a good one.
    """
    if given is not None:
        p = Path(given).expanduser().resolve()
        if not p.exists():
            raise DatasetNotFound(f"--source {given}: no such file or folder")
        return p
    rec = _record_path(source)
    if rec.exists():
        try:
            p = Path(json.loads(rec.read_text())["path"])
        except (ValueError, KeyError):
            raise DatasetNotFound(f"{rec}: corrupt source record; pass --source PATH again") from None
        if p.exists():
            return p
        raise DatasetNotFound(f"the {source} files recorded at {p} are gone; pass --source PATH")
    raw = data_home() / "raw" / source
    if raw.exists():
        return raw
    raise DatasetNotFound(f"{source} is not available yet: {_source_hint(source)}")


def record_source(source: str, path: str | Path) -> None:
    """Remember ``path`` as where the files of ``source`` are (``sources/<source>.json``)."""
    atomic_write_bytes(_record_path(source), json.dumps({"path": str(Path(path).resolve())}).encode())


def fingerprint(path: Path) -> str:
    """Hash of every file's relative path, size and mtime under ``path``."""
    h = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n"
                 .encode())
    return h.hexdigest()[:20]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_table(source: str, path: Path, loader: Callable[[Path], Any]):
    """The parsed raw table of a source, cached under ``tables/`` (mmap on reuse)."""
    folder = data_home() / "tables" / source / _key(fingerprint(path), PROTOCOL_VERSION)
    if (folder / "done").exists():
        ids_u = IdMap(np.load(folder / "user_ids.npy", allow_pickle=False))
        ids_i = IdMap(np.load(folder / "item_ids.npy", allow_pickle=False))
        return RatingsTable.load(folder / "table", ids_u, ids_i)
    table = loader(path)
    tmp = new_tmp(folder.parent)
    try:
        np.save(tmp / "user_ids.npy", table.user_ids.raw, allow_pickle=False)
        np.save(tmp / "item_ids.npy", table.item_ids.raw, allow_pickle=False)
        table.save(tmp / "table")
        (tmp / "done").write_text("ok")
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return table


# ------------------------------------------------------------- the protocols
def _ml100k_fold(fold: str):
    def build(path: Path, seed: int, params: dict) -> Split:
        from recozoo.data.movielens import load_ml100k_fold
        train, test = load_ml100k_fold(path, fold)
        return holdout_split(train, test, f"ml-100k-{fold}" if fold != "u1" else "ml-100k",
                             valid_fraction=float(params.get("valid_fraction", ML100K_VALID_FRACTION)),
                             seed=seed, info={"fold": fold, "source": "ml-100k"})
    return build


def _ml_loader(path: Path):
    from recozoo.data.movielens import load_movielens
    return load_movielens(path)


def _ml_time(source: str, name: str):
    def build(path: Path, seed: int, params: dict) -> Split:
        table = source_table(source, path, _ml_loader)
        return time_fraction_split(table, name, float(params.get("train_fraction", 0.8)), seed=seed)
    return build


def _ml_random(source: str, name: str):
    def build(path: Path, seed: int, params: dict) -> Split:
        table = source_table(source, path, _ml_loader)
        return random_split(table, name, float(params.get("test_fraction", 0.1)),
                            float(params.get("valid_fraction", 0.05)), seed=seed)
    return build


def _netflix(name: str):
    a, b, c, d = NETFLIX_PRESETS[name]

    def build(path: Path, seed: int, params: dict) -> Split:
        from recozoo.data.netflix import load_netflix
        table = source_table("netflix", path, load_netflix)
        return time_split(table, name, a, b, c, d, seed=seed)
    return build


#: N held-out users (each of VALID and TEST) the strong-generalisation papers used
IMPLICIT_PUBLISHED_HELDOUT = {"ml-20m": 10_000, "netflix": 40_000}
#: the implicit variants of every rated source: name suffix -> (protocol, parameters, what)
_IMPLICIT_VARIANTS = {
    "implicit": ("strong", {"threshold": 3.5}, "strong generalisation (Liang et al. 2018; rules 1-5 of "
                 "PROTOCOLS.md): rating > 3.5 is an interaction, held-out users with an 80/20 fold-in"),
    "implicit-weak": ("user-random", {"threshold": 3.5, "test_fraction": 0.2, "valid_fraction": 0.1},
                      "weak generalisation: rating > 3.5 is an interaction, a seeded random 20% "
                      "of each user's interactions is TEST, 10% of the rest VALID"),
    "implicit-last": ("leave-last-k", {"threshold": 3.5, "k": 1, "valid_k": 1},
                      "temporal leave-last-k-out: rating > 3.5 is an interaction, each user's last "
                      "k (1) interactions are TEST, the valid_k (1) before them VALID"),
}


def _implicit_params(source: str, protocol: str, fixed: dict) -> dict:
    from recozoo.protocols import protocol_params
    params = dict(fixed)
    if protocol == "strong":
        params["heldout_users"] = IMPLICIT_PUBLISHED_HELDOUT.get(source, "auto")
    return protocol_params(protocol, params)


def _implicit(source: str, name: str, protocol: str, loader: Callable[[Path], Any]):
    def build(path: Path, seed: int, params: dict) -> Split:
        from recozoo.protocols import apply_protocol
        table = source_table(source, path, loader)
        return apply_protocol(table, name, protocol, seed, params)
    return build


#: published TEST figures on the strong-generalisation splits (PROTOCOLS.md "Implicit feedback"):
#: NDCG@100, Recall@20, Recall@50, Recall as in rule 6 (recozoo's recall@K)
_IMPLICIT_PUBLISHED = {
    "ml-20m": {"mult-vae": (0.426, 0.395, 0.537), "mult-dae": (0.419, 0.387, 0.524), "ease": (0.420, 0.391, 0.521)},
    "netflix": {"mult-vae": (0.386, 0.351, 0.444), "mult-dae": (0.380, 0.344, 0.438),
                "ease": (0.393, 0.362, 0.445)},
}
_IMPLICIT_SOURCES = {"mult-vae": "Liang et al. WWW 2018 (PROTOCOLS.md)", "mult-dae": "Liang et al. WWW 2018 (PROTOCOLS.md)",
                     "ease": "Steck WWW 2019 (PROTOCOLS.md)"}


def _implicit_published(source: str) -> dict[str, dict[str, Any]]:
    return {m: {"test_ndcg@100": a, "test_recall@20": b, "test_recall@50": c, "source": _IMPLICIT_SOURCES[m]}
            for m, (a, b, c) in _IMPLICIT_PUBLISHED.get(source, {}).items()}


def _implicit_specs(source: str, loader: Callable[[Path], Any], what: str) -> list[DatasetSpec]:
    out = []
    for suffix, (protocol, fixed, how) in _IMPLICIT_VARIANTS.items():
        if protocol == "strong":
            n = IMPLICIT_PUBLISHED_HELDOUT.get(source)
            how += (f"; N = {n:,} held-out users as published" if n else
                    "; N scaled to the data (docs/datasets.md)")
        out.append(DatasetSpec(f"{source}-{suffix}", f"{what}, implicit: {how}",
                               _implicit(source, f"{source}-{suffix}", protocol, loader), source,
                               _implicit_params(source, protocol, fixed),
                               _implicit_published(source) if protocol == "strong" else {}))
    return out


#: generated ratings for the implicit protocols: 50% of them are above 3.5, so n_ratings=20M at
#: 136,677 x 20,720 gives ML-20M's size after binarising (docs/datasets.md)
SYNTHETIC_IMPLICIT_DEFAULTS = {"n_users": 20_000, "n_items": 2_000, "n_ratings": 500_000, "data_seed": 0}


def _generator_params(params: dict, defaults: dict) -> dict:
    """The generator's counts and seed of ``params`` as ints; a one-line error for a bad value."""
    from recozoo.protocols import parse_count
    return {k: parse_count(k, params.get(k, v), 0 if k == "data_seed" else 1) for k, v in defaults.items()}


def _synthetic_implicit(name: str):
    def build(path: Path | None, seed: int, params: dict) -> Split:
        from recozoo.data.synthetic import generate
        from recozoo.protocols import apply_protocol
        gen = _generator_params(params, SYNTHETIC_IMPLICIT_DEFAULTS)
        table = generate(gen["n_users"], gen["n_items"], gen["n_ratings"], seed=gen["data_seed"])
        s = apply_protocol(table, name, "strong", seed,
                           {k: v for k, v in params.items() if k not in gen})
        s.info["generator"] = gen
        return s
    return build


def _netflix_loader(path: Path):
    from recozoo.data.netflix import load_netflix
    return load_netflix(path)


#: sized for a first look (the README's first command fits DeepRec on it in about a minute on 2 cores);
#: ``--data-param n_users=... n_items=... n_ratings=...`` for more (the generator goes to Netflix's size)
SYNTHETIC_DEFAULTS = {"n_users": 10_000, "n_items": 1_000, "n_ratings": 200_000, "data_seed": 0}


def _synthetic(drift: bool, name: str):
    def build(path: Path | None, seed: int, params: dict) -> Split:
        from recozoo.data.synthetic import generate
        p = _generator_params(params, SYNTHETIC_DEFAULTS)
        table = generate(p["n_users"], p["n_items"], p["n_ratings"], seed=p["data_seed"], drift=drift)
        a, b, c, d = NETFLIX_PRESETS["netflix-full"]
        s = time_split(table, name, a, b, c, d, seed=seed)
        s.info.update({"generator": {**p, "drift": drift}})
        return s
    return build


_NETFLIX_PUBLISHED = {
    "netflix-3m": {
        "deeprec": 0.9373, "rrn": 0.9427, "pmf": 0.9584, "timesvdpp": 0.9589,
        "autorec-i": 0.9778, "autorec-u": 0.9836},
    "netflix-6m": {"deeprec": 0.9207},
    "netflix-1y": {"deeprec": 0.9225},
    "netflix-full": {"deeprec": 0.9099, "rrn": 0.9224, "autorec-i": 0.9364, "autorec-u": 0.9647},
}
_PUBLISHED_NOTES = {
    "deeprec": "Kuchaiev & Ginsburg 2017 (seed report Fig. 4.1/3.8)",
    "rrn": "Wu et al. WSDM 2017 (its '6 months' row has netflix-3m's counts)",
    "pmf": "reported in RRN (Wu et al. 2017)",
    "timesvdpp": "GraphChi time-SVD variant reported in RRN, not Koren's full TimeSVD++",
    "autorec-i": "reported in the DeepRec paper", "autorec-u": "reported in the DeepRec paper",
}


def _published(name: str) -> dict[str, dict[str, Any]]:
    return {m: {"test_rmse": v, "source": _PUBLISHED_NOTES[m]}
            for m, v in _NETFLIX_PUBLISHED.get(name, {}).items()}


def builtin_datasets() -> list[DatasetSpec]:
    specs = [
        DatasetSpec("synthetic", "generated Netflix-like ratings (no download); Netflix-full time rules",
                    _synthetic(False, "synthetic"), None, dict(SYNTHETIC_DEFAULTS)),
        DatasetSpec("synthetic-drift", "generated ratings with temporal drift (user/item bias drift, "
                    "item releases); Netflix-full time rules", _synthetic(True, "synthetic-drift"), None,
                    dict(SYNTHETIC_DEFAULTS)),
        DatasetSpec("synthetic-implicit", "generated ratings binarised at > 3.5, strong generalisation "
                    "(held-out users with an 80/20 fold-in; N scaled to the data)",
                    _synthetic_implicit("synthetic-implicit"), None,
                    {**SYNTHETIC_IMPLICIT_DEFAULTS, **_implicit_params("synthetic", "strong",
                                                                       {"threshold": 3.5})}),
        DatasetSpec("ml-100k", "MovieLens 100K, canonical fold u1 (u1.base/u1.test) + seeded 5% valid "
                    "slice of u1.base", _ml100k_fold("u1"), "ml-100k",
                    {"valid_fraction": ML100K_VALID_FRACTION}),
    ]
    for fold in ("u2", "u3", "u4", "u5", "ua", "ub"):
        specs.append(DatasetSpec(f"ml-100k-{fold}", f"MovieLens 100K, canonical fold {fold}",
                                 _ml100k_fold(fold), "ml-100k", {"valid_fraction": ML100K_VALID_FRACTION}))
    for src in ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "ml-latest"):
        if src != "ml-100k":
            specs.append(DatasetSpec(src, f"MovieLens {src[3:]}: seeded random 90/10 split "
                                     "(valid = 5% of all ratings, carved from the 90%)",
                                     _ml_random(src, src), src, {"test_fraction": 0.1, "valid_fraction": 0.05}))
        else:
            specs.append(DatasetSpec("ml-100k-random", "MovieLens 100K: seeded random 90/10 split",
                                     _ml_random(src, "ml-100k-random"), src,
                                     {"test_fraction": 0.1, "valid_fraction": 0.05}))
        specs.append(DatasetSpec(f"{src}-time", f"MovieLens {src[3:]}: time split (earliest 80% "
                                 "train, then the Netflix rules 2-5)", _ml_time(src, f"{src}-time"), src,
                                 {"train_fraction": 0.8}))
        specs += _implicit_specs(src, _ml_loader, f"MovieLens {src[3:]}")
    for name, (a, b, c, d) in NETFLIX_PRESETS.items():
        specs.append(DatasetSpec(name, f"Netflix Prize: train {a}..{b}, valid/test {c}..{d}",
                                 _netflix(name), "netflix", {}, _published(name)))
    specs += _implicit_specs("netflix", _netflix_loader, "Netflix Prize")
    return specs


# ------------------------------------------------------------ user datasets
def check_dataset_name(name: str) -> str:
    """``name`` if it is a plain name; a one-line error otherwise.

    Why: a dataset's name becomes ``user/NAME.json`` and ``prepared/NAME/`` in the data home, so a
    path separator, ``..`` or a leading dot would write (or read) outside it, or hide the files.
    """
    if not name or "/" in name or "\\" in name or ".." in name or name.startswith(".") \
            or any(ord(c) < 32 for c in name):
        raise RecozooError(f"dataset name {name!r}: a name may not be empty, start with '.', or hold "
                           "'/', '\\', '..' or control characters")
    return name


def _user_record(name: str) -> Path:
    return data_home() / "user" / f"{check_dataset_name(name)}.json"


def register_user_dataset(name: str, train: str | Path, test: str | Path, valid: str | Path | None = None,
                          fmt: str = "auto", columns: dict[str, str] | None = None,
                          seed: int = 0, rating_range: tuple[float, float] | None = None) -> Split:
    """Register pre-split files (e.g. the reference converter's N3M_TRAIN/VALID/TEST) as NAME;
    return the (cached) split. Files that cannot be read leave NAME as it was (registered or not)."""
    check_dataset_name(name)
    if registry.has_dataset(name):
        raise RecozooError(f"{name!r} is a built-in dataset name; pick another name for your files")
    paths = {"train": train, "test": test}
    if valid is not None:
        paths["valid"] = valid
    rec = {"name": name, "format": fmt, "columns": columns or {}}
    for k, p in paths.items():
        pp = Path(p).expanduser().resolve()
        if not pp.exists():
            raise DatasetNotFound(f"--{k} {p}: no such file or folder")
        rec[k] = str(pp)
    return _register_and_load(name, rec, seed, rating_range)


def register_protocol_dataset(name: str, source: str | Path, protocol: str, fmt: str = "auto",
                              columns: dict[str, str] | None = None, params: dict | None = None,
                              seed: int = 0, rating_range: tuple[float, float] | None = None) -> Split:
    """Register one ratings source split by ``protocol`` as NAME; return its (cached) split.

    The record holds the source's absolute path, the format, the column
    mapping, the protocol and its canonical parameters (defaults filled in),
    so ``fit --dataset NAME`` rebuilds the identical split; the split cache
    keys on the record and the source's fingerprint.
    """
    from recozoo.data.generic import check_column_options
    from recozoo.data.ratings_source import FORMATS
    from recozoo.protocols import protocol_params
    check_dataset_name(name)
    if registry.has_dataset(name):
        raise RecozooError(f"{name!r} is a built-in dataset name; pick another name for your data")
    if fmt not in FORMATS:
        raise RecozooError(f"unknown --format {fmt!r} ({'|'.join(FORMATS)})")
    src = Path(source).expanduser().resolve()
    if not src.exists():
        raise DatasetNotFound(f"--source {source}: no such file or folder")
    rec = {"name": name, "source": str(src), "format": fmt,
           "columns": check_column_options(columns), "protocol": protocol,
           "params": protocol_params(protocol, params)}
    return _register_and_load(name, rec, seed, rating_range)


def _register_and_load(name: str, rec: dict, seed: int, rating_range=None) -> Split:
    """Write NAME's record and build its split; the split is built before this returns, and a
    source that cannot be read or split leaves the previous record of NAME (if any) as it was."""
    path = _user_record(name)
    before = path.read_bytes() if path.exists() else None
    atomic_write_bytes(path, json.dumps(rec, indent=1).encode())
    try:
        return load_split(name, None, seed, rating_range=rating_range)
    except BaseException:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(path, before)
        raise


def _build_protocol(rec: dict):
    def build(path, seed: int, params: dict) -> Split:
        from recozoo.data.ratings_source import load_ratings_source
        from recozoo.protocols import apply_protocol
        fmt, columns = rec.get("format", "auto"), rec.get("columns")
        # the parsed source is cached like a built-in source's (keyed also on how it is read),
        # so another seed or parameter re-splits without re-parsing
        table = source_table(f"user-{rec['name']}-{_key(fmt, columns)}", Path(rec["source"]),
                             lambda p: load_ratings_source(p, fmt, columns))
        return apply_protocol(table, rec["name"], rec["protocol"], seed, params, source=rec["source"])
    return build


def _build_user(rec: dict):
    def build(path, seed: int, params: dict) -> Split:
        parts = {k: Path(rec[k]) for k in ("train", "valid", "test") if rec.get(k)}
        fmt = rec.get("format", "auto")
        if fmt in ("auto", "tsv") and not rec.get("columns"):
            from recozoo.data.tsv import load_tsv_many
            tables = load_tsv_many(parts)
        else:
            from recozoo.data.generic import load_tables_many
            tables = load_tables_many(parts, fmt=fmt, **rec.get("columns", {}))
        return Split(rec["name"], tables["train"], tables.get("valid"), tables["test"],
                     {"protocol": "pre-split", "policy": "drop",
                      "files": {k: str(v) for k, v in parts.items()}})
    return build


def user_dataset(name: str) -> DatasetSpec | None:
    rec_path = _user_record(name)
    if not rec_path.exists():
        return None
    try:
        rec = json.loads(rec_path.read_text())
    except ValueError:
        raise DatasetNotFound(f"{rec_path}: corrupt dataset record; run `recozoo data prepare` again") from None
    if rec.get("protocol"):
        return DatasetSpec(name, f"{rec['source']} split by protocol {rec['protocol']}",
                           _build_protocol(rec), source=f"user:{name}", params=dict(rec["params"]),
                           user_defined=True)
    return DatasetSpec(name, f"pre-split files: train {rec['train']}", _build_user(rec),
                       source=f"user:{name}", user_defined=True)


def user_datasets() -> list[DatasetSpec]:
    """The datasets registered by ``data prepare NAME --source/--train ...`` (by name).

    A corrupt record is skipped here (using its name says what is wrong).
    """
    folder = data_home() / "user"
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            spec = user_dataset(f.stem)
        except (DatasetNotFound, KeyError):
            continue
        if spec is not None:
            out.append(spec)
    return out


# ---------------------------------------------------------------- loading
def get_spec(name: str) -> DatasetSpec:
    """The dataset a plugin registered as ``name``, else the pre-split files registered under it."""
    if registry.has_dataset(name):
        return registry.get_dataset(name)
    spec = user_dataset(name)
    if spec is not None:
        return spec
    known = ", ".join(s.name for s in registry.list_datasets())
    raise DatasetNotFound(f"unknown dataset {name!r} (known: {known}; or register pre-split files with "
                          f"`recozoo data prepare {name} --train PATH --test PATH`)")


def _merge_params(spec: DatasetSpec, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = set(params) - set(spec.params)
    if unknown:
        raise SettingsError(f"dataset {spec.name} has no parameter {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(spec.params)) or 'none'})")
    return {**spec.params, **params}


def _source_for(spec: DatasetSpec, source: str | Path | None) -> Path | None:
    if spec.user_defined:
        return None
    if spec.source is None:
        if source is not None:
            raise RecozooError(f"{spec.name} is generated and takes no --source")
        return None
    return resolve_source(spec.source, source)


def build_split(name: str, source: str | Path | None = None, seed: int = 0,
                params: dict | None = None) -> Split:
    """Build the split from scratch (no split cache)."""
    spec = get_spec(name)
    return spec.build(_source_for(spec, source), seed, _merge_params(spec, params))


def split_cache_dir(name: str, source: str | Path | None = None, seed: int = 0,
                    params: dict | None = None) -> Path:
    spec = get_spec(name)
    src = _source_for(spec, source)
    if spec.user_defined:
        rec = json.loads(_user_record(name).read_text())
        fp = [fingerprint(Path(rec[k])) for k in ("source", "train", "valid", "test") if rec.get(k)] + [rec]
    else:
        fp = fingerprint(src) if src is not None else None
    key = _key(name, fp, seed, _merge_params(spec, params), PROTOCOL_VERSION)
    return data_home() / "prepared" / check_dataset_name(name) / key


def load_split(name: str, source: str | Path | None = None, seed: int = 0,
               params: dict | None = None, *, cache: bool = True, remember: bool = True,
               rating_range: tuple[float, float] | None = None) -> Split:
    """The split ``name`` with valid/test seed ``seed``, from the cache when possible.

    A given ``source`` is recorded as the dataset's source (``remember``) only after the
    split was read from it; reading a run passes ``remember=False``: it never re-points
    the data home. Ratings outside ``rating_range`` are an error (the split is then not
    cached); without it, implausible ratings are a warning
    (:func:`recozoo.data.plausible.check_ratings`).
    """
    from recozoo.data.plausible import check_ratings
    if not cache:
        split = build_split(name, source, seed, params)
        check_ratings(split, name, rating_range)
    else:
        folder = split_cache_dir(name, source, seed, params)
        sweep_stale_tmp(folder.parent)
        if not (folder / "split.json").exists():
            built = build_split(name, source, seed, params)
            check_ratings(built, name, rating_range)
            _save_split(built, folder)
            del built
            split = Split.load(folder)
        else:
            split = Split.load(folder)
            check_ratings(split, name, rating_range)
        split.key = folder.name
    spec = get_spec(name)
    if remember and source is not None and spec.source and not spec.user_defined:
        record_source(spec.source, resolve_source(spec.source, source))
    return split


def _save_split(split: Split, folder: Path) -> None:
    tmp = new_tmp(folder.parent)
    try:
        split.save(tmp)
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
