"""DeepRec: network shapes, the sparse fast path's exactness, re-feeding, modes, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recozoo.engine import RowMatrix
from recozoo.errors import CheckpointError, RecozooError, SettingsError
from recozoo.metrics import masked_mse_torch
from recozoo.models.base import load_model
from recozoo.models.autoencoder import ACTIVATIONS, AutoencoderNet, AutoencoderTask
from recozoo.models.deeprec import DeepRec

from _torch_small import DEEPREC_FIXED, one_thread, rmse_on, small_split

_threads = pytest.fixture(autouse=True)(one_thread)

FAST = {**DEEPREC_FIXED, "layers": "32,16", "epochs": 3, "batch_size": 32, "optimizer": "adam",
        "lr": 0.003, "dropout": 0.0}


def _batch(n_rows=20):
    rows = RowMatrix.from_table(small_split().train, "user")
    return rows, rows.take(np.arange(n_rows))


def test_shapes_and_tied_sharing():
    rows, b = _batch()
    n = rows.n_cols
    untied = AutoencoderNet(n, (32, 16, 8), "selu", tied=False)
    tied = AutoencoderNet(n, (32, 16, 8), "selu", tied=True)
    for net in (untied, tied):
        out = net("dense", b.dense())
        assert out.shape == (b.n_rows, n)
        pred, y = net("sparse", b.offsets, b.cols, b.vals, b.row_index(), b.cols, want_dense=True)
        assert pred.shape == (b.nnz,) and y.shape == (b.n_rows, n)
    assert tied.out_weight() is tied.w_in and len(tied.dec_w) == 0
    n_untied = sum(p.numel() for p in untied.parameters())
    n_tied = sum(p.numel() for p in tied.parameters())
    assert n_untied - n_tied == n * 32 + 16 * 8 + 32 * 16   # the decoder's own weights
    # tied: changing an encoder weight changes the decoder's weight too
    with torch.no_grad():
        before = tied.decode_dense(torch.ones(1, 32)).clone()
        tied.w_in[3, :] += 1.0
        assert not torch.allclose(before[0, 3], tied.decode_dense(torch.ones(1, 32))[0, 3])


@pytest.mark.parametrize("tied", [False, True])
def test_sparse_step_equals_dense_masked_loss_and_grads(tied):
    rows, b = _batch(25)
    torch.manual_seed(0)
    net = AutoencoderNet(rows.n_cols, (24, 12), "elu", tied=tied, dropout=0.5)
    torch.manual_seed(5)
    pred, _ = net("sparse", b.offsets, b.cols, b.vals, b.row_index(), b.cols)
    sparse_loss = ((pred - b.vals) ** 2).sum() / b.nnz
    sparse_loss.backward()
    g_sparse = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    torch.manual_seed(5)        # same dropout mask: same (B, 12) draw
    x = b.dense()
    dense_loss = masked_mse_torch(net("dense", x), x)
    dense_loss.backward()
    assert torch.allclose(sparse_loss, dense_loss, rtol=1e-5, atol=1e-6)
    for k, p in net.named_parameters():
        assert torch.allclose(g_sparse[k], p.grad, rtol=1e-4, atol=1e-6), k


def test_refeed_step_uses_detached_output_and_counts_every_entry():
    rows, b = _batch(10)
    torch.manual_seed(0)
    net = AutoencoderNet(rows.n_cols, (16,), "selu", dropout=0.0)
    task = AutoencoderTask(lambda: net, refeed=2)
    losses = list(task.train_losses(net, b))          # no optimiser step in between
    assert len(losses) == 3
    assert losses[0].count == b.nnz and losses[0].report
    y = net.dense(b.dense()).detach()
    assert losses[1].count == b.n_rows * rows.n_cols and not losses[1].report
    fy = net.dense(y)
    assert torch.allclose(losses[1].sse, ((fy - y) ** 2).sum(), rtol=1e-5)
    # entries where the sparse input was zero do count: the loss is not the masked one
    masked = masked_mse_torch(fy, b.dense()) * b.nnz
    assert not torch.allclose(losses[1].sse, masked)
    y2 = fy.detach()
    assert torch.allclose(losses[2].sse, ((net.dense(y2) - y2) ** 2).sum(), rtol=1e-5)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activations(act):
    rows, b = _batch(8)
    net = AutoencoderNet(rows.n_cols, (16, 8), act, last_linear=False)
    out = net("dense", b.dense())
    assert torch.isfinite(out).all()
    ref = {"sigmoid": (0, 1), "tanh": (-1, 1), "relu6": (0, 6), "relu": (0, None)}
    if act in ref:        # last_linear=False applies the activation to the output
        lo, hi = ref[act]
        assert out.min() >= lo and (hi is None or out.max() <= hi)
    lin = AutoencoderNet(rows.n_cols, (16, 8), act, last_linear=True)
    lin.load_state_dict(net.state_dict())
    if act in ("sigmoid", "tanh"):
        assert not torch.allclose(lin("dense", b.dense()), out)


def test_fit_beats_mean_save_load_identical(tmp_path):
    split = small_split()
    m = DeepRec(FAST | {"epochs": 6, "refeed": 1}, seed=3).fit(split.train, split.valid)
    mean = float(np.sqrt(np.mean((split.valid.ratings - m.global_mean_) ** 2)))
    assert rmse_on(m, split.valid) < mean - 0.02
    path = m.save(tmp_path / "m.rcz")
    m2 = load_model(path)
    u = np.repeat(np.arange(split.train.n_users), 3)
    i = np.tile(np.array([0, 5, 149]), split.train.n_users)
    assert np.array_equal(m.predict(u, i), m2.predict(u, i))
    assert np.array_equal(m.recommend(4, k=5)[0], m2.recommend(4, k=5)[0])


def test_item_mode():
    split = small_split()
    m = DeepRec(FAST | {"mode": "item", "refeed": 1}, seed=0).fit(split.train, split.valid)
    assert m.net_.n == split.train.n_users and m.rows_.n_rows == split.train.n_items
    p = m.predict(split.valid.users, split.valid.items)
    assert p.shape == (split.valid.nnz,) and np.isfinite(p).all()
    s = m.score_items(np.array([0, 1]))
    assert s.shape == (2, split.train.n_items)
    known = np.flatnonzero(split.train.item_counts() > 0)[:5]
    assert np.allclose(s[1, known], m.predict(np.ones(5, dtype=np.int64), known), atol=1e-5)


@pytest.mark.parametrize("whole_output", [True, False])
def test_item_mode_scores_from_cached_item_codes_equal_the_network_pass_by_pass(tmp_path, monkeypatch,
                                                                                 whole_output):
    from recozoo.data.table import RatingsTable
    if not whole_output:       # data too big to keep the whole output: per-request products of the codes
        monkeypatch.setattr("recozoo.models.autoencoder.FULL_CACHE_CELLS", 0)
    split = small_split()
    t = split.train
    keep = ~np.isin(t.items, [3, 7]) & ~np.isin(t.users, [5])      # items and a user without training data
    train = RatingsTable.from_coo(t.users[keep], t.items[keep], t.ratings[keep], None,
                                  user_ids=t.user_ids, item_ids=t.item_ids)
    m = DeepRec(FAST | {"mode": "item"}, seed=0).fit(train)
    users = np.arange(0, train.n_users, 7)
    got = m.score_items(users)
    codes = m._codes
    assert codes is not None and codes.shape == (train.n_items, 32)
    # the uncached path: every item row through the network, decoded at (item, user) pairs
    rows, cols = np.repeat(np.arange(train.n_items), users.size), np.tile(users, train.n_items)
    plain = m._scores_at(rows, cols).reshape(train.n_items, users.size).T
    ok = np.ix_(np.isin(users, [5], invert=True), np.isin(np.arange(train.n_items), [3, 7], invert=True))
    np.testing.assert_allclose(got[ok], plain[ok], rtol=1e-5, atol=1e-5)
    # and every cell (fallbacks included) is what predict says
    np.testing.assert_allclose(got, m.predict(np.repeat(users, train.n_items), np.tile(np.arange(train.n_items),
                                                                                       users.size))
                               .reshape(users.size, -1), rtol=1e-5, atol=1e-5)
    assert np.array_equal(m.score_items(users), got) and m._codes is codes       # computed once
    assert (m._item_mode_out is not None) == whole_output
    loaded = load_model(m.save(tmp_path / "m.rcz"))
    assert loaded._codes is None and np.array_equal(loaded.score_items(users), got)
    m.fit(split.train)                                                         # a new fit drops the cache
    assert m._codes is None and m._item_mode_out is None


def test_fallbacks_documented_behaviour():
    split = small_split()
    m = DeepRec(FAST, seed=0).fit(split.train)
    # an out-of-range user is an empty input row: same as a user whose train row is empty
    empty = np.flatnonzero(split.train.user_counts() == 0)
    out = m.predict([10_000, 10_000], [0, 1])
    assert np.isfinite(out).all()
    if empty.size:
        assert np.allclose(out, m.predict([empty[0]] * 2, [0, 1]), atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_torchscript_parity(tmp_path):
    split = small_split()
    m = DeepRec(FAST, seed=0).fit(split.train)
    path = m.export(tmp_path / "deeprec.pt", format="torchscript")
    scripted = torch.jit.load(str(path))
    users = np.arange(10)
    out = scripted(torch.from_numpy(m.dense_rows(users))).detach().numpy()
    items = np.flatnonzero(split.train.item_counts() > 0)[:40]
    uu, ii = np.repeat(users, items.size), np.tile(items, users.size)
    assert np.allclose(out[uu, ii], m.predict(uu, ii), atol=1e-5)
    with pytest.raises(SettingsError):
        m.export(tmp_path / "x", format="pickle")


def test_export_onnx_parity_with_a_dynamic_batch(tmp_path, capfd):
    """The ONNX file, run by onnxruntime on any batch size, reproduces predict (the test extra installs
    onnx, onnxscript and onnxruntime, so this runs in CI)."""
    import onnxruntime as ort
    split = small_split()
    m = DeepRec(FAST, seed=0).fit(split.train)
    capfd.readouterr()
    path = m.export(tmp_path / "deeprec.onnx", format="onnx")
    assert capfd.readouterr().out == ""            # the exporter's chatter stays off stdout (--json)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["ratings"]
    items = np.flatnonzero(split.train.item_counts() > 0)[:40]
    for users in (np.arange(1), np.arange(13)):
        out = sess.run(None, {"ratings": m.dense_rows(users)})[0]
        assert out.shape == (users.size, m.n_items_)
        uu, ii = np.repeat(users, items.size), np.tile(items, users.size)
        assert np.allclose(out[uu, ii], m.predict(uu, ii), atol=1e-5)


@pytest.mark.parametrize("bad", [{"activation": "softsign"}, {"layers": ""}, {"dropout": 1.0},
                                 {"dropout": -0.1}, {"refeed": -1}, {"optimizer": "lbfgs"},
                                 {"layrs": "1,2"}])
def test_bad_settings_one_line(bad):
    with pytest.raises(SettingsError) as e:
        DeepRec(bad)
    assert "\n" not in str(e.value)


def test_resume_from_other_item_count_is_one_line_error(tmp_path):
    a, b = small_split(), small_split(n_items=120)
    DeepRec(FAST | {"epochs": 1}).fit(a.train, run_dir=tmp_path)
    with pytest.raises(CheckpointError) as e:
        DeepRec(FAST | {"epochs": 2}).fit(b.train, run_dir=tmp_path, resume=True)
    assert "n_cols" in str(e.value) and "\n" not in str(e.value)


def test_presets():
    p = DeepRec.presets["paper"]("netflix-3m")
    s = DeepRec(p).settings
    assert s.layers == (128, 256, 256) and s.dropout == 0.65 and s.refeed == 1
    assert DeepRec(DeepRec.presets["paper"]("netflix-full")).settings.layers == (512, 512, 1024)
    assert isinstance(DeepRec(DeepRec.presets["ml-100k"]("ml-100k")), DeepRec)


def test_predict_before_fit_is_an_error():
    with pytest.raises(RecozooError):
        DeepRec().predict([0], [0])
