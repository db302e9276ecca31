"""Fits fanned out: ``recozoo.fanout`` and ``recozoo compare --jobs N`` / ``--cluster ADDRESS``.

Real worker processes (spawned), a real Dask cluster of two worker processes on loopback
(started here), the real results store. The parallel tables must equal the sequential one
exactly (timings aside), and the store must stay what a sequential run writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, free_port, invoke_cli

from recozoo.compare.config import build_config
from recozoo.compare.runner import run_compare
from recozoo.compare.store import ResultsStore
from recozoo.compare.table import TIMING_KEYS, build_leaderboard
from recozoo.fanout import ProcessFanout, threads_per_worker
from recozoo.runs import MODEL_FILE

DATA = {"n_users": "800", "n_items": "150", "n_ratings": "16000"}
MODELS, SEEDS, SETS = "mean,bias,biasedmf", "2", ["biasedmf.epochs=2"]
N_FITS = 6
THREADS_BEFORE = os.environ.get("OMP_NUM_THREADS")


def _config(**kw):
    return build_config(dataset="synthetic", models=MODELS, seeds=SEEDS, sets=SETS, data_params=DATA,
                        device="cpu", metrics="rmse,mae,ndcg@5", **kw)


def _table(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in build_leaderboard(out).rows]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("seq") / "out"
    run_compare(_config(), out, progress=False)
    return _table(out)


# ------------------------------------------------------------------ the executor
def _meet(after: str | None, mark: str | None) -> None:
    """Wait until ``after`` exists (a minute at most), then touch ``mark``; None: skip that step."""
    deadline = time.monotonic() + 60
    while after and not Path(after).exists():
        assert time.monotonic() < deadline, "the other process never ran"
        time.sleep(0.01)
    if mark:
        Path(mark).touch()


def _square(shared, job):
    """A job for the executor tests: waits for ``after`` to exist (if given), touches ``mark``,
    and reports its result, its thread caps and the shared object."""
    import torch
    x, after, mark = job
    _meet(after, mark)
    if x < 0:
        raise ValueError(f"job {x} failed")
    return x * x, torch.get_num_threads(), os.environ["OMP_NUM_THREADS"], shared


def test_process_pool_order_threads_and_failures(tmp_path):
    finished: list[int] = []
    mark = str(tmp_path / "job1-ran")
    with ProcessFanout(2) as fan:    # job 0 waits for job 1, so it finishes after it
        res = fan.map(_square, [(3, mark, None), (1, None, mark), (2, None, None)], shared="S",
                      on_result=lambda i, r: finished.append(i))
    t = threads_per_worker(2)
    assert res == [(9, t, str(t), "S"), (1, t, str(t), "S"), (4, t, str(t), "S")]   # submission order
    assert finished.index(1) < finished.index(0) and sorted(finished) == [0, 1, 2]
    finished.clear()
    with pytest.raises(ValueError, match="job -1 failed"):   # job 1 fails once job 0 has finished
        ProcessFanout(2).map(_square, [(5, None, mark + "2"), (-1, mark + "2", None)],
                             on_result=lambda i, r: finished.append(i))
    assert finished == [0]                            # the finished job still reached the caller


def _whoami(shared, job):
    """Waits for ``after`` (if given), touches ``mark`` (if given); reports where it ran."""
    after, mark = job
    _meet(after, mark)
    return os.getpid(), os.environ["OMP_NUM_THREADS"], shared


def _slow(shared, job):
    """Waits for ``after`` (if given), touches ``mark`` (if given), fails at once when ``x`` < 0,
    else takes 0.1 s."""
    x, after, mark = job
    _meet(after, mark)
    if x < 0:
        raise ValueError(f"job {x} failed")
    time.sleep(0.1)
    return x


def test_the_caller_works_beside_its_worker_processes(tmp_path):
    """caller_works: this process takes jobs too (its caps pinned during the map, put back after);
    two jobs that wait for each other can only finish if both processes work at once."""
    before = os.environ.get("OMP_NUM_THREADS")
    mark = str(tmp_path / "one-ran")
    finished: list[int] = []
    with ProcessFanout(2, caller_works=True) as fan:
        res = fan.map(_whoami, [(mark, None), (None, mark), (None, None), (None, None)], shared="S",
                      on_result=lambda i, r: finished.append(i))
    assert len({pid for pid, _, _ in res}) == 2 and os.getpid() in {pid for pid, _, _ in res}
    assert {(t, sh) for _, t, sh in res} == {(str(threads_per_worker(2)), "S")}
    assert sorted(finished) == [0, 1, 2, 3] and finished.index(1) < finished.index(0)
    assert os.environ.get("OMP_NUM_THREADS") == before
    finished.clear()
    with pytest.raises(ValueError, match="job -1 failed"):   # job 1 fails once job 0 has finished
        ProcessFanout(2, caller_works=True).map(_square, [(5, None, mark + "2"), (-1, mark + "2", None)],
                                                on_result=lambda i, r: finished.append(i))
    assert finished == [0]                            # the finished job still reached the caller
    started: list[int] = []
    failed = str(tmp_path / "failing")       # the others wait for the failing job, then take 0.1 s
    with pytest.raises(ValueError, match="job -1 failed"):   # after a failure no job starts
        ProcessFanout(2, caller_works=True).map(_slow, [(-1, None, failed)] + [(k, failed, None) for k in range(40)],
                                                on_start=started.append)
    assert len(started) <= 3
    with ProcessFanout(2, caller_works=True) as fan:         # one job: no process is spawned for it
        assert fan.map(_whoami, [(None, None)])[0][0] == os.getpid()


def _pid_after(shared, seconds):
    time.sleep(seconds)
    return os.getpid()


def test_a_failing_callback_on_the_helper_thread_stops_the_shared_work():
    """A callback that raises (say the results store cannot be written) where a worker's result
    arrives, on a helper thread, must stop the map and reach the caller: no job starts after it."""
    started: list[int] = []
    at_failure: list[int] = []

    def on_result(i, pid):
        if pid != os.getpid():
            at_failure.append(len(started))
            raise RuntimeError("results store: disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ProcessFanout(2, caller_works=True).map(_pid_after, [0.05] * 400, on_start=started.append,
                                                on_result=on_result)
    assert at_failure and len(started) == at_failure[0] < 400


def test_rmse_does_not_depend_on_the_blas_thread_count():
    """A worker runs with cores // jobs BLAS threads; a BLAS dot product's last bits depend on
    that count (it splits the sum across threads), so RMSE must not be one."""
    from threadpoolctl import threadpool_limits
    from recozoo.metrics import masked_mse, rmse
    rng = np.random.default_rng(0)
    pred, truth = rng.normal(size=400_000), rng.normal(size=400_000)
    values = []
    for n in (1, 2, 4):
        with threadpool_limits(n):
            values.append((rmse(pred, truth), masked_mse(pred, truth)))
    assert values[0] == values[1] == values[2]


# ------------------------------------------------------------------ compare --jobs
def test_jobs_2_gives_the_sequential_table(sequential, tmp_path):
    out = tmp_path / "out"
    fits = []
    res = run_compare(_config(jobs=2), out, progress=False, on_fit=lambda m, s: fits.append((m, s)))
    assert _table(out) == sequential
    assert len(fits) == N_FITS and sorted(res["fitted"]) == sorted(fits)
    recs = ResultsStore(out).records()
    assert len(recs) == N_FITS and len({(r["model"], r["seed"]) for r in recs}) == N_FITS
    assert {r["machine"]["threads"] for r in recs} == {threads_per_worker(2)}
    here = [r for r in recs if r["machine"]["pid"] == os.getpid()]
    spawned = [r for r in recs if r["machine"]["pid"] != os.getpid()]
    assert here and spawned                      # this process fitted beside its one worker process
    assert not any("torch_threads" in r["machine"] for r in spawned)   # torch-free models: no torch loaded
    assert os.environ.get("OMP_NUM_THREADS") == THREADS_BEFORE       # this process's caps put back
    # resume stays exact: nothing refitted, nothing appended
    again = run_compare(_config(jobs=2), out, progress=False)
    assert again["fitted"] == [] and len(again["skipped"]) == N_FITS
    assert ResultsStore(out).records() == recs


# ------------------------------------------------------------------ compare --cluster (dask_cluster: conftest.py)
def test_dask_cluster_gives_the_sequential_table(sequential, dask_cluster, tmp_path):
    out = tmp_path / "out"
    res = run_compare(_config(cluster=dask_cluster), out, progress=False)
    assert len(res["fitted"]) == N_FITS
    assert _table(out) == sequential                  # bootstrap column too: test_errors.npy came back
    for rec in ResultsStore(out).records():
        rdir = out / rec["run_dir"]
        summary = json.loads((rdir / "summary.json").read_text())
        assert summary["run_dir"] == str(rdir) and (rdir / MODEL_FILE).is_file()
    assert not list((out / "runs").glob(".*partial"))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("args, needle", [
    (["--cluster", "tcp://127.0.0.1:FREE"], "no Dask scheduler answers"),
    (["--cluster", "tcp://127.0.0.1:notaport"], "not a scheduler address"),
    (["--jobs", "0"], "jobs must be a whole number"),
    (["--config", "JOBS_TOML"], "jobs must be a whole number"),
])
def test_bad_fanout_input_is_one_line_error(args, needle, tmp_path):
    bad = tmp_path / "jobs.toml"
    bad.write_text('jobs = "many"\n')
    args = [a.replace("FREE", str(free_port())) if "FREE" in a else {"JOBS_TOML": str(bad)}.get(a, a)
            for a in args]
    out = tmp_path / "o"
    p = invoke_cli("compare", "--dataset", "synthetic", "--models", "bias", "--seeds", "1", "--out", out, *args,
                   check=False, env={"RECOZOO_DATA": str(tmp_path / "home")})
    assert_one_line_error(p, needle)
    assert not out.exists()                           # nothing half-written: no manifest, no store


def test_imported_waits_for_a_module_another_thread_is_importing(tmp_path, monkeypatch):
    """pin_threads in a Dask worker thread may meet numba half imported by another job's thread:
    it must wait for the import, not read the partial module (the 'no attribute set_num_threads' race)."""
    import builtins
    import sys
    import threading

    from recozoo.fanout import imported_module

    (tmp_path / "slow_import_probe.py").write_text(
        "import time\nstarted.set()\ntime.sleep(0.5)\ndef set_num_threads(n):\n    return n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    started = threading.Event()
    monkeypatch.setattr(builtins, "started", started, raising=False)
    monkeypatch.delitem(sys.modules, "slow_import_probe", raising=False)
    t = threading.Thread(target=__import__, args=("slow_import_probe",))
    t.start()
    assert started.wait(10)
    partial = sys.modules["slow_import_probe"]           # in sys.modules, still being imported
    assert not hasattr(partial, "set_num_threads")
    assert imported_module("slow_import_probe").set_num_threads(3) == 3
    t.join()
    assert imported_module("recozoo_module_never_imported") is None
    del sys.modules["slow_import_probe"]
