"""Shared fixtures: where the real data is, and small prepared splits.

Real data lives outside the repo (``RECOZOO_TEST_DATA``, default
``../shared/data``). Under ``CI=true`` a missing data folder is a failure, not a
skip: CI must never turn green by not testing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("RECOZOO_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"test data not found at {path} (set RECOZOO_TEST_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(_data_root())


@pytest.fixture(scope="session")
def ml100k_dir(data_dir) -> Path:
    return _require(data_dir / "ml-100k")


@pytest.fixture(scope="session")
def netflix_sample_dir(data_dir) -> Path:
    return _require(data_dir / "netflix-sample")


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path_factory, monkeypatch):
    """Each test session gets its own data home: tests never touch ~/.cache or the network."""
    home = tmp_path_factory.getbasetemp() / "recozoo-data-home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("RECOZOO_DATA", str(home))
    yield


@pytest.fixture(scope="session")
def ml100k_split(ml100k_dir):
    """ML-100K u1: train = u1.base minus a seeded 5% valid slice, test = u1.test."""
    from recozoo.datasets import build_split
    return build_split("ml-100k", source=ml100k_dir, seed=0)


@pytest.fixture(scope="session")
def synthetic_split():
    """A small generated split with timestamps (Netflix-full rules on generated data)."""
    from recozoo.datasets import build_split
    return build_split("synthetic", seed=0)


@pytest.fixture(scope="session")
def ml100k_env(tmp_path_factory, ml100k_dir) -> dict:
    """Environment for CLI subprocesses: a data home with ml-100k prepared (by the real CLI, once)."""
    from cli_helpers import run_cli
    home = tmp_path_factory.mktemp("ml100k-home")
    e = {"RECOZOO_DATA": str(home)}
    run_cli("data", "prepare", "ml-100k", "--source", ml100k_dir, env=e)
    return e


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """torch on one thread in the test process, wherever it was imported (a module's top, or a fit's body).

    The CI box has 2 cores shared by parallel jobs; two OpenMP threads fighting other processes spin and
    wait: a 4-epoch DeepRec fit on ML-100K took 60 s of CPU with two threads against 6.9 s with one (the
    same figures, bit for bit; load 12). Tests that need another count set it themselves (and an
    in-process server's own setting lasts until the next test)."""
    import sys
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def dask_cluster() -> str:
    """A real Dask cluster of two single-thread worker processes on loopback, for one test module:
    its scheduler's address."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  protocol="tcp", dashboard_address=":0") as cluster:
        cluster.wait_for_workers(2)
        yield cluster.scheduler_address
