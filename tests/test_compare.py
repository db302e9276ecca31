"""`recozoo compare` / `recozoo leaderboard`: store, resume, formats, reproducibility, CLI errors.

Fits go through the real CLI (its entry point in process: ``cli_helpers.invoke_cli``) or the real runner on small
generated data (``--dataset synthetic`` with a few thousand ratings), and on
the real ML-100K u1 split for the compare-equals-fit check.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, invoke_cli

from recozoo.compare.config import build_config, load_config_file
from recozoo.compare.report import write_outputs
from recozoo.compare.runner import resolve_models, run_compare
from recozoo.compare.stats import paired_bootstrap
from recozoo.compare.store import ResultsStore
from recozoo.compare.table import TIMING_KEYS, build_leaderboard, to_markdown
from recozoo.errors import DataError, RecozooError
from recozoo.registry import list_models

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "synthetic", "--data-param", "n_users=1500", "--data-param", "n_items=200",
         "--data-param", "n_ratings=30000"]
SMALL_PARAMS = {"n_users": "1500", "n_items": "200", "n_ratings": "30000"}


def _no_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One comparison through the CLI, JSON on stdout: mean and bias, two seeds."""
    base = tmp_path_factory.mktemp("cmp")
    env = {"RECOZOO_DATA": str(base / "home")}
    out = base / "out"
    p = invoke_cli("compare", *SMALL, "--models", "mean,bias", "--seeds", "2", "--out", out,
                "--metrics", "rmse,mae,ndcg@5", "--format", "json", env=env)
    return {"out": out, "env": env, "json": json.loads(p.stdout), "stderr": p.stderr, "base": base}


# ------------------------------------------------------------------ store
def test_store_round_trip_and_torn_tail(tmp_path):
    store = ResultsStore(tmp_path)
    recs = [{"model": m, "seed": s, "config_hash": "h", "metrics": {"test": {"rmse": 1.0 + s}}}
            for m in ("a", "b") for s in (0, 1)]
    store.extend(recs)
    assert store.records() == recs
    # a record superseding another (same key) wins in latest()
    store.append({**recs[0], "metrics": {"test": {"rmse": 0.5}}})
    assert store.latest()[("a", 0, "h")]["metrics"]["test"]["rmse"] == 0.5
    # a torn last line (process killed mid-write) is ignored, then cut before the next append
    with open(store.path, "ab") as f:
        f.write(b'{"model": "c", "seed": 0, "conf')
    assert len(store.records()) == 5
    store.append({"model": "c", "seed": 0, "config_hash": "h", "metrics": {}})
    assert [r["model"] for r in store.records()] == ["a", "a", "b", "b", "a", "c"]
    # a damaged line in the middle is an error naming the line
    lines = store.path.read_text().splitlines(True)
    lines[1] = "garbage\n"
    store.path.write_text("".join(lines))
    with pytest.raises(DataError, match="line 2"):
        store.records()


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    e = rng.normal(0, 0.9, 5000)
    best = e * e
    worse = (e + 0.3) ** 2
    res = paired_bootstrap(best, {"worse": worse, "same": best.copy()}, n_boot=300)
    w = res["worse"]
    assert w["ci_low"] <= w["estimate"] <= w["ci_high"]
    assert w["ci_low"] > 0                       # a real gap: the interval excludes 0
    assert res["same"]["ci_low"] == res["same"]["ci_high"] == 0.0
    assert paired_bootstrap(best, {"worse": worse}, n_boot=300) == \
        {"worse": paired_bootstrap(best, {"worse": worse, "same": best}, n_boot=300)["worse"]}


# ---------------------------------------------------------- CLI end to end
def test_compare_json_store_and_files(small_run):
    doc, out = small_run["json"], small_run["out"]
    assert doc["dataset"] == "synthetic" and doc["split"] == "synthetic"
    rows = doc["rows"]
    assert [r["model"] for r in rows] == ["bias", "mean"]          # sorted by test RMSE
    assert rows[0]["test_rmse_mean"] < rows[1]["test_rmse_mean"]
    for r in rows:
        assert r["seeds"] == [0, 1]
        for k in ("test_rmse_mean", "test_rmse_std", "test_mae_mean", "valid_rmse_mean",
                  "fit_seconds_mean", "predict_seconds_mean", "n_parameters", "peak_memory_mb",
                  "test_ndcg@5_mean"):
            assert r[k] is not None, k
    assert rows[0]["delta_test_rmse_vs_best"] is None
    d = rows[1]["delta_test_rmse_vs_best"]
    assert d["vs"] == "bias" and d["ci_low"] <= d["estimate"] <= d["ci_high"] and d["ci_low"] > 0
    # one record per model x seed, run dirs under OUT/runs/<model>-seed<k>/
    recs = ResultsStore(out).records()
    assert sorted((r["model"], r["seed"]) for r in recs) == [("bias", 0), ("bias", 1), ("mean", 0),
                                                             ("mean", 1)]
    for r in recs:
        assert set(r) >= {"config", "versions", "seed", "metrics", "seconds", "memory", "machine"}
        assert (out / "runs" / f"{r['model']}-seed{r['seed']}" / "summary.json").exists()
    assert (out / "test_rmse.png").stat().st_size > 1000
    assert f"test rmse bars: {out / 'test_rmse.png'}" in small_run["stderr"]


def test_leaderboard_every_format(small_run):
    out, env = small_run["out"], small_run["env"]
    js = json.loads(invoke_cli("leaderboard", out, "--format", "json", env=env).stdout)
    assert js["rows"] == small_run["json"]["rows"]                # redrawn without refitting
    table = invoke_cli("leaderboard", out, env=env).stdout
    assert "test RMSE" in table and "bias" in table and "Δ RMSE vs best" in table
    md = invoke_cli("leaderboard", out, "--format", "markdown", env=env).stdout
    body = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert body[0].startswith("| model | test RMSE | test MAE | NDCG@5 | valid RMSE")
    assert [ln.split("|")[1].strip() for ln in body[1:]] == ["bias", "mean"]
    assert f"{js['rows'][0]['test_rmse_mean']:.4f}" in body[1]
    rows = list(csv.DictReader(io.StringIO(invoke_cli("leaderboard", out, "--format", "csv", env=env).stdout)))
    assert [r["model"] for r in rows] == ["bias", "mean"]
    assert float(rows[1]["test_rmse_mean"]) == js["rows"][1]["test_rmse_mean"]
    # --metrics picks columns among what was computed
    md2 = to_markdown(build_leaderboard(out, "mae"))
    assert "test MAE" in md2 and "test RMSE" not in md2 and "NDCG" not in md2


def test_same_seeds_give_identical_tables(small_run):
    out2 = small_run["base"] / "out2"
    p = invoke_cli("compare", *SMALL, "--models", "bias,mean", "--seeds", "2", "--out", out2,
                "--metrics", "rmse,mae,ndcg@5", "--format", "json", "-q", env=small_run["env"])
    a, b = small_run["json"], json.loads(p.stdout)
    assert _no_timing(a["rows"]) == _no_timing(b["rows"])


def test_compare_matches_fit_on_ml100k(ml100k_dir, tmp_path):
    env = {"RECOZOO_DATA": str(tmp_path / "home")}
    doc = json.loads(invoke_cli("compare", "--dataset", "ml-100k", "--source", ml100k_dir,
                             "--models", "pmf", "--set", "pmf.epochs=2", "--seeds", "0,1",
                             "--out", tmp_path / "cmp", "--format", "json", "-q", env=env).stdout)
    rows = {r["model"]: r for r in doc["rows"]}
    recs = {(r["model"], r["seed"]): r for r in ResultsStore(tmp_path / "cmp").records()}
    fit = json.loads(invoke_cli("fit", "pmf", "--dataset", "ml-100k", "--set", "epochs=2", "--seed", "1",
                             "--out", tmp_path / "fit", "--json", "-q", env=env).stdout)
    for part in ("valid", "test"):
        for m in ("rmse", "mae"):
            assert recs[("pmf", 1)]["metrics"][part][m] == fit["metrics"][part][m]
    assert recs[("pmf", 0)]["metrics"]["test"]["rmse"] != fit["metrics"]["test"]["rmse"]
    mean = (recs[("pmf", 0)]["metrics"]["test"]["rmse"] + recs[("pmf", 1)]["metrics"]["test"]["rmse"]) / 2
    assert rows["pmf"]["test_rmse_mean"] == pytest.approx(mean, abs=1e-12)
    assert fit["metrics"]["test"]["n_scored"] == 20000


def test_compare_refit_scores_the_refitted_models(tmp_path):
    """--refit: TEST columns equal `recozoo fit --refit`'s, VALID the selected model's; stores don't mix."""
    env = {"RECOZOO_DATA": str(tmp_path / "home")}
    out = tmp_path / "cmp"
    doc = json.loads(invoke_cli("compare", *SMALL, "--models", "bias", "--seeds", "1", "--refit", "--out", out,
                             "--format", "json", "-q", env=env).stdout)
    assert doc["refit"] is True
    rec = ResultsStore(out).records()[0]
    fit = json.loads(invoke_cli("fit", "bias", *SMALL, "--refit", "--out", tmp_path / "fit", "--json", "-q",
                             env=env).stdout)
    plain = json.loads(invoke_cli("fit", "bias", *SMALL, "--out", tmp_path / "plain", "--json", "-q",
                               env=env).stdout)
    assert rec["metrics"]["test"]["rmse"] == fit["metrics"]["test"]["rmse"] != plain["metrics"]["test"]["rmse"]
    assert fit["metrics"]["valid"]["rmse"] == plain["metrics"]["valid"]["rmse"]
    assert fit["refit"]["train_ratings"] == sum(fit["split"][p]["ratings"] for p in ("train", "valid"))
    md = invoke_cli("leaderboard", out, "--format", "markdown", env=env).stdout
    assert "refitted on TRAIN + VALID" in md
    again = invoke_cli("compare", *SMALL, "--models", "bias", "--seeds", "1", "--out", out, "--format", "json",
                    "-q", env=env)
    assert "reused" not in again.stderr and json.loads(again.stdout)["refit"] is False
    # the same through an experiment file: refit = true, nothing refitted again (same config hash)
    cfg = tmp_path / "refit.toml"
    cfg.write_text('models = ["bias"]\nseeds = [0]\nrefit = true\n')
    by_file = invoke_cli("compare", *SMALL, "--config", cfg, "--out", out, "--format", "json", "-q", env=env)
    assert json.loads(by_file.stdout)["refit"] is True and "reused 1" in by_file.stderr


def test_config_file_and_shipped_configs(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('dataset = "synthetic"\nmodels = ["bias", "mean"]\nseeds = [3]\n'
                   'metrics = ["rmse"]\n[data_params]\nn_users = 1500\nn_items = 200\n'
                   'n_ratings = 30000\n[model.bias]\nreg_user = 2.5\n')
    env = {"RECOZOO_DATA": str(tmp_path / "home")}
    doc = json.loads(invoke_cli("compare", "--config", cfg, "--models", "bias", "--out", tmp_path / "o",
                             "--format", "json", "-q", env=env).stdout)
    assert [r["model"] for r in doc["rows"]] == ["bias"] and doc["rows"][0]["seeds"] == [3]
    (rec,) = ResultsStore(tmp_path / "o").records()
    assert rec["config"]["settings"]["reg_user"] == 2.5 and rec["seed"] == 3
    # the shipped experiment files parse, and the Netflix ones keep the paper's model set
    files = sorted((ROOT / "benchmarks" / "configs").glob("*.toml"))
    assert len(files) >= 3
    known = {e.name for e in list_models()}
    for f in files:
        c = build_config(file=load_config_file(f))
        assert c.models and c.seeds
        # settings and presets of the models registered so far resolve (a renamed preset fails here)
        c.models = [m for m in c.models if m.name in known]
        resolve_models(c)
    nf = load_config_file(ROOT / "benchmarks" / "configs" / "netflix-3m.toml")
    assert nf["dataset"] == "netflix-3m" and nf["model_specs"]["deeprec"].preset == "paper"
    assert set(nf["models"]) == {"deeprec", "autorec-i", "autorec-u", "rrn", "pmf", "timesvdpp"}


# ------------------------------------------------------------------ resume
def test_resume_after_interruption(tmp_path):
    out = tmp_path / "out"
    cfg = build_config(dataset="synthetic", models="bias,pmf", seeds="2", sets=["pmf.epochs=2"],
                       data_params=SMALL_PARAMS, device="cpu")
    fits = []

    def interrupt_third(model, seed):
        fits.append((model, seed))
        if len(fits) == 3:
            raise KeyboardInterrupt          # what Ctrl-C does between two fits

    with pytest.raises(KeyboardInterrupt):
        run_compare(cfg, out, progress=False, on_fit=interrupt_third)
    store = ResultsStore(out)
    done = [(r["model"], r["seed"]) for r in store.records()]
    assert done == [("bias", 0), ("bias", 1)]
    # a fit killed mid-way leaves a run dir without a record; and a torn store line
    junk = out / "runs" / "pmf-seed1"
    junk.mkdir(parents=True)
    (junk / "metrics.jsonl").write_text('{"epoch": 1, "valid_rmse": 9.9}\n')
    with open(store.path, "ab") as f:
        f.write(b'{"model": "pmf", "se')
    lb = build_leaderboard(out)                       # partial table is drawable meanwhile
    assert [r["model"] for r in lb.rows] == ["bias"] and ("pmf", 0) in lb.missing
    before = store.records()
    fits.clear()
    res = run_compare(cfg, out, progress=False, on_fit=lambda m, s: fits.append((m, s)))
    assert fits == [("pmf", 0), ("pmf", 1)]           # only the missing ones
    assert res["skipped"] == [("bias", 0), ("bias", 1)]
    after = store.records()
    assert after[:2] == before                        # earlier records untouched
    assert [(r["model"], r["seed"]) for r in after[2:]] == [("pmf", 0), ("pmf", 1)]
    assert not (junk / "metrics.jsonl").exists()      # the interrupted fit started afresh
    # changing a setting changes the config hash: that model is refitted, the others are not
    fits.clear()
    cfg2 = build_config(dataset="synthetic", models="bias,pmf", seeds="2", sets=["pmf.epochs=3"],
                        data_params=SMALL_PARAMS, device="cpu")
    run_compare(cfg2, out, progress=False, on_fit=lambda m, s: fits.append((m, s)))
    assert fits == [("pmf", 0), ("pmf", 1)]
    # a new ranking cut-off scores the saved models: nothing is refitted
    fits.clear()
    cfg2.metrics = ["rmse", "ndcg@5"]
    run_compare(cfg2, out, progress=False, on_fit=lambda m, s: fits.append((m, s)))
    assert fits == []
    assert all(r["test_ndcg@5_mean"] is not None for r in build_leaderboard(out).rows)
    with pytest.raises(RecozooError, match="recall@3 was not computed"):
        build_leaderboard(out, "rmse,recall@3")


# ------------------------------------------------------- ranking-only rows
def _record_base(dataset: str) -> dict:
    """The fields of a stored record that these table tests do not vary."""
    return {"config_hash": "h", "dataset": dataset, "split": dataset, "config": {},
            "seconds": {"fit": 1.0, "predict": 0.1},
            "memory": {"delta_mb": 1.0, "peak_mb": 2.0, "method": "VmHWM"},
            "n_parameters": 10, "run_dir": "runs/x"}


def test_published_column_on_netflix_presets(tmp_path):
    store = ResultsStore(tmp_path)
    for m, v in (("pmf", 0.95), ("bias", 0.99)):
        store.append({**_record_base("netflix-3m"), "model": m, "seed": 0, "predicts_ratings": True,
                      "metrics": {"valid": {"rmse": v, "mae": 0.7}, "test": {"rmse": v, "mae": 0.7}}})
    lb = build_leaderboard(tmp_path)
    rows = {r["model"]: r for r in lb.rows}
    assert rows["pmf"]["published_test_rmse"] == 0.9584 and "RRN" in rows["pmf"]["published_source"]
    assert rows["bias"]["published_test_rmse"] is None
    md = to_markdown(lb)
    assert "published test RMSE" in md.splitlines()[2]
    assert "| pmf | **0.9500** |" in md and "0.9584" in md and "reported in RRN" in md


def test_ranking_only_model_never_gets_an_rmse(tmp_path):
    store = ResultsStore(tmp_path)
    base = _record_base("synthetic")
    rank = {"10": {"ndcg@10": 0.3, "recall@10": 0.2, "map@10": 0.1, "hitrate@10": 0.5}}
    store.append({**base, "model": "rated", "seed": 0, "predicts_ratings": True,
                  "metrics": {"valid": {"rmse": 0.9, "mae": 0.7}, "test": {"rmse": 0.95, "mae": 0.75},
                              "test_ranking": rank}})
    store.append({**base, "model": "ranker", "seed": 0, "predicts_ratings": False,
                  "metrics": {"valid": {"ndcg@10": 0.4}, "test": {"ndcg@10": 0.35},
                              "test_ranking": {"10": {**rank["10"], "ndcg@10": 0.35}}}})
    lb = build_leaderboard(tmp_path, "rmse,ndcg@10")
    rows = {r["model"]: r for r in lb.rows}
    assert rows["ranker"]["test_rmse_mean"] is None and rows["ranker"]["valid_rmse_mean"] is None
    assert rows["ranker"]["test_ndcg@10_mean"] == 0.35
    line = next(ln for ln in to_markdown(lb).splitlines() if ln.startswith("| ranker"))
    cells = [c.strip() for c in line.split("|")[2:4]]
    assert cells == ["—", "**0.3500**"]
    # learning curves come from the run dirs' per-epoch logs (the engine's metrics.jsonl)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "metrics.jsonl").write_text(
        "".join(json.dumps({"epoch": e, "valid_rmse": 1.0 / e}) + "\n" for e in (1, 2, 3)))
    files = write_outputs(lb)
    assert Path(files["learning_curves"]).stat().st_size > 1000
    assert json.loads((tmp_path / "leaderboard.json").read_text())["rows"][1]["test_rmse_mean"] is None


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize("args, needle", [
    (["--models", "bias,nosuchmodel"], "nosuchmodel"),
    (["--models", "bias", "--set", "bias.reg_user"], "MODEL.NAME=VALUE"),
    (["--models", "bias", "--set", "reg_user=3"], "MODEL.NAME=VALUE"),
    (["--models", "bias", "--set", "bias.nope=3"], "nope"),
    (["--models", "bias", "--metrics", "rmse,ndcg"], "unknown metric"),
    (["--models", "bias", "--format", "xml"], "--format"),
    (["--models", "bias", "--config", "BAD_TOML"], "not valid TOML"),
    (["--models", "bias", "--config", "REFIT_TOML"], "refit must be true or false"),
])
def test_bad_input_is_one_line_error(args, needle, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('dataset = "synthetic"\nmodels = [bias\n')
    refit = tmp_path / "refit.toml"
    refit.write_text('dataset = "synthetic"\nmodels = ["bias"]\nrefit = "yes"\n')
    args = [{"BAD_TOML": str(bad), "REFIT_TOML": str(refit)}.get(a, a) for a in args]
    p = invoke_cli("compare", *SMALL, "--out", tmp_path / "o", *args, check=False,
                env={"RECOZOO_DATA": str(tmp_path / "home")})
    assert_one_line_error(p, needle)
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_leaderboard_of_empty_folder_is_one_line_error(tmp_path):
    assert_one_line_error(invoke_cli("leaderboard", tmp_path, check=False), "no comparison results")


@pytest.mark.parametrize("line", ["models = 3", "metrics = 3", 'models = { a = 1 }', "metrics = true"])
def test_config_name_lists_of_the_wrong_type_are_one_line_errors(tmp_path, line):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(line + "\n")
    with pytest.raises(RecozooError, match=r"bad\.toml: (models|metrics): expected a comma-separated string"):
        load_config_file(cfg)
    res = invoke_cli("compare", "--config", cfg, "--out", tmp_path / "o", env={"RECOZOO_DATA": str(tmp_path / "h")},
                     check=False)
    assert_one_line_error(res, "expected a comma-separated string")
