"""Run the real ``recozoo`` console script in a subprocess (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

RECOZOO = shutil.which("recozoo", path=str(Path(sys.executable).parent)) or shutil.which("recozoo")


def run_cli(*args, env: dict | None = None, cwd: str | Path | None = None, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess:
    assert RECOZOO, "the recozoo console script is not installed (pip install -e .)"
    e = dict(os.environ)
    e.update(env or {})
    e.setdefault("COLUMNS", "200")
    p = subprocess.run([RECOZOO, *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"recozoo {' '.join(map(str, args))} exited {p.returncode}:\n"
                             f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}")
    return p


def run_json(*args, **kw):
    p = run_cli(*args, "--json", **kw)
    return json.loads(p.stdout)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode != 0, f"expected failure, got exit 0: {p.stdout}"
    err = p.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"
    return lines[0]
