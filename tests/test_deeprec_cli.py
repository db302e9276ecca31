"""DeepRec end to end through the real CLI (its entry point in process: ``cli_helpers.invoke_cli``)
on real ML-100K (issue 3)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, invoke_cli, invoke_json

#: DeepRec's pre-"auto" fixed defaults written out (SELU, one re-feed, no weight decay, VALID every epoch,
#: no early stopping); mode and batch size last (the resume test drops them)
SMALL = ["--set", "layers=64,64", "--set", "epochs=4", "--set", "optimizer=adam", "--set", "lr=0.003",
         "--set", "dropout=0.5", "--set", "activation=selu", "--set", "refeed=1", "--set", "weight_decay=0",
         "--set", "eval_every=1", "--set", "patience=0", "--set", "baseline=none", "--set", "mode=item",
         "--set", "batch_size=32"]


@pytest.fixture(scope="module")
def env(ml100k_env):
    return ml100k_env


def test_fit_beats_global_mean_then_resume_and_export(env, tmp_path):
    run = tmp_path / "run"
    s = invoke_json("fit", "deeprec", "--dataset", "ml-100k", *SMALL, "--seed", "3", "--out", run, "-q",
                 env=env)
    mean = invoke_json("fit", "mean", "--dataset", "ml-100k", "--out", tmp_path / "mean", "-q", env=env)
    assert s["metrics"]["valid"]["rmse"] < mean["metrics"]["valid"]["rmse"] - 0.08
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["valid_rmse"]) for r in log)
    assert {"last.pt", "best.pt", "model.rcz", "config.json", "summary.json"} <= {p.name for p in run.iterdir()}

    # --resume on a finished run continues from last.pt: same best model, same figures
    r = invoke_json("fit", "deeprec", "--dataset", "ml-100k", *SMALL, "--seed", "3", "--out", run, "--resume",
                 "-q", env=env)
    assert r["metrics"]["test"]["rmse"] == pytest.approx(s["metrics"]["test"]["rmse"], abs=1e-6)

    # export reproduces predict on the rows' train vectors
    out = tmp_path / "deeprec.pt"
    invoke_cli("export", run, "--out", out, env=env)
    from recozoo.models.base import load_model
    m = load_model(run / "model.rcz")
    with warnings.catch_warnings():          # torch 2.x deprecates the loader it still ships
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.load(str(out))
    x = m.rows_.take(np.arange(5)).dense()
    dense = ts(x).detach().numpy()
    items = np.arange(5)
    users = np.zeros(5, dtype=np.int64)
    # item mode: row = item, column = user
    np.testing.assert_allclose(m.predict(users, items), dense[np.arange(5), 0], rtol=1e-4, atol=1e-4)
    # the same through ONNX (run by onnxruntime)
    import onnxruntime as ort
    onnx_path = tmp_path / "deeprec.onnx"
    p = invoke_cli("export", run, "--out", onnx_path, "--format", "onnx", env=env)
    assert "exported deeprec" in p.stderr and p.stdout == ""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"ratings": x.numpy()})[0]
    np.testing.assert_allclose(m.predict(users, items), got[np.arange(5), 0], rtol=1e-4, atol=1e-4)


def test_resume_with_other_settings_is_refused(env, tmp_path):
    run = tmp_path / "run"
    invoke_cli("fit", "deeprec", "--dataset", "ml-100k", *SMALL[:-2], "--set", "epochs=1", "--out", run, "-q",
            env=env)
    p = invoke_cli("fit", "deeprec", "--dataset", "ml-100k", "--set", "layers=8", "--set", "epochs=1",
                "--out", run, "--resume", env=env, check=False)
    assert_one_line_error(p, "--resume")


def test_checkpoint_from_another_item_count_is_one_line_error(env, tmp_path):
    run = tmp_path / "run"
    base = ["--set", "layers=8", "--set", "epochs=1", "--set", "mode=user", "--set", "optimizer=momentum"]
    invoke_cli("fit", "deeprec", "--dataset", "ml-100k", *base, "--out", run, "-q", env=env)
    # the same run directory resumed on another dataset (other item count)
    cfg = json.loads((run / "config.json").read_text())
    cfg["dataset"] = "synthetic"
    (run / "config.json").write_text(json.dumps(cfg))
    p = invoke_cli("fit", "deeprec", "--dataset", "synthetic", "--data-param", "n_users=500",
                "--data-param", "n_items=300", "--data-param", "n_ratings=20000", *base,
                "--out", run, "--resume", env=env, check=False)
    assert_one_line_error(p)


@pytest.mark.parametrize("setting,needle", [("activation=gelu", "activation"), ("layers=", "layers"),
                                            ("dropout=1.0", "dropout"), ("dropout=-0.1", "dropout")])
def test_bad_settings(env, setting, needle):
    p = invoke_cli("fit", "deeprec", "--dataset", "ml-100k", "--set", setting, env=env, check=False)
    assert_one_line_error(p, needle)


def test_help_settings_lists_contract_names():
    out = invoke_cli("fit", "deeprec", "--help-settings").stdout
    for name in ("layers", "activation", "tied", "dropout", "noise", "last_linear", "mode", "refeed",
                 "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "eval_every",
                 "patience", "precision"):
        assert name in out, name
