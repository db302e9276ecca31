"""The split a run was fitted on, found again (``recozoo evaluate RUN``), without touching the data home.

Why apart from :mod:`recozoo.datasets`: this is a question about a *run*, whose
record may come from another machine: its split key is a name to look up among
this data home's prepared splits, never a path, and a rebuild from another
source must give the same key or fail with one line.
"""

from __future__ import annotations

from pathlib import Path

from recozoo.datasets import check_dataset_name, data_home, load_split
from recozoo.errors import DatasetNotFound
from recozoo.splits import Split

__all__ = ["load_prepared", "load_run_split"]


def load_prepared(name: str, key: str) -> Split | None:
    """The prepared split of ``name`` under cache key ``key``, if this data home holds it."""
    if not (isinstance(key, str) and len(key) == 16 and all(c in "0123456789abcdef" for c in key)):
        return None     # a key read from an untrusted run is a name, never a path
    folder = data_home() / "prepared" / check_dataset_name(name) / key
    if not (folder / "split.json").exists():
        return None
    split = Split.load(folder)
    split.key = key
    return split


def load_run_split(dataset: str, split_seed: int = 0, data_params: dict | None = None,
                   key: str | None = None, source: str | Path | None = None) -> Split:
    """The split a run was fitted on, found without changing the data home.

    By the run's split ``key`` when this data home holds that prepared split; else
    rebuilt from ``source`` (or the data home's own source of the dataset), which must
    give the same key when the run recorded one. The run's own record of where its
    files were is never used: a run copied from elsewhere names paths that mean
    nothing (or something else) here.
    """
    if key and source is None:
        split = load_prepared(dataset, key)
        if split is not None:
            return split
    split = load_split(dataset, source, split_seed, data_params, remember=False)
    if key and split.key != key:
        where = f"--source {source}" if source is not None else "this data home's files"
        raise DatasetNotFound(f"{where} give another {dataset} split than the one the run was fitted on "
                              "(its data differ); pass --source PATH to the files the run was fitted on")
    return split
