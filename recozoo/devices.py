"""Device names: ``auto|cpu|cuda|cuda:N|mps`` -> a concrete torch device string.

Resolved once, up front, so a request for a device this machine lacks is a
one-line error before any data is loaded.
"""

from __future__ import annotations

import re

from recozoo.errors import SettingsError

__all__ = ["resolve_device", "check_device_name", "require_device"]


def check_device_name(name: str) -> str:
    """Normalise and check the form of a device name, without importing torch."""
    name = (name or "auto").strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise SettingsError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return name


def require_device(name: str) -> str:
    """Check, before anything else happens, that a named device exists here; return the name.

    ``auto`` and ``cpu`` always pass, without importing torch (a torch-free model's fit stays
    light); ``cuda``, ``cuda:N`` and ``mps`` import torch and fail with one line when absent —
    before a run directory is written or data is loaded, whichever model asked.
    """
    name = check_device_name(name)
    if name not in ("auto", "cpu"):
        resolve_device(name)
    return name


def resolve_device(name: str = "auto") -> str:
    name = check_device_name(name)
    if name == "cpu":
        return "cpu"
    import torch
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SettingsError(f"--device {name}: CUDA is not available on this machine")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise SettingsError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return name
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise SettingsError("--device mps: MPS is not available on this machine")
    return "mps"
