"""End-to-end tests of the foundation through the real CLI on real data.

The commands run the ``recozoo`` entry point in process (``cli_helpers.invoke_cli``: the same
``main``, its output and exit code, without a torch import per command); the last test runs the
installed console script itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, invoke_cli, invoke_json, run_json


@pytest.fixture()
def home(tmp_path):
    """A private data home for one test."""
    h = tmp_path / "home"
    return {"RECOZOO_DATA": str(h)}


def test_fit_bias_on_ml100k_beats_global_mean(ml100k_dir, home, tmp_path):
    s = invoke_json("fit", "bias", "--dataset", "ml-100k", "--source", ml100k_dir, "--out", tmp_path / "r1",
                 "-q", env=home)
    assert set(s) >= {"model", "dataset", "run_dir", "settings", "metrics", "seconds"}
    assert s["model"] == "bias" and s["dataset"] == "ml-100k"
    assert set(s["metrics"]) == {"valid", "test"}
    for part in ("valid", "test"):
        assert set(s["metrics"][part]) >= {"rmse", "mae"}
    assert set(s["seconds"]) >= {"fit", "evaluate"}
    # u1.test is scored whole with the fallback policy (published-results protocol)
    t = s["metrics"]["test"]
    assert t["policy"] == "fallback" and t["n_scored"] == 20000 and t["n_fallback"] > 0
    m = invoke_json("fit", "mean", "--dataset", "ml-100k", "--out", tmp_path / "r2", "-q", env=home)
    assert s["metrics"]["valid"]["rmse"] < m["metrics"]["valid"]["rmse"] - 0.08
    assert s["metrics"]["test"]["rmse"] < 0.97
    # evaluate re-scores the saved model to the same figures
    e = invoke_json("evaluate", tmp_path / "r1", "--split", "test", env=home)
    assert e["metrics"]["rmse"] == pytest.approx(t["rmse"], abs=1e-9)
    assert (tmp_path / "r1" / "config.json").exists() and (tmp_path / "r1" / "summary.json").exists()


def test_data_info_json_counts(ml100k_dir, home):
    d = invoke_json("data", "info", "ml-100k", "--source", ml100k_dir, env=home)
    assert set(d) == {"train", "valid", "test"}
    for part in d.values():
        assert set(part) >= {"ratings", "users", "items"}
    assert d["train"]["ratings"] + d["valid"]["ratings"] == 80000
    assert d["test"]["ratings"] == 20000
    # the source path is remembered; the second call reads the prepared cache
    d2 = invoke_json("data", "info", "ml-100k", env=home)
    assert d2 == d
    prepared = Path(home["RECOZOO_DATA"]) / "prepared" / "ml-100k"
    assert len(list(prepared.iterdir())) == 1


def test_changed_source_invalidates_cache(ml100k_dir, home, tmp_path):
    src = tmp_path / "ml"
    shutil.copytree(ml100k_dir, src)
    d1 = invoke_json("data", "prepare", "ml-100k", "--source", src, env=home)
    # drop the last test rating: a changed source must give a re-prepared split
    lines = (src / "u1.test").read_text().splitlines(True)
    (src / "u1.test").write_text("".join(lines[:-1]))
    d2 = invoke_json("data", "info", "ml-100k", env=home)
    assert d2["test"]["ratings"] == d1["test"]["ratings"] - 1
    assert len(list((Path(home["RECOZOO_DATA"]) / "prepared" / "ml-100k").iterdir())) == 2


def test_time_split_preset_on_ml100k(ml100k_dir, home):
    d = invoke_json("data", "info", "ml-100k-time", "--source", ml100k_dir, env=home)
    ts = np.sort(np.loadtxt(ml100k_dir / "u.data", dtype=np.int64)[:, 3])
    cut = ts[80000]  # the earliest 80% by timestamp (ratings tied with the cut go to the test side)
    assert d["train"]["ratings"] == int((ts < cut).sum())
    # most test-interval ratings come from users without train history (PROTOCOLS.md)
    assert 0 < d["valid"]["ratings"] + d["test"]["ratings"] < 20000


def test_presplit_reference_tsv_layout(netflix_sample_dir, home, tmp_path):
    parts = sorted(netflix_sample_dir.iterdir())
    train = tmp_path / "N_TRAIN"
    train.mkdir()
    for p in parts[:2]:
        (train / p.name).symlink_to(p)
    d = invoke_json("data", "prepare", "nf-sample", "--train", train, "--test", parts[2], env=home)
    assert d["train"]["ratings"] + d["test"]["ratings"] <= 204821
    s = invoke_json("fit", "bias", "--dataset", "nf-sample", "--out", tmp_path / "run", "-q", env=home)
    t = s["metrics"]["test"]
    # users/items of TEST unseen in TRAIN are filtered by the evaluator and counted
    assert t["policy"] == "drop"
    assert t["n_scored"] + t["n_dropped"] == t["n_total"]
    assert t["n_dropped"] == t["n_unknown_user"] + t["n_unknown_item"]
    assert np.isfinite(t["rmse"])
    # no VALID part: --refit has nothing to choose the recipe on -> one line, before any fitting
    p = invoke_cli("fit", "bias", "--dataset", "nf-sample", "--refit", "--out", tmp_path / "refit", "-q",
                env=home, check=False)
    assert_one_line_error(p, "--refit", "no VALID")
    assert not (tmp_path / "refit" / "model.rcz").exists()


def test_synthetic_offline_quickstart(home, tmp_path):
    s = invoke_json("fit", "bias", "--dataset", "synthetic", "--data-param", "n_users=3000",
                 "--data-param", "n_ratings=60000", "--data-param", "n_items=500",
                 "--out", tmp_path / "run", "-q", env=home)
    assert s["split"]["valid"]["ratings"] > 0 and s["metrics"]["valid"]["rmse"] < 1.0


@pytest.mark.parametrize("args,needles", [
    (("fit", "nosuchmodel", "--dataset", "synthetic"), ("unknown model", "nosuchmodel")),
    (("fit", "bias", "--dataset", "nosuchdata"), ("unknown dataset", "nosuchdata")),
    (("fit", "bias", "--dataset", "synthetic", "--set", "reg_user"), ("NAME=VALUE",)),
    (("fit", "bias", "--dataset", "synthetic", "--set", "nope=1"), ("unknown setting", "nope")),
    (("fit", "bias", "--dataset", "synthetic", "--set", "reg_user=-1"), ("reg_user", ">=")),
    (("fit", "bias", "--dataset", "synthetic", "--set", "iterations=abc"), ("iterations",)),
    (("fit", "bias", "--dataset", "synthetic", "--data-param", "bogus=1"), ("bogus",)),
    (("data", "info", "ml-100k", "--source", "/no/such/path"), ("no such file",)),
    (("fit", "bias", "--dataset", "synthetic", "--device", "tpu"), ("device",)),
    (("evaluate", "/no/such/run"), ("not a run directory",)),
])
def test_bad_input_is_one_line_error(args, needles, home):
    p = invoke_cli(*args, env=home, check=False)
    assert_one_line_error(p, *needles)


def test_missing_source_says_how_to_get_it(home):
    p = invoke_cli("data", "info", "netflix-3m", env=home, check=False)
    assert_one_line_error(p, "netflix", "--source")
    p = invoke_cli("data", "info", "ml-100k", env=home, check=False)
    assert_one_line_error(p, "recozoo data fetch ml-100k")


def test_corrupt_model_file_is_one_line_error(ml100k_dir, home, tmp_path):
    invoke_cli("fit", "bias", "--dataset", "ml-100k", "--source", ml100k_dir, "--out", tmp_path / "r", "-q",
            env=home)
    model = tmp_path / "r" / "model.rcz"
    model.write_bytes(model.read_bytes()[:100])
    p = invoke_cli("evaluate", tmp_path / "r", env=home, check=False)
    assert_one_line_error(p, "model.rcz")


def test_models_lists_builtins_with_provider():
    """Through the installed ``recozoo`` console script, in a new process."""
    rows = run_json("models")
    names = {r["name"]: r for r in rows}
    assert {"mean", "bias"} <= set(names)
    assert names["bias"]["provider"] == "recozoo"
