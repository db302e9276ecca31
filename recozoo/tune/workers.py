"""``recozoo tune --jobs N``: N worker processes sharing one study through its database.

Why processes on the study's storage (and not threads): a trial is a model fit
holding the interpreter and BLAS/torch threads; processes that each open the
study run trials side by side, and the storage (SQLite file or a server) is
the only thing they share — the same mechanism that lets several machines
work on one ``--storage`` study. The processes are :class:`recozoo.fanout.ProcessFanout`'s
(the one local pool of recozoo, the one ``compare --jobs`` uses): spawned, killed
with their parent, each with ``cores // N`` compute threads (torch, BLAS,
numba; :func:`recozoo.fanout.pin_threads`) so workers × threads ≤ cores. One
fan-out job is one worker's whole share of the study; worker ``i`` samples
with TPE seeded ``seed + i`` (a sequence that depends on the workers'
interleaving: only ``--jobs 1`` repeats trial for trial).
"""

from __future__ import annotations

from recozoo.errors import RecozooError
from recozoo.progress import StderrReporter

__all__ = ["run_workers"]


def run_workers(cfg, split, seconds: float | None) -> None:
    """Run ``cfg.jobs`` workers to the study's end (trials or budget); the first worker error is raised.
    ``split``: the ready split, or None (each worker loads ``cfg.dataset`` itself)."""
    from recozoo.fanout import ProcessFanout
    with ProcessFanout(cfg.jobs) as fan:
        errors = fan.map(_worker, range(cfg.jobs), shared=(cfg, split, seconds),
                         labels=[f"tune worker {i}" for i in range(cfg.jobs)])
    first = next((e for e in errors if e), None)
    if first:
        raise RecozooError(first)


def _worker(shared, index: int) -> str | None:
    """Worker ``index``'s trials; returns its error line (exceptions may not pickle) or None."""
    from recozoo.tune.trials import run_worker
    cfg, split, seconds = shared
    try:
        run_worker(cfg, index, split=split, reporter=StderrReporter(), seconds=seconds)
    except RecozooError as e:
        return str(e)
    return None
