"""Progress and per-epoch logging, decoupled from any terminal.

Models and the training engine talk to a :class:`Reporter`; the library default
is silent (:class:`NullReporter`), the CLI passes a rich progress bar on stderr
(:class:`RichReporter`), and a run directory adds a JSONL metrics log. Nothing
here writes to stdout, so ``--json`` output stays clean.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from recozoo.io import json_default

__all__ = ["Reporter", "NullReporter", "StderrReporter", "RichReporter", "JsonlLog"]


class Reporter:
    """Interface: a task with a total, advanced with optional live figures."""

    def start(self, description: str, total: float | None = None) -> None:
        """Begin a (sub)task, e.g. one epoch over ``total`` rows."""

    def advance(self, n: float = 1, **figures: Any) -> None:
        """``n`` more units done; ``figures`` (e.g. ``rmse=0.93``) shown beside the bar."""

    def finish(self) -> None:
        """The current task is done."""

    def log(self, record: dict[str, Any]) -> None:
        """One structured record (e.g. an epoch's metrics)."""

    def message(self, text: str) -> None:
        """A human line (stderr in the CLI)."""

    def close(self) -> None:
        """Stop any live display (the CLI calls it once the command is done)."""


class NullReporter(Reporter):
    """Reports nothing (the library default)."""


class StderrReporter(Reporter):
    """Human lines straight to stderr, each after ``prefix``: what a worker process reports with
    (a live display belongs to the parent's console, which a worker does not share)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def message(self, text: str) -> None:
        sys.stderr.write(self.prefix + text + "\n")
        sys.stderr.flush()


class JsonlLog:
    """Appends one JSON object per line; flushed after each record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=json_default) + "\n")


class RichReporter(Reporter):
    """A rich progress bar on stderr; records go to an optional :class:`JsonlLog`."""

    def __init__(self, log: JsonlLog | None = None, *, enabled: bool = True, console=None):
        from rich.console import Console
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.jsonl = log
        self._progress = None
        self._task = None
        self._t0 = None

    def _ensure(self):
        if self._progress is None and self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                      TextColumn("{task.fields[figures]}"), console=self.console,
                                      transient=False)
            self._progress.start()

    def start(self, description: str, total: float | None = None) -> None:
        self._ensure()
        self._t0 = time.perf_counter()
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=total, figures="")

    def advance(self, n: float = 1, **figures: Any) -> None:
        if self._progress is not None and self._task is not None:
            fig = "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
            self._progress.update(self._task, advance=n, figures=fig)

    def finish(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.stop_task(self._task)

    def log(self, record: dict[str, Any]) -> None:
        if self.jsonl is not None:
            self.jsonl.write(record)

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
