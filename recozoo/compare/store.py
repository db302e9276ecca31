"""The results store: ``results.jsonl`` in the comparison's output folder.

One JSON record per finished model x seed (config, versions, seed, metrics,
timings, memory, machine). Records are only ever appended, each as a single
``write`` of one line followed by ``fsync``, so a run killed at any moment
leaves every earlier record intact; at worst the last line is torn, and a torn
tail is cut off before the next append. A later record for the same key
(model, seed, config hash) supersedes an earlier one.

Beside it, ``compare.json`` (written atomically) describes the latest
comparison — dataset, model order, seeds, metrics, config hash per model — so
``recozoo leaderboard DIR`` knows which records make up the table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from recozoo.errors import DataError
from recozoo.io import atomic_write_json, json_default

__all__ = ["ResultsStore", "RESULTS_FILE", "MANIFEST_FILE", "record_key"]

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "compare.json"


def record_key(rec: dict[str, Any]) -> tuple[str, int, str]:
    return rec["model"], int(rec["seed"]), rec["config_hash"]


class ResultsStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE
        self.manifest_path = self.folder / MANIFEST_FILE

    # ------------------------------------------------------------------ reading
    def records(self) -> list[dict[str, Any]]:
        """All whole records in file order (a torn last line is ignored)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if n == len(lines):      # torn tail of an interrupted append: not a record
                    continue
                raise DataError("not a JSON record (edited by hand?)", path=self.path, line=n) from None
            if not isinstance(rec, dict) or not {"model", "seed", "config_hash"} <= set(rec):
                raise DataError("record lacks model/seed/config_hash", path=self.path, line=n)
            out.append(rec)
        return out

    def latest(self) -> dict[tuple[str, int, str], dict[str, Any]]:
        """Key -> the last record written for it."""
        out: dict[tuple[str, int, str], dict[str, Any]] = {}
        for rec in self.records():
            out[record_key(rec)] = rec
        return out

    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except ValueError as e:
            raise DataError(f"unreadable ({e})", path=self.manifest_path) from None

    # ------------------------------------------------------------------ writing
    def _repair_tail(self) -> None:
        """Cut a torn last line so the next record starts on a line of its own."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        line = (json.dumps(record, default=json_default, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.append(r)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)
