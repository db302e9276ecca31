"""DistributedDataParallel on CPU: two gloo processes follow the one-process trajectory.

Each rank takes half of every global batch; the engine all-reduces the rating
count and DDP averages gradients, so with no dropout/noise (no per-rank
randomness) the per-epoch training/validation RMSE and the final weights match a
single process with the same global batch up to float summation order.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

#: DeepRec's fixed pre-"auto" defaults written out (tests/_torch_small.DEEPREC_FIXED; spawned workers
#: import this module without the tests folder's helpers first)
SETTINGS = {"mode": "user", "activation": "selu", "weight_decay": 0.0, "eval_every": 1, "patience": 0,
            "baseline": "none", "layers": "16,8", "epochs": 2, "batch_size": 60, "optimizer": "momentum",
            "lr": 0.02, "dropout": 0.0, "noise": 0.0, "refeed": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit(run_dir=None):
    from _torch_small import small_split
    from recozoo.models.deeprec import DeepRec
    split = small_split()
    return DeepRec(SETTINGS, seed=1).fit(split.train, split.valid, run_dir=run_dir)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "GLOO_SOCKET_IFNAME": "lo"})
    torch.set_num_threads(1)
    m = _fit(run_dir=os.path.join(out, "run"))
    if rank == 0:
        torch.save({"weights": m.net_.state_dict(), "history": m.history_}, os.path.join(out, "ddp.pt"))


def test_two_process_gloo_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for k in ("WORLD_SIZE", "RANK"):
        assert k not in os.environ
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = _fit()
    finally:
        torch.set_num_threads(old)
    for a, b in zip(got["history"], ref.history_):
        assert a["train_rmse"] == pytest.approx(b["train_rmse"], rel=1e-5)
        assert a["valid_rmse"] == pytest.approx(b["valid_rmse"], rel=1e-5)
    w = ref.net_.state_dict()
    for k, v in got["weights"].items():
        assert torch.allclose(v, w[k], rtol=1e-4, atol=1e-6), k
    assert (tmp_path / "run" / "last.pt").exists()
    assert np.isfinite(got["history"][-1]["valid_rmse"])
