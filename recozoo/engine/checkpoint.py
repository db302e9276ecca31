"""Atomic torch checkpoints in a run directory.

``last.pt`` is rewritten after every epoch (module, optimiser, scheduler, grad
scaler, RNG states, epoch, best-so-far, history); ``best.pt`` holds the module
weights of the best epoch on VALID. Both go through a temp file and a rename
(:func:`recozoo.io.atomic_open`), so a run killed mid-write
leaves the previous checkpoint intact and ``resume`` always finds a whole file.

torch is imported by the functions that read or write tensors, not with the module:
:func:`check_signature` also serves TimeSVD++, whose numpy checkpoints load without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from recozoo.errors import CheckpointError
from recozoo.io import atomic_open

if TYPE_CHECKING:
    import torch

__all__ = ["save_checkpoint", "load_checkpoint", "check_signature", "rng_state", "LAST", "BEST"]

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``state`` streamed into a temp file renamed over ``path``. Why streamed: serialising to a
    bytes buffer first held the checkpoint twice more in memory (the buffer and its copy), which
    was the peak of a whole DeepRec fit (docs/reliability.md, "Memory")."""
    import torch
    with atomic_open(Path(path)) as f:
        torch.save(state, f)


def load_checkpoint(path: Path, required: dict[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:
    """The checkpoint at ``path`` (a dict; tensors only, never pickled code).

    ``required``: keys the checkpoint must hold and the type of each; a missing or
    wrong-typed one is a one-line :class:`CheckpointError` naming it (a hand-edited or
    foreign file must not end in a KeyError or TypeError deep in a resume).
    """
    import torch
    path = Path(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: not a recozoo checkpoint (holds a {type(ck).__name__}, not a dict)")
    for key, types in (required or {}).items():
        if key not in ck:
            raise CheckpointError(f"{path}: checkpoint has no {key!r}")
        if not isinstance(ck[key], types) or isinstance(ck[key], bool):
            raise CheckpointError(f"{path}: checkpoint field {key!r} has the wrong type ({type(ck[key]).__name__})")
    return ck


def rng_state(ck: dict[str, Any], rank: int, path: Path) -> torch.Tensor:
    """The RNG state a resuming rank restores (its own, or rank 0's when the world grew), checked."""
    import torch
    states = ck["rng"]
    if not states or not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in states):
        raise CheckpointError(f"{path}: checkpoint field 'rng' must be a list of byte tensors")
    return states[rank] if rank < len(states) else states[0]


def check_signature(ck: dict[str, Any], signature: dict[str, Any], path: Path) -> None:
    """A checkpoint resumes only the run it was made for: every fact both record must agree.

    ``signature`` holds what the run must share with the checkpoint (model name,
    matrix shape, settings); a mismatch is a one-line :class:`CheckpointError`.
    """
    old = ck.get("signature", {})
    if not isinstance(old, dict):
        raise CheckpointError(f"{path}: written by another recozoo version; remove it or use another --out")
    for k, v in signature.items():
        if k in old and old[k] != v:
            raise CheckpointError(f"{path}: checkpoint has {k}={old[k]}, this run has {k}={v} "
                                  f"(another data set or model?)")
