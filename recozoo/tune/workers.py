"""``recozoo tune --jobs N``: N worker processes sharing one study through its database.

Why processes on the study's storage (and not threads): a trial is a model fit
holding the interpreter and BLAS/torch threads; processes that each open the
study run trials side by side, and the storage (SQLite file or a server) is
the only thing they share — the same mechanism that lets several machines
work on one ``--storage`` study. Each worker gets ``cores // N`` compute
threads (torch, BLAS, numba), so workers × threads ≤ cores, and samples with
TPE seeded ``seed + worker`` (a sequence that depends on the workers'
interleaving: only ``--jobs 1`` repeats trial for trial).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from recozoo.errors import RecozooError
from recozoo.progress import Reporter

__all__ = ["run_workers", "THREAD_VARS"]

#: the environment variables that size a process's compute thread pools
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def run_workers(cfg, split, seconds: float | None) -> None:
    """Run ``cfg.jobs`` workers to the study's end (trials or budget); the first worker error is raised."""
    threads = max(1, (os.cpu_count() or 1) // cfg.jobs)
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})     # inherited by the spawned workers
    try:
        with ProcessPoolExecutor(cfg.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_worker, cfg, i, split, seconds) for i in range(cfg.jobs)]
            errors = [f.result() for f in futures]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    first = next((e for e in errors if e), None)
    if first:
        raise RecozooError(first)


class _Stderr(Reporter):
    """A worker's progress lines, straight to stderr (the parent's console is not shared)."""

    def message(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _worker(cfg, index: int, split, seconds: float | None) -> str | None:
    """One worker's trials; returns its error line (exceptions may not pickle) or None."""
    from recozoo.tune.trials import run_worker      # (torch, BLAS, numba read THREAD_VARS when they load)
    try:
        run_worker(cfg, index, split=split, reporter=_Stderr(), seconds=seconds)
    except RecozooError as e:
        return str(e)
    return None
