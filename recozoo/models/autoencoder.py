"""The autoencoder machinery of DeepRec, I-/U-AutoRec and GLocal-K: network, engine task, model.

A row autoencoder reads one row of the rating matrix (a user's ratings over
items, or an item's over users) and reconstructs it; the loss counts the
observed entries only. Three public pieces, each usable on its own:

* :class:`AutoencoderNet` — encoder ``n -> layers[0] -> ... -> layers[-1]``,
  mirrored decoder, optional tied weights, code-layer dropout, a sparse input
  path and a gathered output path (below);
* :class:`AutoencoderTask` — the :class:`recozoo.engine.Task` that trains it:
  masked squared error on the sparse step, optional dense re-feeding, optional
  input noise and weight penalty;
* :class:`AutoencoderModel` — the :class:`~recozoo.models.base.Model` around
  them: fit through :class:`recozoo.engine.Trainer`, prediction, fallbacks,
  persistence and export. A model subclasses it and says what to build
  (``_net_kwargs``), how to train (``_task``, ``_engine_config``) and which
  rows it reads (``row_mode``).

Speed without changing the maths (all through :mod:`recozoo.engine`):

* the sparse step's first layer multiplies only the observed inputs
  (``embedding_bag`` with per-sample weights = ratings), and its last layer is
  evaluated only at the observed target items (a gather of decoder weight
  rows): the loss and every gradient equal the dense masked computation
  (tested); when re-feeding is on, the dense ``y`` for the next step is
  computed from the same hidden activations without autograd;
* the re-feeding step is dense by definition (a matmul on the device);
* evaluation encodes the TRAIN rows and decodes only at the VALID/TEST entries.

Fallbacks (``fallback``): a row (user in user mode) with no training rating, or
an out-of-range row id, gets the column's mean training rating — an empty input
is outside what the network was trained on, so its output there is arbitrary
(a model chooses through ``empty_row``). A column (item in user mode) with no
training rating was never a target, so its output weights are untrained: such
pairs get the row's mean training rating (the global mean if it has none).

The saved model carries the training rows (the autoencoder's input at predict
time) next to the weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recozoo.engine import EngineConfig, Loss, RowBatch, RowMatrix, RowSparseModule, Task, Trainer, copy_weights
from recozoo.engine.held_out import SELECT_K, HeldOutValid
from recozoo.engine.sparse_ops import CompactPattern, csr_matmul, sampled_dot, sampled_dot_at
from recozoo.errors import SettingsError
from recozoo.io import atomic_write_bytes
from recozoo.models._baseline import BiasBaseline
from recozoo.models._factors import keep_entries
from recozoo.models.base import FoldIn, Model

__all__ = ["AutoencoderNet", "AutoencoderTask", "AutoencoderModel", "LossSettingAutoencoder", "ACTIVATIONS",
           "ActivationName", "CSR_DEVICES", "LossName", "binary_rows"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "selu": F.selu, "elu": F.elu, "lrelu": F.leaky_relu, "relu": F.relu, "relu6": F.relu6,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "swish": F.silu, "none": lambda x: x,
}
#: devices with torch's sparse CSR kernels (csr_matmul / sampled_dot); elsewhere (mps) a gather path
CSR_DEVICES = ("cpu", "cuda")
#: item mode keeps the whole network output (users x items, float32) when it has at most this many cells
FULL_CACHE_CELLS = 1 << 25
ActivationName = Literal["selu", "elu", "lrelu", "relu", "relu6", "sigmoid", "tanh", "swish", "none"]
#: what a row autoencoder minimises: "mse" = squared error at the observed ratings (explicit feedback,
#: the default); on implicit feedback, with binary input (every stored entry = 1), the negative
#: log-likelihood of the row under a "multinomial" (softmax over all columns, Liang et al. 2018) or a
#: "logistic" (independent Bernoulli per column, every column counting) output
LossName = Literal["mse", "multinomial", "logistic"]


def binary_rows(rows: RowMatrix) -> RowMatrix:
    """The same rows with every stored entry as value 1 (an interaction)."""
    return RowMatrix(rows.indptr, rows.cols, np.ones(rows.nnz, dtype=np.float32), rows.n_cols)


# --------------------------------------------------------------------------- network
class AutoencoderNet(RowSparseModule):
    """The autoencoder, with a sparse-input/gathered-output path and a dense path.

    Weight layout: ``w_in`` is ``(n, layers[0])`` so that it serves both as an
    embedding table for the sparse first layer and, tied, as the decoder's last
    ``nn.Linear``-style weight (out=n, in=layers[0]). ``w_out`` (untied) has the
    same shape. Hidden weights are ``(out, in)`` like ``nn.Linear``.

    ``forward(kind, ...)`` is the single entry (so DistributedDataParallel sees
    every call): ``kind="sparse"`` takes CSR input rows and target (row, col)
    pairs and returns ``(predictions at the targets, dense output or None)``;
    ``kind="dense"`` takes a dense batch and returns the dense output.
    """

    def __init__(self, n: int, layers: tuple[int, ...], activation: str = "selu", tied: bool = False,
                 dropout: float = 0.0, last_linear: bool = True):
        super().__init__()
        if not layers:
            raise SettingsError("layers: at least one encoder layer is needed")
        self.n, self.layers = int(n), tuple(int(x) for x in layers)
        self.activation, self.tied = activation, bool(tied)
        self.dropout, self.last_linear = float(dropout), bool(last_linear)
        self.act = ACTIVATIONS[activation]
        sizes = self.layers
        self.w_in = nn.Parameter(torch.empty(self.n, sizes[0]))
        self.b_in = nn.Parameter(torch.zeros(sizes[0]))
        self.enc_w = nn.ParameterList([nn.Parameter(torch.empty(sizes[i + 1], sizes[i]))
                                       for i in range(len(sizes) - 1)])
        self.enc_b = nn.ParameterList([nn.Parameter(torch.zeros(sizes[i + 1]))
                                       for i in range(len(sizes) - 1)])
        # decoder hidden layers: sizes[-1] -> ... -> sizes[0]
        dec = [(sizes[i], sizes[i + 1]) for i in reversed(range(len(sizes) - 1))]   # (out, in)
        self.dec_w = nn.ParameterList([] if self.tied else
                                      [nn.Parameter(torch.empty(o, i)) for o, i in dec])
        self.dec_b = nn.ParameterList([nn.Parameter(torch.zeros(o)) for o, _ in dec])
        self.w_out = None if self.tied else nn.Parameter(torch.empty(self.n, sizes[0]))
        self.b_out = nn.Parameter(torch.zeros(self.n))
        for p in [self.w_in, *self.enc_w, *self.dec_w] + ([] if self.tied else [self.w_out]):
            nn.init.xavier_uniform_(p)

    # weights of the decoder, tied or not
    def _dec_weights(self) -> list[torch.Tensor]:
        if self.tied:
            return [self.enc_w[i].t() for i in reversed(range(len(self.enc_w)))]
        return list(self.dec_w)

    def out_weight(self) -> torch.Tensor:
        return self.w_in if self.tied else self.w_out

    def _body(self, h: torch.Tensor) -> torch.Tensor:
        """From the first layer's pre-activation to the last hidden decoder layer."""
        h = self.act(h)
        for w, b in zip(self.enc_w, self.enc_b):
            h = self.act(F.linear(h, w, b))
        if self.dropout > 0:
            h = F.dropout(h, self.dropout, self.training)
        for w, b in zip(self._dec_weights(), self.dec_b):
            h = self.act(F.linear(h, w, b))
        return h

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.last_linear else self.act(z)

    def encode_sparse(self, offsets, cols, vals) -> torch.Tensor:
        """Last hidden decoder activations (B x layers[0]) of CSR input rows."""
        self._sync_all()
        h = F.embedding_bag(cols, self.w_in, offsets, mode="sum", per_sample_weights=vals.to(self.w_in.dtype),
                            include_last_offset=True)
        return self._body(h + self.b_in)

    def decode_at(self, h: torch.Tensor, t_rows: torch.Tensor, t_cols: torch.Tensor) -> torch.Tensor:
        """Output at (row, col) pairs only (``t_rows`` ascending, as every caller passes them).

        Without autograd on CPU/CUDA one SDDMM (:func:`sampled_dot_at`), which never
        materialises the pairs' gathered rows; otherwise a gather of decoder weight rows.
        """
        w = self.out_weight()
        if not torch.is_grad_enabled() and h.device.type in CSR_DEVICES and t_rows.numel():
            z = sampled_dot_at(h, w, t_rows, t_cols) + self.b_out[t_cols]
        else:
            z = (h[t_rows].float() * w[t_cols]).sum(-1) + self.b_out[t_cols]
        return self._out(z)

    def _sync_all(self) -> None:
        if self.sync_rows is not None:
            for w in ([self.w_in] if self.tied else [self.w_in, self.w_out]):
                self.sync_rows(w, None)

    def decode_dense(self, h: torch.Tensor) -> torch.Tensor:
        if self.sync_rows is not None:       # reads every row of the output weight (only)
            self.sync_rows(self.out_weight(), None)
        return self._out(F.linear(h, self.out_weight(), self.b_out))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for a dense batch (B x n)."""
        self._sync_all()
        h = self._body(torch.matmul(x, self.w_in) + self.b_in)
        return self._out(F.linear(h, self.out_weight(), self.b_out))      # rows already synced

    def sparse_step(self, pattern: CompactPattern, vals: torch.Tensor):
        """Outputs at the input rows' own stored entries (the sparse step, input pattern = target pattern).

        The first layer runs on the observed ratings only (:func:`csr_matmul`), the
        last layer only at the observed entries (:func:`sampled_dot`), both reading
        the (n x d) weights in place; returns (predictions, last hidden activations).
        """
        if self.sync_rows is not None:       # rows updated lazily must be current before they are read
            for w in ([self.w_in] if self.tied else [self.w_in, self.w_out]):
                self.sync_rows(w, pattern.cols_global)
        h = self._body(csr_matmul(pattern, vals, self.w_in, self.sparse_grad) + self.b_in)
        z = sampled_dot(pattern, h, self.out_weight(), self.sparse_grad) + self.b_out[pattern.col]
        return self._out(z), h

    def forward(self, kind: str, *args, want_dense: bool = False):
        if kind == "dense":
            return self.dense(args[0])
        if kind == "rows":                         # (offsets, cols, values): sparse input, dense output
            return self.decode_dense(self.encode_sparse(*args))
        if kind == "compact":                      # (pattern, input values): targets = the input entries
            pred, h = self.sparse_step(*args)
        else:
            offsets, cols, vals, t_rows, t_cols = args
            h = self.encode_sparse(offsets, cols, vals)
            pred = self.decode_at(h, t_rows, t_cols)
        y = None
        if want_dense:
            with torch.no_grad():
                y = self.decode_dense(h.detach()).float()
        return pred, y


class _DenseExport(nn.Module):
    """Dense rows in, dense predictions out (what a serving stack wants)."""

    def __init__(self, net: AutoencoderNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.dense(x)


# --------------------------------------------------------------------------- engine task
class AutoencoderTask(Task):
    """DeepRec/AutoRec loss hooks for :class:`recozoo.engine.Trainer`."""

    def __init__(self, build: Callable[[], AutoencoderNet], refeed: int = 0, noise: float = 0.0,
                 penalty: Callable[[nn.Module], torch.Tensor] | None = None, loss: LossName = "mse"):
        self.build, self.refeed, self.noise, self.penalty = build, int(refeed), float(noise), penalty
        self.loss = loss
        if loss != "mse" and self.refeed:
            raise SettingsError(f"loss={loss}: dense re-feeding fits squared error; set refeed=0")
        #: lazy row-sparse updates (see Trainer._enable_row_sparse); a weight penalty reads every row
        #: at every step, so AutoRec's L2 term rules them out. With re-feeding they still pay: the sparse
        #: step moves only the touched rows, and the dense step catches the others up in one pass.
        #: An implicit loss reads every output row at every step: no gain either
        self.row_sparse_updates = penalty is None and loss == "mse"

    def build_module(self) -> nn.Module:
        return self.build()

    def _penalty(self, net) -> torch.Tensor | None:
        if self.penalty is None:
            return None
        return self.penalty(getattr(net, "module", net))

    def implicit_nll(self, out: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood, summed over rows, of binary rows stored at (rows, cols) given the
        network's dense output (logits) under the task's implicit loss."""
        out = out.float()
        if self.loss == "multinomial":
            return -torch.log_softmax(out, dim=1)[rows, cols].sum()
        target = torch.zeros_like(out)
        target[rows, cols] = 1.0
        return F.binary_cross_entropy_with_logits(out, target, reduction="sum")

    def train_losses(self, net, batch: RowBatch) -> Iterator[Loss]:
        vals = batch.vals
        if self.noise > 0:
            vals = F.dropout(vals, self.noise, training=True)
        if self.loss != "mse":                 # binary rows in, the whole output row scored
            out = net("rows", batch.offsets, batch.cols, vals)
            yield Loss(self.implicit_nll(out, batch.row_index(), batch.cols), batch.n_rows,
                       self._penalty(net), ends_batch=True)
            return
        if batch.cols.device.type in CSR_DEVICES:         # CSR kernels; the gather path elsewhere (mps)
            pred, y = net("compact", batch.pattern, vals, want_dense=self.refeed > 0)
        else:
            rows = batch.row_index()
            pred, y = net("sparse", batch.offsets, batch.cols, vals, rows, batch.cols,
                          want_dense=self.refeed > 0)
        yield Loss(((pred.float() - batch.vals) ** 2).sum(), batch.nnz, self._penalty(net),
                   ends_batch=self.refeed == 0)
        for k in range(self.refeed):
            out = net("dense", y).float()
            # fused: no (B x n) temporaries for the difference and its square (lower peak memory)
            yield Loss(F.mse_loss(out, y, reduction="sum"), y.numel(), self._penalty(net), report=False,
                       ends_batch=k == self.refeed - 1)
            y = out.detach()

    def next_step_rows(self, module, batch: RowBatch) -> dict[torch.Tensor, torch.Tensor]:
        """Rows of the input weight ``w_in`` that ``batch``'s sparse step will read and touch.

        Only with re-feeding and an untied decoder: the engine then lets the optimiser fold the
        untouched rows' zero-gradient update of that step into the preceding dense step's pass
        (:attr:`recozoo.engine.lazy_sgd.LazySGD.next_rows`). Not ``w_out``: the sparse step reads all
        of it to produce the dense ``y = f(x)`` that re-feeding needs (so a tied ``w_in`` neither);
        without re-feeding there is no dense pass to fold into.
        """
        if self.refeed == 0 or module.tied or batch.cols.device.type not in CSR_DEVICES:
            return {}
        return {module.w_in: batch.pattern.cols_global}

    def valid_score(self, module, valid) -> float | None:
        """Held-out VALID users (user mode, implicit loss): NDCG@100 of their scores from their
        fold-in rows (:mod:`recozoo.engine.held_out`); otherwise the engine's figure."""
        if not isinstance(valid, HeldOutValid):
            return super().valid_score(module, valid)
        return valid.mean_ndcg(lambda x: module.decode_dense(module.encode_sparse(x.offsets, x.cols, x.vals)),
                               next(module.parameters()).device)

    def eval_sse(self, module, inputs: RowBatch, targets: RowBatch):
        """Squared error at VALID's ratings; under an implicit loss, the multinomial negative
        log-likelihood of VALID's entries instead (so ``valid_rmse`` is the root of its mean)."""
        if self.loss != "mse":
            out = module.decode_dense(module.encode_sparse(inputs.offsets, inputs.cols, inputs.vals))
            return -torch.log_softmax(out.float(), dim=1)[targets.row_index(), targets.cols].sum(), targets.nnz
        pred = module.decode_at(module.encode_sparse(inputs.offsets, inputs.cols, inputs.vals),
                                targets.row_index(), targets.cols)
        return ((pred.float() - targets.vals) ** 2).sum(), targets.nnz


# --------------------------------------------------------------------------- shared model
class AutoencoderModel(Model):
    """Common fit/predict/save of the row-autoencoder models (DeepRec, AutoRec, GLocal-K)."""

    #: "user" or "item" rows; DeepRec reads it from its settings
    row_mode: ClassVar[str] = "user"
    #: rows without training ratings: "network" = output for an empty input row,
    #: "mean" = the column's mean training rating (global mean if none)
    empty_row: ClassVar[str] = "network"
    #: torch products, row gathers and per-row fallbacks: a row's scores never depend on its companions
    batch_invariant: ClassVar[bool] = True
    warm_starts: ClassVar[bool] = True
    warm_start_method: ClassVar[str] = (
        "the run's network weights (item mode: the input and output weights of users new in the events "
        "initialised as a fresh fit's); fresh optimiser state, epochs counted from 0 (--set epochs=N)")
    #: user mode folds a new user in by one forward pass; item mode cannot (see :meth:`can_fold_in`)
    folds_in: ClassVar[FoldIn] = FoldIn.SETTINGS
    fold_in_method: ClassVar[str] = (
        "user mode: the forward pass on the new user's ratings vector (entries on items without training "
        "ratings left out: their input weights never learned); item mode cannot: a new user is a new "
        "input column of every item's vector, which the network has no weights for")
    uses_device = True
    valid_curve = True          # the engine logs each epoch's VALID RMSE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.net_: AutoencoderNet | None = None
        self.rows_: RowMatrix | None = None
        self.history_: list[dict[str, Any]] = []
        #: item mode: every training row's last hidden activations, cached by :meth:`_row_codes`
        self._codes: torch.Tensor | None = None
        #: item mode, small data: the whole (users x items) network output, cached by _item_mode_scores
        self._item_mode_out: np.ndarray | None = None
        #: the bias baseline the network's residuals are added to (``baseline=bias``), else None
        self.base_: BiasBaseline | None = None

    # subclasses say what to build and how to train
    def _mode(self) -> str:
        return self.row_mode

    def _net_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def _engine_config(self) -> EngineConfig:
        raise NotImplementedError

    def _task(self, n_cols: int, n_train: int) -> AutoencoderTask:
        raise NotImplementedError

    def _build_net(self, n_cols: int) -> AutoencoderNet:
        return AutoencoderNet(n_cols, **self._net_kwargs())

    def _loss(self) -> LossName:
        """What the model minimises (:data:`LossName`); models with a ``loss`` setting return it."""
        return "mse"

    def _fallback_cols(self) -> np.ndarray:
        """Columns whose outputs get the fallback: under squared error those never rated in training
        (their output weights never learned); none under an implicit loss, whose every step scores
        every column."""
        if self._loss() != "mse":
            return np.zeros(self.rows_.n_cols, dtype=bool)
        return ~self._col_known()

    def _empty_row(self) -> str:
        """:attr:`empty_row`, except under an implicit loss: the network's output for an empty input."""
        return self.empty_row if self._loss() == "mse" else "network"

    def _uses_baseline(self) -> bool:
        """Whether the network learns residuals over the bias baseline (DeepRec/AutoRec: ``baseline``)."""
        return False

    # --------------------------------------------------------------- fitting
    def _fit(self, train, valid, reporter, run_dir, resume):
        mode = self._mode()
        held_out = None
        if (self._loss() != "mse" and mode == "user" and valid is not None and valid.nnz
                and self.valid_fold_in is not None and self.valid_fold_in.nnz):
            held_out = HeldOutValid.from_tables(self.valid_fold_in, valid)   # strong generalisation
        self.base_ = BiasBaseline.fit(train) if self._uses_baseline() else None
        if self.base_ is not None:      # the rows hold residuals; VALID's RMSE is the same in either space
            train = self.base_.residuals(train)
            valid = self.base_.residuals(valid) if valid is not None else None
        rows = RowMatrix.from_table(train, mode)
        vpair = None
        if valid is not None and valid.nnz:
            vpair = (rows, RowMatrix.from_table(valid, mode))
        if self._loss() != "mse":             # implicit feedback: every stored entry is one interaction
            rows = binary_rows(rows)
            vpair = None if vpair is None else (rows, binary_rows(vpair[1]))
        task = self._task(rows.n_cols, rows.nnz)
        if held_out is not None:          # VALID's users are held out of TRAIN: rank them from their fold-in
            vpair = held_out
            task.valid_metric, task.higher_is_better = f"ndcg@{SELECT_K}", True
        prev = self._warm_previous(train.n_users, train.n_items)
        trainer = Trainer(task, self._engine_config(), reporter=reporter,
                          run_dir=run_dir, resume=resume,
                          signature={"model": self.name, "mode": mode, "n_rows": rows.n_rows,
                                     "n_cols": rows.n_cols},
                          start_from=None if prev is None else lambda net: copy_weights(prev.net_, net))
        res = trainer.fit(rows, vpair)
        self.net_ = res.module
        self.net_.eval()
        self.rows_ = rows
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self._row_means = self._col_means = self._codes = self._item_mode_out = None

    def _device(self) -> torch.device:
        return next(self.net_.parameters()).device

    def _row_mean(self) -> np.ndarray:
        if self.base_ is not None:                  # residual space: the baseline alone
            return np.zeros(self.rows_.n_rows)
        if getattr(self, "_row_means", None) is None:
            r = self.rows_
            cnt = r.lengths()
            sums = np.add.reduceat(r.vals.astype(np.float64), r.indptr[:-1]) if r.nnz else np.zeros(r.n_rows)
            sums = np.where(cnt > 0, sums, 0.0)
            self._row_means = np.where(cnt > 0, sums / np.maximum(cnt, 1), self.global_mean_)
        return self._row_means

    def _col_known(self) -> np.ndarray:
        if getattr(self, "_col_seen", None) is None or self._col_seen.shape[0] != self.rows_.n_cols:
            self._col_seen = np.bincount(self.rows_.cols, minlength=self.rows_.n_cols) > 0
        return self._col_seen

    def _to_rows_cols(self, users, items):
        return (users, items) if self._mode() == "user" else (items, users)

    @torch.no_grad()
    def _scores_at(self, rows: np.ndarray, cols: np.ndarray, chunk_rows: int = 2048,
                   chunk_pairs: int = 262_144) -> np.ndarray:
        """Network output at (row, col) pairs, rows encoded from their training vectors."""
        out = np.empty(rows.shape[0], dtype=np.float32)
        if rows.size == 0:
            return out
        dev = self._device()
        order = np.argsort(rows, kind="stable")
        rs, cs = rows[order], cols[order]
        uniq, start = np.unique(rs, return_index=True)
        bounds = np.append(start, rs.size)
        net = self.net_
        for g in range(0, uniq.size, chunk_rows):
            ur = uniq[g:g + chunk_rows]
            lo, hi = bounds[g], bounds[min(g + chunk_rows, uniq.size)]
            b = self.rows_.take(ur).to(dev)
            h = net.encode_sparse(b.offsets, b.cols, b.vals)
            local = np.searchsorted(ur, rs[lo:hi])
            for p in range(lo, hi, chunk_pairs):
                q = min(p + chunk_pairs, hi)
                tr = torch.from_numpy(local[p - lo:q - lo]).to(dev)
                tc = torch.from_numpy(cs[p:q]).to(dev)
                out[order[p:q]] = net.decode_at(h, tr, tc).float().cpu().numpy()
        return out

    def _predict(self, users, items):
        rows, cols = self._to_rows_cols(users, items)
        out = self._scores_at(rows, cols)
        unknown_col = self._fallback_cols()[cols]
        if unknown_col.any():
            out[unknown_col] = self._row_mean()[rows[unknown_col]]
        if self._empty_row() == "mean":
            empty = (self.rows_.lengths()[rows] == 0) & ~unknown_col
            if empty.any():
                out[empty] = self._col_mean()[cols[empty]]
        if self.base_ is not None:
            out = (out + self.base_.at(users, items)).astype(np.float32)
        return out

    def _col_mean(self) -> np.ndarray:
        if self.base_ is not None:
            return np.zeros(self.rows_.n_cols)
        if getattr(self, "_col_means", None) is None:
            r = self.rows_
            cnt = np.bincount(r.cols, minlength=r.n_cols)
            sums = np.bincount(r.cols, weights=r.vals.astype(np.float64), minlength=r.n_cols)
            self._col_means = np.where(cnt > 0, sums / np.maximum(cnt, 1), self.global_mean_)
        return self._col_means

    def _predict_unknown(self, users, items):
        """Out-of-range ids: an unknown row is an empty input row; an unknown column the global mean
        (under a baseline: the baseline, i.e. μ + the known side's bias)."""
        if self.base_ is not None:
            return self.base_.at(users, items).astype(np.float32)
        rows, cols = self._to_rows_cols(users, items)
        out = np.full(rows.shape[0], self.global_mean_, dtype=np.float32)
        ok = (cols >= 0) & (cols < self.rows_.n_cols) & ((rows < 0) | (rows >= self.rows_.n_rows))
        ok &= np.where(ok, self._col_known()[np.clip(cols, 0, self.rows_.n_cols - 1)], False)
        if ok.any() and self._empty_row() == "mean":
            out[ok] = self._col_mean()[cols[ok]]
        elif ok.any():
            with torch.no_grad():
                dev = self._device()
                e = torch.zeros(1, dtype=torch.int64, device=dev)
                h = self.net_.encode_sparse(torch.zeros(2, dtype=torch.int64, device=dev), e[:0],
                                            torch.zeros(0, device=dev))
                tc = torch.from_numpy(cols[ok]).to(dev)
                out[ok] = self.net_.decode_at(h, torch.zeros_like(tc), tc).float().cpu().numpy()
        return out

    def score_items(self, users):
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if self._mode() == "user":
            with torch.no_grad():
                dev = self._device()
                out = np.empty((users.size, self.n_items_), dtype=np.float32)
                for s in range(0, users.size, 1024):
                    b = self.rows_.take(users[s:s + 1024]).to(dev)
                    h = self.net_.encode_sparse(b.offsets, b.cols, b.vals)
                    out[s:s + b.n_rows] = self.net_.decode_dense(h).float().cpu().numpy()
        else:
            out = self._item_mode_scores(users)
        return self._with_fallbacks(out, users)

    def _with_fallbacks(self, out: np.ndarray, users: np.ndarray) -> np.ndarray:
        """:meth:`_predict`'s fallbacks on a (users x items) block: rows without training ratings get the
        column's mean (``empty_row="mean"``), then columns without any get the row's mean."""
        empty = self.rows_.lengths() == 0
        if self._mode() == "user":
            if self._empty_row() == "mean" and empty[users].any():
                out[empty[users]] = self._col_mean()[None, :].astype(np.float32)
            unknown = self._fallback_cols()
            if unknown.any():
                out[:, unknown] = self._row_mean()[users][:, None]
        else:
            if self._empty_row() == "mean" and empty.any():
                out[:, empty] = self._col_mean()[users][:, None]
            bad = self._fallback_cols()[users]
            if bad.any():
                out[bad] = self._row_mean()[None, :]
        if self.base_ is not None:
            out = (out + self.base_.dense(users)).astype(np.float32)
        return out

    @torch.no_grad()
    def _item_mode_scores(self, users: np.ndarray) -> np.ndarray:
        """Item mode: (users x n_items) network outputs at the users' columns, from the cached item codes.

        Why cached: a user's scores are the decoder's output at that user's column
        for every item row, and the item rows' inputs (their training vectors)
        never change after fitting, so neither do their last hidden activations;
        a request then costs one ``(users x h) · (h x n_items)`` product instead of
        a pass of every item row through the network — or, where the whole
        (users x items) output fits in :data:`FULL_CACHE_CELLS` (ML-100K: 1.6M
        cells, 6 MB), a row of that output, computed once. The values are the
        network's, as :meth:`_scores_at` computes them pair by pair (tested).
        """
        if self._item_mode_out is not None or self.n_users_ * self.n_items_ <= FULL_CACHE_CELLS:
            if self._item_mode_out is None:
                every = np.arange(self.n_users_, dtype=np.int64)
                self._item_mode_out = np.concatenate([self._decode_columns(every[s:s + 1024])
                                             for s in range(0, every.size, 1024)])
            return self._item_mode_out[users]
        return self._decode_columns(users)

    def _decode_columns(self, users: np.ndarray) -> np.ndarray:
        """Item mode: the network's outputs at ``users``' columns for every item row (users x n_items)."""
        codes = self._row_codes()
        net = self.net_
        u = torch.from_numpy(np.ascontiguousarray(users, dtype=np.int64)).to(codes.device)
        z = F.linear(net.out_weight()[u].to(codes.dtype), codes) + net.b_out[u][:, None]
        return net._out(z).float().cpu().numpy()

    def _row_codes(self) -> torch.Tensor:
        """Last hidden decoder activations of every training row (n_rows x layers[0]), computed once per
        fitted or loaded model (a fit or load resets them; a server's hot swap loads a new model)."""
        if self._codes is None:
            with torch.no_grad():
                dev = self._device()
                n = self.rows_.n_rows
                parts = []
                for s in range(0, n, 2048):
                    b = self.rows_.take(np.arange(s, min(s + 2048, n), dtype=np.int64)).to(dev)
                    parts.append(self.net_.encode_sparse(b.offsets, b.cols, b.vals))
                self._codes = torch.cat(parts) if parts else torch.zeros(0, self.net_.layers[0], device=dev)
        return self._codes

    # ---------------------------------------------------------------- fold-in
    def can_fold_in(self) -> bool:
        """User mode only: a user's row is the network's input, so a new row is one forward pass."""
        return self.folds_in is not FoldIn.NO and self._mode() == "user"

    @torch.no_grad()
    def _score_new_users(self, ratings) -> np.ndarray:
        """The forward pass on each new user's ratings vector, with :meth:`score_items`'s fallbacks.

        Why the same code path as :meth:`score_items` (sparse first layer, dense
        decoder): folding in a training user's own TRAIN row must give exactly
        that user's scores. Ratings of items without training data are dropped
        from the input (their ``w_in`` rows never learned); a row left empty gets
        the unknown-user fallback; items without training data get the row's
        mean of the kept ratings, as a training user gets its training mean.
        """
        known_col = self._col_known()
        keep = known_col[ratings.indices]
        if not keep.all():
            ratings = keep_entries(ratings, keep)
        if self._loss() != "mse":
            ratings = sp.csr_matrix((np.ones(ratings.nnz, dtype=np.float32), ratings.indices, ratings.indptr),
                                    shape=ratings.shape)
        base = self.base_
        if base is not None:           # the network reads residuals; b_u as the bias model folds it in
            bu, ratings = base.fold_in(ratings)
        n_rows, n = ratings.shape
        out = np.empty((n_rows, n), dtype=np.float32)
        counts = np.diff(ratings.indptr)
        live = np.flatnonzero(counts > 0)
        dev = self._device()
        for s in range(0, live.size, 1024):
            sub = ratings[live[s:s + 1024]]
            h = self.net_.encode_sparse(torch.from_numpy(sub.indptr.astype(np.int64)).to(dev),
                                        torch.from_numpy(sub.indices.astype(np.int64)).to(dev),
                                        torch.from_numpy(sub.data.astype(np.float32)).to(dev))
            out[live[s:s + 1024]] = self.net_.decode_dense(h).float().cpu().numpy()
        empty = counts == 0
        if empty.any():
            it = np.arange(n, dtype=np.int64)
            out[empty] = 0.0 if base is not None else self._predict_unknown(np.full(n, -1, dtype=np.int64), it)
        if self._fallback_cols().any() and live.size:
            sums = np.add.reduceat(ratings.data.astype(np.float64), ratings.indptr[live])
            out[np.ix_(live, np.flatnonzero(~known_col))] = \
                0.0 if base is not None else (sums / counts[live])[:, None]
        if base is not None:
            out = (out + base.dense(np.arange(n_rows), user_bias=bu)).astype(np.float32)
        return out

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        st: dict[str, Any] = {f"net.{k}": v.detach().float().cpu().numpy()
                              for k, v in self.net_.state_dict().items()}
        st["rows_indptr"] = self.rows_.indptr
        st["rows_cols"] = self.rows_.cols.astype(np.int32)
        st["rows_vals"] = self.rows_.vals
        st["rows_n_cols"] = int(self.rows_.n_cols)
        st["best_epoch"] = int(self.best_epoch_)
        if self.base_ is not None:
            st.update(self.base_.state())
        return st

    def _set_state(self, state: dict[str, Any]) -> None:
        n_cols = int(state["rows_n_cols"])
        expect_cols = self.n_items_ if self._mode() == "user" else self.n_users_
        if n_cols != expect_cols:
            raise ValueError(f"the saved rows have {n_cols} columns, the header says {expect_cols}")
        net = self._build_net(n_cols)
        sd = {k[4:]: torch.from_numpy(np.asarray(v)) for k, v in state.items() if k.startswith("net.")}
        try:
            net.load_state_dict(sd)
        except RuntimeError as e:
            raise ValueError(str(e).splitlines()[0]) from None
        net.eval()
        self.net_ = net
        self.rows_ = RowMatrix(state["rows_indptr"], state["rows_cols"], state["rows_vals"], n_cols)
        self.best_epoch_ = int(state["best_epoch"])
        self.base_ = BiasBaseline.from_state(state) if self._uses_baseline() else None
        self._row_means = self._col_means = self._codes = self._item_mode_out = None

    def n_parameters(self) -> int:
        if self.net_ is None:
            return 0
        return int(sum(p.numel() for p in self.net_.parameters()))

    # ----------------------------------------------------------------- export
    def export(self, path: str | Path, format: str = "torchscript") -> Path:
        """Write the network for serving: dense input rows (B x n) -> dense predictions (B x n).

        ``torchscript`` always works; ``onnx`` needs ``pip install 'recozoo[onnx]'`` (onnx +
        onnxscript, which torch's exporter uses; onnxruntime to run the file). The
        exported graph is the raw network (no fallback for untrained columns),
        fed with the rows' TRAIN vectors it reproduces :meth:`predict` there.
        """
        self._check_fitted()
        if self.base_ is not None:
            raise SettingsError(f"{self.name}: export writes the bare network, and this model adds the bias "
                                "baseline to it; fit with --set baseline=none to export")
        path = Path(path)
        wrapper = _DenseExport(self._build_net(self.rows_.n_cols)).eval()
        wrapper.net.load_state_dict({k: v.detach().cpu() for k, v in self.net_.state_dict().items()})
        example = torch.zeros(2, self.rows_.n_cols)
        buf = io.BytesIO()
        if format == "torchscript":
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)   # still supported in torch 2.x
                traced = torch.jit.trace(wrapper, example)
                torch.jit.save(traced, buf)
        elif format == "onnx":
            try:
                import onnx  # noqa: F401
                import onnxscript  # noqa: F401   (torch.onnx's exporter)
            except ImportError:
                raise SettingsError("export format onnx needs the onnx and onnxscript packages "
                                    "(pip install 'recozoo[onnx]')") from None
            batch = torch.export.Dim("batch", min=1)
            quiet = io.StringIO()
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
                warnings.simplefilter("ignore")
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                prog = torch.onnx.export(wrapper, (example,), input_names=["ratings"],
                                         output_names=["predictions"], dynamic_shapes=({0: batch},),
                                         verbose=False)
            buf.write(prog.model_proto.SerializeToString())
        else:
            raise SettingsError(f"export format {format!r}: expected torchscript or onnx")
        atomic_write_bytes(path, buf.getvalue())
        return path

    def dense_rows(self, rows: np.ndarray) -> np.ndarray:
        """TRAIN vectors of ``rows`` as a dense float32 array (the export's input)."""
        return self.rows_.take(np.asarray(rows, dtype=np.int64)).dense().numpy()


class LossSettingAutoencoder(AutoencoderModel):
    """An autoencoder whose settings declare ``loss`` (:data:`LossName`) and ``baseline`` (DeepRec, the
    AutoRecs): the one place that says what those two settings mean for the model. Under ``loss=mse`` it
    predicts ratings (over the bias model with ``baseline=bias``); an implicit loss makes it a ranking
    model whose outputs are logits of binary input, with no baseline under them."""

    def _loss(self) -> LossName:
        return self.settings.loss

    @classmethod
    def predicts_ratings_with(cls, settings) -> bool:
        """Ratings under ``loss=mse``; an implicit loss ranks (its outputs are logits)."""
        return settings.loss == "mse"

    def _uses_baseline(self) -> bool:
        return self.settings.baseline == "bias" and self._loss() == "mse"     # residuals of ratings only
