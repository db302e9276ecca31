"""Where and how the engine computes: device, precision, and the process group.

* Devices come from :func:`recozoo.devices.resolve_device` (``auto|cpu|cuda|cuda:N|mps``).
* Precision ``fp32|bf16|fp16``: autocast on CUDA (fp16 adds a gradient scaler),
  bf16 autocast on CPU too (this kind of CPU has AVX512-BF16). Parameters and
  optimiser state stay fp32 either way, so a bf16 run is mixed precision, not a
  bf16 model.
* Distributed: launched under ``torchrun`` (``WORLD_SIZE`` > 1 in the
  environment) the engine joins a process group — gloo on CPU, nccl on CUDA —
  and wraps the module in DistributedDataParallel. Each rank takes a shard of
  every global batch (see :mod:`recozoo.engine.trainer`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from recozoo.devices import resolve_device
from recozoo.errors import SettingsError

__all__ = ["Runtime", "autocast_context", "dist_env"]


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return rank, world, local


@dataclass
class Runtime:
    device: torch.device
    precision: str
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @classmethod
    def create(cls, device: str = "cpu", precision: str = "fp32") -> "Runtime":
        rank, world, local = dist_env()
        dev = resolve_device(device)
        if world > 1 and dev == "cuda":
            dev = f"cuda:{local}"
        dev_t = torch.device(dev)
        if precision not in ("fp32", "bf16", "fp16"):
            raise SettingsError(f"precision {precision!r}: expected fp32, bf16 or fp16")
        if precision == "fp16" and dev_t.type == "cpu":
            raise SettingsError("precision fp16 needs a CUDA or MPS device; use bf16 on CPU")
        owns = False
        if world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                backend = "nccl" if dev_t.type == "cuda" else "gloo"
                if dev_t.type == "cuda":
                    torch.cuda.set_device(dev_t)
                dist.init_process_group(backend=backend)
                owns = True
            rank, world = dist.get_rank(), dist.get_world_size()
        return cls(dev_t, precision, rank, world, owns)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return autocast_context(self.device, self.precision)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (identity in one process)."""
        if self.distributed:
            import torch.distributed as dist
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        """Tear down the process group this runtime created, once no wrapper holds it and every rank is here.

        Why: a DDP wrapper lives in reference cycles that keep the group (and
        its C++ threads) alive past ``destroy_process_group``; freed later, at
        interpreter exit, a rank could abort ("terminate called without an
        active exception"). Collecting, then a barrier, prevents it (measurements
        in docs/history.md).
        """
        if self.owns_group:
            import gc

            import torch.distributed as dist
            gc.collect()      # a DDP wrapper sits in reference cycles that hold the group's threads
            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
