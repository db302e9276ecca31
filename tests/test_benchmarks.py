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
