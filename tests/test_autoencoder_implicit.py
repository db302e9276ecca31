"""DeepRec / AutoRec on implicit feedback: loss=multinomial|logistic against a direct computation,
binary input, a ranking model; loss=mse stays the default (~10 s)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recozoo.data.table import RatingsTable
from recozoo.engine import RowMatrix
from recozoo.errors import SettingsError
from recozoo.models.autoencoder import AutoencoderNet, AutoencoderTask
from recozoo.registry import get_model

from _torch_small import one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def _np(t):
    return t.detach().double().numpy()


@pytest.mark.parametrize("loss", ["multinomial", "logistic"])
def test_implicit_loss_is_the_row_negative_log_likelihood(loss):
    rng = np.random.default_rng(0)
    X = (rng.random((6, 25)) < 0.3).astype(np.float64)
    X[X.sum(1) == 0, 2] = 1
    c = sp.csr_matrix(X.astype(np.float32))
    batch = RowMatrix(c.indptr, c.indices, c.data, 25).take(np.arange(6))
    torch.manual_seed(0)
    task = AutoencoderTask(lambda: AutoencoderNet(25, (7, 3), activation="tanh"), loss=loss)
    net = task.build_module()
    got = next(task.train_losses(net, batch))
    h = np.tanh(X @ _np(net.w_in) + _np(net.b_in))
    h = np.tanh(h @ _np(net.enc_w[0]).T + _np(net.enc_b[0]))
    h = np.tanh(h @ _np(net.dec_w[0]).T + _np(net.dec_b[0]))
    z = h @ _np(net.w_out).T + _np(net.b_out)
    if loss == "multinomial":
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        want = -(X * logp).sum()
    else:
        want = -(X * np.log(1 / (1 + np.exp(-z))) + (1 - X) * np.log(1 - 1 / (1 + np.exp(-z)))).sum()
    assert got.count == 6
    np.testing.assert_allclose(float(got.sse.detach()), want, rtol=1e-5)


def _table(values):
    rng = np.random.default_rng(1)
    u = np.repeat(np.arange(60), 8)
    i = np.concatenate([rng.choice(30, 8, replace=False) for _ in range(60)])
    return RatingsTable.from_raw(u, i, values(u.size).astype(np.float32))


@pytest.mark.parametrize("name,settings", [
    ("deeprec", {"loss": "multinomial", "refeed": 0, "layers": "8", "epochs": 3, "optimizer": "adam"}),
    ("autorec-u", {"loss": "logistic", "hidden": 8, "epochs": 3}),
    ("autorec-i", {"loss": "multinomial", "hidden": 8, "epochs": 3})])
def test_input_is_binary_and_the_model_ranks(name, settings):
    rated = _table(lambda n: np.random.default_rng(2).integers(1, 6, n))
    ones = _table(np.ones)
    a = get_model(name)(settings, seed=0).fit(rated)
    b = get_model(name)(settings, seed=0).fit(ones)
    assert a.predicts_ratings is False and get_model(name).predicts_ratings_with(a.settings) is False
    users = np.arange(10)
    np.testing.assert_array_equal(a.score_items(users), b.score_items(users))    # the values never count
    items, _ = a.recommend(users, k=5)
    seen = a.seen_items(users)
    assert not any(set(items[r]) & set(seen[r].indices) for r in range(10))
    if a.can_fold_in():       # user mode: a known user's own row folded in gives their scores
        np.testing.assert_allclose(a.score_new_users(a.history(users)), a.score_items(users), rtol=1e-5,
                                   atol=1e-5)


def test_mse_stays_the_default_and_refeed_needs_it():
    assert get_model("deeprec")().predicts_ratings and get_model("autorec-i")().predicts_ratings
    with pytest.raises(SettingsError, match="set refeed=0"):
        get_model("deeprec")({"loss": "multinomial"})
    with pytest.raises(SettingsError, match="loss"):
        get_model("autorec-u")({"loss": "bce"})
