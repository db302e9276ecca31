"""GLocal-K: the local kernel's finite support, the observed-only loss and its penalty, the global
kernel, both training stages through the engine, persistence, and a short real-data run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recozoo.defaults import resolve
from recozoo.engine import RowMatrix
from recozoo.models.base import load_model
from recozoo.models.glocalk import GLocalK, GLocalKTask, KernelLayer, local_kernel
from recozoo.registry import get_model

from _torch_small import one_thread, rmse_on, small_split

_threads = pytest.fixture(autouse=True)(one_thread)

FAST = {"layers": "24,24", "pre_epochs": 12, "fine_epochs": 6, "eval_every": 2, "patience": 0}


def _net(settings=None, seed=0):
    split = small_split()
    m = GLocalK(FAST | (settings or {}))
    m.rows_ = RowMatrix.from_table(split.train, "item")
    torch.manual_seed(seed)
    return m, m._build_net(m.rows_.n_cols), m.rows_


def test_registered_and_paper_defaults():
    """From 30 ratings per user (small_split's TRAIN: 40) "auto" is the paper's network on raw ratings."""
    assert get_model("glocal-k") is GLocalK
    s = resolve(GLocalK().settings, GLocalK.auto_rule, small_split().train)
    assert (s.layers, s.kernel_dim, s.gk_size, s.lambda_2, s.lambda_s, s.fine_epochs, s.baseline) == \
        ((500, 500), 5, 3, 20.0, 0.006, 300, "none")
    assert GLocalK.row_mode == "item"


def test_local_kernel_has_finite_support():
    u = torch.tensor([[0.0, 0.0], [0.3, 0.4], [2.0, 0.0]])
    v = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.999]])
    k = local_kernel(u, v)
    d2 = torch.cdist(u, v).pow(2)
    inside = d2 < 1
    assert torch.allclose(k[inside], 1 - d2[inside])
    assert torch.all(k[~inside] == 0)                      # exactly zero outside the unit ball
    assert k[0, 1] == 0 and k[2].eq(0).all() and k[0, 0] == 1


def test_kernelised_weight_is_zero_where_the_kernel_is():
    torch.manual_seed(0)
    layer = KernelLayer(6, 4, 2)
    with torch.no_grad():                                    # push output unit 0 far away
        layer.v[0] = torch.tensor([5.0, 5.0])
    w = layer.weight()
    assert torch.all(w[:, 0] == 0) and torch.all(w[:, 1:] != 0)
    # at initialisation (u, v ~ N(0, 1e-3)) the kernel is ~1: a dense layer
    torch.manual_seed(0)
    assert torch.all(KernelLayer(50, 40, 5).kernel() > 0.9999)


def test_loss_ignores_unobserved_entries_and_penalty_is_the_papers():
    m, net, rows = _net()
    task = GLocalKTask(lambda: net, 20.0, 0.006, rows.nnz)
    b = rows.take(np.flatnonzero(rows.lengths() > 0)[:10])
    observed = set(b.cols.tolist())
    unobserved = [c for c in range(rows.n_cols) if c not in observed][:5]
    (first,) = list(task.train_losses(net, b))
    full = net().detach()
    expect = ((full[torch.from_numpy(b.rows)[b.row_index()], b.cols] - b.vals) ** 2).sum()
    assert torch.allclose(first.sse, expect) and first.count == b.nnz
    pen = sum(0.006 / rows.nnz * L.kernel().pow(2).sum() + 20.0 / rows.nnz * L.W.pow(2).sum()
              for L in net.layer_modules())
    assert torch.allclose(first.penalty, pen)
    with torch.no_grad():                  # change the output only where nothing is observed
        net.out.b[unobserved] += 3.0
    (second,) = list(task.train_losses(net, b))
    assert torch.equal(first.sse, second.sse)
    with torch.no_grad():
        net.out.b[next(iter(observed))] += 1.0
    (third,) = list(task.train_losses(net, b))
    assert not torch.equal(first.sse, third.sse)


def test_global_kernel_convolves_the_rating_matrix():
    m, net, rows = _net({"gk_size": 3, "dot_scale": 0.5})
    with torch.no_grad():
        recon = net()                                          # stage 0: the local-kernel reconstruction
        g = (recon.mean(1) @ net.conv_kernel * 0.5).view(3, 3)  # item-wise average pooling -> 3x3 kernel
        assert torch.allclose(net.global_kernel(net._hidden_plain()), g, atol=1e-5)
        r = torch.from_numpy(rows.take(np.arange(rows.n_rows)).dense().numpy())
        i, j = 5, 7                                             # one interior entry by hand
        by_hand = torch.relu((r[i - 1:i + 2, j - 1:j + 2] * g).sum())
        assert torch.allclose(net.global_input()[i, j], by_hand, atol=1e-5)
        assert torch.allclose(net.global_input(), torch.relu(F.conv2d(r[None, None], g[None, None],
                                                                      padding=1)[0, 0]), atol=1e-5)
        net.stage.fill_(1)
        assert not torch.allclose(net(), recon)                 # stage 1 feeds the convolved matrix


def test_two_stages_beat_the_mean_round_trip_and_are_deterministic(tmp_path):
    split = small_split()
    m = GLocalK(FAST, seed=0).fit(split.train, split.valid, run_dir=tmp_path / "run")
    stages = [r["stage"] for r in m.history_]
    assert stages.count("pretrain") == 12 and stages.count("finetune") == 6
    assert int(m.net_.stage) == 1
    assert (tmp_path / "run" / "pretrain" / "best.pt").exists()
    assert (tmp_path / "run" / "finetune" / "best.pt").exists()
    mean = float(np.sqrt(np.mean((split.valid.ratings - m.global_mean_) ** 2)))
    assert rmse_on(m, split.valid) < mean - 0.02
    m2 = load_model(m.save(tmp_path / "g.rcz"))
    assert int(m2.net_.stage) == 1
    assert np.array_equal(m.predict(split.valid.users, split.valid.items),
                          m2.predict(split.valid.users, split.valid.items))
    m3 = GLocalK(FAST, seed=0).fit(split.train, split.valid)
    assert np.array_equal(m.predict(split.valid.users, split.valid.items),
                          m3.predict(split.valid.users, split.valid.items))


def test_local_only_and_fallbacks():
    t = small_split().train.select(small_split().train.items != 7)     # item 7: no training rating
    m = GLocalK(FAST | {"fine_epochs": 0}, seed=0).fit(t)
    assert int(m.net_.stage) == 0 and {r["stage"] for r in m.history_} == {"pretrain"}
    u = np.flatnonzero(t.user_counts() > 0)[:3]
    csr = t.to_csr()
    assert np.allclose(m.predict(u, np.full(3, 7)), [csr[i].data.mean() for i in u], atol=1e-5)
    # nothing is clipped unless asked
    p = m.predict(np.repeat(np.arange(t.n_users), 3)[:600], np.tile(np.arange(3), t.n_users)[:600])
    mc = GLocalK(FAST | {"fine_epochs": 0}, seed=0, clip=(1, 5)).fit(t)
    pc = mc.predict(np.repeat(np.arange(t.n_users), 3)[:600], np.tile(np.arange(3), t.n_users)[:600])
    assert np.array_equal(np.clip(p, 1, 5), pc)


def test_beats_the_mean_on_ml100k_valid(ml100k_split):
    s = ml100k_split
    m = GLocalK({"layers": "64,64", "pre_epochs": 15, "fine_epochs": 5, "eval_every": 5, "patience": 0},
                seed=0).fit(s.train, s.valid)
    mean = float(np.sqrt(np.mean((s.valid.ratings - m.global_mean_) ** 2)))
    assert rmse_on(m, s.valid) < mean - 0.08


class _Trial:
    """What PruningReporter talks to: records the reported steps, never prunes."""

    def __init__(self):
        self.steps: list[int] = []

    def report(self, value: float, step: int) -> None:
        self.steps.append(step)

    def should_prune(self) -> bool:
        return False


def test_valid_curve_counts_on_through_fine_tuning():
    """``recozoo tune``'s pruner gets one epoch axis over both stages: fine-tuning's VALID reports follow
    pre-training's (no step reported twice, which Optuna would drop, and no fine-tuning step compared
    with another trial's pre-training step); the history and best_epoch_ use the same axis."""
    from recozoo.tune.objective import PruningReporter
    split = small_split()
    trial = _Trial()
    rep = PruningReporter(trial, prune=True)
    m = GLocalK(FAST | {"pre_epochs": 8, "fine_epochs": 6}, seed=0).fit(split.train, split.valid, reporter=rep)
    assert trial.steps == [2, 4, 6, 8, 10, 12, 14] and rep.last_step == 14
    assert [r["epoch"] for r in m.history_] == list(range(1, 15))
    assert [r["stage_epoch"] for r in m.history_] == [*range(1, 9), *range(1, 7)]
    fine = m.stage_best_epochs_["finetune"]
    assert m.best_epoch_ == 8 + fine and m.history_[-1]["best_epoch"] == 8 + fine
    # a pre-training stage stopped early: fine-tuning counts on from where it stopped
    trial = _Trial()
    m = GLocalK(FAST | {"pre_epochs": 40, "fine_epochs": 4, "patience": 1, "lambda_2": 0.0}, seed=0).fit(
        split.train, split.valid, reporter=PruningReporter(trial, prune=True))
    pre = sum(r["stage"] == "pretrain" for r in m.history_)
    assert pre < 40 and trial.steps == sorted(set(trial.steps)) and trial.steps[-1] == pre + 4
