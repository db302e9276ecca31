"""LazySGD equals torch.optim.SGD on the densified gradients, and the sparse kernels equal the dense maths."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import recozoo.engine.trainer as trainer_module
from recozoo.engine import EngineConfig, Loss, RowMatrix, Trainer
from recozoo.engine.lazy_sgd import LazySGD
from recozoo.engine.sparse_ops import CompactPattern, csr_matmul, sampled_dot
from recozoo.models.autoencoder import AutoencoderNet, AutoencoderTask

from _torch_small import one_thread, small_split

_threads = pytest.fixture(autouse=True)(one_thread)


def _sparse_rows(rows: np.ndarray, values: torch.Tensor, n: int) -> torch.Tensor:
    idx = torch.as_tensor(rows, dtype=torch.int64)[None, :]
    return torch.sparse_coo_tensor(idx, values, (n, values.shape[1]), check_invariants=True)


def _lazy_and_reference(w0: torch.Tensor, **hp):
    """Two copies of ``w0`` as parameters, one under LazySGD, one under torch.optim.SGD (same ``hp``)."""
    lazy_p, ref_p = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    return lazy_p, ref_p, LazySGD([lazy_p], **hp), torch.optim.SGD([ref_p], **hp)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       wd=st.sampled_from([0.0, 0.01]), steps=st.integers(1, 25),
       lr_change=st.integers(0, 25), flush_at=st.integers(0, 25))
def test_lazy_equals_dense_sgd(seed, momentum, wd, steps, lr_change, flush_at):
    rng = np.random.default_rng(seed)
    n, d = 12, 3
    w0 = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    lazy_p, ref_p, lazy, ref = _lazy_and_reference(w0, lr=0.1, momentum=momentum, weight_decay=wd)
    for t in range(steps):
        if t == lr_change:                       # a schedule step between two optimiser steps
            for o in (lazy, ref):
                o.param_groups[0]["lr"] = 0.05
        if rng.random() < 0.25:                  # a dense step (DeepRec's re-feeding step)
            g = torch.as_tensor(rng.normal(size=(n, d)))
            lazy_p.grad = g.clone()
        else:                                    # a row-sparse step, duplicates allowed (tied weights)
            rows = rng.integers(0, n, size=rng.integers(1, 6))
            vals = torch.as_tensor(rng.normal(size=(rows.size, d)))
            lazy_p.grad = _sparse_rows(rows, vals, n)
            g = lazy_p.grad.to_dense()
        ref_p.grad = g
        lazy.step()
        ref.step()
        if t == flush_at:
            lazy.flush()
    lazy.flush()
    assert torch.allclose(lazy_p.data, ref_p.data, rtol=1e-9, atol=1e-10)
    if momentum:
        assert torch.allclose(lazy.state[lazy_p]["momentum_buffer"], ref.state[ref_p]["momentum_buffer"],
                              rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("path", ["kernel", "torch-ops"])
def test_rows_idle_for_many_steps_catch_up_exactly(path, monkeypatch):
    """Rows untouched for hundreds of steps (past the 64-entry start of the M^k table), a schedule
    change and a state round trip into a new optimiser in between: still torch.optim.SGD's trajectory.
    The torch-ops path (CUDA's) looks M^k up with a bound kept on the host; a bound that is too small
    or stale after loading a state would index past the table or pick wrong powers."""
    if path == "torch-ops":
        monkeypatch.setattr(LazySGD, "_kernel_ok", staticmethod(lambda p: False))
    n, d = 40, 3
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    lazy_p, ref_p, lazy, ref = _lazy_and_reference(w0, lr=0.05, momentum=0.9, weight_decay=0.01)
    rng = np.random.default_rng(3)
    for t in range(400):
        if t == 150:                              # a checkpoint: state into a new optimiser
            state = copy.deepcopy(lazy.state_dict())
            lazy = LazySGD([lazy_p], lr=0.05, momentum=0.9, weight_decay=0.01)
            lazy.load_state_dict(state)
        if t == 250:
            for o in (lazy, ref):
                o.param_groups[0]["lr"] = 0.02
        # rows 0-4 every step; row 5 + k*7 only every 90th step: idle gaps of 89 steps and more
        rows = np.arange(5) if t % 90 else np.concatenate([np.arange(5), np.arange(5, n, 7)])
        lazy_p.grad = _sparse_rows(rows, torch.randn(rows.size, d, generator=gen, dtype=torch.float64), n)
        ref_p.grad = lazy_p.grad.to_dense()
        lazy.step(), ref.step()
        if rng.random() < 0.05:
            lazy.sync_rows(lazy_p, torch.as_tensor(np.unique(rng.integers(0, n, 6))))
    lazy.flush()
    assert torch.allclose(lazy_p.data, ref_p.data, rtol=1e-9, atol=1e-10)


def test_planned_rows_fold_the_next_sparse_step_into_the_dense_one():
    """next_rows: a dense step also takes the next step's zero-gradient update of the other rows; the
    trajectory stays torch.optim.SGD's, and any use the plan did not foresee is an error."""
    n, d = 30, 4
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    lazy_p, ref_p, lazy, ref = _lazy_and_reference(w0, lr=0.1, momentum=0.9, weight_decay=0.01)
    rng = np.random.default_rng(0)
    sparse = [np.unique(rng.integers(0, n, 8)) for _ in range(6)]
    for t, rows in enumerate(sparse):
        vals = torch.randn(rows.size, d, generator=gen, dtype=torch.float64)
        lazy_p.grad = _sparse_rows(rows, vals, n)
        ref_p.grad = lazy_p.grad.to_dense()
        lazy.step(), ref.step()
        lazy.sync_rows(lazy_p, None)                   # the dense forward reads every row
        g = torch.randn(n, d, generator=gen, dtype=torch.float64)
        lazy_p.grad, ref_p.grad = g.clone(), g.clone()
        nxt = sparse[t + 1] if t + 1 < len(sparse) else None
        lazy.next_rows = {lazy_p: torch.as_tensor(nxt)} if nxt is not None else None
        lazy.step(), ref.step()
        lazy.next_rows = None
        if nxt is not None:                             # every other row already took the next step
            others = np.setdiff1d(np.arange(n), nxt)
            assert bool((lazy.state[lazy_p]["last"][others] == lazy.state[lazy_p]["t"] + 1).all())
            lazy.sync_rows(lazy_p, torch.as_tensor(nxt))
    lazy.flush()
    assert torch.allclose(lazy_p.data, ref_p.data, rtol=1e-12, atol=1e-12)

    def planned_opt():
        p = torch.nn.Parameter(w0.clone())
        o = LazySGD([p], lr=0.1, momentum=0.9)
        p.grad = _sparse_rows(np.array([1, 2]), torch.ones(2, d, dtype=torch.float64), n)
        o.step()
        p.grad = torch.ones(n, d, dtype=torch.float64)
        o.next_rows = {p: torch.tensor([3, 4])}
        o.step()
        o.next_rows = None
        return p, o
    p, o = planned_opt()
    p.grad = _sparse_rows(np.array([3, 5]), torch.ones(2, d, dtype=torch.float64), n)
    with pytest.raises(RuntimeError, match="outside the planned"):
        o.step()
    for misuse in (lambda p, o: o.flush(), lambda p, o: o.sync_rows(p, None)):
        p, o = planned_opt()
        with pytest.raises(RuntimeError, match="planned"):
            misuse(p, o)
    p, o = planned_opt()
    p.grad = torch.ones(n, d, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="planned row-sparse step was due"):
        o.step()


def test_state_dict_flushes_and_round_trips():
    p = torch.nn.Parameter(torch.ones(6, 2))
    opt = LazySGD([p], lr=0.1, momentum=0.9)
    p.grad = _sparse_rows(np.array([1]), torch.ones(1, 2), 6)
    opt.step()
    p.grad = _sparse_rows(np.array([2]), torch.ones(1, 2), 6)
    opt.step()
    before = p.detach().clone()
    sd = opt.state_dict()                        # row 1 owes one momentum-only step
    assert not torch.equal(before[1], p.detach()[1])
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = LazySGD([q], lr=0.1, momentum=0.9)
    opt2.load_state_dict(copy.deepcopy(sd))     # as a checkpoint file would give it back
    assert opt2.state[q]["last"].dtype == torch.int64
    for o, param in ((opt, p), (opt2, q)):
        param.grad = _sparse_rows(np.array([3]), torch.ones(1, 2), 6)
        o.step()
        o.flush()
    assert torch.equal(p.detach(), q.detach())


def test_compact_kernels_equal_gather_maths():
    g = torch.Generator().manual_seed(0)
    n, d, b = 40, 6, 5
    lens = torch.tensor([3, 0, 7, 1, 4])
    offsets = torch.zeros(b + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lens, 0)
    cols = torch.cat([torch.sort(torch.randperm(n, generator=g)[:int(k)]).values for k in lens])
    vals = torch.rand(cols.shape[0], generator=g) * 4 + 1
    rows = torch.repeat_interleave(torch.arange(b), lens)
    w_in = torch.randn(n, d, generator=g, requires_grad=True)
    w_out = torch.randn(n, d, generator=g, requires_grad=True)

    h = torch.tanh(F.embedding_bag(cols, w_in, offsets, mode="sum", per_sample_weights=vals,
                                   include_last_offset=True))
    z_ref = (h[rows] * w_out[cols]).sum(-1)
    ((z_ref - vals) ** 2).sum().backward()
    g_in, g_out = w_in.grad.clone(), w_out.grad.clone()
    w_in.grad = w_out.grad = None

    p = CompactPattern.from_csr(offsets, cols, n)
    assert torch.equal(p.cols_global, torch.unique(cols))
    z = sampled_dot(p, torch.tanh(csr_matmul(p, vals, w_in, True)), w_out, True)
    ((z - vals) ** 2).sum().backward()
    assert w_in.grad.is_sparse and w_in.grad.coalesce().indices().shape[1] == p.n_local
    assert torch.allclose(z, z_ref, atol=1e-5)
    assert torch.allclose(w_in.grad.to_dense(), g_in, atol=1e-4)
    assert torch.allclose(w_out.grad.to_dense(), g_out, atol=1e-4)


class _GatherPathTask(AutoencoderTask):
    """DeepRec's loss through the plain gather path (dense gradients), as before the sparse kernels."""

    def train_losses(self, net, batch):
        pred, y = net("sparse", batch.offsets, batch.cols, batch.vals, batch.row_index(), batch.cols,
                      want_dense=self.refeed > 0)
        yield Loss(((pred - batch.vals) ** 2).sum(), batch.nnz)
        for _ in range(self.refeed):
            out = net("dense", y)
            yield Loss(((out - y) ** 2).sum(), y.numel(), report=False)
            y = out.detach()


@pytest.mark.parametrize("tied,refeed", [(False, 0), (True, 0), (False, 1), (True, 1), (False, 2)])
def test_deeprec_momentum_fit_matches_dense_sgd(tied, refeed, monkeypatch):
    """The engine's path (sparse kernels, row-sparse grads, lazy LazySGD updates, dense re-feeding steps
    in between, an lr milestone inside the run) follows torch.optim.SGD on dense gradients."""
    _lazy_fit_matches_dense_sgd(tied, refeed, monkeypatch)


@pytest.mark.parametrize("tied,refeed", [(True, 0), (False, 1)])
def test_lazy_torch_ops_path_matches_dense_sgd(tied, refeed, monkeypatch):
    """LazySGD's torch-ops path (what runs off the CPU, e.g. on CUDA, where the numba kernels cannot),
    forced on the CPU: the same trajectory as torch.optim.SGD."""
    monkeypatch.setattr(LazySGD, "_kernel_ok", staticmethod(lambda p: False))
    _lazy_fit_matches_dense_sgd(tied, refeed, monkeypatch)


def _lazy_fit_matches_dense_sgd(tied, refeed, monkeypatch):
    rows = RowMatrix.from_table(small_split().train, "user")
    cfg = EngineConfig(epochs=3, batch_size=32, optimizer="momentum", lr=0.01, milestones=(1,), seed=3,
                       weight_decay=0.001, tensorboard=False)

    def build():
        torch.manual_seed(3)
        return AutoencoderNet(rows.n_cols, (16, 8), "selu", tied=tied, dropout=0.0)

    planned = []
    kernel = LazySGD._kernel
    monkeypatch.setattr(LazySGD, "_kernel", lambda self, *a: (planned.append(len(a) == 7 and a[-1] is not None),
                                                              kernel(self, *a))[1])
    lazy_trainer = Trainer(AutoencoderTask(build, refeed=refeed), cfg)
    lazy = lazy_trainer.fit(rows).module
    assert lazy_trainer.row_sparse
    # with re-feeding and an untied decoder the next batch's rows are planned (on the numba path)
    assert any(planned) == (refeed > 0 and not tied and LazySGD._kernel_ok(lazy.w_in))
    monkeypatch.setattr(LazySGD, "_kernel", kernel)

    monkeypatch.setattr(trainer_module, "_make_optimizer",
                        lambda c, params: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum,
                                                          weight_decay=c.weight_decay))
    dense_trainer = Trainer(_GatherPathTask(build, refeed=refeed), cfg)
    dense = dense_trainer.fit(rows).module
    assert not dense_trainer.row_sparse
    for (k, a), (_, b) in zip(lazy.state_dict().items(), dense.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (k, (a - b).abs().max().item())
