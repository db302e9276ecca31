"""Where ``recozoo fit`` writes: never over another run, never half a run.

A run directory is either a whole run (``summary.json`` is written last), an
interrupted one that ``--resume`` continues (``config.json`` and ``last.pt``), or
absent. So:

* ``--out`` that is absent or empty: the fit writes there; if it fails, the folder
  goes (an interruption that left a checkpoint keeps it, for ``--resume``);
* ``--out`` that holds anything: refused, unless ``--resume`` (continue that run)
  or ``--force`` on a run directory — then the new run is written to a hidden
  sibling folder and swapped in only once it is whole: the old run stays intact
  until then, and stays intact if the new fit fails;
* under ``torchrun`` only rank 0 decides and cleans up (the other ranks write no
  files but their ``rank-N.log``), and ``--force`` is refused: every rank must
  agree on one folder.

Library use: :func:`writing_run` around :func:`recozoo.runs.fit_run`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from recozoo.errors import RecozooError
from recozoo.io import atomic_write_json

__all__ = ["RunDir", "writing_run", "process_rank"]


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process under ``torchrun`` — (0, 1) otherwise — read from the
    environment, without importing torch (the CLI asks before anything is loaded)."""
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)


def _describe(out: Path) -> str:
    """What ``out`` holds, in words, for the refusal."""
    try:
        cfg = json.loads((out / "config.json").read_text())
        return f"already holds a {cfg.get('model')} run on {cfg.get('dataset')}"
    except (OSError, ValueError, AttributeError):
        return "is not empty"


class RunDir:
    """One fit's claim on ``--out``: :attr:`path` is where the fit writes; :meth:`commit` makes it ``out``."""

    def __init__(self, out: str | Path, *, force: bool = False, resume: bool = False):
        self.out = Path(out)
        self.path = self.out
        self._staged = False
        self._created = False
        if force and resume:
            raise RecozooError("--force starts a new run; --resume continues one: give one of them")
        rank, world = process_rank()
        if rank != 0 or resume:         # resume: the run is continued in place (fit_run checks it)
            return
        if self.out.exists() and not self.out.is_dir():
            raise RecozooError(f"--out {self.out}: a file, not a folder")
        if not self.out.exists() or not any(self.out.iterdir()):
            self._created = True
            return
        if not force:
            raise RecozooError(f"--out {self.out} {_describe(self.out)}: give another --out, --resume to "
                               "continue it, or --force to replace it")
        if not (self.out / "config.json").is_file():
            raise RecozooError(f"--out {self.out} is not empty and holds no run (no config.json): "
                               "refusing to replace it; give another --out")
        if world > 1:
            raise RecozooError("--force under torchrun: give a new --out (every rank must write to one folder)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.new-", dir=self.out.parent))
        self._staged = True

    def commit(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The fit succeeded: a staged run replaces the old one (which is removed); the summary
        (returned and in ``summary.json``) names ``out``."""
        if not self._staged:
            return summary
        old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
        os.replace(self.out, old / "run")
        os.replace(self.path, self.out)
        shutil.rmtree(old, ignore_errors=True)
        self._staged = False
        summary = {**summary, "run_dir": str(self.out)}
        if (self.out / "summary.json").is_file():
            atomic_write_json(self.out / "summary.json", summary)
        return summary

    def abandon(self, error: BaseException) -> None:
        """The fit failed: remove what it wrote (a staged folder, or the folder it created), except an
        interrupted run with a checkpoint to resume from."""
        if self._staged:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self._created and self.path.exists():
            if isinstance(error, KeyboardInterrupt) and any(self.path.glob("last.pt")):
                return
            shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def writing_run(out: str | Path, *, force: bool = False, resume: bool = False) -> Iterator[RunDir]:
    """``with writing_run(out) as rd: summary = rd.commit(fit_run(cfg, rd.path))`` — see the module."""
    rd = RunDir(out, force=force, resume=resume)
    try:
        yield rd
    except BaseException as e:
        rd.abandon(e)
        raise
