"""RRN: Recurrent Recommender Networks (Wu, Ahmed, Beutel, Smola, Jing, WSDM 2017).

A user LSTM and a movie LSTM walk over fixed-width time steps (``user_step_days``
= 1 and ``movie_step_days`` = 7 by default, the paper's choice on 3-month
Netflix data); steps in which an entity has no rating are skipped. The input
of a step is

* the *previous* step's rating vector, projected to ``embed`` (40) dimensions
  by a sparse linear map (an ``EmbeddingBag`` whose per-sample weights are the
  ratings),
* (ours, ``step_summary``) the previous step's mean residual of the stationary
  part, ``r − μ − b_i − b_j − ⟨u_i, m_j⟩`` (stationary terms detached), and
  ``log(1 + #ratings)`` — two numbers every user (movie) shares, so the LSTM
  can track "this user rates above her usual level lately" without learning it
  separately for every movie (user) embedding,
* a new-user (new-movie) flag, set on the entity's first step,
* the step's wall-clock time and the previous step's time, standardised with
  the training days' mean and standard deviation.

An LSTM (one layer, ``hidden`` = 40 units) turns the inputs into states; an
affine map gives the 20-d dynamic state (plus, ours, one scalar dynamic bias).
Prediction::

    r̂_ij|t = μ + b_i + b_j + d_it + d_jt
             + ⟨W_user·u_it + b_user, W_movie·m_jt + b_movie⟩ + ⟨u_i, m_j⟩

with 20-d stationary factors ``u_i``, ``m_j``. The paper's formula is the last
line; μ, the stationary biases ``b_i``, ``b_j`` (``biases``) and the dynamic
biases ``d`` (``dynamic_bias``) are ours. Training alternates a user phase
(the movie states are computed once and held fixed, gradients flow through the
user LSTM over whole sequences) and a movie phase (the mirror image). Adam
trains the networks (AdamW if ``weight_decay`` > 0); plain SGD with L2 the
stationary terms. Every epoch is scored on VALID; the best epoch is kept
(``patience`` epochs without improvement stop training).

No official code exists; these choices are **ours** (settings where open):

* causality: the state that predicts step ``t`` has read the ratings of the
  steps *before* ``t`` and step ``t``'s own time (so it knows the gap), never
  step ``t``'s ratings — training and prediction use the same rule, so a
  rating at or after the predicted time is never read;
* ``future="one-step"`` (default, strict future prediction): a prediction for
  a day after the training range advances the states by one step from the
  last known step, with the predicted day's time (so the gap is known), the
  last known step's ratings and no test ratings — the same input rule as in
  training. ``future="calendar"`` instead advances one empty step per calendar
  step up to the predicted one; the LSTM never sees empty steps in training,
  and on our drifting data this was much worse (VALID RMSE 0.866 vs 0.791
  for one fitted model of an earlier version), so it is not the default;
* :meth:`RRN.observe` is the paper's "no retraining" experiment, a separately
  named mode: it adds later ratings (e.g. earlier test days) to the history the
  states are computed from, without touching any weight;
* the rating vector's weights are ``(r − μ)/sqrt(#ratings in the step)``
  (``indicator=true`` adds a second channel weighted ``1/sqrt(#ratings)``; it
  did not help on synthetic-drift VALID, so it is off);
* a batch holds *all* ratings of its users (movies), so the stationary terms'
  gradients are averaged per user (movie) before the SGD step (see
  ``_mean_grads``); summed, they scaled with the rating count and oscillated
  for popular movies;
* the projected rating vector gets dropout 0.3 while training; a batch holds
  sequences of similar length in the packed, time-major layout of
  ``pack_padded_sequence``; see ``_forward`` for when the fused ``nn.LSTM``
  runs and when the recurrence is stepped by hand.

Defaults that are not the paper's (``reg_stationary`` 0.12, ``lr_stationary``
0.1, the ours-switches above) were chosen on synthetic-drift VALID only; the
README's temporal-models section lists what was tried.

Prediction at a time inside the history re-runs the LSTM over the stored
history (training ratings by default), so the model keeps that history
(item indices, ratings, days) in its saved state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
from torch import nn

from recozoo.data.table import RatingsTable
from recozoo.errors import RecozooError
from recozoo.engine import EngineConfig, Loss, Trainer
from recozoo.metrics import rmse
from recozoo.models._temporal import TimeAwarePredict, days_of
from recozoo.models.base import Model
from recozoo.progress import Reporter
from recozoo.settings import BaseSettings, setting

__all__ = ["RRN", "MODELS"]


@dataclass(frozen=True)
class RRNSettings(BaseSettings):
    user_step_days: int = setting(1, "width of a user time step in days", min=1)
    movie_step_days: int = setting(7, "width of a movie time step in days", min=1)
    hidden: int = setting(40, "LSTM units (one layer)", min=1)
    embed: int = setting(40, "dimension of the projected rating vector (LSTM input)", min=1)
    dynamic: int = setting(20, "dimension of the dynamic state (affine map of the LSTM output)", min=1)
    stationary: int = setting(20, "dimension of the stationary factors", min=0)
    epochs: int = setting(30, "maximum number of epochs (one user phase + one movie phase)", min=1)
    patience: int = setting(4, "stop after this many epochs without a better VALID RMSE "
                               "(0 = never stop early)", min=0)
    batch_size: int = setting(256, "user sequences per optimisation step (user phase)", min=1)
    movie_batch_size: int = setting(256, "movie sequences per optimisation step (movie phase; ours: "
                                        "movies are ~10x fewer than users, so a smaller batch gives "
                                        "the movie network a comparable number of steps)", min=1)
    lr: float = setting(1e-3, "Adam learning rate of the networks", min=0.0, min_exclusive=True)
    weight_decay: float = setting(0.0, "decoupled (AdamW) weight decay of the networks", min=0.0)
    dropout: float = setting(0.3, "dropout on the projected rating vector while training (ours)",
                             min=0.0, max=1.0, max_exclusive=True)
    lr_stationary: float = setting(0.1, "SGD learning rate of the stationary factors and biases, on "
                                        "each entity's mean per-rating gradient in a batch (ours)",
                                   min=0.0)
    reg_stationary: float = setting(0.12, "per-rating L2 penalty of the stationary factors (ours)",
                                    min=0.0)
    init_std: float = setting(0.1, "std of the stationary factors' initialisation", min=0.0)
    biases: bool = setting(True, "stationary user and movie biases b_i + b_j in the prediction (ours)")
    reg_bias: float = setting(0.005, "per-rating L2 penalty of the stationary biases (ours)", min=0.0)
    dynamic_bias: bool = setting(True, "each side's affine output also gives a scalar dynamic bias "
                                       "added to the prediction (ours)")
    step_summary: bool = setting(True, "add to the LSTM input the step's mean residual of the "
                                       "stationary part (r - mu - b_user - b_movie - <u_i, m_j>) and "
                                       "log(1 + #ratings), shared by all users/movies (ours)")
    indicator: bool = setting(False, "a second rating-vector channel weighted 1/sqrt(#ratings) "
                                    "(which movies/users were rated, not only how; ours)")
    cpu_threads: int = setting(1, "torch intra-op threads while RRN fits/predicts on CPU (0 = leave "
                                  "torch's setting); its many small per-step ops run faster on one",
                               min=0)
    future: Literal["one-step", "calendar"] = setting(
        "one-step", "after training: one step from the last known step straight to the predicted "
                    "day (one-step), or one empty step per calendar step up to it (calendar)")


# --------------------------------------------------------------------------- sequences
class _Side:
    """One side's step sequences (users or movies) built from a history table.

    Pairs (entity, step) with at least one rating, sorted by entity then step;
    ``seq_indptr`` gives each entity's pairs; the bag arrays hold each pair's
    ratings of the other side, for the ``EmbeddingBag``.
    """

    def __init__(self, ent, other, r, days, n_ent, width, d0, mu, t_mean, t_std):
        self.width, self.d0, self.n_ent = width, d0, n_ent
        self.t_mean, self.t_std = t_mean, t_std
        step = np.floor_divide(days - d0, width)
        self.smin = int(step.min()) if step.size else 0
        self.K = (int(step.max()) - self.smin + 2) if step.size else 2
        key = ent.astype(np.int64) * self.K + (step - self.smin)
        self.keys, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
        self.pair_ent = self.keys // self.K
        self.pair_step = self.keys % self.K + self.smin
        self.seq_indptr = np.zeros(n_ent + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.pair_ent, minlength=n_ent), out=self.seq_indptr[1:])
        cnt = np.bincount(inv, minlength=self.keys.size)
        self.pair_indptr = np.zeros(self.keys.size + 1, dtype=np.int64)
        np.cumsum(cnt, out=self.pair_indptr[1:])
        o = np.argsort(inv, kind="stable")
        self.bag_idx = other[o].astype(np.int64)
        self.bag_w = ((r[o] - mu) / np.sqrt(cnt[inv[o]])).astype(np.float32)
        self.bag_ind = (1.0 / np.sqrt(cnt[inv[o]])).astype(np.float32)
        self.bag_r = (r[o] - mu).astype(np.float32)          # centred ratings, bag order
        self.rating_pair = inv                       # pair of each input rating
        self.pair_time = self.std_time(self.pair_step)

    def std_time(self, step) -> np.ndarray:
        day = self.d0 + np.asarray(step, dtype=np.float64) * self.width
        return ((day - self.t_mean) / self.t_std).astype(np.float32)

    def prev_pair(self, ent: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Index of the entity's last pair with step < tau, or -1."""
        t = np.clip(tau, self.smin, self.smin + self.K - 1) - self.smin
        pos = np.searchsorted(self.keys, ent * self.K + t, side="left") - 1
        ok = (pos >= 0) & (pos >= self.seq_indptr[ent])
        return np.where(ok, pos, -1)


def _step_dim(s: RRNSettings) -> int:
    """Size of a step's rating input: the projected rating vector [+ the step summary]."""
    return s.embed + (2 if s.step_summary else 0)


class _Net(nn.Module):
    """One side's network: rating projection, LSTM, affine output."""

    def __init__(self, n_other: int, s: RRNSettings):
        super().__init__()
        self.bag = nn.EmbeddingBag(n_other, s.embed, mode="sum")
        nn.init.normal_(self.bag.weight, 0.0, 0.1)
        if s.indicator:
            self.ind = nn.EmbeddingBag(n_other, s.embed, mode="sum")
            nn.init.normal_(self.ind.weight, 0.0, 0.1)
        self.lstm = nn.LSTM(_step_dim(s) + 3, s.hidden, num_layers=1)
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


@contextlib.contextmanager
def _threads(n: int, device: str):
    """Temporarily set torch's intra-op CPU threads (restored afterwards)."""
    if n <= 0 or not str(device).startswith("cpu"):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _ranges(indptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(indptr[i], indptr[i+1])`` for every ``i`` in ``ids``."""
    starts = indptr[ids]
    lens = indptr[ids + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = starts - np.concatenate([[0], np.cumsum(lens)[:-1]])
    return np.repeat(shift, lens) + np.arange(total, dtype=np.int64)


class _Layout:
    """A batch of entities' step sequences in packed (time-major) layout.

    Entities are ordered by decreasing length, so at time ``j`` the active
    sequences are the first ``batch_sizes[j]`` ones — the layout
    ``pack_padded_sequence`` builds. ``pairs`` are the batch's (entity, step)
    pairs in entity-major order; ``packed[k]`` is where pair ``k`` sits.
    """

    def __init__(self, side: _Side, ents: np.ndarray):
        lens = side.seq_indptr[ents + 1] - side.seq_indptr[ents]
        order = np.argsort(-lens, kind="stable")
        self.ents, lens = ents[order], lens[order]
        self.pairs = _ranges(side.seq_indptr, self.ents)
        row = np.repeat(np.arange(self.ents.size), lens)
        self.pos = self.pairs - np.repeat(side.seq_indptr[self.ents], lens)
        self.batch_sizes = np.bincount(self.pos, minlength=int(lens.max()) if lens.size else 0)
        self.offsets = np.concatenate([[0], np.cumsum(self.batch_sizes)])
        self.packed = self.offsets[self.pos] + row
        # packed row of each packed row's previous step (same sequence), -1 on a first step
        prev = np.full(self.packed.size, -1, dtype=np.int64)
        later = self.pos > 0
        prev[self.packed[later]] = self.offsets[self.pos[later] - 1] + row[later]
        self.prev_rows = prev


def _forward(side: _Side, net: _Net, lay: _Layout, dev, want_c: bool = False,
             dropout: float = 0.0, biases=None):
    """LSTM outputs (and cell states) after every pair's step, plus each pair's rating embedding.

    The batch is already in the packed, time-major layout of a
    ``PackedSequence``. Without gradients (VALID scoring, the other side's
    states) the fused ``nn.LSTM`` runs the recurrence in one native call. With gradients,
    :class:`_PackedLSTM` runs it with a hand-written backward pass (``nn.LSTM``
    on a ``PackedSequence`` trained ~3x slower on this CPU: its backward
    took ~4x an autograd-recorded hand-stepped loop, torch 2.13, 1 thread).
    Where the cell state after *every* step is wanted (``want_c``: prediction
    inside the history) the recurrence is stepped by hand without autograd.
    """
    pairs = lay.pairs
    bags = _ranges(side.pair_indptr, pairs)
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
        return _PackedLSTM.apply(xw, w_hh, lay.batch_sizes.tolist(),
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


class _PackedLSTM(torch.autograd.Function):
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


def _batches(ents: np.ndarray, lengths: np.ndarray, size: int, rng=None) -> list[np.ndarray]:
    """Entities with >= 1 step in batches of similar length (less padding work per time step)."""
    ents = ents[lengths > 0]
    lengths = lengths[lengths > 0]
    tie = rng.random(ents.size) if rng is not None else np.zeros(ents.size)
    order = np.lexsort((tie, lengths))
    return [ents[order[s:s + size]] for s in range(0, ents.size, size)]


class _RRNModule(nn.Module):
    """Everything RRN trains, as one module for the engine: both networks and the stationary terms."""

    def __init__(self, model: "RRN"):
        super().__init__()
        self.user, self.movie = model.user_net_, model.movie_net_
        self.U, self.M, self.BU, self.BM = model.U_, model.M_, model.BU_, model.BM_


class _Phase:
    """One side's half of an epoch: its network learns while the other side's states stay fixed."""

    def __init__(self, model: "RRN", user_side: bool, r_indptr: np.ndarray, r_perm: np.ndarray | None):
        s = model.settings
        self.user_side = user_side
        self.size = s.batch_size if user_side else s.movie_batch_size
        self.net = model.user_net_ if user_side else model.movie_net_
        self.other_net = model.movie_net_ if user_side else model.user_net_
        self.side = model._us if user_side else model._ms
        self.other_side = model._ms if user_side else model._us
        self.r_indptr, self.r_perm = r_indptr, r_perm
        self.optimizer = "adam_user" if user_side else "adam_movie"


class _EpochBatches:
    """An epoch's batches for the engine: the user phase, then the movie phase, built lazily — the
    movie phase reads the user states the user phase has just trained (progress unit: one rating)."""

    def __init__(self, task: "_RRNTask"):
        self.task = task

    def __len__(self) -> int:
        return 2 * self.task.n_ratings

    def __iter__(self):
        t = self.task
        for phase in t.phases:
            with torch.no_grad():
                other_dyn = t.model._all_dynamic(phase.other_side, phase.other_net)
            local = np.empty(phase.side.keys.size, dtype=np.int64)    # scratch: pair -> row of the batch
            ents = np.arange(phase.side.n_ent, dtype=np.int64)
            batches = _batches(ents, np.diff(phase.side.seq_indptr), phase.size, t.rng)
            for bi in t.rng.permutation(len(batches)):
                lay = _Layout(phase.side, batches[bi])
                sel = _ranges(phase.r_indptr, lay.ents)
                if sel.size == 0:
                    continue
                if phase.r_perm is not None:
                    sel = phase.r_perm[sel]
                yield (phase, other_dyn, local, lay, sel), int(sel.size)


class _RRNTask:
    """RRN's training as an engine task with its own batches and optimisers (AdamW per network, SGD on
    each entity's mean gradient for the stationary terms) and a time-aware VALID score."""

    def __init__(self, model: "RRN", train: RatingsTable):
        self.model = model
        dev = model._dev
        self.n_ratings = train.nnz
        self.r = torch.from_numpy(train.ratings.astype(np.float32)).to(dev)
        self.users = torch.from_numpy(train.users.astype(np.int64)).to(dev)
        self.items = torch.from_numpy(train.items.astype(np.int64)).to(dev)
        items = train.items.astype(np.int64)
        self.item_perm = np.argsort(items, kind="stable")
        self.item_indptr = np.zeros(train.n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=train.n_items), out=self.item_indptr[1:])
        self.user_indptr = np.asarray(train.indptr, np.int64)
        self.rng = np.random.default_rng(model.seed)
        self.phases: list[_Phase] = []

    def build_module(self) -> nn.Module:
        m = self.model
        m._build_nets(m.n_users_, m.n_items_)
        self.phases = [_Phase(m, True, self.user_indptr, None),
                       _Phase(m, False, self.item_indptr, self.item_perm)]
        return _RRNModule(m)

    def make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        s = self.model.settings
        return {"adam_user": torch.optim.AdamW(module.user.parameters(), lr=s.lr, weight_decay=s.weight_decay),
                "adam_movie": torch.optim.AdamW(module.movie.parameters(), lr=s.lr, weight_decay=s.weight_decay),
                "sgd": torch.optim.SGD([module.U, module.M, module.BU, module.BM], lr=s.lr_stationary)}

    def epoch_batches(self, epoch: int) -> _EpochBatches:
        return _EpochBatches(self)

    def train_losses(self, net, batch) -> Iterator[Loss]:
        phase, other_dyn, local, lay, sel_np = batch
        m, s, dev = self.model, self.model.settings, self.model._dev
        side = phase.side
        sel = torch.from_numpy(sel_np).to(dev)
        local[lay.pairs] = np.arange(lay.pairs.size)
        Hs, _, _ = _forward(side, phase.net, lay, dev, dropout=s.dropout, biases=m._biases_for(side))
        dyn = phase.net.out(Hs)
        own_pair = side.rating_pair
        oth_pair = phase.other_side.rating_pair
        mine = torch.from_numpy(local[own_pair[sel_np]]).to(dev)
        uu, ii = self.users[sel], self.items[sel]
        d_own, d_oth = dyn[mine], other_dyn[torch.from_numpy(oth_pair[sel_np]).to(dev)]
        du, dm = (d_own, d_oth) if phase.user_side else (d_oth, d_own)
        err = self.r[sel] - m._score(du, dm, uu, ii)
        penalty = s.reg_stationary * ((m.U_[uu] ** 2).sum() + (m.M_[ii] ** 2).sum())
        if s.biases:
            penalty = penalty + s.reg_bias * ((m.BU_[uu] ** 2).sum() + (m.BM_[ii] ** 2).sum())
        yield Loss((err * err).sum(), int(sel_np.size), penalty, summed=True, steps=(phase.optimizer, "sgd"),
                   before_step=lambda: m._mean_grads(uu, ii))

    def valid_rmse(self, module: nn.Module, valid: RatingsTable) -> float:
        return rmse(self.model.predict_table(valid), valid.ratings)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class RRN(TimeAwarePredict, Model):
    """Recurrent Recommender Networks; see the module docstring (and which choices are ours)."""

    name = "rrn"
    Settings = RRNSettings
    uses_timestamps = True
    fallback = ("global mean for out-of-range ids; a user/movie without history gets the "
                "new-user/new-movie state")
    summary = "RRN (Wu et al. WSDM 2017): user and movie LSTMs over time steps + stationary factors"
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    conformance_settings = {"epochs": 2, "hidden": 8, "embed": 8, "dynamic": 4, "stationary": 4}

    # ----------------------------------------------------------------- building
    def _build_nets(self, n_users: int, n_items: int) -> None:
        s = self.settings
        torch.manual_seed(self.seed)
        self.user_net_ = _Net(n_items, s).to(self._dev)
        self.movie_net_ = _Net(n_users, s).to(self._dev)
        g = torch.Generator().manual_seed(self.seed)
        self.U_ = nn.Parameter((torch.randn(n_users, s.stationary, generator=g) * s.init_std).to(self._dev))
        self.M_ = nn.Parameter((torch.randn(n_items, s.stationary, generator=g) * s.init_std).to(self._dev))
        self.BU_ = nn.Parameter(torch.zeros(n_users, device=self._dev))
        self.BM_ = nn.Parameter(torch.zeros(n_items, device=self._dev))

    def _score(self, du, dm, uu, ii):
        """Predictions from the two sides' dynamic outputs and the stationary terms of (uu, ii)."""
        s = self.settings
        D = s.dynamic
        p = self.global_mean_ + (du[:, :D] * dm[:, :D]).sum(1) + (self.U_[uu] * self.M_[ii]).sum(1)
        if s.dynamic_bias:
            p = p + du[:, D] + dm[:, D]
        if s.biases:
            p = p + self.BU_[uu] + self.BM_[ii]
        return p

    @property
    def _dev(self):
        from recozoo.devices import resolve_device
        return torch.device(resolve_device(self.device))

    def set_history(self, table: RatingsTable) -> None:
        """Compute dynamic states from ``table`` (same id maps) instead; weights are untouched."""
        self._check_fitted()
        if table.n_users != self.n_users_ or table.n_items != self.n_items_:
            raise RecozooError("rrn: the history must share the training table's id maps")
        if not table.has_timestamps:
            raise RecozooError("rrn: the history needs timestamps")
        self._history = (table.indptr.astype(np.int64), table.items.astype(np.int64),
                         table.ratings.astype(np.float32), days_of(table.timestamps))
        self._make_sides()

    def observe(self, table: RatingsTable) -> None:
        """The paper's "no retraining" mode: add ``table``'s ratings to the training history.

        Predictions at time ``t`` then also use these ratings — only those of
        steps before ``t``'s step — while every weight stays as trained.
        """
        self._check_fitted()
        ip, it, r, d = self._train_history
        users = np.concatenate([np.repeat(np.arange(self.n_users_), np.diff(ip)), table.users])
        merged = RatingsTable.from_coo(users, np.concatenate([it, table.items]),
                                       np.concatenate([r, table.ratings]),
                                       np.concatenate([d * 86400, table.timestamps]),
                                       user_ids=table.user_ids, item_ids=table.item_ids)
        self.set_history(merged)

    def _make_sides(self) -> None:
        ip, it, r, d = self._history
        users = np.repeat(np.arange(self.n_users_, dtype=np.int64), np.diff(ip))
        common = (self.global_mean_, self.t_mean_, self.t_std_)
        s = self.settings
        self._us = _Side(users, it, r, d, self.n_users_, s.user_step_days, self.d0_, *common)
        self._ms = _Side(it, users, r, d, self.n_items_, s.movie_step_days, self.d0_, *common)

    # ------------------------------------------------------------------ fitting
    def _fit(self, train, valid, reporter: Reporter, run_dir: Path | None, resume: bool) -> None:
        with _threads(self.settings.cpu_threads, self._dev.type):
            self._fit_impl(train, valid, reporter, run_dir, resume)

    def _fit_impl(self, train, valid, reporter, run_dir, resume) -> None:
        s = self.settings
        days = days_of(train.timestamps)
        self.d0_, self.d_max_ = int(days.min()), int(days.max())
        self.default_day_ = self.d_max_ + 1
        self.t_mean_ = float(days.mean())
        self.t_std_ = float(max(days.std(), 1.0))
        self._train_history = (train.indptr.astype(np.int64), train.items.astype(np.int64),
                               train.ratings.astype(np.float32), days)
        self._history = self._train_history
        self._make_sides()
        task = _RRNTask(self, train)
        cfg = EngineConfig(epochs=s.epochs, optimizer="adam", lr=s.lr, eval_every=1, patience=s.patience,
                           device=str(self._dev), seed=self.seed)
        valid = valid if valid is not None and valid.nnz > 0 else None
        res = Trainer(task, cfg, reporter=reporter, run_dir=run_dir, resume=resume,
                      signature={"model": self.name, "n_users": train.n_users, "n_items": train.n_items,
                                 "n_ratings": train.nnz}).fit(None, valid)
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch

    def _biases_for(self, side: _Side):
        """A side's (own, other) stationary biases and factors (detached), for the step summary."""
        s = self.settings
        bu, bm = self.BU_.detach(), self.BM_.detach()
        if not s.biases:
            bu, bm = torch.zeros_like(bu), torch.zeros_like(bm)
        u, m = self.U_.detach(), self.M_.detach()
        return (bu, bm, u, m) if side is self._us else (bm, bu, m, u)

    def _mean_grads(self, uu: torch.Tensor, ii: torch.Tensor) -> None:
        """Turn the stationary terms' summed gradients into per-entity means (ours).

        A batch holds *all* ratings of its users (movies), so a summed gradient
        would scale the step with the entity's rating count: plain SGD then
        oscillates for users and movies with many ratings. Dividing by the
        entity's number of ratings in the batch makes ``lr_stationary`` a step
        on the mean per-rating gradient; the objective (squared error + per-rating
        L2) is unchanged.
        """
        cu = torch.bincount(uu, minlength=self.n_users_).clamp_min(1).to(self.U_.dtype)
        cm = torch.bincount(ii, minlength=self.n_items_).clamp_min(1).to(self.M_.dtype)
        for par, cnt in ((self.U_, cu), (self.M_, cm), (self.BU_, cu), (self.BM_, cm)):
            if par.grad is not None:
                par.grad /= cnt.view(-1, *([1] * (par.grad.dim() - 1)))

    def _all_dynamic(self, side: _Side, net: _Net) -> torch.Tensor:
        """Dynamic states of every history pair of one side (as training sees them)."""
        s = self.settings
        out = torch.zeros(side.keys.size, s.dynamic + int(s.dynamic_bias), device=self._dev)
        ents = np.arange(side.n_ent, dtype=np.int64)
        for b in _batches(ents, np.diff(side.seq_indptr), 4096):
            lay = _Layout(side, b)
            Hs, _, _ = _forward(side, net, lay, self._dev, biases=self._biases_for(side))
            out[torch.from_numpy(lay.pairs).to(self._dev)] = net.out(Hs)
        return out

    # --------------------------------------------------------------- predicting
    @torch.no_grad()
    def _dynamic_at(self, side: _Side, net: _Net, ent: np.ndarray, days: np.ndarray) -> torch.Tensor:
        """Dynamic state of each (entity, day): reads only history steps before the day's step.

        Always the hand-stepped recurrence (never the fused ``nn.LSTM``'s final
        states, though that would be faster after the history): its result for a
        step is then bit-identical whatever the history holds after that step.
        """
        dev = self._dev
        s = self.settings
        tau = np.floor_divide(days - side.d0, side.width)
        prev = side.prev_pair(ent, tau)
        n = ent.size
        H, D = s.hidden, s.dynamic + int(s.dynamic_bias)
        h0 = torch.zeros(n, H, device=dev)
        c0 = torch.zeros(n, H, device=dev)
        e_prev = torch.zeros(n, _step_dim(s), device=dev)
        has = prev >= 0
        if has.any():
            q = np.flatnonzero(has)
            qe = np.unique(ent[q])
            local = np.full(side.keys.size, -1, dtype=np.int64)
            for b in _batches(qe, np.diff(side.seq_indptr)[qe], 2048):
                lay = _Layout(side, b)
                Hs, Cs, emb = _forward(side, net, lay, dev, want_c=True, biases=self._biases_for(side))
                local[lay.pairs] = np.arange(lay.pairs.size)
                mq = q[local[prev[q]] >= 0]
                lq = torch.from_numpy(local[prev[mq]]).to(dev)
                qi = torch.from_numpy(mq).to(dev)
                h0[qi], c0[qi], e_prev[qi] = Hs[lq], Cs[lq], emb[lq]
                local[lay.pairs] = -1
        step_prev = np.where(has, side.pair_step[np.maximum(prev, 0)], tau)
        end = (self.d_max_ - side.d0) // side.width
        fill_start = np.maximum(end, step_prev) + 1
        n_fill = np.where(has & (s.future == "calendar"), np.maximum(tau - fill_start, 0), 0)
        flag = torch.from_numpy((~has).astype(np.float32)).to(dev)
        h, c, t_last = h0, c0, step_prev.copy()
        for f in range(int(n_fill.max()) if n else 0):
            act = n_fill > f
            st = fill_start + f
            x = torch.cat([e_prev if f == 0 else torch.zeros_like(e_prev), flag[:, None],
                           torch.from_numpy(side.std_time(st))[:, None].to(dev),
                           torch.from_numpy(side.std_time(t_last))[:, None].to(dev)], dim=1)
            hn, cn = net.cell(x, h, c)
            a_t = torch.from_numpy(act).to(dev)[:, None]
            h, c = torch.where(a_t, hn, h), torch.where(a_t, cn, c)
            t_last = np.where(act, st, t_last)
        used = torch.from_numpy(n_fill > 0).to(dev)[:, None]
        x = torch.cat([torch.where(used, torch.zeros_like(e_prev), e_prev), flag[:, None],
                       torch.from_numpy(side.std_time(tau))[:, None].to(dev),
                       torch.from_numpy(side.std_time(t_last))[:, None].to(dev)], dim=1)
        h, _ = net.cell(x, h, c)
        out = net.out(h)
        assert out.shape == (n, D)
        return out

    def _predict_at(self, users, items, days):
        with _threads(self.settings.cpu_threads, self._dev.type):
            return self._predict_at_impl(users, items, days)

    def _predict_at_impl(self, users, items, days):
        out = np.empty(users.size, dtype=np.float32)
        for a in range(0, users.size, 200_000):
            u, i, d = users[a:a + 200_000], items[a:a + 200_000], days[a:a + 200_000]
            du = self._dynamic_at(self._us, self.user_net_, u, d)
            dm = self._dynamic_at(self._ms, self.movie_net_, i, d)
            ut, it = torch.from_numpy(u).to(self._dev), torch.from_numpy(i).to(self._dev)
            with torch.no_grad():
                p = self._score(du, dm, ut, it)
            out[a:a + u.size] = p.cpu().numpy()
        return out

    def score_items(self, users: np.ndarray) -> np.ndarray:
        """All items for each user at the default day: states once per user and per item."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        with _threads(self.settings.cpu_threads, self._dev.type), torch.no_grad():
            du = self._dynamic_at(self._us, self.user_net_, users,
                                  np.full(users.size, self.default_day_, dtype=np.int64))
            items = np.arange(self.n_items_, dtype=np.int64)
            dm = self._dynamic_at(self._ms, self.movie_net_, items,
                                  np.full(items.size, self.default_day_, dtype=np.int64))
            ut = torch.from_numpy(users).to(self._dev)
            s = self.settings
            D = s.dynamic
            out = self.global_mean_ + du[:, :D] @ dm[:, :D].T + self.U_[ut] @ self.M_.T
            if s.dynamic_bias:
                out = out + du[:, D:] + dm[:, D][None, :]
            if s.biases:
                out = out + self.BU_[ut][:, None] + self.BM_[None, :]
        return out.cpu().numpy().astype(np.float32)

    # -------------------------------------------------------------- persistence
    def _load_weights(self, w: dict) -> None:
        self.user_net_.load_state_dict(w["user"])
        self.movie_net_.load_state_dict(w["movie"])
        with torch.no_grad():
            self.U_.copy_(w["U"])
            self.M_.copy_(w["M"])
            self.BU_.copy_(w["BU"])
            self.BM_.copy_(w["BM"])

    def _get_state(self):
        st = {}
        for side, net in (("user", self.user_net_), ("movie", self.movie_net_)):
            for k, v in net.state_dict().items():
                st[f"{side}.{k}"] = v.detach().cpu().numpy()
        st["U"] = self.U_.detach().cpu().numpy()
        st["M"] = self.M_.detach().cpu().numpy()
        st["BU"] = self.BU_.detach().cpu().numpy()
        st["BM"] = self.BM_.detach().cpu().numpy()
        ip, it, r, d = self._train_history
        st.update({"train_indptr": ip, "train_items": it, "train_ratings": r, "train_days": d,
                   "d0": self.d0_, "d_max": self.d_max_, "t_mean": self.t_mean_,
                   "t_std": self.t_std_, "best_epoch": getattr(self, "best_epoch_", 0)})
        return st

    def _set_state(self, state):
        self.d0_, self.d_max_ = int(state["d0"]), int(state["d_max"])
        self.default_day_ = self.d_max_ + 1
        self.t_mean_, self.t_std_ = float(state["t_mean"]), float(state["t_std"])
        self.best_epoch_ = int(state.get("best_epoch", 0))
        self._build_nets(self.n_users_, self.n_items_)
        for side, net in (("user", self.user_net_), ("movie", self.movie_net_)):
            sd = {k: torch.from_numpy(np.asarray(state[f"{side}.{k}"])) for k in net.state_dict()}
            net.load_state_dict(sd)
        self._load_weights({"user": self.user_net_.state_dict(), "movie": self.movie_net_.state_dict(),
                            "U": torch.from_numpy(np.asarray(state["U"])),
                            "M": torch.from_numpy(np.asarray(state["M"])),
                            "BU": torch.from_numpy(np.asarray(state["BU"])),
                            "BM": torch.from_numpy(np.asarray(state["BM"]))})
        self._train_history = (np.asarray(state["train_indptr"], np.int64),
                               np.asarray(state["train_items"], np.int64),
                               np.asarray(state["train_ratings"], np.float32),
                               np.asarray(state["train_days"], np.int64))
        self._history = self._train_history
        self._make_sides()


MODELS = (RRN,)
