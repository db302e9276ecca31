"""GLocal-K: global and local kernels for recommender systems (Han, Lim, Long, Burgstaller & Poon,
CIKM 2021).

An item-based autoencoder (each item's vector of ratings over the ``n`` users is
reconstructed, as in I-AutoRec) whose every weight matrix is re-parameterised by
a *local kernel*, trained in two stages, both full batch with L-BFGS.

Local kernel (stage 1, "pre-training"). A layer ``n_in -> n_out`` owns a weight
matrix ``W`` (n_in x n_out), a bias ``b``, and one learned ``kernel_dim``-vector
per input unit (``u_i``) and per output unit (``v_j``). Its effective weight is::

    W_eff = W ∘ K,   K_ij = max(0, 1 - ||u_i - v_j||²)

a finite-support (Epanechnikov-like) RBF kernel: units whose vectors lie more
than distance 1 apart are *exactly* disconnected, so the kernel learns a sparse
connectivity. The network is ``n -> 500 -> 500 -> n``, sigmoid hidden layers,
linear output, all three layers kernelised. The objective (the reference
implementation's, divided by N/2 so that the engine's ``sse / count + penalty``
form is the same function up to a constant factor)::

    Σ_observed (r - r̂)² / N  +  (1/N) Σ_layers (λ_s ||K||²_F + λ_2 ||W||²_F)

Only observed training ratings enter the squared error; the sparsity term is
the L2 norm of the kernel values (it pushes unit vectors apart, i.e. zeroes
kernel entries); biases, ``u`` and ``v`` are not regularised.

Global kernel (stage 2, "fine-tuning"). From the current network's
reconstruction ``Ŷ = f(R)`` of the training matrix ``R`` (items x users) the
item-wise average ``a = mean_users(Ŷ)`` (an n_items vector) is pooled and
mapped by a learned ``n_items x gk_size²`` matrix ``C`` to a ``gk_size x
gk_size`` convolution kernel ``G = dot_scale · (aᵀ C)``. The network's input
becomes ``relu(conv2d(R, G))`` ('same' zero padding, stride 1) and the model
is trained again, end to end (``C`` and every layer; ``Ŷ`` is recomputed from
the current weights at every evaluation, as in the reference graph). The
convolution runs over the matrix in index order, i.e. over items and users
adjacent in the data set's sorted raw ids — the reference does the same.

Where the defaults come from (the paper and its reference implementation,
``usydnlp/Glocal_K``, ML-100K settings):

* ``layers=500,500``, ``kernel_dim=5``, ``gk_size=3`` — the paper's;
* ``lambda_2=20``, ``lambda_s=0.006``, ``dot_scale=1`` — the reference's ML-100K values;
* ``pre_epochs=150``, ``fine_epochs=300`` — the reference runs 30 pre-training and 60
  fine-tuning rounds of L-BFGS-B with ``maxiter=5`` each; one engine epoch here is
  one L-BFGS iteration (torch ``LBFGS``, strong-Wolfe line search, history 10 =
  L-BFGS-B's ``maxcor``), so the iteration budgets match;
* ``layers``, ``fine_epochs`` and ``baseline`` are ``auto`` (:func:`recozoo.defaults.glocalk_rule`):
  the values above on raw ratings from 30 training ratings per user; fewer, 2 x 100 layers on the
  bias model's residuals and no fine-tuning (docs/defaults.md has the VALID figures behind it);
* initialisation — the reference's TF defaults: Glorot-uniform ``W`` *and* ``b``
  (TensorFlow's default for every variable), ``u``, ``v`` ~ N(0, 1e-3) truncated at
  2σ (so ``K`` starts ≈ 1 everywhere: a dense layer), ``C`` ~ N(0, 0.1) truncated.

Our choices (not the paper's):

* model selection on VALID: the reference reports the best *test* RMSE over its
  fine-tuning rounds, i.e. the figure is chosen on the test set itself; recozoo
  evaluates VALID every ``eval_every`` iterations, keeps the best checkpoint of
  each stage and stops a stage after ``patience`` evaluations without a VALID
  improvement. Stage 2 starts from stage 1's best-on-VALID weights;
* no clipping: the reference clips predictions to [1, 5] before scoring; recozoo
  returns the raw output and clips only when asked (``clip=(1, 5)`` on the model or
  the evaluator), reported beside the unclipped figure;
* both stages train through :class:`recozoo.engine.Trainer` (optimizer ``lbfgs``,
  one full batch); checkpoints of a fit with a run folder go to
  ``RUN_DIR/pretrain`` and ``RUN_DIR/finetune``.
* L-BFGS keeps its history across iterations within a stage; the reference's
  scipy interface restarts L-BFGS-B (empty history) every 5 iterations.
* one epoch axis over both stages: fine-tuning's epochs count on from the last
  pre-training epoch in what a reporter receives (``recozoo tune``'s pruner compares
  trials epoch by epoch), in ``history_`` (``stage`` and ``stage_epoch`` say where
  an epoch belongs) and in ``best_epoch_``; ``refit_settings`` reads each stage's own
  best epoch.
* ``baseline=bias``: the network learns the residuals of the bias model
  μ + b_u + b_i (fitted on TRAIN), which is added back when it predicts (as
  DeepRec's and AutoRec's ``baseline``); the convolution then runs over the
  residual matrix.

Measured on ml-100k u1 with settings chosen on VALID: docs/zoo.md.

Scale: training is dense and full batch (the global convolution needs the whole
matrix), which suits ML-100K/ML-1M/Douban-sized matrices (the paper's), not
Netflix: a fit refuses, in one line, a matrix above ``max_cells`` (200M items x users
cells, ~0.75 GiB per float copy; the Netflix sample's 11,259 x 97,618 is 1.1G) rather
than exhaust the memory.

Fallbacks: I-AutoRec's — an item without training ratings gets the user's mean
training rating; a user without training ratings gets the item's mean training
rating (global mean if neither is known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recozoo.defaults import glocalk_rule
from recozoo.engine import EngineConfig, Loss, RowBatch, RowMatrix, Task, Trainer
from recozoo.errors import SettingsError
from recozoo.models._baseline import BiasBaseline
from recozoo.models.autoencoder import AutoencoderModel
from recozoo.models.base import FoldIn
from recozoo.progress import Reporter
from recozoo.search_space import Categorical, Float, Int, Layers, SearchSpace
from recozoo.settings import AUTO, BaseSettings, setting

__all__ = ["GLocalK", "GLocalKSettings", "GLocalKNet", "KernelLayer", "local_kernel"]


def local_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``K_ij = max(0, 1 - ||u_i - v_j||²)`` for ``u`` (n_in x d) and ``v`` (n_out x d)."""
    d2 = (u[:, None, :] - v[None, :, :]).pow(2).sum(-1)
    return torch.clamp(1.0 - d2, min=0.0)


def _glorot_(t: torch.Tensor, fan_in: int, fan_out: int) -> None:
    lim = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(t, -lim, lim)


class KernelLayer(nn.Module):
    """``y = x (W ∘ K(u, v)) + b`` with the local kernel ``K`` (activation applied by the caller)."""

    def __init__(self, n_in: int, n_out: int, dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(n_in, n_out))
        self.b = nn.Parameter(torch.empty(n_out))
        self.u = nn.Parameter(torch.empty(n_in, dim))
        self.v = nn.Parameter(torch.empty(n_out, dim))
        _glorot_(self.W, n_in, n_out)
        _glorot_(self.b, n_out, n_out)           # TensorFlow's default for a 1-d variable
        nn.init.trunc_normal_(self.u, 0.0, 1e-3, -2e-3, 2e-3)
        nn.init.trunc_normal_(self.v, 0.0, 1e-3, -2e-3, 2e-3)

    def kernel(self) -> torch.Tensor:
        return local_kernel(self.u, self.v)

    def weight(self) -> torch.Tensor:
        """The effective (kernelised) weight matrix, n_in x n_out."""
        return self.W * self.kernel()


class GLocalKNet(nn.Module):
    """The GLocal-K network over one fixed training matrix (rows = items, columns = users).

    The training matrix is held as non-persistent buffers (CSR for the sparse
    first layer of the plain pass, dense for the global convolution);
    ``forward()`` returns the dense prediction matrix (n_rows x n_cols). The
    persistent ``stage`` buffer is 0 after pre-training (local kernel only) and
    1 once fine-tuning with the global kernel has started.
    """

    def __init__(self, rows: RowMatrix, layers: tuple[int, ...], dim: int = 5, gk_size: int = 3,
                 dot_scale: float = 1.0):
        super().__init__()
        n = rows.n_cols
        self.n_rows, self.n_cols = rows.n_rows, n
        self.gk_size, self.dot_scale = int(gk_size), float(dot_scale)
        sizes = (n, *layers)
        self.hidden = nn.ModuleList([KernelLayer(sizes[i], sizes[i + 1], dim) for i in range(len(layers))])
        self.out = KernelLayer(sizes[-1], n, dim)
        self.conv_kernel = nn.Parameter(torch.empty(self.n_rows, self.gk_size ** 2))
        nn.init.trunc_normal_(self.conv_kernel, 0.0, 0.1, -0.2, 0.2)
        self.register_buffer("stage", torch.zeros((), dtype=torch.int64))
        b = rows.take(np.arange(rows.n_rows))
        self.register_buffer("r_offsets", b.offsets, persistent=False)
        self.register_buffer("r_cols", b.cols, persistent=False)
        self.register_buffer("r_vals", b.vals, persistent=False)
        self.register_buffer("r_dense", b.dense(), persistent=False)

    def layer_modules(self) -> list[KernelLayer]:
        return [*self.hidden, self.out]

    def _body(self, h: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(h + self.hidden[0].b)
        for layer in self.hidden[1:]:
            h = torch.sigmoid(h @ layer.weight() + layer.b)
        return h

    def _hidden_plain(self) -> torch.Tensor:
        """Last hidden layer for the training matrix itself (sparse first layer)."""
        w0 = self.hidden[0].weight()
        h = F.embedding_bag(self.r_cols, w0, self.r_offsets, mode="sum", per_sample_weights=self.r_vals,
                            include_last_offset=True)
        return self._body(h)

    def global_kernel(self, h: torch.Tensor) -> torch.Tensor:
        """``gk_size x gk_size`` kernel from the item-wise mean of the reconstruction ``h W_out + b``."""
        # mean over users of (h @ W_eff + b) = h @ mean_cols(W_eff) + mean(b): the output layer is linear
        avg = h @ self.out.weight().mean(1) + self.out.b.mean()
        return (avg @ self.conv_kernel * self.dot_scale).view(self.gk_size, self.gk_size)

    def global_input(self) -> torch.Tensor:
        """``relu(conv2d(R, G))``: the fine-tuning stage's input matrix (n_rows x n_cols)."""
        g = self.global_kernel(self._hidden_plain())
        y = F.conv2d(self.r_dense[None, None], g[None, None], padding=self.gk_size // 2)
        return torch.relu(y[0, 0])

    def hidden_all(self) -> torch.Tensor:
        if int(self.stage) == 0:
            return self._hidden_plain()
        return self._body(self.global_input() @ self.hidden[0].weight())

    def forward(self) -> torch.Tensor:
        return self.hidden_all() @ self.out.weight() + self.out.b


class GLocalKTask(Task):
    """Engine hooks: squared error at the observed entries + the kernel/L2 penalty."""

    def __init__(self, build, lambda_2: float, lambda_s: float, n_train: int):
        self.build = build
        self.scale_2 = float(lambda_2) / max(n_train, 1)
        self.scale_s = float(lambda_s) / max(n_train, 1)

    def build_module(self) -> nn.Module:
        return self.build()

    def penalty(self, net: GLocalKNet) -> torch.Tensor:
        total = torch.zeros((), device=net.r_vals.device)
        for layer in net.layer_modules():
            total = total + self.scale_s * layer.kernel().pow(2).sum() + self.scale_2 * layer.W.pow(2).sum()
        return total

    @staticmethod
    def _at(full: torch.Tensor, b: RowBatch) -> torch.Tensor:
        rows = torch.from_numpy(b.rows).to(b.cols.device)[b.row_index()]
        return full[rows, b.cols]

    def train_losses(self, net, batch: RowBatch):
        full = net()
        pred = self._at(full, batch)
        yield Loss(((pred.float() - batch.vals) ** 2).sum(), batch.nnz, self.penalty(getattr(net, "module", net)))

    def eval_sse(self, module, inputs: RowBatch, targets: RowBatch):
        pred = self._at(module(), targets)
        return ((pred.float() - targets.vals) ** 2).sum(), targets.nnz


def _in_stage(record: dict[str, Any], stage: str, done: int) -> dict[str, Any]:
    """An engine epoch record of ``stage`` on the fit's one epoch axis: ``epoch`` counts on from the
    ``done`` epochs of the stages before (``stage_epoch`` is the stage's own count)."""
    out = {**record, "epoch": done + int(record["epoch"]), "stage_epoch": int(record["epoch"]), "stage": stage}
    if record.get("best_epoch"):
        out["best_epoch"] = done + int(record["best_epoch"])
    return out


class _StageReporter(Reporter):
    """Passes everything on; epoch records go through :func:`_in_stage`, so the VALID curve a
    reporter sees (``recozoo tune``'s pruner, ``compare``'s learning curves) rises monotonically
    across both stages instead of restarting at epoch 1 when fine-tuning starts (the pruner would
    compare fine-tuning steps with other trials' pre-training steps, and Optuna drops a step
    reported twice)."""

    def __init__(self, inner: Reporter, stage: str, done: int):
        self.inner, self.stage, self.done = inner, stage, done

    def start(self, description: str, total: float | None = None) -> None:
        self.inner.start(f"{self.stage} {description}", total)

    def advance(self, n: float = 1, **figures: Any) -> None:
        self.inner.advance(n, **figures)

    def finish(self) -> None:
        self.inner.finish()

    def log(self, record: dict[str, Any]) -> None:
        self.inner.log(_in_stage(record, self.stage, self.done) if "epoch" in record else record)

    def message(self, text: str) -> None:
        self.inner.message(f"{self.stage}: {text}")

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class GLocalKSettings(BaseSettings):
    layers: tuple[int, ...] = setting(AUTO, "hidden kernel layers (the paper's 2 x 500; auto: docs/defaults.md)",
                                      min=1, auto=True)
    kernel_dim: int = setting(5, "dimension of the per-unit vectors u, v of the local kernel (paper: 5)",
                              min=1)
    lambda_2: float = setting(20.0, "L2 strength on the weight matrices W (reference, ML-100K: 20)", min=0.0)
    lambda_s: float = setting(0.006, "sparsity: L2 strength on the local kernel values (reference, "
                                     "ML-100K: 0.006)", min=0.0)
    gk_size: int = setting(3, "side of the global convolution kernel, odd (paper: 3)", min=1)
    dot_scale: float = setting(1.0, "scale of the global kernel's dot product (reference, ML-100K: 1)",
                               min=0.0, min_exclusive=True)
    pre_epochs: int = setting(150, "pre-training L-BFGS iterations, one per epoch (reference: 30 x 5)",
                              min=1, max=100_000)
    fine_epochs: int = setting(AUTO, "fine-tuning L-BFGS iterations with the global kernel (reference: "
                                     "60 x 5); 0 = local-kernel autoencoder only; auto: docs/defaults.md",
                               min=0, max=100_000, auto=True)
    lr: float = setting(1.0, "L-BFGS step scale (torch's default 1)", min=0.0, min_exclusive=True)
    eval_every: int = setting(5, "evaluate VALID every N iterations (the reference: every 5)", min=1)
    patience: int = setting(10, "stop a stage after N evaluations without VALID improvement (0 = off; "
                                "ours)", min=0)
    baseline: Literal["none", "bias"] = setting(AUTO, "bias: the network learns residuals over the bias model "
                                                "μ + b_u + b_i (fitted on TRAIN); none: raw ratings (the "
                                                "paper's); auto: docs/defaults.md", auto=True)
    max_cells: int = setting(200_000_000, "refuse a training matrix of more items x users cells (the model "
                                          "holds several dense float copies of it; 0 = no limit; ours)", min=0)

    def validate(self) -> None:
        if self.gk_size % 2 == 0:
            raise SettingsError(f"setting 'gk_size': must be odd (a 'same' convolution), got {self.gk_size}")
        if self.layers != AUTO and not self.layers:
            raise SettingsError("setting 'layers': give at least one hidden layer size, e.g. 500,500")


class GLocalK(AutoencoderModel):
    __doc__ = __doc__
    name = "glocal-k"
    Settings = GLocalKSettings
    summary = "GLocal-K: item autoencoder with local-kernel weights + global conv kernel (Han et al. 2021)"
    row_mode = "item"
    empty_row = "mean"
    folds_in = FoldIn.NO
    auto_rule = glocalk_rule
    warm_starts = False
    warm_start_method = ("no warm start: the network holds the training matrix (the global convolution runs "
                         "over all of it) and trains in two stages; fit anew on the extended data")
    fold_in_method = ("cannot: item-based, a new user is a new input column of every item's vector (and of "
                      "the global kernel's convolution over the whole matrix); refit")
    fallback = ("an item without training ratings: the user's mean training rating; a user without "
                "training ratings: the item's mean training rating; global mean if neither is known")
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    conformance_settings = {"layers": "16,16", "pre_epochs": 6, "fine_epochs": 4, "eval_every": 2}
    #: what ``recozoo tune glocal-k`` tries; early stopping (patience) ends each stage on VALID
    search_space = SearchSpace(Layers("layers", depth=(1, 3), width=(100, 1000)), Int("kernel_dim", 3, 10),
                               Float("lambda_2", 1.0, 100.0, log=True), Float("lambda_s", 1e-4, 0.1, log=True),
                               Float("dot_scale", 0.1, 10.0, log=True), Categorical("gk_size", (3, 5)))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._full = None

    def _uses_baseline(self) -> bool:
        return self.settings.baseline == "bias"

    def _build_net(self, n_cols: int) -> GLocalKNet:
        s = self.settings
        return GLocalKNet(self.rows_, s.layers, s.kernel_dim, s.gk_size, s.dot_scale)

    def _config(self, epochs: int) -> EngineConfig:
        """One stage's engine settings: full-batch L-BFGS for ``epochs`` iterations."""
        return EngineConfig.from_settings(self.settings, device=self.device, seed=self.seed, epochs=epochs,
                                          batch_size=0, optimizer="lbfgs", milestones=())

    def _fit(self, train, valid, reporter, run_dir, resume):
        s = self.settings
        cells = train.n_items * train.n_users
        if s.max_cells and cells > s.max_cells:
            raise SettingsError(f"glocal-k: the training matrix has {train.n_items:,} items x {train.n_users:,} users "
                                f"= {cells:,} cells, above max_cells={s.max_cells:,} (a dense model: ~{cells * 4 / 2**30:.1f} "
                                f"GiB per float copy); use a smaller data set or raise --set max_cells=...")
        self.base_ = BiasBaseline.fit(train) if self._uses_baseline() else None
        if self.base_ is not None:      # the matrix holds residuals; VALID's RMSE is the same in either space
            train = self.base_.residuals(train)
            valid = self.base_.residuals(valid) if valid is not None else None
        rows = RowMatrix.from_table(train, "item")
        self.rows_ = rows
        vpair = (rows, RowMatrix.from_table(valid, "item")) if valid is not None and valid.nnz else None
        sig = {"model": self.name, "mode": "item", "n_rows": rows.n_rows, "n_cols": rows.n_cols}
        history: list[dict[str, Any]] = []
        module = None
        done = 0                     # epochs of the stages before: stage 2's epochs continue the count
        self.stage_best_epochs_: dict[str, int] = {}
        for stage, epochs in (("pretrain", s.pre_epochs), ("finetune", s.fine_epochs)):
            if epochs == 0:
                continue
            if module is None:
                build = lambda: self._build_net(rows.n_cols)   # noqa: E731
            else:
                module.stage.fill_(1)
                build = lambda m=module: m                      # noqa: E731 - stage 2 continues stage 1
            task = GLocalKTask(build, s.lambda_2, s.lambda_s, rows.nnz)
            trainer = Trainer(task, self._config(epochs), reporter=_StageReporter(reporter, stage, done),
                              run_dir=Path(run_dir) / stage if run_dir else None, resume=resume,
                              signature={**sig, "stage": stage})
            res = trainer.fit(rows, vpair)
            module = res.module
            history += [_in_stage(r, stage, done) for r in res.history]
            self.best_epoch_ = done + int(res.best_epoch) if res.best_epoch else 0
            self.stage_best_epochs_[stage] = int(res.best_epoch)
            done += int(res.history[-1]["epoch"]) if res.history else 0
        self.net_ = module.eval()
        self.history_ = history
        self._full = None
        self._row_means = self._col_means = None

    def refit_settings(self) -> dict[str, Any]:
        """Each stage's VALID-chosen length: ``pre_epochs``/``fine_epochs`` = its best epoch."""
        self._check_fitted()
        best = self.stage_best_epochs_        # set by every fit and every load
        out: dict[str, Any] = {"patience": 0}
        if "pretrain" in best:
            out["pre_epochs"] = best["pretrain"]
        out["fine_epochs"] = best.get("finetune", 0)      # no fine-tuning stage ran: none in the refit either
        return out

    def _get_state(self) -> dict[str, Any]:
        st = super()._get_state()
        for stage, ep in self.stage_best_epochs_.items():
            st[f"best_epoch_{stage}"] = int(ep)
        return st

    def _set_state(self, state: dict[str, Any]) -> None:
        self.stage_best_epochs_ = {stage: int(state[f"best_epoch_{stage}"]) for stage in ("pretrain", "finetune")
                                   if f"best_epoch_{stage}" in state}
        self.rows_ = RowMatrix(state["rows_indptr"], state["rows_cols"], state["rows_vals"],
                               int(state["rows_n_cols"]))
        super()._set_state(state)
        self._full = None

    def _full_matrix(self) -> np.ndarray:
        if self._full is None:
            with torch.no_grad():
                self._full = self.net_().float().cpu().numpy()
        return self._full

    def _scores_at(self, rows: np.ndarray, cols: np.ndarray, **_) -> np.ndarray:
        """Output of the network at (item, user) pairs (the whole prediction matrix is cached)."""
        return self._full_matrix()[rows, cols].astype(np.float32)

    def _item_mode_scores(self, users: np.ndarray) -> np.ndarray:
        """(users x n_items) from the cached prediction matrix (no per-row network pass)."""
        return np.ascontiguousarray(self._full_matrix()[:, users].T, dtype=np.float32)

    def export(self, path, format: str = "torchscript"):
        raise SettingsError("glocal-k: no export — a prediction needs the whole training matrix "
                            "(the global convolution mixes neighbouring rows)")

    def dense_rows(self, rows):
        raise SettingsError("glocal-k: predictions are not a function of one row's TRAIN vector")

