"""Ranking leaderboards through the real CLI (its entry point in process) on ml-100k-implicit
(held-out users, fold-in): default metrics, NDCG@100 order, --sort, JSON keys, paired intervals
over users."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, invoke_cli

from recozoo.compare.runner import TEST_RANKING
from recozoo.compare.store import ResultsStore


@pytest.fixture(scope="module")
def implicit_run(tmp_path_factory, ml100k_dir):
    base = tmp_path_factory.mktemp("cmp-implicit")
    env = {"RECOZOO_DATA": str(base / "home")}
    out = base / "out"
    p = invoke_cli("compare", "--dataset", "ml-100k-implicit", "--source", ml100k_dir, "--models", "bias,pop",
                "--seeds", "2", "--out", out, "--format", "json", "-q", env=env)
    return {"out": out, "env": env, "json": json.loads(p.stdout)}


def test_defaults_order_and_json_keys(implicit_run):
    lb = implicit_run["json"]
    assert lb["implicit"] and lb["sort"] == "ndcg@100"
    assert lb["metrics"] == ["ndcg@100", "recall@20", "recall@50"]
    rows = lb["rows"]
    means = [r["test_ndcg@100_mean"] for r in rows]
    assert means == sorted(means, reverse=True) and [r["model"] for r in rows] == ["pop", "bias"]
    for r in rows:
        for key in ("test_ndcg@100_mean", "test_recall@20_mean", "test_recall@50_mean", "test_ndcg@100_std"):
            assert isinstance(r[key], float), key
        assert r["test_rmse_mean"] is None          # implicit data: no rating metric, for any model
    # the gap to the best is paired over the same held-out users and equals the gap of the means
    best, other = rows
    assert "delta_test_ndcg@100_vs_best" not in best or best["delta_test_ndcg@100_vs_best"] is None
    d = other["delta_test_ndcg@100_vs_best"]
    assert d["vs"] == "pop" and d["n_users"] == lb["bootstrap_ranking"]["n_users"] > 0
    assert d["estimate"] == pytest.approx(other["test_ndcg@100_mean"] - best["test_ndcg@100_mean"])
    assert d["ci_low"] <= d["estimate"] <= d["ci_high"] < 0


def test_records_are_fold_in_rankings_with_per_user_values(implicit_run):
    out = implicit_run["out"]
    for rec in ResultsStore(out).latest().values():
        test = rec["metrics"]["test"]
        assert test["scored_by"] == "fold-in" and test["excluded"] == "test_fold_in"
        assert "rmse" not in test and test["threshold"] is None
        with np.load(out / rec["run_dir"] / TEST_RANKING) as z:
            assert z["users"].size == test["n_users"]
            for m in ("ndcg@100", "recall@20", "recall_std@20", "map@50", "hitrate@20"):
                assert float(z[m].mean()) == pytest.approx(test[m])


def test_evaluate_ranks_a_run_on_implicit_data_like_fit(implicit_run):
    out, env = implicit_run["out"], implicit_run["env"]
    rec = next(r for r in ResultsStore(out).latest().values() if r["model"] == "bias")   # a rating model
    got = json.loads(invoke_cli("evaluate", out / rec["run_dir"], "--json", env=env).stdout)["metrics"]
    assert got["ndcg@100"] == rec["metrics"]["test"]["ndcg@100"] and got["scored_by"] == "fold-in"
    # `recozoo fit` prints one row per part and cut-off
    text = invoke_cli("fit", "pop", "--dataset", "ml-100k-implicit", "--out", out.parent / "fit-pop", env=env).stdout
    assert "pop on ml-100k-implicit (ranking, full)" in text and "recall_std" in text
    assert sum(line.count("fold-in") for line in text.splitlines()) == 6       # valid and test at 20, 50, 100


def test_sort_and_metric_errors(implicit_run):
    out, env = implicit_run["out"], implicit_run["env"]
    p = invoke_cli("leaderboard", out, "--metrics", "recall@50,ndcg@100", "--sort", "recall@50",
                "--format", "json", env=env)
    lb = json.loads(p.stdout)
    vals = [r["test_recall@50_mean"] for r in lb["rows"]]
    assert lb["sort"] == "recall@50" and vals == sorted(vals, reverse=True)
    md = invoke_cli("leaderboard", out, "--format", "markdown", env=env).stdout
    assert "Δ NDCG@100 vs best [95% CI]" in md and "| pop |" in md
    assert_one_line_error(invoke_cli("leaderboard", out, "--sort", "recall@20", "--metrics", "ndcg@100",
                                  env=env, check=False), "--sort recall@20", "not among")
    assert_one_line_error(invoke_cli("compare", "--dataset", "ml-100k-implicit", "--models", "pop", "--seeds", "1",
                                  "--metrics", "rmse,ndcg@10", "--out", out.parent / "o2", "-q", env=env,
                                  check=False), "implicit", "rmse")


def test_published_ranking_figures_and_the_configs(tmp_path):
    """ml-20m-implicit's published NDCG@100/Recall@20/50 print beside recozoo's; the TOML configs of the
    strong-generalisation comparisons load and name registered models."""
    from recozoo.compare.config import build_config, load_config_file
    from recozoo.compare.runner import resolve_models
    from recozoo.compare.table import build_leaderboard, to_markdown
    store = ResultsStore(tmp_path)
    for m, v in (("mult-vae", 0.41), ("pop", 0.19)):
        store.append({"config_hash": "h", "dataset": "ml-20m-implicit", "split": "ml-20m-implicit",
                      "config": {}, "seconds": {"fit": 1.0, "predict": 0.1}, "n_parameters": 10,
                      "memory": {"delta_mb": 1.0, "peak_mb": 2.0, "method": "VmHWM"}, "run_dir": "runs/x",
                      "model": m, "seed": 0, "predicts_ratings": False,
                      "metrics": {"test": {}, "test_ranking": {k: {"ndcg@100": v, "recall@20": v / 2,
                                                                   "recall@50": v} for k in ("100", "20", "50")}}})
    lb = build_leaderboard(tmp_path, "ndcg@100,recall@20,recall@50", sort="ndcg@100")
    rows = {r["model"]: r for r in lb.rows}
    assert rows["mult-vae"]["published_test_ndcg@100"] == 0.426
    assert rows["mult-vae"]["published_test_recall@50"] == 0.537
    assert "published_test_ndcg@100" not in rows["pop"]
    md = to_markdown(lb)
    assert "published NDCG@100" in md.splitlines()[2] and "| 0.4260 |" in md and "Liang et al." in md
    root = Path(__file__).resolve().parents[1] / "benchmarks" / "configs"
    for name in ("ml-20m-implicit", "netflix-implicit"):
        cfg = build_config(file=load_config_file(root / f"{name}.toml"))
        assert cfg.dataset == name and "ndcg@100" in cfg.metrics
        assert {s.name for s, _, _ in resolve_models(cfg)} >= {"mult-vae", "mult-dae", "pop"}


def test_bootstrap_of_means_over_users():
    from recozoo.compare.stats import paired_bootstrap
    rng = np.random.default_rng(0)
    best = rng.random(500)
    other = np.clip(best - 0.05 + 0.02 * rng.standard_normal(500), 0, 1)
    res = paired_bootstrap(best, {"o": other, "same": best.copy()}, n_boot=300, root=False)
    assert res["o"]["estimate"] == pytest.approx(other.mean() - best.mean())
    assert res["o"]["ci_low"] < res["o"]["estimate"] < res["o"]["ci_high"] < 0 and res["o"]["n_users"] == 500
    assert res["same"]["estimate"] == res["same"]["ci_low"] == res["same"]["ci_high"] == 0.0
