"""RRN's training as a :class:`recozoo.engine.Task` with its own batches and optimisers.

An epoch is a user phase then a movie phase (:class:`EpochBatches`): one side's
network learns while the other side's states stay fixed. AdamW trains each
network, SGD the stationary terms on each entity's mean gradient; VALID is
scored time-aware (each rating at its own time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch import nn

from recozoo.data.table import RatingsTable
from recozoo.engine import Loss, Task
from recozoo.metrics import rmse
from recozoo.models.rrn.layout import Layout, length_batches, ranges
from recozoo.models.rrn.lstm import run_lstm

if TYPE_CHECKING:
    from recozoo.models.rrn.model import RRN

__all__ = ["RRNTask", "RRNModule", "EpochBatches", "Phase"]


class RRNModule(nn.Module):
    """Everything RRN trains, as one module for the engine: both networks and the stationary terms."""

    def __init__(self, model: "RRN"):
        super().__init__()
        self.user, self.movie = model.user_net_, model.movie_net_
        self.U, self.M, self.BU, self.BM = model.U_, model.M_, model.BU_, model.BM_


class Phase:
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


class EpochBatches:
    """An epoch's batches for the engine: the user phase, then the movie phase, built lazily — the
    movie phase reads the user states the user phase has just trained (progress unit: one rating)."""

    def __init__(self, task: "RRNTask"):
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
            batches = length_batches(ents, np.diff(phase.side.seq_indptr), phase.size, t.rng)
            for bi in t.rng.permutation(len(batches)):
                lay = Layout(phase.side, batches[bi])
                sel = ranges(phase.r_indptr, lay.ents)
                if sel.size == 0:
                    continue
                if phase.r_perm is not None:
                    sel = phase.r_perm[sel]
                yield (phase, other_dyn, local, lay, sel), int(sel.size)


class RRNTask(Task):
    """RRN's training as an engine task with its own batches and optimisers (AdamW per network, SGD on
    each entity's mean gradient for the stationary terms) and a time-aware VALID score."""

    own_batches = True

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
        self.phases: list[Phase] = []

    def build_module(self) -> nn.Module:
        m = self.model
        m._build_nets(m.n_users_, m.n_items_)
        self.phases = [Phase(m, True, self.user_indptr, None),
                       Phase(m, False, self.item_indptr, self.item_perm)]
        return RRNModule(m)

    def make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        s = self.model.settings
        return {"adam_user": torch.optim.AdamW(module.user.parameters(), lr=s.lr, weight_decay=s.weight_decay),
                "adam_movie": torch.optim.AdamW(module.movie.parameters(), lr=s.lr, weight_decay=s.weight_decay),
                "sgd": torch.optim.SGD([module.U, module.M, module.BU, module.BM], lr=s.lr_stationary)}

    def epoch_batches(self, epoch: int) -> EpochBatches:
        return EpochBatches(self)

    def train_losses(self, net, batch) -> Iterator[Loss]:
        phase, other_dyn, local, lay, sel_np = batch
        m, s, dev = self.model, self.model.settings, self.model._dev
        side = phase.side
        sel = torch.from_numpy(sel_np).to(dev)
        local[lay.pairs] = np.arange(lay.pairs.size)
        Hs, _, _ = run_lstm(side, phase.net, lay, dev, dropout=s.dropout, biases=m._biases_for(side))
        dyn = phase.net.out(Hs)
        own_pair = side.rating_pair
        oth_pair = phase.other_side.rating_pair
        mine = torch.from_numpy(local[own_pair[sel_np]]).to(dev)
        uu, ii = self.users[sel], self.items[sel]
        d_own, d_oth = dyn[mine], other_dyn[torch.from_numpy(oth_pair[sel_np]).to(dev)]
        du, dm = (d_own, d_oth) if phase.user_side else (d_oth, d_own)
        err = self.r[sel] - m._score(du, dm, uu, ii)
        penalty = s.reg_stationary * ((m.U_[uu] ** 2).sum() + (m.M_[ii] ** 2).sum())
        if m._own_biases:
            penalty = penalty + s.reg_bias * ((m.BU_[uu] ** 2).sum() + (m.BM_[ii] ** 2).sum())
        yield Loss((err * err).sum(), int(sel_np.size), penalty, summed=True, steps=(phase.optimizer, "sgd"),
                   before_step=lambda: m._mean_grads(uu, ii))

    def valid_rmse(self, module: nn.Module, valid: RatingsTable) -> float:
        return rmse(self.model.predict_table(valid), valid.ratings)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
