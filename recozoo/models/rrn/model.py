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
biases ``d`` (``dynamic_bias``) are ours. With ``baseline=bias`` (ours) μ + b_i
+ b_j are the bias model's (:class:`~recozoo.models.baselines.Bias`, fitted on
TRAIN and kept fixed): the networks and stationary factors then learn, and the
LSTMs read, the residuals of that regularised baseline, and the affine outputs
start with a zero bias; the stationary factors start from ALS's fit to those residuals
(``stationary_init=als``: by SGD alone they barely moved off the bias model), so the
model starts from a factor model on top of the bias model —
RRN's own biases, one SGD step per entity per batch under a per-rating L2
penalty, are not shrunk by the entity's count as the bias model's are, and
over-fitted users and movies with few ratings. Training alternates a user phase
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
  and on drifting data this was much worse (docs/temporal.md), so it is not the
  default;
* :meth:`RRN.observe` is the paper's "no retraining" experiment, a separately
  named mode: it adds later ratings (e.g. earlier test days) to the history the
  states are computed from, without touching any weight;
* the rating vector's weights are ``(r − μ)/sqrt(#ratings in the step)``
  (``indicator=true`` adds a second channel weighted ``1/sqrt(#ratings)``; off
  by default: it did not help on synthetic-drift VALID);
* a batch holds *all* ratings of its users (movies), so the stationary terms'
  gradients are averaged per user (movie) before the SGD step (see
  ``_mean_grads``); summed, they scaled with the rating count and oscillated
  for popular movies;
* the projected rating vector gets dropout 0.3 while training; a batch holds
  sequences of similar length in the packed, time-major layout of
  ``pack_padded_sequence``; see ``run_lstm`` for when the fused ``nn.LSTM``
  runs and when the recurrence is stepped by hand.

Defaults that are not the paper's (``reg_stationary`` 0.12, ``lr_stationary``
0.1, the ours-switches above) were chosen on synthetic-drift VALID only
(docs/history.md lists what was tried).

Prediction at a time inside the history re-runs the LSTM over the stored
history (training ratings by default), so the model keeps that history
(item indices, ratings, days) in its saved state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from recozoo.data.table import RatingsTable
from recozoo.defaults import rrn_rule
from recozoo.devices import resolve_device
from recozoo.engine import EngineConfig, Trainer, copy_weights
from recozoo.errors import RecozooError, SettingsError
from recozoo.models._baseline import BiasBaseline
from recozoo.models.temporal import TimeAwarePredict, days_of
from recozoo.models.base import Model
from recozoo.models.rrn.layout import Layout, Side, length_batches
from recozoo.models.rrn.lstm import SideNet, run_lstm, step_dim
from recozoo.models.rrn.task import RRNModule, RRNTask
from recozoo.progress import Reporter
from recozoo.search_space import Float, Int, SearchSpace
from recozoo.settings import AUTO, BaseSettings, setting

__all__ = ["RRN", "RRNSettings"]


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
    baseline: Literal["none", "bias"] = setting(
        AUTO, "bias: the networks and stationary factors learn the residuals of the bias model (fitted "
              "on TRAIN, kept fixed), whose mu + b_user + b_movie are the prediction's (needs biases=true; "
              "ours); none: mu and RRN's own biases; auto: docs/defaults.md", auto=True)
    stationary_init: Literal["random", "als"] = setting(
        AUTO, "random: stationary factors drawn N(0, init_std^2); als: the factors of recozoo's ALS "
              "(rank = stationary, its auto reg, 15 iterations) fitted on TRAIN to what RRN's centre "
              "leaves (the bias model's residuals under baseline=bias), so training starts from a "
              "closed-form factor model (ours); auto: docs/defaults.md", auto=True)
    future: Literal["one-step", "calendar"] = setting(
        "one-step", "after training: one step from the last known step straight to the predicted "
                    "day (one-step), or one empty step per calendar step up to it (calendar)")

    def validate(self) -> None:
        if self.baseline == "bias" and not self.biases:
            raise SettingsError("setting 'baseline': bias takes mu, b_user and b_movie from the bias model; "
                                "with biases=false use baseline=none")


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


class RRN(TimeAwarePredict, Model):
    """Recurrent Recommender Networks; see the module docstring (and which choices are ours)."""

    name = "rrn"
    Settings = RRNSettings
    uses_timestamps = True
    uses_device = True
    valid_curve = True          # the engine logs each epoch's VALID RMSE
    fallback = ("global mean for out-of-range ids; a user/movie without history gets the "
                "new-user/new-movie state")
    summary = "RRN (Wu et al. WSDM 2017): user and movie LSTMs over time steps + stationary factors"
    fold_in_method = ("cannot from a ratings vector: the user LSTM walks the ratings' days, which a new user's "
                      "(items x ratings) row lacks, and a new user has no stationary factor; the paper's "
                      "no-retraining mode is RRN.observe (later timed ratings of known users)")
    warm_starts = True
    warm_start_method = ("the run's two LSTMs, rating projections, stationary factors and biases (users new in "
                         "the events: their factor, bias and movie-side projection row initialised as a fresh "
                         "fit's); fresh optimiser state, epochs counted from 0 (--set epochs=N); the time "
                         "standardisation is recomputed on TRAIN + events (dated the day after TRAIN)")
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    #: "auto" settings (baseline) from recozoo.defaults
    auto_rule = rrn_rule
    conformance_settings = {"epochs": 2, "hidden": 8, "embed": 8, "dynamic": 4, "stationary": 4}
    #: what ``recozoo tune rrn`` tries (epochs and patience stay the settings': VALID stops a trial)
    search_space = SearchSpace(Int("hidden", 16, 128, log=True), Int("embed", 16, 128, log=True),
                               Int("dynamic", 5, 50, log=True), Int("stationary", 5, 50, log=True),
                               Float("lr", 1e-4, 1e-2, log=True), Float("dropout", 0.0, 0.6),
                               Float("reg_stationary", 0.01, 1.0, log=True))

    # ----------------------------------------------------------------- building
    def _build_nets(self, n_users: int, n_items: int) -> None:
        s = self.settings
        torch.manual_seed(self.seed)
        self.user_net_ = SideNet(n_items, s).to(self._dev)
        self.movie_net_ = SideNet(n_users, s).to(self._dev)
        if getattr(self, "base_", None) is not None:
            # on the bias model's residuals the dynamic part starts without an offset of its own (the
            # output layer's bias and dynamic-bias row at zero), so the model starts at the bias model
            with torch.no_grad():
                for net in (self.user_net_, self.movie_net_):
                    net.out.bias.zero_()
                    if s.dynamic_bias:
                        net.out.weight[s.dynamic].zero_()
        g = torch.Generator().manual_seed(self.seed)
        U = torch.randn(n_users, s.stationary, generator=g) * s.init_std
        M = torch.randn(n_items, s.stationary, generator=g) * s.init_std
        init = getattr(self, "_als_init", None)
        if init is not None:
            U, M = torch.from_numpy(init[0]), torch.from_numpy(init[1])
        self.U_ = nn.Parameter(U.to(self._dev))
        self.M_ = nn.Parameter(M.to(self._dev))
        self.BU_ = nn.Parameter(torch.zeros(n_users, device=self._dev))
        self.BM_ = nn.Parameter(torch.zeros(n_items, device=self._dev))

    def _score(self, du, dm, uu, ii):
        """Predictions from the two sides' dynamic outputs and the stationary terms of (uu, ii)."""
        s = self.settings
        D = s.dynamic
        p = self._centre(uu, ii) + (du[:, :D] * dm[:, :D]).sum(1) + (self.U_[uu] * self.M_[ii]).sum(1)
        if s.dynamic_bias:
            p = p + du[:, D] + dm[:, D]
        if self._own_biases:
            p = p + self.BU_[uu] + self.BM_[ii]
        return p

    @property
    def _own_biases(self) -> bool:
        """Whether the stationary biases b_i, b_j are the model's own (under ``baseline=bias`` they are the
        bias model's, in :meth:`_centre`)."""
        return self.settings.biases and getattr(self, "base_", None) is None

    def _centre(self, uu, ii):
        """What the model's terms are added to: μ, or under ``baseline=bias`` the bias model's
        μ + b_u + b_i of each pair (uu, ii: index tensors)."""
        base = getattr(self, "_base_t", None)
        if base is None:
            return self.global_mean_
        mu, bu, bi = base
        return mu + bu[uu] + bi[ii]

    def _set_baseline(self, base: BiasBaseline | None) -> None:
        """Keep the bias baseline (or None) and its biases as tensors on the model's device."""
        self.base_ = base
        self._base_t = None if base is None else (
            base.mu, torch.from_numpy(base.user_bias).to(self._dev), torch.from_numpy(base.item_bias).to(self._dev))

    def _predict_unknown(self, users, items):
        if getattr(self, "base_", None) is None:
            return super()._predict_unknown(users, items)
        return self.base_.at(users, items).astype(np.float32)

    @property
    def _dev(self) -> torch.device:
        """The torch device, resolved once (RRN builds and reads tensors outside the engine too)."""
        if getattr(self, "_device_t", None) is None:
            self._device_t = torch.device(resolve_device(self.device))
        return self._device_t

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
        mu = self.global_mean_
        if getattr(self, "base_", None) is not None:     # the LSTMs read the bias model's residuals
            r = (r.astype(np.float64) - self.base_.at(users, it)).astype(np.float32)
            mu = 0.0
        common = (mu, self.t_mean_, self.t_std_)
        s = self.settings
        self._us = Side(users, it, r, d, self.n_users_, s.user_step_days, self.d0_, *common)
        self._ms = Side(it, users, r, d, self.n_items_, s.movie_step_days, self.d0_, *common)

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
        self._set_baseline(BiasBaseline.fit(train) if s.baseline == "bias" else None)
        self._make_sides()
        self._als_init = self._fit_als_init(train) if s.stationary_init == "als" and s.stationary else None
        task = RRNTask(self, train)
        cfg = EngineConfig.from_settings(s, device=str(self._dev), seed=self.seed, optimizer="adam")
        valid = valid if valid is not None and valid.nnz > 0 else None
        prev = self._warm_previous(train.n_users, train.n_items)
        res = Trainer(task, cfg, reporter=reporter, run_dir=run_dir, resume=resume,
                      signature={"model": self.name, "n_users": train.n_users, "n_items": train.n_items,
                                 "n_ratings": train.nnz},
                      start_from=None if prev is None else lambda m: copy_weights(RRNModule(prev), m)
                      ).fit(None, valid)
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self._als_init = None                 # only the start of training needs it

    def _fit_als_init(self, train) -> tuple[np.ndarray, np.ndarray]:
        """ALS factors (rank ``stationary``) of what the centre leaves: the bias model's residuals under
        ``baseline=bias`` (ALS's own ``baseline=bias`` fits the same :class:`BiasBaseline`), else ALS's
        joint biases stand in for RRN's own zero-initialised ones, so only its factors are taken."""
        from recozoo.models.als import ALS
        als = ALS(settings={"rank": self.settings.stationary,
                            "baseline": "bias" if self.base_ is not None else "none"},
                  seed=self.seed).fit(train)
        return (np.ascontiguousarray(als.user_factors_, dtype=np.float32),
                np.ascontiguousarray(als.item_factors_, dtype=np.float32))

    def _biases_for(self, side: Side):
        """A side's (own, other) stationary biases and factors (detached), for the step summary."""
        s = self.settings
        bu, bm = self.BU_.detach(), self.BM_.detach()
        if not self._own_biases:
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

    def _all_dynamic(self, side: Side, net: SideNet) -> torch.Tensor:
        """Dynamic states of every history pair of one side (as training sees them)."""
        s = self.settings
        out = torch.zeros(side.keys.size, s.dynamic + int(s.dynamic_bias), device=self._dev)
        ents = np.arange(side.n_ent, dtype=np.int64)
        for b in length_batches(ents, np.diff(side.seq_indptr), 4096):
            lay = Layout(side, b)
            Hs, _, _ = run_lstm(side, net, lay, self._dev, biases=self._biases_for(side))
            out[torch.from_numpy(lay.pairs).to(self._dev)] = net.out(Hs)
        return out

    # --------------------------------------------------------------- predicting
    @torch.no_grad()
    def _dynamic_at(self, side: Side, net: SideNet, ent: np.ndarray, days: np.ndarray) -> torch.Tensor:
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
        e_prev = torch.zeros(n, step_dim(s), device=dev)
        has = prev >= 0
        if has.any():
            q = np.flatnonzero(has)
            qe = np.unique(ent[q])
            local = np.full(side.keys.size, -1, dtype=np.int64)
            for b in length_batches(qe, np.diff(side.seq_indptr)[qe], 2048):
                lay = Layout(side, b)
                Hs, Cs, emb = run_lstm(side, net, lay, dev, want_c=True, biases=self._biases_for(side))
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
            base = getattr(self, "_base_t", None)
            centre = self.global_mean_ if base is None else base[0] + base[1][ut][:, None] + base[2][None, :]
            out = centre + du[:, :D] @ dm[:, :D].T + self.U_[ut] @ self.M_.T
            if s.dynamic_bias:
                out = out + du[:, D:] + dm[:, D][None, :]
            if self._own_biases:
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
                   "t_std": self.t_std_, "best_epoch": self.best_epoch_})
        if getattr(self, "base_", None) is not None:
            st.update(self.base_.state())
        return st

    def _set_state(self, state):
        self.d0_, self.d_max_ = int(state["d0"]), int(state["d_max"])
        self.default_day_ = self.d_max_ + 1
        self.t_mean_, self.t_std_ = float(state["t_mean"]), float(state["t_std"])
        self.best_epoch_ = int(state["best_epoch"])
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
        self._set_baseline(BiasBaseline.from_state(state) if "baseline_mu" in state else None)
        self._make_sides()

