"""RRN's networks: one side's rating projection, LSTM and affine output, and the recurrence over a batch.

:func:`run_lstm` feeds a batch of step sequences (see :mod:`recozoo.models.rrn.layout`)
through a side's network; :class:`PackedLSTM` is its training path, the
recurrence with a hand-written backward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from recozoo.models.rrn.layout import Layout, Side, ranges

if TYPE_CHECKING:
    from recozoo.models.rrn.model import RRNSettings

__all__ = ["SideNet", "run_lstm", "PackedLSTM", "step_dim"]


def step_dim(s: RRNSettings) -> int:
    """Size of a step's rating input: the projected rating vector [+ the step summary]."""
    return s.embed + (2 if s.step_summary else 0)


class SideNet(nn.Module):
    """One side's network: rating projection, LSTM, affine output."""

    def __init__(self, n_other: int, s: RRNSettings):
        super().__init__()
        self.bag = nn.EmbeddingBag(n_other, s.embed, mode="sum")
        nn.init.normal_(self.bag.weight, 0.0, 0.1)
        if s.indicator:
            self.ind = nn.EmbeddingBag(n_other, s.embed, mode="sum")
            nn.init.normal_(self.ind.weight, 0.0, 0.1)
        self.lstm = nn.LSTM(step_dim(s) + 3, s.hidden, num_layers=1)
        self.out = nn.Linear(s.hidden, s.dynamic + int(s.dynamic_bias))

    def embed(self, idx, off, w_rating, w_ind):
        """The projected rating vector of each bag (rating channel [+ indicator channel])."""
        e = self.bag(idx, off, per_sample_weights=w_rating)
        if hasattr(self, "ind"):
            e = e + self.ind(idx, off, per_sample_weights=w_ind)
        return e

    def cell(self, x, h, c):
        """One LSTM step with the LSTM's own weights (gate order i, f, g, o)."""
        g = x @ self.lstm.weight_ih_l0.T + self.lstm.bias_ih_l0 + h @ self.lstm.weight_hh_l0.T \
            + self.lstm.bias_hh_l0
        i, f, gg, o = g.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def run_lstm(side: Side, net: SideNet, lay: Layout, dev, want_c: bool = False,
             dropout: float = 0.0, biases=None):
    """LSTM outputs (and cell states) after every pair's step, plus each pair's rating embedding.

    The batch is already in the packed, time-major layout of a
    ``PackedSequence``. Without gradients (VALID scoring, the other side's
    states) the fused ``nn.LSTM`` runs the recurrence in one native call. With gradients,
    :class:`PackedLSTM` runs it with a hand-written backward pass, because
    ``nn.LSTM``'s backward on a ``PackedSequence`` is several times slower on
    CPU (measured in docs/history.md).
    Where the cell state after *every* step is wanted (``want_c``: prediction
    inside the history) the recurrence is stepped by hand without autograd.
    """
    pairs = lay.pairs
    bags = ranges(side.pair_indptr, pairs)
    cnt = side.pair_indptr[pairs + 1] - side.pair_indptr[pairs]
    off = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    w_ind = torch.from_numpy(side.bag_ind[bags]).to(dev) if hasattr(net, "ind") else None
    emb = net.embed(torch.from_numpy(side.bag_idx[bags]).to(dev), torch.from_numpy(off).to(dev),
                    torch.from_numpy(side.bag_w[bags]).to(dev), w_ind)
    if dropout > 0:
        emb = torch.nn.functional.dropout(emb, p=dropout, training=True)
    if net.lstm.input_size > emb.shape[1] + 3:                  # step_summary
        res = torch.from_numpy(side.bag_r[bags]).to(dev)
        if biases is not None:                          # minus the stationary prediction
            own_b, other_b, own_f, other_f = biases
            oth = torch.from_numpy(side.bag_idx[bags]).to(dev)
            own = torch.from_numpy(np.repeat(side.pair_ent[pairs], cnt)).to(dev)
            res = res - other_b[oth] - own_b[own] - (own_f[own] * other_f[oth]).sum(1)
        seg = torch.from_numpy(np.repeat(np.arange(pairs.size), cnt)).to(dev)
        cnt_t = torch.from_numpy(cnt.astype(np.float32)).to(dev)
        mean = res.new_zeros(pairs.size).index_add_(0, seg, res) / cnt_t
        emb = torch.cat([emb, torch.stack([mean, torch.log1p(cnt_t)], dim=1)], dim=1)
    first = lay.pos == 0
    first_t = torch.from_numpy(first).to(dev)
    prev = torch.cat([emb.new_zeros((1, emb.shape[1])), emb[:-1]])
    prev = torch.where(first_t[:, None], torch.zeros_like(prev), prev)
    t = side.pair_time[pairs]
    tp = np.concatenate([t[:1], t[:-1]])
    tp[first] = t[first]
    feats = torch.from_numpy(np.stack([first.astype(np.float32), t, tp], axis=1)).to(dev)
    X = torch.cat([prev, feats], dim=1)
    inv = torch.from_numpy(np.argsort(lay.packed)).to(dev)
    packed = torch.from_numpy(lay.packed).to(dev)
    lstm = net.lstm
    if not want_c and not torch.is_grad_enabled():
        seq = nn.utils.rnn.PackedSequence(X[inv], torch.from_numpy(lay.batch_sizes.astype(np.int64)))
        return lstm(seq)[0].data[packed], None, emb
    xw = X[inv] @ lstm.weight_ih_l0.T + (lstm.bias_ih_l0 + lstm.bias_hh_l0)
    w_hh = lstm.weight_hh_l0.T
    if not want_c:
        return PackedLSTM.apply(xw, w_hh, lay.batch_sizes.tolist(),
                                 torch.from_numpy(lay.prev_rows).to(dev))[packed], None, emb
    n0 = int(lay.batch_sizes[0])
    h = X.new_zeros((n0, lstm.hidden_size))
    c = X.new_zeros((n0, lstm.hidden_size))
    hs, cs = [], []
    # one split (not a slice per step): a slice's backward would zero-fill all of xw every step
    for x_j in torch.split(xw, lay.batch_sizes.tolist()):
        n = x_j.shape[0]
        g = x_j + h[:n] @ w_hh
        i, f, gg, og = g.chunk(4, dim=1)
        c = torch.sigmoid(f) * c[:n] + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(og) * torch.tanh(c)
        hs.append(h)
        if want_c:
            cs.append(c)
    return torch.cat(hs)[packed], (torch.cat(cs)[packed] if want_c else None), emb


class PackedLSTM(torch.autograd.Function):
    """The LSTM recurrence over a packed, time-major batch with a hand-written backward pass.

    ``xw`` (rows x 4H) holds each row's input projection plus both biases, ``w_hh``
    (H x 4H) the transposed recurrent weights, ``sizes`` the active rows per time
    step (non-increasing). Returns every row's output h. Forward and backward each
    loop over time steps with a few tensor ops per step and no autograd graph;
    everything that does not need the recurrence (gate derivatives, the
    recurrent weights' gradient) is one vectorised op over all rows.
    """

    @staticmethod
    def forward(ctx, xw, w_hh, sizes, prev_rows):
        H = w_hh.shape[0]
        acts = torch.empty_like(xw)
        C = xw.new_empty((xw.shape[0], H))
        Hs = xw.new_empty((xw.shape[0], H))
        h = xw.new_zeros((sizes[0], H))
        c = xw.new_zeros((sizes[0], H))
        a = 0
        for n in sizes:
            g = torch.addmm(xw[a:a + n], h[:n], w_hh)
            act = acts[a:a + n]
            torch.sigmoid(g, out=act)
            torch.tanh(g[:, 2 * H:3 * H], out=act[:, 2 * H:3 * H])
            c = torch.addcmul(act[:, H:2 * H] * c[:n], act[:, :H], act[:, 2 * H:3 * H])
            h = act[:, 3 * H:] * torch.tanh(c)
            C[a:a + n] = c
            Hs[a:a + n] = h
            a += n
        ctx.save_for_backward(acts, C, Hs, w_hh, prev_rows)
        ctx.sizes = sizes
        return Hs

    @staticmethod
    def backward(ctx, dHs):
        acts, C, Hs, w_hh, prev_rows = ctx.saved_tensors
        H = w_hh.shape[0]
        first = prev_rows < 0
        idx = prev_rows.clamp_min(0)
        Cp = torch.where(first[:, None], torch.zeros_like(C), C[idx])
        Hp = torch.where(first[:, None], torch.zeros_like(Hs), Hs[idx])
        i, f, g, o = acts[:, :H], acts[:, H:2 * H], acts[:, 2 * H:3 * H], acts[:, 3 * H:]
        tc = torch.tanh(C)
        k = o * (1 - tc * tc)                                    # dc/dh through h = o tanh(c)
        A = torch.cat([g * i * (1 - i), Cp * f * (1 - f), i * (1 - g * g), tc * o * (1 - o)], dim=1)
        dG = torch.empty_like(acts)
        w_t = w_hh.T
        dh_rec = dc_rec = None
        ends = np.cumsum(ctx.sizes)
        for j in range(len(ctx.sizes) - 1, -1, -1):
            n = ctx.sizes[j]
            a = int(ends[j]) - n
            dh = dHs[a:a + n].clone()
            if dh_rec is not None:
                m = dh_rec.shape[0]
                dh[:m] += dh_rec
            dc = dh * k[a:a + n]
            if dc_rec is not None:
                dc[:m] += dc_rec
            dg = dG[a:a + n]
            torch.mul(torch.cat([dc, dc, dc, dh], dim=1), A[a:a + n], out=dg)
            dh_rec = dg @ w_t
            dc_rec = dc * f[a:a + n]
        return dG, Hp.T @ dG, None, None
