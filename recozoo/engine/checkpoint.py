"""Atomic torch checkpoints in a run directory.

``last.pt`` is rewritten after every epoch (module, optimiser, scheduler, grad
scaler, RNG states, epoch, best-so-far, history); ``best.pt`` holds the module
weights of the best epoch on VALID. Both go through a temp file and a rename
(:func:`recozoo.models.base.atomic_write_bytes`), so a run killed mid-write
leaves the previous checkpoint intact and ``resume`` always finds a whole file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from recozoo.errors import CheckpointError

__all__ = ["save_checkpoint", "load_checkpoint", "LAST", "BEST"]

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from recozoo.models.base import atomic_write_bytes
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
