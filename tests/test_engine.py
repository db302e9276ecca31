"""The shared training engine: batching, selection, checkpoints, resume, logs, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recozoo.engine import EngineConfig, Loss, RowMatrix, Task, Trainer
from recozoo.engine.checkpoint import BEST, LAST
from recozoo.models.autoencoder import AutoencoderTask
from recozoo.models.deeprec import DeepRec

from _torch_small import DEEPREC_FIXED, interrupt_after, one_thread, small_split

_threads = pytest.fixture(autouse=True)(one_thread)

SETTINGS = {**DEEPREC_FIXED, "layers": "24,12", "epochs": 4, "batch_size": 32, "optimizer": "momentum",
            "lr": 0.01,
            "dropout": 0.5, "noise": 0.1, "refeed": 1}


def test_take_gathers_rows_and_dense_matches_csr():
    t = small_split().train
    rows = RowMatrix.from_table(t, "user")
    pick = np.array([5, 0, 17, 5])
    b = rows.take(pick)
    assert np.array_equal(b.dense().numpy(), t.to_csr()[pick].toarray())
    items = RowMatrix.from_table(t, "item")
    assert np.array_equal(items.take(np.array([3, 1])).dense().numpy(), t.to_csc()[:, [3, 1]].T.toarray())


class _CountRows(Task):
    """A task that records which rows it saw and trains a bias to the mean."""

    def __init__(self):
        self.seen = []

    def build_module(self):
        return torch.nn.Linear(1, 1)

    def train_losses(self, net, batch):
        self.seen.append(batch.rows.copy())
        pred = net.bias.expand(batch.nnz)
        yield Loss(((pred - batch.vals) ** 2).sum(), batch.nnz)

    def eval_sse(self, module, inputs, targets):
        return ((module.bias - targets.vals) ** 2).sum(), targets.nnz


def test_every_nonempty_row_once_per_epoch_last_partial_batch_kept_and_seeded():
    t = small_split().train
    rows = RowMatrix.from_table(t, "user")
    nonempty = np.flatnonzero(rows.lengths() > 0)
    assert nonempty.size % 32 != 0             # there is a partial last batch
    task = _CountRows()
    Trainer(task, EngineConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.01)).fit(rows)
    per_epoch = -(-nonempty.size // 32)
    assert len(task.seen) == 2 * per_epoch
    for e in range(2):
        got = np.concatenate(task.seen[e * per_epoch:(e + 1) * per_epoch])
        assert np.array_equal(np.sort(got), nonempty)
    assert not np.array_equal(np.concatenate(task.seen[:per_epoch]), np.concatenate(task.seen[per_epoch:]))
    task2 = _CountRows()
    Trainer(task2, EngineConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.01)).fit(rows)
    assert all(np.array_equal(a, b) for a, b in zip(task.seen, task2.seen))


def test_momentum_schedule_halves_after_the_milestone_epoch():
    rows = RowMatrix.from_table(small_split().train, "user")
    res = Trainer(_CountRows(), EngineConfig(epochs=4, batch_size=64, optimizer="momentum", lr=0.01,
                                             milestones=(2, 3))).fit(rows)
    # lr used *during* epochs 1..4 = lr recorded after the previous epoch
    assert [round(h["lr"], 6) for h in res.history] == [0.01, 0.005, 0.0025, 0.0025]


def _fit(run_dir=None, resume=False, reporter=None, **over):
    split = small_split()
    return DeepRec(SETTINGS | over, seed=7).fit(split.train, split.valid, run_dir=run_dir, resume=resume,
                                                reporter=reporter)


def _weights(m):
    return {k: v.clone() for k, v in m.net_.state_dict().items()}


@pytest.mark.parametrize("refeed", [1, 0])       # 0: row-sparse gradients and lazy momentum rows
def test_deterministic_on_cpu_and_resume_reproduces_uninterrupted(tmp_path, refeed):
    full = _fit(tmp_path / "a", refeed=refeed)
    again = _fit(refeed=refeed)
    wa, wb = _weights(full), _weights(again)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # interrupt inside epoch 3's bookkeeping (after epoch 2's checkpoint), then resume
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", reporter=interrupt_after(3), refeed=refeed)
    ck = torch.load(tmp_path / "b" / LAST, weights_only=True)
    assert ck["epoch"] == 2
    resumed = _fit(tmp_path / "b", resume=True, refeed=refeed)
    wr = _weights(resumed)
    assert all(torch.equal(wa[k], wr[k]) for k in wa)
    assert resumed.best_epoch_ == full.best_epoch_
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert [r["valid_rmse"] for r in lines] == [r["valid_rmse"] for r in ref]
    assert {"epoch", "train_rmse", "valid_rmse", "seconds", "ratings_per_s"} <= set(lines[0])
    assert (tmp_path / "b" / BEST).exists()


def test_best_checkpoint_and_early_stopping(tmp_path):
    m = _fit(tmp_path, epochs=30, lr=0.05, patience=2, optimizer="adam", dropout=0.0, noise=0.0)
    h = m.history_
    valid = [r["valid_rmse"] for r in h]
    best = int(np.argmin(valid)) + 1
    assert m.best_epoch_ == best
    assert len(h) < 30 and len(h) == best + 2        # stopped after 2 evaluations without improvement
    split = small_split()
    rows = RowMatrix.from_table(split.train, "user")
    tr = Trainer(AutoencoderTask(lambda: None), EngineConfig())
    rm, _, n = tr.evaluate(m.net_, rows, RowMatrix.from_table(split.valid, "user"))
    assert n == split.valid.nnz and rm == pytest.approx(min(valid), rel=1e-6)


def test_bf16_autocast_on_cpu_trains():
    m = _fit(precision="bf16", epochs=3)
    assert all(np.isfinite(r["train_rmse"]) for r in m.history_)
    assert m.history_[-1]["train_rmse"] < m.history_[0]["train_rmse"]


def test_eval_every_and_penalty_hook():
    rows = RowMatrix.from_table(small_split().train, "user")
    calls = []

    class Task(_CountRows):
        def train_losses(self, net, batch):
            pred = net.bias.expand(batch.nnz)
            calls.append(1)
            yield Loss(((pred - batch.vals) ** 2).sum(), batch.nnz, penalty=1e3 * net.bias.pow(2).sum())

    res = Trainer(Task(), EngineConfig(epochs=3, batch_size=0, optimizer="adam", lr=0.1, eval_every=2)).fit(
        rows, (rows, rows))
    assert len(calls) == 3                                   # batch_size 0: one full batch per epoch
    assert [r["valid_rmse"] is not None for r in res.history] == [False, True, True]
    assert abs(float(res.module.bias.detach())) < 0.5                 # the huge penalty holds the bias near 0


class _TwoParts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        self.b = torch.nn.Parameter(torch.tensor([0.5]))


class _OwnBatchesTask(Task):
    """A task with its own batches and two optimisers: even batches move ``a``, odd ones ``b``."""

    own_batches = True

    targets = [torch.tensor([3.0, 1.0]), torch.tensor([2.0]), torch.tensor([0.0, 0.0]), torch.tensor([-1.0])]

    def __init__(self):
        self.hooked = []

    def build_module(self):
        return _TwoParts()

    def make_optimizers(self, module):
        return {"A": torch.optim.SGD([module.a], lr=0.1), "B": torch.optim.SGD([module.b], lr=0.1)}

    def epoch_batches(self, epoch):
        return [(k, 1) for k in range(4)]          # sized: 4 progress units, yields (batch, units)

    def train_losses(self, net, k):
        p = net.a if k % 2 == 0 else net.b
        # odd batches also give ``a`` a gradient, which must not move it: only optimiser B steps there
        leak = 0.01 * net.a.sum() if k % 2 else 0.0
        yield Loss(((p - self.targets[k]) ** 2).sum() + leak, p.numel(), penalty=(p ** 2).sum() * 0.5,
                   summed=True, steps=("A",) if k % 2 == 0 else ("B",),
                   before_step=lambda k=k: self.hooked.append(k))

    def valid_rmse(self, module, valid):
        return float((module.a.sum() + module.b.sum()).abs())


def test_task_with_own_batches_and_optimisers(tmp_path):
    """The engine's other batch source: summed objective, only the named optimiser steps, the hook
    runs between backward and step, VALID via the task with selection; resume = uninterrupted."""
    task = _OwnBatchesTask()
    cfg = EngineConfig(epochs=2, optimizer="adam", eval_every=1, tensorboard=False)
    res = Trainer(task, cfg, run_dir=tmp_path / "run").fit(None, None)
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([0.5])
    states = []
    for _ in range(2):                              # the same steps by hand: grad of (p-t)^2 + 0.5 p^2
        for k, t in enumerate(task.targets):
            if k % 2 == 0:
                a = a - 0.1 * (2 * (a - t) + a)
            else:
                b = b - 0.1 * (2 * (b - t) + b)
        states.append((a.clone(), b.clone()))
    assert torch.allclose(res.module.a, a) and torch.allclose(res.module.b, b)
    assert task.hooked == [0, 1, 2, 3] * 2
    assert [h["epoch"] for h in res.history] == [1, 2]
    # with VALID: scored by the task each epoch, the best epoch's weights kept
    sel = Trainer(_OwnBatchesTask(), cfg).fit(None, valid="anything")
    scores = [float((sa.sum() + sb.sum()).abs()) for sa, sb in states]
    assert [h["valid_rmse"] for h in sel.history] == pytest.approx(scores, rel=1e-6)
    best = int(np.argmin(scores))
    assert sel.best_epoch == best + 1 and torch.allclose(sel.module.a, states[best][0])
    # resume: one epoch, then continue to two -> the same module
    Trainer(_OwnBatchesTask(), EngineConfig(epochs=1, optimizer="adam", tensorboard=False),
            run_dir=tmp_path / "r").fit(None, None)
    again = Trainer(_OwnBatchesTask(), cfg, run_dir=tmp_path / "r", resume=True).fit(None, None)
    assert torch.equal(again.module.a, res.module.a) and torch.equal(again.module.b, res.module.b)
    assert [h["epoch"] for h in again.history] == [1, 2]


class _RankedTask(_OwnBatchesTask):
    """Selection on a score to maximise (a ranking metric on VALID): the task's valid_score."""

    valid_metric = "ndcg@100"
    higher_is_better = True

    def valid_score(self, module, valid):
        return float((module.a.sum() + module.b.sum()).abs())


def test_selection_on_a_ranking_metric_keeps_the_highest_epoch():
    cfg = EngineConfig(epochs=3, optimizer="adam", eval_every=1, tensorboard=False)
    low = Trainer(_OwnBatchesTask(), cfg).fit(None, valid="anything")
    high = Trainer(_RankedTask(), cfg).fit(None, valid="anything")
    scores = [h["valid_rmse"] for h in low.history]
    assert [h["valid_ndcg@100"] for h in high.history] == pytest.approx(scores, rel=1e-6)
    assert all(h["valid_rmse"] is None for h in high.history)
    assert len(set(scores)) == 3 and high.best_epoch == int(np.argmax(scores)) + 1
    assert low.best_epoch == int(np.argmin(scores)) + 1


@settings(max_examples=300, deadline=None)
@given(world=st.integers(1, 64), count=st.integers(1, 2**40), sse=st.floats(0, 1e9, width=32, allow_subnormal=False))
@example(world=3, count=7, sse=1.0)          # world / count rounds differently from reciprocal * world
def test_host_count_scale_is_bit_identical_to_the_device_tensor_division(world, count, sse):
    """The engine keeps a single process's step count on the host (no ``.item()`` sync per step on a
    GPU); its DDP-mean factor must give the very objective the former float32 tensor division gave,
    or every seeded result would drift."""
    from recozoo.engine.trainer import _mean_scale
    loss = torch.tensor(sse, dtype=torch.float32)
    device_side = loss * (world / torch.tensor(float(count), dtype=torch.float64).float())
    assert torch.equal(loss * _mean_scale(world, count), device_side)
