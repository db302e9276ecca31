"""``recozoo tune``: Optuna on VALID only, seeded, resumable after kill -9, pruning, one-line errors.

Real Optuna studies in real SQLite files, real fits (``bias`` and ``als`` on small
generated data, plus one test model whose learning curve is chosen by a setting).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass

import numpy as np
import pytest

from recozoo.data.synthetic import generate
from recozoo.data.table import RatingsTable
from recozoo.errors import RecozooError
from recozoo.models.baselines import Bias, BiasSettings
from recozoo.registry import get_model, register_temporarily
from recozoo.search_space import Categorical, Float, SearchSpace
from recozoo.settings import setting
from recozoo.splits import random_split
from recozoo.tune import TuneConfig, parse_budget, parse_metric, tune
from recozoo.tune.trials import pruner as make_pruner
from recozoo.evaluate import evaluate
from recozoo.runs import load_run
from cli_helpers import RECOZOO, assert_one_line_error, invoke_cli

SMALL = ("--dataset", "synthetic", "--data-param", "n_users=300", "--data-param", "n_items=120",
         "--data-param", "n_ratings=10000")


@pytest.fixture(scope="module")
def split():
    table = generate(n_users=300, n_items=120, n_ratings=9000, seed=4)
    return random_split(table, "tiny-tune", test_fraction=0.1, valid_fraction=0.1, seed=0)


def _trials(out):
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_parse_budget_and_metric():
    assert parse_budget("90") == 90 and parse_budget("90s") == 90 and parse_budget("10m") == 600
    assert parse_budget("1.5h") == 5400 and parse_budget("1h30m") == 5400 and parse_budget(None) is None
    for bad in ("abc", "10x", "", "m", "0s"):
        with pytest.raises(RecozooError, match="budget"):
            parse_budget(bad)
    assert parse_metric("RMSE") == ("rmse", 10) and parse_metric("ndcg@20") == ("ndcg@20", 20)
    for bad in ("foo", "ndcg", "ndcg@0", "auc@10"):
        with pytest.raises(RecozooError, match="unknown metric"):
            parse_metric(bad)


def test_same_seed_same_trials_and_test_never_read(split, tmp_path):
    """One worker, one seed: the same sequence of trials; a poisoned TEST changes nothing VALID chose."""
    cfg = dict(model="bias", dataset="tiny-tune", trials=6, seed=5, plots=False)
    a = tune(TuneConfig(**cfg, out=tmp_path / "a"), split=split)
    b = tune(TuneConfig(**cfg, out=tmp_path / "b"), split=split)
    rng = np.random.default_rng(9)
    t = split.test
    poisoned = RatingsTable(t.indptr, t.items, rng.uniform(1, 5, t.nnz).astype(t.ratings.dtype), t.timestamps,
                            t.user_ids, t.item_ids)
    c = tune(TuneConfig(**cfg, out=tmp_path / "c"), split=dataclasses.replace(split, test=poisoned))
    seq = [[(r["number"], r["state"], r["value"], r["reg_user"], r["reg_item"]) for r in _trials(tmp_path / x)]
           for x in "abc"]
    assert len(seq[0]) == 6 and seq[0] == seq[1] == seq[2]
    same = ("number", "value", "params", "settings", "valid")
    assert [a["best"][k] for k in same] == [b["best"][k] for k in same] == [c["best"][k] for k in same]
    assert a["test"]["rmse"] == b["test"]["rmse"] != c["test"]["rmse"]      # TEST read once, at the end
    assert a["valid"]["rmse"] == c["valid"]["rmse"]
    tune(TuneConfig(**{**cfg, "seed": 6, "trials": 3}, out=tmp_path / "d"), split=split)
    assert [r["reg_user"] for r in _trials(tmp_path / "d")] != [s[3] for s in seq[0][:3]]


def test_run_directory_and_rerun_reuses_everything(split, tmp_path):
    out = tmp_path / "t"
    r = tune(TuneConfig("bias", "tiny-tune", trials=5, seed=1, out=out), split=split)
    for f in ("config.json", "model.rcz", "summary.json", "trials.csv", "best.json", "history.png",
              "importances.png", "study.sqlite3"):
        assert (out / f).is_file(), f
    best = json.loads((out / "best.json").read_text())
    assert best["best"]["settings"]["reg_user"] == best["best"]["params"]["reg_user"]
    assert best["refit"] is True and r["run"]["refit"]["train_ratings"] == split.train.nnz + split.valid.nnz
    assert best["plots"] == {"history.png": "written", "importances.png": "written"}
    cfg, model = load_run(out)                         # an ordinary run directory
    assert cfg["model"] == "bias" and cfg["refit"] is True
    assert evaluate(model, split, "test")["rmse"] == pytest.approx(r["test"]["rmse"])
    mtime = (out / "model.rcz").stat().st_mtime_ns
    again = tune(TuneConfig("bias", "tiny-tune", trials=5, seed=1, out=out, plots=False), split=split)
    assert again["trials"]["complete"] == 5 and again["best"] == r["best"]
    assert (out / "model.rcz").stat().st_mtime_ns == mtime              # same best: the run is kept
    more = tune(TuneConfig("bias", "tiny-tune", trials=7, seed=1, out=out, plots=False), split=split)
    assert more["trials"]["complete"] == 7                              # 2 more trials, 5 kept
    with pytest.raises(RecozooError, match="started with other metric"):
        tune(TuneConfig("bias", "tiny-tune", trials=7, seed=1, out=out, metric="mae",
                        study_name="recozoo-bias-tiny-tune-rmse"), split=split)


# ----------------------------------------------------------------------- pruning
@dataclass(frozen=True)
class _CurveSettings(BiasSettings):
    curve: str = setting("good", "learning curve shape", choices=("good", "bad"))


class _Curve(Bias):
    """A bias model that reports a VALID curve per epoch: falling ('good') or high and flat ('bad')."""
    name = "tune-curve"
    Settings = _CurveSettings
    valid_curve = True
    search_space = SearchSpace(Categorical("curve", ("good", "bad")), Float("reg_user", 1.0, 50.0, log=True))
    epochs_run: list = []

    def _fit(self, train, valid, reporter, run_dir, resume):
        super()._fit(train, valid, reporter, run_dir, resume)
        self.epochs_run.append(0)
        for epoch in range(1, 21):
            self.epochs_run[-1] = epoch
            v = 1.0 - 0.01 * epoch if self.settings.curve == "good" else 2.0 + 0.001 * epoch
            reporter.log({"epoch": epoch, "valid_rmse": v})

    def _predict(self, users, items):
        return super()._predict(users, items) + (0.0 if self.settings.curve == "good" else 2.0)


def test_pruning_stops_a_bad_learning_curve_early(split, tmp_path):
    with register_temporarily(_Curve, "tests"):
        _Curve.epochs_run.clear()
        r = tune(TuneConfig("tune-curve", "tiny-tune", trials=12, seed=2, out=tmp_path / "p", refit=False,
                            plots=False),
                 split=split)
    rows = _trials(tmp_path / "p")
    pruned = [x for x in rows if x["state"] == "pruned"]
    assert pruned and all(x["curve"] == "bad" for x in pruned), rows
    assert all(x["pruned_at"] == "4" for x in pruned)           # stopped at the first epoch after warm-up
    # the fits themselves stopped: pruned trials ran 4 of their 20 epochs, the others all 20
    runs = _Curve.epochs_run[:len(rows)]
    assert sorted(runs[int(x["number"])] for x in pruned) == [4] * len(pruned)
    assert all(runs[int(x["number"])] == 20 for x in rows if x["state"] == "complete")
    assert r["best"]["params"]["curve"] == "good"


class _BadSpace(Bias):
    name = "tune-bad-space"
    search_space = SearchSpace(Float("reg_user", -5.0, 5.0))


def test_a_space_yielding_invalid_settings_fails_before_writing(split, tmp_path):
    with register_temporarily(_BadSpace, "tests"):
        with pytest.raises(RecozooError, match="search space yields invalid settings"):
            tune(TuneConfig("tune-bad-space", "tiny-tune", trials=3, out=tmp_path / "x"), split=split)
    assert not (tmp_path / "x").exists()


def test_two_workers_share_one_study(split, tmp_path):
    r = tune(TuneConfig("bias", "tiny-tune", trials=6, jobs=2, seed=3, out=tmp_path / "j", plots=False),
             split=split)
    assert r["trials"]["complete"] >= 6 and r["trials"]["running"] == 0
    assert (tmp_path / "j" / "model.rcz").is_file()


# ------------------------------------------------------------------------- the CLI
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    cases = [(("--metric", "foo"), ("unknown metric",)), (("--budget", "abc"), ("--budget", "abc")),
             (("--storage", f"sqlite:///{tmp_path}/no/such/dir/s.db"), ("--storage", "cannot open")),
             (("--set", "reg_user=-1"), ("invalid settings",)), (("--pruner", "hyperband"), ("--pruner", "hyperband"))]
    for args, needles in cases:
        p = invoke_cli("tune", "bias", *SMALL, "--out", out, *args, check=False)
        assert_one_line_error(p, *needles)
        assert not out.exists(), args


def _states(db):
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("select number, state, datetime_complete, (select count(*) from trial_params p "
                               "where p.trial_id = t.trial_id), (select count(*) from trial_intermediate_values v "
                               "where v.trial_id = t.trial_id) from trials t order by number").fetchall()
    except sqlite3.OperationalError:           # not created yet, or locked for a moment
        return []


def test_kill_9_then_rerun_resumes(tmp_path):
    """Killed mid-trial: the rerun keeps every finished trial, redoes the killed one, reaches the target."""
    out = tmp_path / "k"
    # (--pruner median: each iteration's VALID RMSE then reaches the study, which is how this test sees
    # a trial mid-fit)
    args = ["tune", "als", *SMALL, "--trials", "5", "--seed", "3", "--set", "iterations=400", "--out", str(out),
            "--pruner", "median"]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([RECOZOO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            rows = _states(out / "study.sqlite3")
            done = [r for r in rows if r[1] in ("COMPLETE", "PRUNED")]
            # mid-fit: its point drawn and some of its 400 iterations reported, far from the last, so
            # it is still fitting when the signal lands (a 40-iteration fit on an idle machine could
            # pass between two polls; pruning, if any, only ends a trial that is already counted done)
            if len(done) >= 2 and any(r[1] == "RUNNING" and r[3] and 1 <= r[4] <= 200 for r in rows):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-trial"
    before = _states(out / "study.sqlite3")
    killed = [r[0] for r in before if r[1] == "RUNNING"]
    assert len(killed) == 1
    r = invoke_cli(*args, "--json")                   # the rerun: the CLI's entry point, in process
    res = json.loads(r.stdout)
    assert "resuming" in r.stderr and f"interrupted trial(s) {killed[0]} queued again" in r.stderr
    after = {r[0]: (r[1], r[2]) for r in _states(out / "study.sqlite3")}
    for n, s, c, *_ in before:                         # finished trials untouched: not fitted again
        if s in ("COMPLETE", "PRUNED"):
            assert after[n] == (s, c)
    assert after[killed[0]][0] == "FAIL" and res["redone"] == killed
    assert res["trials"]["complete"] + res["trials"]["pruned"] == 5
    rows = {int(x["number"]): x for x in _trials(out)}
    redo = [x for x in rows.values() if x["redo_of"] == str(killed[0])]
    assert len(redo) == 1 and redo[0]["rank"] == rows[killed[0]]["rank"] and redo[0]["reg"] == rows[killed[0]]["reg"]


def test_a_ranking_model_is_tuned_on_a_ranking_metric_maximised(split, tmp_path):
    r = tune(TuneConfig("ease", "tiny-tune", trials=4, seed=0, out=tmp_path / "e", plots=False), split=split)
    assert r["metric"] == "ndcg@10" and r["direction"] == "maximize"        # the default for ranking-only
    values = [float(x["value"]) for x in _trials(tmp_path / "e") if x["state"] == "complete"]
    assert r["best"]["value"] == max(values) and "ndcg@10" in r["test"]
    with pytest.raises(RecozooError, match="predicts no ratings"):
        tune(TuneConfig("ease", "tiny-tune", metric="rmse", trials=2, out=tmp_path / "f"), split=split)


# ------------------------------------------------------------------ compare --tune
def test_compare_tune_tunes_refits_and_a_rerun_resumes(tmp_path):
    from recozoo.compare.config import TuneSpec, build_config, load_config_file
    from recozoo.compare.runner import run_compare
    from recozoo.compare.table import build_leaderboard, to_markdown
    f = tmp_path / "exp.toml"
    f.write_text('dataset = "synthetic"\nmodels = ["bias"]\nseeds = 1\ntune = { trials = 4 }\n'
                 '[data_params]\nn_users = 300\nn_items = 120\nn_ratings = 9000\n')
    cfg = build_config(file=load_config_file(f))
    assert cfg.tune == TuneSpec(trials=4) and cfg.refit is True          # tuned rows are refitted
    out = tmp_path / "cmp"
    fits: list = []
    run_compare(cfg, out, progress=False, on_fit=lambda m, s: fits.append(m))
    lb = build_leaderboard(out)
    row = lb.rows[0]
    best = json.loads((out / "studies" / "bias" / "best.json").read_text())
    assert lb.tuned and row["tune_trials"] == 4 and row["tune_best_valid"] == best["best"]["value"]
    assert best["test"] is None and best["run_dir"]                     # the study never read TEST
    rec = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()][0]
    assert rec["config"]["settings"] == best["best"]["settings"]          # the fit used the tuned settings
    assert "best VALID (tuned on)" in to_markdown(lb) and fits == ["bias"]
    again = run_compare(cfg, out, progress=False, on_fit=lambda m, s: fits.append(m))
    assert again["fitted"] == [] and fits == ["bias"]                     # study resumed (done), fit reused
    assert len(_trials(out / "studies" / "bias")) == 4


def test_compare_tune_options_are_checked():
    from recozoo.cli.compare import _tune_spec
    from recozoo.compare.config import TuneSpec, build_config, parse_tune
    from recozoo.errors import SettingsError
    assert parse_tune({"budget": "5m"}) == TuneSpec(budget=300.0) and parse_tune(False) is None
    assert parse_tune(True) == TuneSpec()
    assert parse_tune({"trials": 3, "pruner": "none"}) == TuneSpec(trials=3, pruner="none")
    for bad in ({"budget": "abc"}, {"trials": 0}, {"bogus": 1}, "5m", {"pruner": "sometimes"}):
        with pytest.raises(RecozooError):
            parse_tune(bad)
    with pytest.raises(RecozooError, match="go with --tune"):
        _tune_spec(False, "5m", None)
    assert _tune_spec(True, "90s", None) == TuneSpec(budget=90.0)
    assert _tune_spec(True, None, 5, "median") == TuneSpec(trials=5, pruner="median")
    with pytest.raises(RecozooError, match="go with --tune"):
        _tune_spec(False, None, None, "none")
    with pytest.raises(RecozooError, match="--pruner"):
        _tune_spec(True, None, None, "always")
    with pytest.raises(SettingsError, match="drop its preset"):
        build_config(dataset="ml-100k", models="deeprec", presets=["deeprec=ml-100k"], tune=TuneSpec())


@pytest.mark.parametrize("model, metric, asked, pruner", [
    ("deeprec", None, "auto", "median"), ("autorec-i", None, "auto", "median"), ("glocal-k", None, "auto", "median"),
    ("biasedmf", None, "auto", "none"), ("pmf", None, "auto", "none"), ("als", None, "auto", "none"),
    ("timesvdpp", None, "auto", "none"),
    ("biasedmf", None, "median", "median"), ("deeprec", None, "none", "none"),
    ("deeprec", "ndcg@10", "median", "none"),          # no per-epoch curve of a ranking metric: nothing to prune on
    ("bias", None, "median", "none"),                  # no curve at all
])
def test_the_pruner_each_model_gets(model, metric, asked, pruner):
    cfg = TuneConfig(model, "ml-100k", metric=metric, pruner=asked).resolved(get_model(model))
    assert cfg.pruner == pruner
    assert type(make_pruner(cfg)).__name__ == {"median": "MedianPruner", "none": "NopPruner"}[pruner]


def test_the_budget_stops_a_running_trial_once_the_study_has_a_result():
    import optuna
    from recozoo.tune.objective import PruningReporter
    study = optuna.create_study()                    # (in memory: only the rule is under test)
    first = study.ask()
    spent = time.perf_counter() - 1.0                # a deadline already passed
    PruningReporter(first, prune=False, deadline=spent).log({"epoch": 1, "valid_rmse": 1.0})   # nothing to keep yet
    study.tell(first, 1.0)
    second = study.ask()
    rep = PruningReporter(second, prune=False, deadline=spent)
    with pytest.raises(optuna.TrialPruned, match="budget"):
        rep.log({"epoch": 3, "valid_rmse": 0.9})
    assert (rep.pruned_at, rep.stopped) == (3, "budget")
    PruningReporter(second, prune=False, deadline=None).log({"epoch": 4, "valid_rmse": 0.9})   # no budget: runs on


def test_compare_tune_keeps_a_model_with_nothing_to_tune_as_given(tmp_path):
    from recozoo.compare.config import TuneSpec, build_config
    from recozoo.compare.runner import run_compare
    from recozoo.compare.table import build_leaderboard
    cfg = build_config(dataset="synthetic", models="itemknn,pop", seeds="1", sets=["itemknn.shrink=0"],
                       data_params={"n_users": 200, "n_items": 60, "n_ratings": 4000},
                       metrics="ndcg@10", tune=TuneSpec(trials=2))
    out = tmp_path / "cmp"
    fits: list = []
    run_compare(cfg, out, progress=False, on_fit=lambda m, s: fits.append(m))
    rows = {r["model"]: r for r in build_leaderboard(out).rows}
    assert sorted(fits) == ["itemknn", "pop"] and not (out / "studies" / "pop").exists()
    assert rows["pop"]["tune_trials"] is None and rows["pop"]["test_ndcg@10_mean"] is not None
    assert rows["itemknn"]["tune_trials"] == 2


def test_a_new_study_tries_the_defaults_first_and_a_resumed_one_does_not_again(split, tmp_path):
    """Trial 0 is the model's defaults for this data (auto rules resolved, the user's --set applied,
    not the space's nearest point), so a study never ends worse on VALID than the defaults."""
    from recozoo.registry import get_model
    from recozoo.defaults import resolve
    from recozoo.settings import parse_settings
    out = tmp_path / "als"
    tune(TuneConfig("als", "tiny-tune", trials=3, seed=2, out=out, plots=False, fixed={"rank": 6}), split=split)
    rows = _trials(out)
    ALS = get_model("als")
    want = resolve(parse_settings(ALS.Settings, {"rank": 6}), ALS.auto_rule, split.train)
    first = json.loads(sqlite3.connect(out / "study.sqlite3").execute(
        "select value_json from trial_user_attributes where trial_id = 1 and key = 'origin'").fetchone()[0])
    assert first == "defaults"
    assert float(rows[0]["reg"]) == pytest.approx(want.reg) and int(rows[0]["iterations"]) == want.iterations
    assert rows[0]["biases"] == str(want.biases) and "rank" not in rows[0]             # fixed by --set
    assert [r["reg"] for r in rows[1:]] != [rows[0]["reg"]] * 2          # then the sampler's own points
    tune(TuneConfig("als", "tiny-tune", trials=5, seed=2, out=out, plots=False, fixed={"rank": 6}), split=split)
    rows = _trials(out)
    assert len(rows) == 5 and sum(r["reg"] == rows[0]["reg"] for r in rows) == 1   # not queued again


class _DefaultsOutside(Bias):
    """Defaults (reg_user 10, reg_item 25, 10 iterations) outside the space's range and fixed budget."""
    name = "tune-defaults-outside"
    search_space = SearchSpace(Float("reg_user", 50.0, 100.0), fixed={"iterations": 2})


def test_the_defaults_trial_fits_the_defaults_even_outside_the_space(split, tmp_path):
    """Trial 0 fits what `recozoo fit` fits (reg_user 10, 10 iterations), not the space's nearest point
    (reg_user clipped to 50, the space's 2 iterations), which only the sampler sees; so the study's best
    VALID is at most the defaults' VALID, and when the defaults win, best.json holds them."""
    with register_temporarily(_DefaultsOutside, "tests"):
        out = tmp_path / "out"
        r = tune(TuneConfig("tune-defaults-outside", "tiny-tune", trials=3, seed=0, out=out, plots=False,
                            fixed={"reg_item": 5.0}), split=split)
        rows = _trials(out)
        defaults = _DefaultsOutside(settings={"reg_item": 5.0}, seed=0).fit(split.train)
    at_defaults = evaluate(defaults, split, "valid")["rmse"]
    assert float(rows[0]["value"]) == at_defaults and float(rows[0]["reg_user"]) == 50.0   # the recorded point
    assert all(float(x["reg_user"]) >= 50.0 for x in rows)
    assert r["best"]["value"] <= at_defaults
    if r["best"]["number"] == 0:
        assert r["best"]["settings"] == {"reg_user": 10.0, "reg_item": 5.0, "iterations": 10}
    with sqlite3.connect(out / "study.sqlite3") as db:
        infos = [json.loads(v) for (v,) in db.execute(
            "select value_json from trial_user_attributes where key = 'info' order by trial_id")]
    assert infos[0]["settings"] == {"reg_user": 10.0, "reg_item": 5.0, "iterations": 10}
    assert [i["settings"]["iterations"] for i in infos[1:]] == [2, 2]


def test_compare_tune_blends_the_tuned_rows(tmp_path):
    """A blend given no components is no study: it blends the other rating rows with the settings
    their studies chose; a rating-less companion (ease) is left out; the table says so (through the CLI)."""
    from recozoo.compare.table import build_leaderboard, to_markdown
    from recozoo.models.blend import parse_components
    out = tmp_path / "cmp"
    invoke_cli("compare", "--dataset", "synthetic", "--models", "bias,biasedmf,ease,blend", "--seeds", "1",
               "--set", "biasedmf.epochs=4", "--metrics", "rmse,ndcg@10", "--data-param", "n_users=300",
               "--data-param", "n_items=120", "--data-param", "n_ratings=9000", "--tune", "--tune-trials", "3",
               "--out", str(out), "-q")
    assert not (out / "studies" / "blend").exists()
    recs = {r["model"]: r for r in (json.loads(x) for x in (out / "results.jsonl").read_text().splitlines())}
    parts = dict(parse_components(recs["blend"]["config"]["settings"]["components"]))
    assert list(parts) == ["bias", "biasedmf"]                   # ease ranks, predicts no ratings
    for name in ("bias", "biasedmf"):
        chosen = json.loads((out / "studies" / name / "best.json").read_text())["best"]["settings"]
        assert _read_back(name, parts[name]) == chosen             # all of it: what is not named is the default
        assert recs[name]["config"]["settings"] == chosen           # the rows themselves are the tuned ones
    lb = build_leaderboard(out)
    rows = {r["model"]: r for r in lb.rows}
    assert rows["blend"]["tune_trials"] is None and rows["biasedmf"]["tune_trials"] == 3
    assert rows["blend"]["test_rmse_mean"] is not None
    assert "blend: a ridge blend of the tuned bias, biasedmf" in to_markdown(lb)


def _read_back(model: str, values: dict):
    from recozoo.settings import parse_settings, settings_to_dict
    return settings_to_dict(parse_settings(get_model(model).Settings, values, model=model))


def test_compare_tune_a_blend_with_nothing_to_blend_is_one_line(tmp_path):
    """Through the CLI: a one-line error, exit non-zero, refused before any study ran."""
    out = tmp_path / "cmp"
    p = invoke_cli("compare", "--dataset", "synthetic", "--models", "ease,blend", "--seeds", "1", "--metrics",
                   "ndcg@10", "--data-param", "n_users=200", "--data-param", "n_items=60", "--data-param",
                   "n_ratings=4000", "--tune", "--tune-trials", "2", "--out", str(out), "-q", check=False)
    assert_one_line_error(p, "other rating models")
    assert not (out / "studies").exists()
