"""I-AutoRec / U-AutoRec: the observed-only loss, the L2 term, both orientations, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recozoo.engine import RowMatrix
from recozoo.models.autorec import IAutoRec, UAutoRec
from recozoo.models.base import load_model
from recozoo.registry import get_model

from _torch_small import one_thread, rmse_on, small_split

_threads = pytest.fixture(autouse=True)(one_thread)

FAST = {"hidden": 40, "epochs": 8, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "lam": 1.0,
        "patience": 0, "eval_every": 1}


def test_registered_and_structure():
    assert get_model("autorec-i") is IAutoRec and get_model("autorec-u") is UAutoRec
    net = IAutoRec({"hidden": 500})._build_net(943)
    assert net.layers == (500,) and net.activation == "sigmoid" and net.last_linear and not net.tied


def test_loss_ignores_unobserved_entries():
    split = small_split()
    m = IAutoRec(FAST)
    rows = RowMatrix.from_table(split.train, "item")
    task = m._task(rows.n_cols, rows.nnz)
    torch.manual_seed(0)
    net = task.build_module()
    b = rows.take(np.arange(12))
    observed = set(b.cols.tolist())
    unobserved = [c for c in range(rows.n_cols) if c not in observed][:5]
    (first,) = list(task.train_losses(net, b))
    # the L2 term is lam / (2 N) * (|W|^2 + |V|^2), biases excluded
    expect = FAST["lam"] / (2 * rows.nnz) * (net.w_in.pow(2).sum() + net.w_out.pow(2).sum())
    assert torch.allclose(first.penalty, expect)
    with torch.no_grad():                  # change the output only where nothing is observed
        net.b_out[unobserved] += 3.0
        net.w_out[unobserved] *= -2.0
    (second,) = list(task.train_losses(net, b))
    assert torch.equal(first.sse, second.sse) and first.count == second.count == b.nnz
    with torch.no_grad():                  # ...and an observed entry does change it
        net.b_out[next(iter(observed))] += 1.0
    (third,) = list(task.train_losses(net, b))
    assert not torch.equal(first.sse, third.sse)


@pytest.mark.parametrize("cls", [IAutoRec, UAutoRec])
def test_fits_beats_mean_and_round_trips(cls, tmp_path):
    split = small_split()
    m = cls(FAST, seed=0).fit(split.train, split.valid)
    mean = float(np.sqrt(np.mean((split.valid.ratings - m.global_mean_) ** 2)))
    assert rmse_on(m, split.valid) < mean - 0.02
    m2 = load_model(m.save(tmp_path / "a.rcz"))
    assert np.array_equal(m.predict(split.valid.users, split.valid.items),
                          m2.predict(split.valid.users, split.valid.items))
    assert m.rows_.n_rows == (split.train.n_items if cls is IAutoRec else split.train.n_users)


def test_rprop_full_batch_and_empty_row_fallback():
    t = small_split().train.select(small_split().train.items != 7)     # item 7: no training rating
    m = IAutoRec(FAST | {"optimizer": "rprop", "batch_size": 0, "epochs": 5}, seed=0).fit(t)
    assert len(m.history_) == 5
    # an item without training ratings gets the user's mean training rating
    u = np.flatnonzero(t.user_counts() > 0)[:3]
    csr = t.to_csr()
    assert np.allclose(m.predict(u, np.full(3, 7)), [csr[i].data.mean() for i in u], atol=1e-5)


def test_lbfgs_full_batch_descends_and_rejects_weight_decay():
    """optimizer=lbfgs: one L-BFGS iteration (strong-Wolfe line search) per epoch, full batch."""
    from recozoo.engine import EngineConfig, Trainer
    from recozoo.errors import SettingsError
    split = small_split()
    m = IAutoRec(FAST | {"optimizer": "lbfgs", "lr": 1.0, "batch_size": 0, "epochs": 8, "lam": 0.0},
                 seed=0).fit(split.train, split.valid)
    train = [r["train_rmse"] for r in m.history_]
    # without the L2 term the objective is the training MSE, which the line search never increases
    assert all(b <= a + 1e-6 for a, b in zip(train, train[1:])) and train[-1] < train[0] - 0.1
    mean = float(np.sqrt(np.mean((split.valid.ratings - m.global_mean_) ** 2)))
    assert rmse_on(m, split.valid) < mean
    rows = RowMatrix.from_table(split.train, "item")
    with pytest.raises(SettingsError, match="lbfgs"):
        Trainer(m._task(rows.n_cols, rows.nnz), EngineConfig(optimizer="lbfgs", weight_decay=0.1,
                                                              batch_size=0, epochs=1)).fit(rows)


def test_ml100k_preset_is_the_valid_choice():
    s = IAutoRec(IAutoRec.presets["ml-100k"]("ml-100k")).settings
    assert (s.optimizer, s.lam, s.lr, s.batch_size, s.hidden) == ("lbfgs", 200.0, 1.0, 0, 500)
    assert not getattr(UAutoRec, "presets", {})
