"""The benchmark scripts run (tiny sizes, no timing asserted) and their figures add up.

Why: the README quotes what ``benchmarks/`` print; a script that no longer runs, or a
printed sum that is not the sum of its printed parts, would go unnoticed until someone
needs the figures. Speed itself is never asserted here (brief: speed targets live in
``benchmarks/``, run by hand).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_deeprec.py"
TINY = ["--users", "300", "--items", "200", "--ratings", "6000", "--threads", "1"]


def _run(*extra: str) -> str:
    p = subprocess.run([sys.executable, str(BENCH), *TINY, *extra], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_deeprec_floor_parts_add_up():
    out = _run("--floor-only")
    parts = [float(x) for x in re.findall(r"(?:backward|gradients\)|catch up) ([0-9.]+) s", out)]
    assert len(parts) == 3, out
    total = float(re.search(r"sum ([0-9.]+) s", out).group(1))
    assert abs(sum(parts) - total) <= 0.015, out
    assert "3 batches" in out, out          # 300 users / batch 128: the last partial batch counts


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
        b.gpu_main(args)
    text = out.getvalue()
    assert text.count("| train epoch, refeed") == 3, text
    train = int(re.search(r"data: (\d+) train ratings", text).group(1))
    ref, ours = b.epoch_flop(300, 200, train)
    assert f"{ref:.3g} with both steps dense" in text and f"{ours:.3g} as recozoo" in text, text


def test_deeprec_cpu_table_runs():
    """The full CPU table (the README's figures come from it) at tiny size: every row printed."""
    out = _run()
    assert out.count("| train epoch, refeed") == 4, out
    assert "| evaluation pass (held out), fp32 |" in out and "refeed-0 epoch, its parts alone" in out, out
