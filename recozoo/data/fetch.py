"""Download public MovieLens archives into the data home, verified and atomic.

``fetch("ml-1m", data_home)`` streams the zip to a temp file beside the
target (a rich progress bar on stderr), checks its size against the server's
Content-Length, its checksum, and the zip's own CRCs, then extracts into a
temp folder and renames it to ``data_home/raw/<name>/``. An interrupted or
corrupt download never leaves a half-written folder behind, and a finished
one is not fetched again.

Checksums: GroupLens publishes an MD5 next to each frozen release
(``ml-100k.zip.md5`` ...); those values are recorded below and checked. No
SHA-256 is published and none could be confirmed from an independent source,
so ``sha256`` is ``None`` rather than a value computed here (a value we
computed ourselves would only prove that we downloaded *something*). The
``ml-latest*`` archives are re-issued from time to time, so they carry no
checksum at all: they are verified by size and zip integrity only. A source
passed in ``sources=`` may carry a SHA-256, which is then checked too.

The Netflix Prize data cannot be downloaded by recozoo: see
:data:`NETFLIX_HOWTO`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from recozoo.errors import DataError, DatasetNotFound

__all__ = ["Source", "SOURCES", "NETFLIX_HOWTO", "fetch", "is_fetched"]

_BASE = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Source:
    """Where an archive lives and what it must hash to (``None``: not published)."""

    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    description: str = ""


SOURCES: dict[str, Source] = {
    "ml-100k": Source(_BASE + "ml-100k.zip", md5="0e33842e24a9c977be4e0107933c0723",
                      description="100,000 ratings, 943 users, 1,682 movies (1998), folds u1-u5/ua/ub"),
    "ml-1m": Source(_BASE + "ml-1m.zip", md5="c4d9eecfca2ab87c1945afe126590906",
                    description="1M ratings, 6,040 users, 3,706 movies (2003)"),
    "ml-10m": Source(_BASE + "ml-10m.zip", md5="ce571fd55effeba0271552578f2648bd",
                     description="10M ratings, 69,878 users, 10,677 movies (2009)"),
    "ml-20m": Source(_BASE + "ml-20m.zip", md5="cd245b17a1ae2cc31bb14903e1204af3",
                     description="20M ratings, 138,493 users, 26,744 movies (2015)"),
    "ml-25m": Source(_BASE + "ml-25m.zip", md5="6b51fb2759a8657d3bfcbfc42b592ada",
                     description="25M ratings, 162,541 users, 59,047 movies (2019)"),
    "ml-latest-small": Source(_BASE + "ml-latest-small.zip",
                              description="~100K ratings, re-issued over time (no fixed checksum)"),
    "ml-latest": Source(_BASE + "ml-latest.zip",
                        description="the full latest release, re-issued over time (no fixed checksum)"),
}

NETFLIX_HOWTO = """\
The Netflix Prize data cannot be downloaded by recozoo: Netflix withdrew it
after the competition and no official download exists. The copies researchers
use are the archived original (nf_prize_dataset.tar.gz, with
download/training_set.tar inside) on Academic Torrents, and the re-packed
"Netflix Prize data" set on Kaggle (combined_data_1.txt ... combined_data_4.txt).
Obtain one under its terms, then point recozoo at it — any of these works,
nothing needs extracting:

  recozoo data prepare netflix-3m --source PATH/nf_prize_dataset.tar.gz
  recozoo data prepare netflix-3m --source PATH/training_set.tar
  recozoo data prepare netflix-3m --source PATH/training_set/       (mv_*.txt)
  recozoo data prepare netflix-3m --source PATH/                    (combined_data_*.txt)

(netflix-6m, netflix-1y and netflix-full are prepared from the same source.)
"""

_DONE = ".fetched"


def is_fetched(name: str, data_home: str | Path) -> bool:
    return (Path(data_home) / "raw" / name / _DONE).is_file()


def _bar(name: str, enabled: bool):
    """A rich download bar on stderr (or nothing)."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    return Progress(TextColumn(f"[bold]{name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def _download(src: Source, name: str, dst, progress, timeout: float) -> tuple[int, dict]:
    """Stream ``src.url`` into the open file ``dst``; return (bytes, hex digests)."""
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    req = urllib.request.Request(src.url, headers={"User-Agent": "recozoo"})
    got = 0
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else src.size
            bar = _bar(name, progress is True)
            callback: Callable[[int, int | None], None] | None = progress if callable(progress) else None
            task = None
            if bar is not None:
                bar.start()
                task = bar.add_task("download", total=total)
            try:
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    dst.write(block)
                    for h in hashes.values():
                        h.update(block)
                    got += len(block)
                    if bar is not None:
                        bar.update(task, completed=got)
                    if callback is not None:
                        callback(got, total)
            finally:
                if bar is not None:
                    bar.stop()
    except http.client.IncompleteRead as e:
        raise DataError(f"download truncated: got {got + len(e.partial)} bytes, expected "
                        f"{got + len(e.partial) + (e.expected or 0)}", path=src.url) from None
    except urllib.error.HTTPError as e:
        raise DataError(f"download failed: HTTP {e.code} {e.reason}", path=src.url) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"download failed ({type(e).__name__}: {reason})", path=src.url) from None
    if total is not None and got != total:
        raise DataError(f"download truncated: got {got} bytes, expected {total}", path=src.url)
    return got, {k: h.hexdigest() for k, h in hashes.items()}


def _extract(zip_path: Path, into: Path, label: str) -> None:
    """Test every member's CRC, refuse paths that escape ``into``, then extract."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            bad = z.testzip()
            if bad is not None:
                raise DataError(f"corrupt archive: member {bad!r} fails its CRC check", path=label)
            root = into.resolve()
            files = {m.filename.rstrip("/") for m in z.infolist() if not m.is_dir()}
            for m in z.infolist():
                target = (into / m.filename).resolve()
                if target != root and root not in target.parents:
                    raise DataError(f"archive member {m.filename!r} would land outside the folder",
                                    path=label)
                parts = m.filename.rstrip("/").split("/")
                under = next(("/".join(parts[:k]) for k in range(1, len(parts))
                              if "/".join(parts[:k]) in files), None)
                if under is not None:
                    raise DataError(f"archive member {m.filename!r} sits under {under!r}, which the "
                                    "archive holds as a file", path=label)
            z.extractall(into)
    except zipfile.BadZipFile as e:
        raise DataError(f"not a valid zip archive ({e})", path=label) from None
    except OSError as e:   # a name the file system refuses, a full disk
        raise DataError(f"cannot extract the archive ({type(e).__name__}: {e.strerror or e})",
                        path=label) from None


def fetch(name: str, data_home: str | Path, progress: bool | Callable[[int, int | None], None] = True,
          *, sources: Mapping[str, Source] | None = None, force: bool = False,
          timeout: float = 60.0) -> Path:
    """Download and extract archive ``name`` into ``data_home/raw/<name>/``; return that folder.

    ``progress``: ``True`` for a rich bar on stderr, ``False`` for silence, or
    a ``callback(bytes_done, bytes_total_or_None)``. Already fetched: returns
    at once (``force`` re-downloads). Any failure is a one-line
    :class:`DataError` and leaves no partial files.
    """
    sources = SOURCES if sources is None else sources
    if name not in sources:
        if name.startswith("netflix"):
            raise DatasetNotFound(" ".join(NETFLIX_HOWTO.split()))
        raise DatasetNotFound(f"unknown download {name!r} (known: {', '.join(sorted(sources))})")
    src = sources[name]
    raw = Path(data_home).expanduser() / "raw"
    final = raw / name
    if not force and (final / _DONE).is_file():
        return final
    raw.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.part", dir=raw)
    tmp_dir = None
    try:
        with os.fdopen(fd, "wb") as f:
            size, digests = _download(src, name, f, progress, timeout)
        for algo in ("sha256", "md5"):
            want = getattr(src, algo)
            if want and digests[algo] != want.lower():
                raise DataError(f"{algo.upper()} mismatch: got {digests[algo]}, expected {want} "
                                f"(corrupt or changed download; nothing was kept)", path=src.url)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=raw))
        _extract(Path(part), tmp_dir, src.url)
        (tmp_dir / _DONE).write_text(f"{src.url}\nsha256 {digests['sha256']}\nbytes {size}\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_dir, final)
        tmp_dir = None
    finally:
        try:
            os.unlink(part)
        except OSError:
            pass
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if progress is True:
        sys.stderr.flush()
    return final
