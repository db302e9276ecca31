"""``recozoo tune --cluster`` and ``compare --tune --cluster`` on a real Dask cluster: two worker
processes on loopback, started here (``dask_cluster`` in conftest.py).

The trials run on the workers against the study the scheduler serves; every finished trial is
copied back into the SQLite study in ``--out``, which stays the record (resume, trials.csv,
best.json, the final run). One cluster worker gives the trials of the run on this machine.
"""

from __future__ import annotations

import csv
import json

import pytest

from cli_helpers import assert_one_line_error, free_port, invoke_cli

from recozoo.compare.config import TuneSpec, build_config
from recozoo.compare.runner import run_compare
from recozoo.compare.table import TIMING_KEYS, build_leaderboard
from recozoo.fanout import DaskFanout
from recozoo.registry import get_model
from recozoo.tune.study import open_storage, quiet_optuna

SMALL = ("--dataset", "synthetic", "--data-param", "n_users=300", "--data-param", "n_items=120",
         "--data-param", "n_ratings=10000")
#: biasedmf, 6 epochs a trial: a per-epoch VALID curve (what pruning reads) in well under a second; its
#: trials are pruned only when asked (--pruner auto leaves biased MF unpruned)
TUNE = ("tune", "biasedmf", *SMALL, "--seed", "3", "--set", "epochs=6", "--pruner", "median")


def _rows(out) -> list[dict]:
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _study(out):
    optuna = quiet_optuna()
    storage = open_storage(f"sqlite:///{out / 'study.sqlite3'}", shared=False)
    return optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)


def test_one_cluster_worker_gives_the_trials_of_this_machine(dask_cluster, tmp_path):
    here = json.loads(invoke_cli(*TUNE, "--trials", "6", "--out", tmp_path / "here", "--json").stdout)
    p = invoke_cli(*TUNE, "--trials", "6", "--out", tmp_path / "cl", "--cluster", dask_cluster, "--jobs", "1",
                   "--json")
    there = json.loads(p.stdout)
    assert f"1 trial(s) at a time on the Dask cluster at {dask_cluster}" in p.stderr
    assert "trial 5 " in p.stderr and "pruned at epoch" in p.stderr   # progress lines come back here
    def no_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert no_time(_rows(tmp_path / "cl")) == no_time(_rows(tmp_path / "here"))
    def untimed(best):
        return {k: v for k, v in best.items() if "seconds" not in k}
    assert untimed(there["best"]) == untimed(here["best"])
    assert {k: v for k, v in there["test"].items() if "seconds" not in k} == \
        {k: v for k, v in here["test"].items() if "seconds" not in k}
    assert there["trials"] == here["trials"]
    assert there["trials"]["pruned"] >= 1 and there["trials"]["complete"] + there["trials"]["pruned"] == 6
    for f in ("config.json", "model.rcz", "summary.json", "best.json", "trials.csv", "history.png"):
        assert (tmp_path / "cl" / f).is_file(), f
    # each epoch's VALID RMSE reached the scheduler's copy (the pruner read it there: the same trials
    # were pruned as here) and came back with the trial
    trials = _study(tmp_path / "cl").trials
    assert [len(t.intermediate_values) for t in trials] == [len(t.intermediate_values) for t in
                                                           _study(tmp_path / "here").trials]
    assert {len(t.intermediate_values) for t in trials if t.state.name == "COMPLETE"} == {6}


def test_two_trials_at_once_then_a_rerun_resumes(dask_cluster, tmp_path):
    out = tmp_path / "o"
    first = json.loads(invoke_cli(*TUNE, "--trials", "4", "--out", out, "--cluster", dask_cluster,
                                  "--json").stdout)            # --jobs left out: the cluster's 2 slots
    c = first["trials"]
    assert 4 <= c["complete"] + c["pruned"] <= 5 and c["running"] == c["waiting"] == 0
    before = [(r["number"], r["state"], r["value"]) for r in _rows(out)]
    p = invoke_cli(*TUNE, "--trials", "7", "--out", out, "--cluster", dask_cluster, "--json")
    assert "resuming study" in p.stderr and "2 trial(s) at a time" in p.stderr
    after = [(r["number"], r["state"], r["value"]) for r in _rows(out)]
    assert after[:len(before)] == before                             # kept, not fitted again
    assert sorted(int(n) for n, _, _ in after) == list(range(len(after)))
    done = sum(s in ("complete", "pruned") for _, s, _ in after)
    assert 7 <= done <= 8 and json.loads(p.stdout)["trials"]["running"] == 0


def test_an_interrupted_trial_is_redone_on_the_cluster(dask_cluster, tmp_path):
    """A trial left RUNNING (its process was killed) is failed and its point queued again; the cluster
    runs the queued point and it is filled in here under the queued trial's own number."""
    out = tmp_path / "r"
    invoke_cli(*TUNE, "--trials", "2", "--out", out)
    study = _study(out)
    killed = study.ask()                       # a trial mid-fit when its process died: point drawn, RUNNING
    get_model("biasedmf").search_space.without({"epochs": 6}).sample(killed)
    del study
    p = invoke_cli(*TUNE, "--trials", "3", "--out", out, "--cluster", dask_cluster, "--jobs", "1", "--json")
    res = json.loads(p.stdout)
    assert res["redone"] == [killed.number] and "queued again" in p.stderr
    rows = {int(r["number"]): r for r in _rows(out)}
    assert rows[killed.number]["state"] == "fail"
    redo = [r for r in rows.values() if r["redo_of"] == str(killed.number)]
    assert len(redo) == 1 and redo[0]["state"] == "complete" and redo[0]["value"]
    assert all(redo[0][k] == str(v) for k, v in killed.params.items())
    assert res["trials"]["complete"] == 3 and res["trials"]["waiting"] == 0


@pytest.mark.parametrize("args, needle", [
    (["--cluster", "tcp://127.0.0.1:FREE"], "no Dask scheduler answers"),
    (["--cluster", "tcp://127.0.0.1:FREE", "--storage", "sqlite:///elsewhere.db"], "cannot share an SQLite"),
    (["--cluster", "tcp://127.0.0.1:FREE", "--jobs", "0"], "--jobs must be >= 1"),
])
def test_bad_cluster_input_is_one_line_and_writes_nothing(args, needle, tmp_path):
    out = tmp_path / "never"
    args = [a.replace("FREE", str(free_port())) for a in args]
    p = invoke_cli(*TUNE, "--trials", "2", "--out", out, *args, check=False)
    assert_one_line_error(p, needle)
    assert not out.exists()


def _compare(**kw):
    return build_config(dataset="synthetic", models="bias,als", seeds="1", sets=["als.iterations=3"],
                        data_params={"n_users": "200", "n_items": "80", "n_ratings": "5000"}, device="cpu",
                        metrics="rmse", tune=TuneSpec(trials=3), **kw)


def _compare_outputs(out) -> tuple:
    table = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in build_leaderboard(out).rows]
    studies = {m: [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(out / "studies" / m)]
               for m in ("bias", "als")}
    return table, studies


def test_compare_tune_on_the_cluster_gives_the_sequential_table(dask_cluster, tmp_path):
    """``compare --tune --cluster``: each study runs whole on a cluster worker and comes back; the
    studies, the chosen settings and the table are those of the run on this machine."""
    run_compare(_compare(), tmp_path / "here", progress=False)
    res = run_compare(_compare(cluster=dask_cluster), tmp_path / "cl", progress=False)
    assert _compare_outputs(tmp_path / "cl") == _compare_outputs(tmp_path / "here")
    assert set(res["manifest"]["tune"]) == {"bias", "als"} and len(res["fitted"]) == 2
    for m in ("bias", "als"):
        folder = tmp_path / "cl" / "studies" / m
        best = json.loads((folder / "best.json").read_text())
        assert best["run_dir"] == str(folder) and str(folder) in best["storage"]
        assert len(_study(folder).trials) == len(_rows(folder))      # the SQLite study came back whole
    assert not list((tmp_path / "cl" / "studies").glob(".*partial"))
    # a rerun resumes each study from the folder here (no trial left to run) and reuses the fits
    again = run_compare(_compare(cluster=dask_cluster), tmp_path / "cl", progress=False)
    assert again["fitted"] == [] and again["manifest"]["tune"] == res["manifest"]["tune"]


def test_workers_stop_once_the_tune_process_is_gone(dask_cluster):
    """A worker loop whose ``recozoo tune`` stopped beating (killed: nothing would copy its trials back)
    starts no further trial after STALE_S; while the beat moves, it goes on."""
    import time

    from recozoo.tune.cluster import HEARTBEAT, Orphaned, serve
    optuna = quiet_optuna()
    with DaskFanout(dask_cluster) as fan:
        served = serve(fan, dask_cluster)
        study = optuna.create_study(storage=served, study_name="orphan")
        sid = served.get_study_id_from_name("orphan")
        served.set_study_system_attr(sid, HEARTBEAT, 1)

        def objective(trial):
            time.sleep(0.05)
            return trial.suggest_float("x", 0, 1)
        study.optimize(objective, n_trials=30, callbacks=[Orphaned(served, "orphan", stale_s=0.3)])
        alone = len(study.trials)
        assert alone < 30                            # stopped about 0.3 s after the last beat

        def beating(study, trial):
            served.set_study_system_attr(sid, HEARTBEAT, trial.number + 2)
        study.optimize(objective, n_trials=12, callbacks=[beating, Orphaned(served, "orphan", stale_s=0.3)])
        assert len(study.trials) == alone + 12       # a live beat: every trial asked for ran


def test_with_a_storage_server_the_workers_open_it_themselves(dask_cluster, tmp_path):
    """``--storage URL`` of a database server: nothing is served by the scheduler, each worker loop
    opens the URL. A database file on this host stands in for the server here (the CLI refuses an
    sqlite URL with --cluster: workers on other machines could not open it), so the check of the
    config is passed by on purpose."""
    import dataclasses

    from recozoo.data.synthetic import generate
    from recozoo.progress import NullReporter
    from recozoo.splits import random_split
    from recozoo.tune import TuneConfig
    from recozoo.tune.run import _tune
    split = random_split(generate(n_users=200, n_items=80, n_ratings=5000, seed=5), "tiny-tune-server",
                         test_fraction=0.1, valid_fraction=0.1, seed=0)
    url = f"sqlite:///{tmp_path / 'server.db'}"
    cfg = TuneConfig("bias", "tiny-tune-server", trials=4, seed=1, storage=url, out=tmp_path / "o", plots=False,
                     final=False).resolved(get_model("bias"))
    with DaskFanout(dask_cluster) as fan:
        res = _tune(dataclasses.replace(cfg, cluster=dask_cluster, jobs=2), get_model("bias"), NullReporter(),
                    split, fan, None)
    assert 4 <= res["trials"]["complete"] <= 5 and res["trials"]["running"] == 0
    optuna = quiet_optuna()
    assert len(optuna.load_study(study_name=cfg.study_name, storage=url).trials) == len(_rows(tmp_path / "o"))


def test_a_cluster_that_goes_away_mid_run_is_one_line_and_keeps_the_copied_trials(tmp_path):
    """The scheduler closes while trials run: a one-line error (not a study reported finished), and
    the trials copied back before it went stay in the study here for a rerun to resume."""
    import sqlite3
    import threading
    import time

    import distributed

    from recozoo.data.synthetic import generate
    from recozoo.errors import RecozooError
    from recozoo.splits import random_split
    from recozoo.tune import TuneConfig, tune
    split = random_split(generate(n_users=300, n_items=120, n_ratings=9000, seed=4), "tiny-tune-gone",
                         test_fraction=0.1, valid_fraction=0.1, seed=0)
    out, failed = tmp_path / "gone", []
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       protocol="tcp", dashboard_address=":0")
    cfg = TuneConfig("biasedmf", "tiny-tune-gone", trials=1000, seed=3, out=out, plots=False,
                     cluster=cluster.scheduler_address, fixed={"epochs": 60})

    def run():
        try:
            tune(cfg, split=split)
        except RecozooError as e:
            failed.append(str(e))
    t = threading.Thread(target=run)
    t.start()

    def finished() -> int:
        try:
            with sqlite3.connect(f"file:{out / 'study.sqlite3'}?mode=ro", uri=True, timeout=1) as con:
                return con.execute("select count(*) from trials where state in ('COMPLETE', 'PRUNED')").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
    deadline = time.monotonic() + 120
    while finished() < 2 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.1)
    kept = finished()
    cluster.close()
    t.join(120)
    assert not t.is_alive() and kept >= 2
    assert len(failed) == 1 and "went away" in failed[0] and "\n" not in failed[0], failed
    assert finished() >= kept and not (out / "best.json").exists()
