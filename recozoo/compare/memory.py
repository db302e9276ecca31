"""Peak memory of one fit, measured in-process without psutil.

Linux: before the fit we collect garbage, hand freed heap back to the OS
(``malloc_trim``), read the resident size (``VmRSS``) and reset the process's
peak-RSS mark by writing ``5`` to ``/proc/self/clear_refs``; after the fit
``VmHWM`` in ``/proc/self/status`` is the highest resident size reached *during
that fit*. ``peak_mb`` is that mark; ``delta_mb`` = peak - RSS before, the
memory the fit itself added (the split, loaded once and shared, is in the
baseline, not in the delta). Measuring in-process keeps the one split object
shared by every model; the cost is that memory a previous fit freed but the
allocator kept can hide part of a later fit's growth (``malloc_trim`` limits
that).

Elsewhere (no writable ``clear_refs``) we fall back to ``ru_maxrss``, the
lifetime peak: its delta only shows growth beyond every earlier fit, and the
record says ``method: "ru_maxrss"``.

On a CUDA device the accelerator's memory is not in the RSS: torch's peak
allocation counter is reset before the fit and read after it (``gpu_peak_mb``,
memory held by tensors, not the caching allocator's reserve).
"""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import sys
from pathlib import Path

__all__ = ["PeakMemory"]

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _trim() -> None:
    """Free what earlier fits left, so the RSS read next is this process's live size.

    The collection is followed by ``gc.freeze()``: every object alive now (imported modules,
    the shared split, earlier results) moves to the permanent generation, so the next fit's
    collection walks only what was made since. Without it each call walked torch's and numba's
    whole object graph once torch was loaded (0.12-0.15 s a fit, 1.8 s of a 12-fit comparison of
    sub-second models). Garbage is found as before: what a fit leaves becomes unreachable after
    the freeze that preceded it."""
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _maxrss_kb() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r   # bytes on macOS, KiB on Linux


def _cuda(device: str):
    if not str(device).startswith("cuda"):
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch.cuda if torch.cuda.is_available() else None


class PeakMemory:
    """``with PeakMemory(device) as pm: fit()`` then ``pm.result()``."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.gpu_peak_kb: int | None = None

    def __enter__(self) -> "PeakMemory":
        _trim()
        cuda = _cuda(self.device)
        if cuda is not None:
            cuda.synchronize()
            cuda.reset_peak_memory_stats()
        self.method = "VmHWM"
        self.before_kb = _status_kb("VmRSS")
        try:
            _CLEAR.write_text("5")
        except OSError:
            self.method = "ru_maxrss"
        if self.before_kb is None:
            self.method = "ru_maxrss"
        if self.method == "ru_maxrss":
            self.before_kb = _maxrss_kb()
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_kb("VmHWM") if self.method == "VmHWM" else _maxrss_kb()
        self.peak_kb = peak if peak is not None else self.before_kb
        cuda = _cuda(self.device)
        if cuda is not None:
            cuda.synchronize()
            self.gpu_peak_kb = int(cuda.max_memory_allocated()) // 1024

    def result(self) -> dict:
        out = {"method": self.method, "peak_mb": round(self.peak_kb / 1024, 1),
               "delta_mb": round(max(self.peak_kb - self.before_kb, 0) / 1024, 1),
               "before_mb": round(self.before_kb / 1024, 1)}
        if self.gpu_peak_kb is not None:
            out["gpu_peak_mb"] = round(self.gpu_peak_kb / 1024, 1)
        return out
