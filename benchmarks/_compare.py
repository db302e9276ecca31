"""One ``recozoo compare`` run as a benchmark step: its own process, timed end to end, its leaderboard read back.

``bench_compare``, ``bench_tune`` and ``bench_fanout`` all measure the command a user runs, so
each runs ``python -m recozoo.cli.main compare --dataset D ... --out DIR`` as a child process
(start-up, data, every fit, evaluation, bootstrap and figures inside the wall clock) and then
reads ``leaderboard.json`` (and ``leaderboard.md``, ``compare.json``) from ``DIR``. This module is that step,
written once; a failed command ends the benchmark with its exit status and a one-line message.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from _record import load_average

__all__ = ["CompareRun", "run_compare", "out_folder", "parse_leaderboard"]


@dataclass
class CompareRun:
    """What one ``recozoo compare`` process left: its wall clock, load around it and its leaderboard."""
    wall_s: float
    load_before: list[float]
    load_after: list[float]
    board: dict
    markdown: str | None
    #: ``compare.json``: what was compared on which split (dataset, split_seed, data_params, models, ...)
    manifest: dict
    #: the output folder already held a comparison (a rerun resumes it: finished fits are reused)
    resumed: bool


@contextlib.contextmanager
def out_folder(keep: str | None) -> Iterator[Path]:
    """``--out`` when given (kept), else a folder not yet made inside a temporary one removed afterwards."""
    if keep:
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "compare"


def run_compare(dataset: str, args: list[str], out: Path, *, fmt: str = "markdown",
                who: str = "bench") -> CompareRun:
    """``recozoo compare --dataset DATASET ARGS --out OUT --format FMT`` in its own process, timed."""
    resumed = (out / "results.jsonl").exists()
    cmd = [sys.executable, "-m", "recozoo.cli.main", "compare", "--dataset", dataset, *args,
           "--out", str(out), "--format", fmt]
    load_before = load_average()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        print(f"{who}: recozoo compare {' '.join(args)} failed (exit {p.returncode})", file=sys.stderr)
        raise SystemExit(p.returncode)
    md = out / "leaderboard.md"
    return CompareRun(wall_s=wall, load_before=load_before, load_after=load_average(),
                      board=json.loads((out / "leaderboard.json").read_text()),
                      markdown=md.read_text() if md.exists() else None, resumed=resumed,
                      manifest=json.loads((out / "compare.json").read_text()))


def parse_leaderboard(markdown: str) -> dict:
    """``recozoo compare``'s Markdown (a bold title, the table, '- ' notes) as a table."""
    lines = markdown.strip().splitlines()
    rows = [ln for ln in lines if ln.startswith("|")]
    if len(rows) < 2:
        raise ValueError("no table in the leaderboard")

    def cells(ln: str) -> list[str]:
        return [c.strip() for c in ln.strip()[1:-1].split("|")]
    align = [("l" if c.startswith(":") else "") + ("r" if c.endswith(":") else "") for c in cells(rows[1])]
    return {"columns": cells(rows[0]), "rows": [cells(r) for r in rows[2:]],
            "align": [{"lr": "c"}.get(a, a) for a in align],
            "notes": [ln[2:] for ln in lines if ln.startswith("- ")]}
