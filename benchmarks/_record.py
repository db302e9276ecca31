"""One JSON record per benchmark run: what ran, on which commit, on what machine, under what load, when.

Every script in ``benchmarks/`` writes its figures through :class:`Run`, into
``benchmarks/records/NAME.json`` by default (``--record PATH`` elsewhere, ``--record ''`` not at
all). The documentation's figure tables are rendered from these files by
``benchmarks/render_docs.py``; a figure in the docs therefore always has its command, commit,
machine, load and date beside it. The format (``schema`` 1):

* ``benchmark`` — the script's module name (``bench_zoo``); ``render_docs.py`` calls its
  ``tables(record)`` to turn ``figures`` into tables;
* ``command`` — the command line as run, from the repository root, environment variables that
  change the result (``OMP_NUM_THREADS``, ...) in front;
* ``commit`` / ``dirty`` — ``git rev-parse HEAD`` and whether tracked files had uncommitted changes;
* ``machine`` — platform, CPU model, logical cores, Python and the versions of the numeric packages;
* ``load`` — ``os.getloadavg()`` (1, 5, 15 minutes) at the start and at the end of the run: the
  machine is often shared, and a figure measured at load 5 on 2 cores is not one measured at 0.3;
* ``date`` / ``finished`` — UTC, ISO 8601, at the start and the end;
* ``provenance`` — ``"measured"``; records transcribed from an older README say where from instead
  (they have ``tables`` and no ``figures``, and their other fields are the README's own words);
* ``figures`` — whatever the benchmark measured, as plain JSON.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RECORDS = BENCHMARKS / "records"
SCHEMA = 1

#: environment variables that change what a benchmark measures; recorded in front of the command
ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
            "RECOZOO_HEAP", "RECOZOO_DATA", "RECOZOO_TEST_DATA", "RECOZOO_PLUGINS")
#: packages whose version is part of the machine description
PACKAGES = ("numpy", "scipy", "numba", "torch", "pandas", "implicit")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:          # not available on this platform
        return []


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """The commit the benchmark ran at and whether tracked files differed from it (None: no git)."""
    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "packages": versions}


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """``python benchmarks/SCRIPT ARGS`` with the result-changing environment variables in front."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        rel = Path(script).resolve().relative_to(ROOT)
    except ValueError:
        rel = Path(script)
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KEYS if k in os.environ]
    return " ".join([*env, "python", str(rel), *map(shlex.quote, argv)])


def default_path(name: str) -> Path:
    return RECORDS / f"{name}.json"


class Run:
    """One benchmark run: created when the run starts (date, load, commit), written when it ends.

    ``Run(__file__)`` takes the command from ``sys.argv``; ``write(figures, path)`` adds the end
    time and load and writes the record atomically (a temp file renamed over the old record).
    """

    def __init__(self, script: str | Path, argv: list[str] | None = None):
        self.benchmark = Path(script).stem
        self.command = command_line(script, argv)
        self.date = utc_now()
        self.load_before = load_average()
        self.git = git_state()

    def record(self, figures: Any) -> dict[str, Any]:
        return {"schema": SCHEMA, "benchmark": self.benchmark, "command": self.command,
                "date": self.date, "finished": utc_now(), **self.git, "machine": machine(),
                "load": {"before": self.load_before, "after": load_average()},
                "provenance": "measured", "figures": figures}

    def write(self, figures: Any, path: str | Path | None) -> Path | None:
        """Write the record to ``path`` (None or '': write nothing) and say where on stderr."""
        if path is None or str(path) == "":
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.record(figures), indent=1, sort_keys=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        print(f"record written: {path}  (render the docs: python benchmarks/render_docs.py)", file=sys.stderr)
        return path


def add_record_option(parser) -> None:
    """``--record PATH``: where the run's record goes (default: the mode's ``records/NAME.json``)."""
    parser.add_argument("--record", default=None, metavar="PATH",
                        help="write the run's JSON record here (default: benchmarks/records/<name>.json, "
                             "named after the benchmark and its mode; '' writes none)")


def record_path(option: str | None, name: str) -> Path | None:
    """The ``--record`` value resolved: None = the default for ``name``, '' = no record."""
    if option is None:
        return default_path(name)
    return Path(option) if option else None
