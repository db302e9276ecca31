"""Mult-VAE / Mult-DAE: the loss against a direct computation, β's schedule, resume, fold-in (~10 s).

Expected values are computed here in float64 numpy from the network's weights
and the paper's formulas, never by calling the code under test twice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recozoo.data.table import RatingsTable
from recozoo.engine import RowMatrix
from recozoo.errors import SettingsError
from recozoo.models.multvae import MultTask, MultVAE, anneal_beta
from recozoo.registry import get_model
from recozoo.strong_generalization import strong_generalization_split
from recozoo.testing import tiny_split

from _torch_small import interrupt_after, one_thread

_threads = pytest.fixture(autouse=True)(one_thread)


def _np(t):
    return t.detach().double().numpy()


def _encode(net, X):
    """(mean, log-variance or None) of dense binary rows: L2-normalised, tanh layers, linear VAE head."""
    h = np.tanh(X / np.linalg.norm(X, axis=1, keepdims=True) @ _np(net.w_in) + _np(net.b_in))
    for k, lin in enumerate(net.enc):
        h = h @ _np(lin.weight).T + _np(lin.bias)
        if not (net.variational and k == len(net.enc) - 1):
            h = np.tanh(h)
    d = net.layers[-1]
    return (h[:, :d], h[:, d:]) if net.variational else (h, None)


def _decode(net, z):
    for lin in net.dec:
        z = np.tanh(z @ _np(lin.weight).T + _np(lin.bias))
    return z @ _np(net.w_out).T + _np(net.b_out)


def _direct_loss(net, X, eps, beta, reg):
    """Σ_u [−Σ_i x_ui log softmax(f(z_u))_i + β·KL_u] and reg·Σ‖W‖², from the paper's formulas."""
    mu, logvar = _encode(net, X)
    kl = 0.0
    z = mu
    if logvar is not None:
        z = mu + eps * np.exp(0.5 * logvar)
        kl = 0.5 * (-logvar + np.exp(logvar) + mu ** 2 - 1).sum()
    logits = _decode(net, z)
    m = logits.max(1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
    pen = reg * sum((_np(w) ** 2).sum() for w in net.weights())
    return -(X * logp).sum() + beta * kl, pen


@pytest.mark.parametrize("name", ["mult-vae", "mult-dae"])
def test_loss_is_the_multinomial_likelihood_plus_beta_kl_on_its_schedule(name):
    rng = np.random.default_rng(0)
    X = (rng.random((7, 30)) < 0.3).astype(np.float64)
    X[X.sum(1) == 0, 0] = 1
    rows = RowMatrix(*_csr_parts(X), 30)
    cls = get_model(name)
    s = cls.Settings(**({"layers": (12, 5), "total_anneal_steps": 3, "anneal_cap": 0.5}
                        if name == "mult-vae" else {"layers": (6,), "reg": 0.02}), dropout=0.0)
    task = MultTask(30, s, cls.variational)
    torch.manual_seed(0)
    net = task.build_module()
    net.train()
    batch = rows.take(np.arange(7))
    for t in range(5):                       # β = 0, 1/3, 2/3 -> capped at 0.5, 0.5, 0.5
        torch.manual_seed(10 + t)
        gen = task.train_losses(net, batch)
        loss = next(gen)
        torch.manual_seed(10 + t)
        eps = torch.randn(7, net.layers[-1]).double().numpy()
        beta = anneal_beta(t, 3, 0.5) if cls.variational else 0.0
        want, pen = _direct_loss(net, X, eps, beta, s.reg)
        assert loss.count == 7
        np.testing.assert_allclose(float(loss.sse.detach()), want, rtol=1e-5)
        assert (loss.penalty is None and pen == 0) or np.isclose(float(loss.penalty.detach()), pen, rtol=1e-5)
        assert next(gen, None) is None and task.updates == t + 1
    assert [anneal_beta(t, 3, 0.5) for t in range(5)] == [0.0, 1 / 3, 0.5, 0.5, 0.5]


def _csr_parts(X):
    import scipy.sparse as sp
    c = sp.csr_matrix(X.astype(np.float32))
    return c.indptr, c.indices, c.data


def test_sparse_first_layer_equals_the_dense_one():
    rng = np.random.default_rng(1)
    X = (rng.random((9, 40)) < 0.2).astype(np.float64)
    X[X.sum(1) == 0, 3] = 1
    batch = RowMatrix(*_csr_parts(X), 40).take(np.arange(9))
    out = {}
    for layer in ("sparse", "dense"):
        s = MultVAE.Settings(layers=(10, 4), dropout=0.5, first_layer=layer)
        task = MultTask(40, s, True)
        torch.manual_seed(3)
        net = task.build_module()
        loss = next(task.train_losses(net, batch))
        loss.sse.backward()
        out[layer] = (float(loss.sse.detach()), net.w_in.grad.clone())
    assert np.isclose(out["sparse"][0], out["dense"][0], rtol=1e-6)
    torch.testing.assert_close(out["sparse"][1], out["dense"][1], rtol=1e-5, atol=1e-7)


def test_resume_is_bit_identical(tmp_path):
    split = tiny_split(2)
    st = {"layers": "16,8", "epochs": 4, "batch_size": 16, "total_anneal_steps": 7}
    full = MultVAE(st, seed=3).fit(split.train, split.valid, run_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        MultVAE(st, seed=3).fit(split.train, split.valid, run_dir=tmp_path / "b", reporter=interrupt_after(3))
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["task"]["updates"] == 2 * int(np.ceil(
        np.count_nonzero(split.train.user_counts()) / 16))
    resumed = MultVAE(st, seed=3).fit(split.train, split.valid, run_dir=tmp_path / "b", resume=True)
    a, b = full.net_.state_dict(), resumed.net_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.best_epoch_ == full.best_epoch_
    ref = [json.loads(x)["valid_rmse"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(x)["valid_rmse"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert got == ref and len(ref) == 4 and all(np.isfinite(ref))


@pytest.fixture(scope="module")
def strong():
    rng = np.random.default_rng(4)
    u = np.repeat(np.arange(150), 12)
    i = np.concatenate([rng.choice(50, 12, replace=False) for _ in range(150)])
    return strong_generalization_split(RatingsTable.from_raw(u, i, np.ones(u.size, np.float32)), "x", 20)


@pytest.mark.parametrize("name", ["mult-vae", "mult-dae"])
def test_fold_in_is_the_encoder_mean_and_never_recommends_fold_in_items(name, strong):
    m = get_model(name)({"layers": "16,8" if name == "mult-vae" else "8", "epochs": 3}, seed=0)
    m.fit(strong.train, strong.valid)
    fold = strong.test_fold_in.to_csr()
    users = strong.held_out_users("test")
    got = m.score_new_users(fold[users])
    X = (fold[users].toarray() > 0).astype(np.float64)
    want = _decode(m.net_, _encode(m.net_, X)[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    items, _ = m.recommend_new_users(fold[users], k=20)
    for row, u in enumerate(users):
        assert not set(items[row].tolist()) & set(fold[u].indices.tolist())
    # a known user's scores are the same path on their training row
    known = np.arange(5)
    np.testing.assert_allclose(m.score_new_users(m.history(known)), m.score_items(known), rtol=1e-5, atol=1e-5)


def test_settings_errors():
    with pytest.raises(SettingsError, match="at least two sizes"):
        MultVAE({"layers": "200"})
    with pytest.raises(SettingsError, match="first_layer"):
        MultVAE({"first_layer": "csr"})


SELECTED = {"mult-dae": {"layers": "8", "epochs": 8, "batch_size": 16, "lr": 0.01},
            "mult-vae": {"layers": "16,8", "epochs": 8, "batch_size": 16, "lr": 0.01, "total_anneal_steps": 20},
            "deeprec": {"loss": "multinomial", "refeed": 0, "mode": "user", "layers": "8", "epochs": 8,
                        "batch_size": 16, "optimizer": "adam", "lr": 0.01, "dropout": 0.0, "patience": 0,
                        "eval_every": 1}}


@pytest.mark.parametrize("name", sorted(SELECTED))
def test_epoch_is_selected_on_valid_ndcg_of_held_out_users(name):
    """On a strong-generalisation split the kept epoch is the one with the highest NDCG@100 of VALID's
    held-out users (scored from their fold-in), and that figure is what the evaluator reports."""
    from recozoo.rank_eval import rank_part
    rng = np.random.default_rng(4)
    p = 1.0 / np.arange(1, 51)
    u = np.repeat(np.arange(150), 12)
    i = np.concatenate([rng.choice(50, 12, replace=False, p=p / p.sum()) for _ in range(150)])
    split = strong_generalization_split(RatingsTable.from_raw(u, i, np.ones(u.size, np.float32)), "x", 20)
    st = SELECTED[name]
    m = get_model(name)(st, seed=0).fit(split.train, split.valid, valid_fold_in=split.valid_fold_in)
    curve = [r["valid_ndcg@100"] for r in m.history_]
    assert len(curve) == 8 and m.best_epoch_ == int(np.argmax(curve)) + 1
    if name == "mult-dae":
        assert m.best_epoch_ < 8          # this seed's curve peaks early: the kept weights are not the last
    assert rank_part(m, split, "valid", ks=(100,)).summary["ndcg@100"] == pytest.approx(max(curve), abs=1e-9)
    # the kept weights are those of a plain fit for best_epoch epochs (evaluation draws no random numbers)
    again = get_model(name)({**st, "epochs": m.best_epoch_}, seed=0).fit(split.train)
    a, b = m.net_.state_dict(), again.net_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    if name == "mult-vae":   # β of the kept epoch's last update: 120 training users in batches of 16
        assert m.best_beta_ == anneal_beta(m.best_epoch_ * 8 - 1, 20, 0.2)
