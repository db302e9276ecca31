"""Whole-process memory (issue 14, item 13): a command imports only what it needs, and writing a
model or a checkpoint holds no copy of it. ``benchmarks/bench_memory.py`` measures the peaks;
these tests hold the two causes it found (torch imported by a torch-free ``fit``; a fit's peak
at saving, when the model was serialised into a bytes buffer and copied)."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import torch

PROBE = """
import json, sys
from recozoo.cli.main import app, expand_assignments
try:
    app(args=expand_assignments(sys.argv[1:]), prog_name="recozoo", standalone_mode=False)
finally:
    heavy = sorted(m for m in ("torch", "numba", "pandas", "pyarrow", "matplotlib", "implicit")
                   if m in sys.modules)
    sys.stderr.write("\\nIMPORTED " + json.dumps(heavy) + "\\n")
"""


def _imported(args, env) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stderr.rsplit("IMPORTED ", 1)[1])


def test_fit_bias_and_data_info_import_no_torch(ml100k_env, tmp_path):
    import os
    env = {**os.environ, **ml100k_env}
    assert _imported(["fit", "bias", "--dataset", "ml-100k", "-q", "--out", str(tmp_path / "run")], env) == []
    assert _imported(["data", "info", "ml-100k", "--json"], env) == []


def test_comparing_torch_free_models_imports_no_torch(ml100k_env, tmp_path):
    """``compare`` of numba/numpy models, TimeSVD++ among them (whose module once loaded the engine,
    and with it torch, when the models were listed): no torch in the comparing process, so it pays
    no import and its fit records say so (no ``torch_threads``)."""
    import os
    env = {**os.environ, **ml100k_env}
    out = tmp_path / "cmp"
    heavy = _imported(["compare", "--dataset", "ml-100k", "--models", "bias,biasedmf,als,timesvdpp",
                       "--set", "biasedmf.epochs=2", "--set", "timesvdpp.epochs=1", "--seeds", "1",
                       "--out", str(out), "-q", "--format", "json"], env)
    assert "torch" not in heavy and "numba" in heavy
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert all(r["machine"]["threads"] >= 1 and "torch_threads" not in r["machine"] for r in records)
    manifest = json.loads((out / "compare.json").read_text())
    assert manifest["device"] == "cpu"


def test_a_model_that_declares_no_device_loads_without_torch():
    """Every registered model class that does not declare ``uses_device`` loads without torch (what
    keeps ``compare`` and ``fit`` of those models torch-free), each checked in a fresh process."""
    from recozoo.registry import get_model, list_models
    free = [e.name for e in list_models() if not get_model(e.name).uses_device]
    assert {"als", "bias", "biasedmf", "pmf", "timesvdpp"} <= set(free)
    code = ("import sys, json\nfrom recozoo.registry import get_model\nloaded = []\n"
            "for name in sys.argv[1:]:\n"
            "    get_model(name)\n"
            "    if 'torch' in sys.modules:\n"
            "        loaded.append(name)\n"
            "        break\n"
            "print(json.dumps(loaded))")
    p = subprocess.run([sys.executable, "-c", code, *free], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout) == []


def test_loading_a_deeprec_model_imports_no_numba():
    """numba (~57 MiB) compiles LazySGD's kernels on the first optimiser step; serving, evaluating or
    exporting a DeepRec run takes none, so importing the model and the server must not load it."""
    p = subprocess.run([sys.executable, "-c", "import sys, recozoo.models.deeprec, recozoo.serve; "
                        "print('numba' in sys.modules)"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "False"


def _peak_during(fn) -> int:
    """Peak bytes newly allocated by Python and numpy while ``fn`` runs (tracemalloc sees both)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_saving_a_model_streams_its_arrays(tmp_path):
    from recozoo.models.base import load_model
    from recozoo.registry import get_model
    from _torch_small import small_split
    split = small_split()
    model = get_model("bias")(seed=0).fit(split.train)
    big = np.random.default_rng(0).standard_normal(16_000_000).astype(np.float32)     # 64 MB
    state = model._get_state()
    model._get_state = lambda: {**state, "extra": big}
    peak = _peak_during(lambda: model.save(tmp_path / "m.rcz"))
    assert peak < big.nbytes // 2, f"saving held {peak / 2**20:.0f} MiB for a {big.nbytes / 2**20:.0f} MiB array"
    peak = _peak_during(lambda: load_model(tmp_path / "m.rcz"))
    assert peak < 1.5 * big.nbytes       # the loaded array itself, not a bytes copy beside it


def test_saving_a_checkpoint_streams_it(tmp_path):
    from recozoo.engine.checkpoint import load_checkpoint, save_checkpoint
    state = {"module": {"w": torch.zeros(8_000_000)}, "epoch": 1}                        # 32 MB
    peak = _peak_during(lambda: save_checkpoint(tmp_path / "last.pt", state))
    assert peak < 8 << 20, f"saving a checkpoint held {peak / 2**20:.0f} MiB"
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["module"]["w"], state["module"]["w"])
