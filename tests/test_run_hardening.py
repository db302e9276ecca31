"""Hostile use of runs through the real CLI (issue 14, items 9-11): tampered model files and
checkpoints, devices this machine lacks, ``--out`` onto another run. Each case is what a user
would type (through the installed console script where the process matters: hidden CUDA, torchrun;
through its entry point in process, ``cli_helpers.invoke_cli``, elsewhere); each must end in one
line on stderr and a non-zero exit, or in a run that says what it did. The guarantees are listed
with their tests in docs/reliability.md."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from cli_helpers import assert_one_line_error, invoke_cli, invoke_json, run_cli, run_json

TINY_DEEPREC = ["--set", "layers=8", "--set", "epochs=1", "--set", "batch_size=256"]
NO_CUDA = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def runs(ml100k_env, tmp_path_factory):
    """One finished bias run and one finished (1-epoch) deeprec run on ML-100K, fitted once through
    the CLI on a machine without CUDA (``CUDA_VISIBLE_DEVICES=''``); their ``--json`` summaries."""
    base = tmp_path_factory.mktemp("runs")
    env = {**ml100k_env, **NO_CUDA}
    summaries = {"bias": run_json("fit", "bias", "--dataset", "ml-100k", "--out", base / "bias", "-q", env=env),
                 "deeprec": run_json("fit", "deeprec", "--dataset", "ml-100k", *TINY_DEEPREC, "--device", "auto",
                                     "--out", base / "deeprec", "-q", env=env)}
    return base, summaries


def _copy_with_header(run: Path, dest: Path, edit) -> Path:
    """``run`` copied to ``dest`` with its model file's header.json replaced by ``edit(header)``."""
    shutil.copytree(run, dest)
    src = zipfile.ZipFile(run / "model.rcz")
    with zipfile.ZipFile(dest / "model.rcz", "w") as out:
        for name in src.namelist():
            data = src.read(name)
            if name == "header.json":
                data = json.dumps(edit(json.loads(data))).encode()
            out.writestr(name, data)
    return dest


def _set(key, value):
    def edit(h):
        h[key] = value
        return h
    return edit


def _drop(key):
    def edit(h):
        del h[key]
        return h
    return edit


HEADER_EDITS = {
    "n_users-mismatch": (_set("n_users", 5), "n_users=5"),
    "header-a-list": (lambda h: [h], "json object"),
    "no-seed": (_drop("seed"), "'seed'"),
    "seed-a-string": (_set("seed", "zero"), "'seed'"),
    "clip-an-int": (_set("clip", 5), "'clip'"),
    "settings-a-list": (_set("settings", [1]), "'settings'"),
    "negative-n_items": (_set("n_items", -3), "'n_items'"),
}


def test_tampered_model_header_is_one_line_error_through_the_cli(runs, ml100k_env, tmp_path):
    edit, needle = HEADER_EDITS["n_users-mismatch"]
    bad = _copy_with_header(runs[0] / "bias", tmp_path / "bad", edit)
    p = invoke_cli("evaluate", bad, check=False, env=ml100k_env)
    assert_one_line_error(p, "model.rcz", needle)


@pytest.mark.parametrize("case", sorted(HEADER_EDITS))
def test_tampered_model_header_is_a_checkpoint_error(runs, tmp_path, case):
    """Every tampering, in process (the CLI turns a CheckpointError into the line above)."""
    from recozoo.errors import CheckpointError
    from recozoo.models.base import load_model
    edit, needle = HEADER_EDITS[case]
    bad = _copy_with_header(runs[0] / "bias", tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as e:
        load_model(bad / "model.rcz")
    assert needle.lower() in str(e.value).lower() and "\n" not in str(e.value)


def _copy_with_checkpoint(run: Path, dest: Path, edit) -> Path:
    shutil.copytree(run, dest)
    ck = torch.load(run / "last.pt", weights_only=True)
    torch.save(edit(ck), dest / "last.pt")
    return dest


CHECKPOINT_EDITS = {
    "rng-a-string": (_set("rng", "x"), "'rng'"),
    "rng-ints": (_set("rng", [5]), "'rng'"),
    "epoch-a-string": (_set("epoch", "two"), "'epoch'"),
    "a-list": (lambda ck: [ck], "not a recozoo checkpoint"),
    "no-history": (_drop("history"), "'history'"),
    "optimizer-a-string": (_set("optimizers", {"main": "x"}), "does not fit"),
}


def test_tampered_checkpoint_resume_is_one_line_error_through_the_cli(runs, ml100k_env, tmp_path):
    edit, needle = CHECKPOINT_EDITS["rng-a-string"]
    bad = _copy_with_checkpoint(runs[0] / "deeprec", tmp_path / "bad", edit)
    p = invoke_cli("fit", "deeprec", "--dataset", "ml-100k", *TINY_DEEPREC, "--out", bad, "--resume", "-q",
                   check=False, env={**ml100k_env, **NO_CUDA})
    assert_one_line_error(p, "last.pt", needle)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A one-epoch DeepRec fit in process on small generated data, with its run directory."""
    from _torch_small import small_split
    from recozoo.models.deeprec import DeepRec
    run = tmp_path_factory.mktemp("small") / "run"
    split = small_split()
    DeepRec(SMALL_SETTINGS, seed=1).fit(split.train, split.valid, run_dir=run)
    return run


SMALL_SETTINGS = {"layers": "8", "epochs": 1}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_EDITS))
def test_tampered_checkpoint_is_a_checkpoint_error(small_run, tmp_path, case):
    from _torch_small import small_split
    from recozoo.errors import CheckpointError
    from recozoo.models.deeprec import DeepRec
    edit, needle = CHECKPOINT_EDITS[case]
    bad = _copy_with_checkpoint(small_run, tmp_path / "bad", edit)
    split = small_split()
    with pytest.raises(CheckpointError) as e:
        DeepRec(SMALL_SETTINGS, seed=1).fit(split.train, split.valid, run_dir=bad, resume=True)
    assert needle.lower() in str(e.value).lower() and "\n" not in str(e.value)


def test_resume_of_another_models_run_is_refused(runs, ml100k_env, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs[0] / "deeprec", other)
    p = invoke_cli("fit", "bias", "--dataset", "ml-100k", "--out", other, "--resume", "-q", check=False,
                   env=ml100k_env)
    assert_one_line_error(p, "holds a deeprec run")


@pytest.mark.parametrize("model", ["bias", "deeprec"])
def test_missing_cuda_fails_before_any_file_or_data(model, tmp_path):
    """No CUDA here (CUDA_VISIBLE_DEVICES=''), and no data prepared: the device error comes first."""
    out = tmp_path / "run"
    env = {**NO_CUDA, "RECOZOO_DATA": str(tmp_path / "empty-home")}
    p = run_cli("fit", model, "--dataset", "ml-100k", "--device", "cuda", "--out", out, check=False, env=env)
    assert_one_line_error(p, "--device cuda", "not available")
    assert not out.exists()


@pytest.mark.parametrize("models", ["bias,biasedmf", "bias,deeprec"])
def test_compare_on_a_missing_cuda_fails_before_any_file(models, tmp_path):
    """A comparison of torch-free models resolves no device (``auto`` is the CPU for them), but one
    named outright is still checked: ``--device cuda`` without CUDA is the same one-line error."""
    out = tmp_path / "cmp"
    env = {**NO_CUDA, "RECOZOO_DATA": str(tmp_path / "empty-home")}
    p = run_cli("compare", "--dataset", "ml-100k", "--models", models, "--device", "cuda", "--out", out,
                check=False, env=env)
    assert_one_line_error(p, "--device cuda", "not available")
    assert not out.exists()


def test_run_records_the_device_it_used(runs):
    base, summaries = runs
    assert (summaries["bias"]["device"], summaries["bias"]["device_requested"]) == ("cpu", "auto")
    assert summaries["deeprec"]["device"] == "cpu"
    assert json.loads((base / "deeprec" / "summary.json").read_text())["device"] == "cpu"


class _Payload:
    """Unpickling this would create a file: the proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_payload_in_a_model_file_never_runs(runs, tmp_path):
    import io

    import numpy as np

    from recozoo.errors import CheckpointError
    from recozoo.models.base import load_model
    marker = tmp_path / "pwned"
    bad = _copy_with_header(runs[0] / "bias", tmp_path / "bad", lambda h: h)
    buf = io.BytesIO()
    np.save(buf, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(bad / "model.rcz", "a") as zf:
        zf.writestr("evil.npy", buf.getvalue())
    with pytest.raises(CheckpointError):
        load_model(bad / "model.rcz")
    assert not marker.exists()


def test_pickled_payload_in_a_checkpoint_never_runs(small_run, tmp_path):
    from _torch_small import small_split
    from recozoo.errors import CheckpointError
    from recozoo.models.deeprec import DeepRec
    marker = tmp_path / "pwned"
    bad = _copy_with_checkpoint(small_run, tmp_path / "bad", _set("task", _Payload(marker)))
    split = small_split()
    with pytest.raises(CheckpointError):
        DeepRec(SMALL_SETTINGS, seed=1).fit(split.train, split.valid, run_dir=bad, resume=True)
    assert not marker.exists()


def test_every_model_that_trains_on_the_engine_declares_its_device():
    """A model whose module hands ``device`` to the torch engine declares ``uses_device`` (so its runs
    record the device it resolved to, not "cpu"); the others record "cpu"."""
    import inspect

    from recozoo.registry import list_models
    for entry in list_models():
        source = inspect.getsource(inspect.getmodule(entry.cls))
        on_engine = "EngineConfig" in source or "resolve_device" in source
        assert entry.cls.uses_device == on_engine, entry.name


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_onto_another_run_is_refused_and_force_replaces_it_whole(runs, ml100k_env, tmp_path):
    """Item 11: ``fit bias --out`` a deeprec run used to mix the two runs' files."""
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "deeprec", run)
    before = _contents(run)
    p = invoke_cli("fit", "bias", "--dataset", "ml-100k", "--out", run, "-q", check=False, env=ml100k_env)
    assert_one_line_error(p, "holds a deeprec run", "--force")
    assert _contents(run) == before
    # --force, but the new fit fails: the old run is untouched and nothing is left beside it
    p = invoke_cli("fit", "bias", "--dataset", "no-such-data", "--out", run, "--force", "-q", check=False,
                   env=ml100k_env)
    assert_one_line_error(p, "no-such-data")
    assert _contents(run) == before and sorted(x.name for x in tmp_path.iterdir()) == ["run"]
    # --force and a good fit: the folder holds the bias run alone, and its summary names the folder
    s = invoke_json("fit", "bias", "--dataset", "ml-100k", "--out", run, "--force", "-q", env=ml100k_env)
    assert sorted(_contents(run)) == ["config.json", "item_ids.npy", "model.rcz", "summary.json", "user_ids.npy"]
    assert json.loads((run / "config.json").read_text())["model"] == "bias"
    assert s["run_dir"] == str(run) == json.loads((run / "summary.json").read_text())["run_dir"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]


def test_a_failed_fit_leaves_no_run_dir(ml100k_env, tmp_path):
    out = tmp_path / "new"
    p = invoke_cli("fit", "bias", "--dataset", "no-such-data", "--out", out, "-q", check=False, env=ml100k_env)
    assert_one_line_error(p, "no-such-data")
    assert not out.exists()


def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path):
    from recozoo.rundir import RunDir
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    from recozoo.errors import RecozooError
    with pytest.raises(RecozooError, match="holds no run"):
        RunDir(tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_under_torchrun_only_rank_0_speaks(ml100k_env, tmp_path):
    """Item 14: ``torchrun --nproc_per_node 2 recozoo fit deeprec ... --json`` printed one JSON
    document per rank. Two gloo processes on CPU (as tests/test_ddp.py), through the real CLI."""
    import os
    import subprocess
    import sys

    from cli_helpers import RECOZOO
    run = tmp_path / "run"
    env = {**os.environ, **ml100k_env, **NO_CUDA, "GLOO_SOCKET_IFNAME": "lo", "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        RECOZOO, "fit", "deeprec", "--dataset", "ml-100k", *TINY_DEEPREC, "--out", str(run),
                        "--json"], capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)               # exactly one document
    assert summary["run_dir"] == str(run) and "rank" not in summary
    assert p.stderr.count("epoch 1/1") <= 1, p.stderr   # one progress bar (rank 0's)
    log = (run / "rank-1.log").read_text()
    assert "rank 1 of 2" in log and "quiet" in log
    assert not (run / "rank-0.log").exists()
