"""The benchmark scripts run (tiny sizes, no timing asserted) and their figures add up.

Why: the docs render what ``benchmarks/`` record; a script that no longer runs, or a
printed sum that is not the sum of its printed parts, would go unnoticed until someone
needs the figures. Speed itself is never asserted here (brief: speed targets live in
``benchmarks/``, run by hand).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_deeprec.py"
TINY = ["--users", "300", "--items", "200", "--ratings", "6000", "--threads", "1"]


def _run(*extra: str, record: Path | None = None) -> str:
    """Run the script at tiny size; its record goes to ``record`` (never into benchmarks/records/)."""
    cmd = [sys.executable, str(BENCH), *TINY, *extra, "--record", str(record) if record else ""]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def _rendered(record: Path, table: str) -> str:
    """A table of the run's record as the docs would show it (``benchmarks/render_docs.py``)."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import render_docs
    finally:
        sys.path.remove(str(BENCH.parent))
    return render_docs.render_region(record.name, table, records=record.parent)


def test_deeprec_floor_parts_add_up(tmp_path):
    out = _run("--floor-only", record=tmp_path / "floor.json")
    parts = [float(x) for x in re.findall(r"(?:backward|gradients\)|catch up) ([0-9.]+) s", out)]
    assert len(parts) == 3, out
    total = float(re.search(r"sum ([0-9.]+) s", out).group(1))
    assert abs(sum(parts) - total) <= 0.015, out
    assert "3 batches" in out, out          # 300 users / batch 128: the last partial batch counts
    table = _rendered(tmp_path / "floor.json", "floor")
    assert f"**{total:.2f} = at most" in table and "--floor-only" in table, table


def test_deeprec_plan_only_is_bit_identical():
    out = _run("--plan-only")
    a, b = re.search(r"checksums (\S+) / (\S+)", out).groups()
    assert a == b, out


def test_deeprec_data_cache_round_trip(tmp_path):
    """--cache: the split generated once and loaded by later jobs equals the generated one."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench_deeprec as b
    finally:
        sys.path.remove(str(BENCH.parent))
    fresh = b.data(300, 200, 6000, 3)
    first = b.data(300, 200, 6000, 3, str(tmp_path))       # generates and writes
    again = b.data(300, 200, 6000, 3, str(tmp_path))       # loads
    assert [p.name for p in tmp_path.iterdir()] == ["u300-i200-r6000-s3"]
    for part in ("train", "test"):
        assert getattr(fresh, part).equals(getattr(first, part))
        assert getattr(fresh, part).equals(getattr(again, part))


def test_deeprec_gpu_table_runs_on_the_cpu(tmp_path):
    """The GPU table's code path (device-parametrised fits, flops, FLOP count, cache), run with the CPU
    as the device: what a session with a GPU runs must not first fail on a typo."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench_deeprec as b
    finally:
        sys.path.remove(str(BENCH.parent))
    import argparse
    import contextlib
    import io
    args = argparse.Namespace(threads=1, users=300, items=200, ratings=6000, seed=0, device="cpu",
                              amp="bf16", cache=str(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        figures = b.gpu_main(args)
    text = out.getvalue()
    assert text.count("| train epoch, refeed") == 3, text
    train = int(re.search(r"data: (\d+) train ratings", text).group(1))
    ref, ours = b.epoch_flop(300, 200, train)
    assert f"{ref:.3g} with both steps dense" in text and f"{ours:.3g} as recozoo" in text, text
    tables = b.tables(json.loads(json.dumps(figures)))        # what the record holds renders
    assert len(tables["gpu"]["rows"]) == 3 and len(tables["dense-step"]["rows"]) == 2


def test_deeprec_cpu_table_runs(tmp_path):
    """The full CPU table (the docs' figures come from it) at tiny size: every row printed, and the
    record it writes renders the docs' tables with the run's command under them."""
    out = _run(record=tmp_path / "cpu.json")
    assert out.count("| train epoch, refeed") == 4, out
    assert "| evaluation pass (held out), fp32 |" in out and "refeed-0 epoch, its parts alone" in out, out
    speed = _rendered(tmp_path / "cpu.json", "speed")
    assert speed.count("| train epoch, refeed") == 3 and "| evaluation pass (1K held out), fp32 |" in speed, speed
    assert "Measured " in speed and "benchmarks/bench_deeprec.py --users 300" in speed, speed
    assert "**sum**" in _rendered(tmp_path / "cpu.json", "floor")


SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, args, table, expect", [
    ("bench_temporal.py", ["compare", "--seeds", "0", "--datasets", "ml-100k-time", "--models", "bias"],
     "main", "| 0 | bias |"),
    ("bench_zoo.py", ["--models", "mean", "--seeds", "1", "--no-refit", "--source", "{ml100k}"], "main", "| mean | 1 |"),
    ("bench_compare.py", ["--dataset", "ml-100k", "--source", "{ml100k}", "--models", "bias", "--seeds", "1", "-q"],
     "main", "| bias |"),
    ("bench_tune.py", ["--dataset", "ml-100k", "--source", "{ml100k}", "--models", "bias", "--tune-trials", "2",
                       "--seeds", "1", "-q", "--no-surprise"], "targets", "| target |"),
    ("bench_rank_eval.py", ["--users", "3000", "--items", "400", "--ratings", "60000", "--heldout", "300",
                            "--models", "pop", "--threads", "1", "--repeats", "1"], "main", "| pop | 1 | 300 |"),
    ("bench_fanout.py", ["--dataset", "ml-100k", "--source", "{ml100k}", "--models", "mean", "--seeds", "2"],
     "main", "| 2 | "),
    ("bench_fanout.py", ["--dataset", "ml-100k", "--source", "{ml100k}", "--models", "mean", "--seeds", "1",
                         "--repeat", "2"], "main", "Speedup: median "),
    ("bench_pruners.py", ["--dataset", "ml-100k", "--source", "{ml100k}", "--models", "biasedmf", "--budget", "2s"],
     "main", "| biasedmf | none |"),
])
def test_benchmark_writes_a_record_the_docs_render(tmp_path, ml100k_dir, ml100k_env, script, args, table, expect):
    """One command per benchmark: the script's run writes its record, and the record renders the
    docs table with the run's command, commit and load under it (tiny runs; figures not asserted)."""
    args = [a.replace("{ml100k}", str(ml100k_dir)) for a in args]
    env = {**__import__("os").environ, **ml100k_env}
    p = subprocess.run([sys.executable, str(SCRIPTS / script), *args, "--record", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["provenance"] == "measured" and record["benchmark"] == script[:-3]
    out = _rendered(tmp_path / "r.json", table)
    assert expect in out and f"python benchmarks/{script} " in out and "load average" in out, out


def test_bench_serve_quick_writes_a_record(tmp_path):
    """bench_serve.py at tiny size: a real server under the load generator, fold-in timing, and the
    record that renders the docs tables (figures not asserted: the machine is shared)."""
    out = tmp_path / "serve.json"
    p = subprocess.run([sys.executable, str(SCRIPTS / "bench_serve.py"), "--quick", "--setups", "deeprec-17768,foldin",
                        "--connections", "2", "--record", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert rec["provenance"] == "measured" and rec["benchmark"] == "bench_serve"
    level = rec["figures"]["deeprec-17768"]["recozoo"]["levels"][0]
    assert level["connections"] == 2 and level["requests"] > 0 and level["errors"] == 0
    assert level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]
    assert set(rec["figures"]["fold_in"]) == {"als", "biasedmf"}
    load = _rendered(out, "load")
    assert "| deeprec-17768 | recozoo | 2 |" in load and "python benchmarks/bench_serve.py --quick" in load, load
    assert "| als |" in _rendered(out, "fold_in")


def test_implicit_speed_runs_and_renders(tmp_path):
    """bench_implicit.py speed at a tiny scale: both first layers fit, the TEST users are ranked, the
    table renders with the scale it ran at."""
    script = BENCH.parent / "bench_implicit.py"
    rec = tmp_path / "implicit-speed.json"
    p = subprocess.run([sys.executable, str(script), "speed", "--scale", "0.002", "--item-scale", "0.02",
                        "--record", str(rec)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    f = json.loads(rec.read_text())["figures"]
    assert [r["first_layer"] for r in f["rows"]] == ["sparse", "dense"] and f["rank_test"]["users"] > 0
    assert f["ease_fit_seconds"] >= 0 and f["scale"] == 0.002
    assert "x0.002 users" in _rendered(rec, "main")


def test_implicit_accuracy_on_own_data_by_protocol(tmp_path):
    """bench_implicit.py accuracy with --protocol: a rated TSV folder (the DeepRec layout of the Netflix
    sample) registered under --dataset, binarised by --data-param and split by strong generalisation;
    every model is ranked, each autoencoder gets a paired interval against every baseline that ran,
    and the record says how the data was made."""
    rng = np.random.default_rng(0)
    src = tmp_path / "ratings"
    src.mkdir()
    rows = {(u, i): int(rng.integers(1, 6)) for u in range(400) for i in rng.choice(60, 15, replace=False)}
    (src / "part-0.tsv").write_text("".join(f"{u}\t{i}\t{r}\n" for (u, i), r in rows.items()))
    rec = tmp_path / "acc.json"
    p = subprocess.run([sys.executable, str(BENCH.parent / "bench_implicit.py"), "accuracy",
                        "--dataset", "tiny-implicit", "--source", str(src), "--protocol", "strong",
                        "--data-param", "threshold=2.5", "--models", "pop,itemknn,mult-dae",
                        "--set", "mult-dae.epochs=2", "--record", str(rec)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    f = json.loads(rec.read_text())["figures"]
    assert f["dataset"] == "tiny-implicit" and f["data"] == {"protocol": "strong", "params": {"threshold": "2.5"}}
    assert sorted(r["model"] for r in f["leaderboard"]["rows"]) == ["itemknn", "mult-dae", "pop"]
    assert all(r["test_ndcg@100_mean"] > 0 for r in f["leaderboard"]["rows"])
    assert [(g["model"], g["vs"]) for g in f["gaps"]] == [("mult-dae", "pop"), ("mult-dae", "itemknn")]
    assert all(g["ci_low"] <= g["estimate"] <= g["ci_high"] for g in f["gaps"])
    assert "| mult-dae | itemknn |" in _rendered(rec, "gaps")
    assert f["split"]["test"]["users"] > 0 and f["split"]["heldout_users"] == f["split"]["test_fold_in"]["users"]
    assert "tiny-implicit (the source split by `strong`, threshold=2.5): " in _rendered(rec, "main")


@pytest.mark.parametrize("bare", [False, True])
def test_bench_serve_refuses_a_cornac_python_that_cannot_serve_cornac(bare, tmp_path):
    """--cornac-python is checked before anything is fitted: one line, exit 2, no record (a missing
    interpreter was a FileNotFoundError traceback after the recozoo levels, one without cornac a
    'training failed' entry in the record). ``bare``: a Python without site-packages (-S)."""
    python = str(tmp_path / "no-such-python")
    if bare:
        Path(python).write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
        Path(python).chmod(0o755)
    out = tmp_path / "serve.json"
    p = subprocess.run([sys.executable, str(SCRIPTS / "bench_serve.py"), "--cornac-python", python,
                        "--record", str(out)], capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    needle = "cannot import cornac, flask, torch" if bare else "no such interpreter"
    assert p.returncode == 2 and len(lines) == 1 and needle in lines[0] and python in lines[0], p.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, env, needle", [
    (["accuracy", "--protocol", "strong"], {}, "--protocol needs --source"),
    (["speed", "--scale", "0.001"], {"RECOZOO_PLUGINS": ""}, "unknown model 'ease'"),
])
def test_bench_implicit_bad_input_is_one_line_before_any_work(args, env, needle, tmp_path):
    """--protocol without --source was a RecozooError traceback; speed without the EASE plugin measured
    the Mult-VAE epochs first and then ended in one (``RECOZOO_PLUGINS=''``: no plugin loads)."""
    import os
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(SCRIPTS / "bench_implicit.py"), *args, "--record", str(out)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_check_predictions_without_its_data_is_one_line(tmp_path):
    """A missing --data folder was a DatasetNotFound traceback (from a default relative to the checkout:
    a second checkout in /tmp, as the docstring's recipe makes, has no ../shared/data)."""
    p = subprocess.run([sys.executable, str(SCRIPTS / "check_predictions.py"), "--data", str(tmp_path / "none"),
                        "--out", str(tmp_path / "o.json")], capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and "--data" in lines[0] and "no such folder" in lines[0], p.stderr
    assert not (tmp_path / "o.json").exists()
