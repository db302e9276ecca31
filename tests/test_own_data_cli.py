"""Own data in one step, through the real CLI (its entry point in process, `cli_helpers.invoke_cli`):
``data prepare NAME --source FILE --protocol P``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, invoke_cli, invoke_json


@pytest.fixture()
def home(tmp_path):
    return {"RECOZOO_DATA": str(tmp_path / "home")}


def test_user_time_on_u_data_then_fit(ml100k_dir, home, tmp_path):
    d = invoke_json("data", "prepare", "mydata", "--source", ml100k_dir / "u.data", "--protocol", "user-time",
                 env=home)
    assert set(d) == {"train", "valid", "test"}
    assert d["train"]["ratings"] + d["valid"]["ratings"] + d["test"]["ratings"] == 100_000
    # ⌊0.2·n⌋ of each user's latest ratings (every ML-100K user has 20+), then ⌊0.1·rest⌋
    assert d["test"]["users"] == d["valid"]["users"] == d["train"]["users"] == 943
    assert 19_000 < d["test"]["ratings"] <= 20_000
    rec = json.loads((Path(home["RECOZOO_DATA"]) / "user" / "mydata.json").read_text())
    assert rec["protocol"] == "user-time" and rec["source"] == str((ml100k_dir / "u.data").resolve())
    assert rec["params"] == {"test_fraction": 0.2, "valid_fraction": 0.1, "threshold": None}
    s = invoke_json("fit", "bias", "--dataset", "mydata", "--out", tmp_path / "run", "-q", env=home)
    t = s["metrics"]["test"]
    assert t["n_total"] == d["test"]["ratings"] and np.isfinite(t["rmse"]) and t["rmse"] < 1.2
    assert s["split_info"]["protocol"] == "user-time"
    # one prepared split, keyed on the record: fit read the cache prepare wrote
    assert len(list((Path(home["RECOZOO_DATA"]) / "prepared" / "mydata").iterdir())) == 1
    rows = {r["name"]: r for r in invoke_json("data", "list", env=home)}
    assert rows["mydata"]["source"] == "user" and "user-time" in rows["mydata"]["description"]


def test_netflix_sample_folder(netflix_sample_dir, home, tmp_path):
    # three tsv part files without dates: a time protocol is refused, naming the folder
    p = invoke_cli("data", "prepare", "nf", "--source", netflix_sample_dir, "--protocol", "user-time",
                env=home, check=False)
    assert_one_line_error(p, str(netflix_sample_dir), "no timestamps", "user-time")
    assert not (Path(home["RECOZOO_DATA"]) / "user" / "nf.json").exists()   # nothing half-registered
    d = invoke_json("data", "prepare", "nf", "--source", netflix_sample_dir, "--protocol", "random",
                 "--data-param", "test_fraction=0.2", "--split-seed", "3", env=home)
    total = sum(part["ratings"] for part in d.values())
    assert total == 204_821
    assert abs(d["test"]["ratings"] - 0.2 * total) < 6 * np.sqrt(total * 0.16)
    # a model that needs timestamps is refused before any fit, not after the others have run
    out = tmp_path / "cmp"
    p = invoke_cli("compare", "--dataset", "nf", "--models", "bias,timesvdpp", "--jobs", "2", "--out", out, "-q",
                   env=home, check=False)
    assert_one_line_error(p, "timesvdpp", "timestamps", "nf")
    assert not (out / "results.jsonl").exists() and not (out / "runs").exists()


def test_interaction_files_strong_generalization_and_bad_input(tmp_path, home):
    rng = np.random.default_rng(0)
    lines = ["uid,sku"]
    for u in range(120):
        for i in rng.choice(80, size=int(rng.integers(3, 25)), replace=False):
            lines.append(f"u{u},{i}")
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("\n".join(lines) + "\n")
    d = invoke_json("data", "prepare", "clicks", "--source", clicks, "--protocol", "strong",
                 "--columns", "user=uid,item=sku,rating=none,string_ids=true",
                 "--data-param", "heldout_users=10", env=home)
    assert set(d) == {"train", "valid", "test", "valid_fold_in", "test_fold_in"}
    assert d["valid_fold_in"]["users"] == d["test_fold_in"]["users"] == 10
    info = invoke_json("data", "info", "clicks", env=home)
    assert info == d
    # too small for the held-out N: one line, nothing registered
    p = invoke_cli("data", "prepare", "tiny", "--source", clicks, "--protocol", "strong",
                "--columns", "user=uid,item=sku,rating=none,string_ids=true",
                "--data-param", "heldout_users=60", env=home, check=False)
    assert_one_line_error(p, "too small for 60 held-out users")
    assert not (Path(home["RECOZOO_DATA"]) / "user" / "tiny.json").exists()
    # an interaction file whose rating column is not numbers
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,1\n1,3,click\n")
    p = invoke_cli("data", "prepare", "bad", "--source", bad, "--protocol", "strong", env=home, check=False)
    assert_one_line_error(p, "bad.csv", "line 3", "rating", "click")
    # a threshold that leaves nothing
    p = invoke_cli("data", "prepare", "clicks2", "--source", clicks, "--protocol", "user-random",
                "--columns", "user=uid,item=sku,rating=none,string_ids=true",
                "--data-param", "threshold=3.5", env=home, check=False)
    assert_one_line_error(p, "threshold 3.5 leaves no interactions")


def test_unknown_name_with_a_source_says_how(ml100k_dir, home):
    p = invoke_cli("data", "prepare", "mydata", "--source", ml100k_dir / "u.data", env=home, check=False)
    assert_one_line_error(p, "unknown dataset 'mydata'", "--protocol random|user-random|time")


def test_builtin_implicit_dataset_info(ml100k_dir, home):
    d = invoke_json("data", "info", "ml-100k-implicit", "--source", ml100k_dir, env=home)
    assert set(d) == {"train", "valid", "test", "valid_fold_in", "test_fold_in"}
    # ML-100K: 938 users with 5+ ratings above 3.5; N = 93 by the scaled rule
    assert d["valid_fold_in"]["users"] == d["test_fold_in"]["users"] == 93
    assert d["train"]["users"] == 938 - 2 * 93
    assert sum(p["ratings"] for p in d.values()) <= 55_375
