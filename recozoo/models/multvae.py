"""Mult-VAE and Mult-DAE (Liang, Krishnan, Hoffman & Jebara, WWW 2018).

"Variational Autoencoders for Collaborative Filtering": one user's interaction
vector ``x_u`` (binary, over all ``n`` items) is encoded and decoded into a
multinomial distribution ``π(z_u) = softmax(f(z_u))`` over the items; the
likelihood is multinomial, ``log p(x_u | z_u) = Σ_i x_ui log π_i(z_u)``.

As in the authors' code (dawenl/vae_cf, ``MultVAE`` / ``MultDAE``):

* the input is L2-normalised per user, then dropout (``dropout``, default 0.5,
  scaled by 1/(1-p)) is applied to it during training; the likelihood reads
  the raw binary ``x_u``;
* every layer is ``tanh(W h + b)`` except the last layer of the encoder of the
  VAE (the mean and log-variance, linear) and the decoder's output (the
  logits, linear); weights Xavier-uniform, biases N(0, 0.001²) truncated at 2σ;
* Mult-VAE (``mult-vae``): encoder ``n -> 600 -> 2·200`` (mean, log-variance),
  ``z = μ + ε·σ`` while training, decoder ``200 -> 600 -> n``; the loss per
  batch is the mean over its users of ``−log p(x_u|z_u) + β·KL(q(z_u|x_u) ‖
  N(0, I))`` with ``β = min(anneal_cap, t / total_anneal_steps)`` at update
  ``t = 0, 1, ...`` (the count is kept in checkpoints);
* Mult-DAE (``mult-dae``): ``n -> 200 -> n``, the loss the mean multinomial
  negative log-likelihood plus ``reg·Σ‖W‖²`` (the authors' λ = 0.01);
* Adam (lr 1e-3; torch's fused kernel), batches of 500 users, 200 epochs.

Sparse first layer: a batch of users is never densified on the input side —
the first layer is ``F.embedding_bag`` over the observed items with the
normalised, dropped-out values as weights (the same sums as ``X @ W``), so an
epoch touches ``nnz`` rows of the first weight matrix instead of ``B·n``
entries of a dense batch. The output layer is dense by nature (the softmax
normalises over all items). ``first_layer=dense`` densifies each batch and
multiplies, as the authors' TensorFlow code does; it exists to measure the
difference (``benchmarks/bench_implicit.py``).

Prediction (``predicts_ratings = False``): the logits ``f(μ(x_u))`` — the
encoder's *mean* for the user's training vector, no dropout, no sampling —
rank the items; they are scores, not ratings. Held-out users (strong
generalisation) are scored the same way from their fold-in vector
(:meth:`~recozoo.models.base.Model.score_new_users`), which is exactly how the
paper predicts for its validation and test users. Every stored entry of the
training table is one interaction (value 1): fit on a binarised dataset
(``ml-100k-implicit``, ``--data-param threshold=3.5``) to drop low ratings.

Selection on VALID, as the paper does: on splits with held-out users (strong
generalisation; VALID users are not in TRAIN) the engine evaluates, after
every ``eval_every`` epochs, NDCG@100 of the VALID users scored from their
fold-in rows (``Model.fit(..., valid_fold_in=)``), ranked exactly as the
evaluator ranks them (:func:`recozoo.rank_eval.rank_scores`: fold-in items
excluded, ties to the lower index), and keeps the epoch with the highest
(``valid_ndcg@100`` in ``metrics.jsonl``; ``patience`` stops early). The β of
the kept epoch is ``best_beta_`` — the paper's recipe retrains with
``anneal_cap`` set to it. On other splits (VALID users also in TRAIN) it keeps
the epoch with the lowest mean negative log-likelihood of VALID's items under
``π(μ(x_u))`` given each user's TRAIN row (the ``valid_rmse`` column holds
that number; the engine's ``train_rmse`` column is ``sqrt`` of the batch-mean
loss). Without either, the set number of epochs is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recozoo.engine import EngineConfig, Loss, RowBatch, RowMatrix, RowSparseModule, Task, Trainer, copy_weights
from recozoo.engine.held_out import SELECT_K, HeldOutValid
from recozoo.errors import SettingsError
from recozoo.models.base import FoldIn, Model
from recozoo.search_space import Float, Int, Layers, SearchSpace
from recozoo.settings import BaseSettings, setting

__all__ = ["MultVAE", "MultDAE", "MultNet", "MultTask", "MultVAESettings", "MultDAESettings",
           "anneal_beta", "normalized_values"]


def anneal_beta(update: int, total_anneal_steps: int, anneal_cap: float) -> float:
    """β at optimiser update ``update`` (0-based): ``min(anneal_cap, update / total_anneal_steps)``."""
    return min(float(anneal_cap), float(update) / float(total_anneal_steps))


def normalized_values(offsets: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """The stored values of CSR rows divided by their row's L2 norm (rows without entries stay empty)."""
    counts = offsets[1:] - offsets[:-1]
    rows = torch.repeat_interleave(torch.arange(counts.shape[0], device=vals.device), counts)
    sq = torch.zeros(counts.shape[0], dtype=vals.dtype, device=vals.device).index_add_(0, rows, vals * vals)
    return vals / torch.sqrt(sq)[rows]


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class _MultSettings(BaseSettings):
    dropout: float = setting(0.5, "dropout on the L2-normalised input (training only)", min=0.0, max=1.0,
                             max_exclusive=True)
    lr: float = setting(1e-3, "Adam's learning rate", min=0.0, min_exclusive=True)
    batch_size: int = setting(500, "users per batch", min=1)
    epochs: int = setting(200, "training epochs", min=1, max=100_000)
    eval_every: int = setting(1, "evaluate VALID every N epochs", min=1)
    patience: int = setting(0, "early stop after N evaluations without VALID improvement (0 = off)", min=0)
    first_layer: Literal["sparse", "dense"] = setting(
        "sparse", "sparse: the first layer reads the observed items only; dense: each batch densified "
                  "and multiplied (the authors' code; for measurement)")

    def validate(self) -> None:
        if not self.layers:
            raise SettingsError("setting 'layers': give at least one encoder layer size, e.g. 600,200")


@dataclass(frozen=True)
class MultVAESettings(_MultSettings):
    layers: tuple[int, ...] = setting((600, 200), "encoder sizes; the last is the latent dimension, the "
                                                  "decoder mirrors them", min=1)
    total_anneal_steps: int = setting(200_000, "updates over which β grows linearly from 0", min=1)
    anneal_cap: float = setting(0.2, "the largest β (the KL term's weight)", min=0.0)
    reg: float = setting(0.0, "λ of the penalty λ·Σ‖W‖² over the weights (not the biases)", min=0.0)

    def validate(self) -> None:
        if len(self.layers) < 2:
            raise SettingsError("mult-vae: 'layers' needs at least two sizes (hidden, latent), e.g. 600,200")


@dataclass(frozen=True)
class MultDAESettings(_MultSettings):
    layers: tuple[int, ...] = setting((200,), "encoder sizes; the last is the code, the decoder mirrors "
                                              "them", min=1)
    reg: float = setting(0.01, "λ of the penalty λ·Σ‖W‖² over the weights (not the biases)", min=0.0)


# --------------------------------------------------------------------------- network
class MultNet(RowSparseModule):
    """Encoder ``n -> layers`` (VAE: the last layer doubled into mean and log-variance), mirrored decoder.

    ``w_in`` is ``(n, layers[0])`` (an embedding table for the sparse first
    layer); ``w_out`` is ``(n, layers[0])`` (``nn.Linear`` layout) for the
    logits. One entry point, :meth:`forward`, so DistributedDataParallel sees
    every call.
    """

    def __init__(self, n: int, layers: tuple[int, ...], variational: bool, dropout: float):
        super().__init__()
        self.n, self.layers = int(n), tuple(int(x) for x in layers)
        self.variational, self.dropout = bool(variational), float(dropout)
        sizes = self.layers
        self.w_in = nn.Parameter(torch.empty(self.n, sizes[0]))
        self.b_in = nn.Parameter(torch.empty(sizes[0]))
        enc = [(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]
        if self.variational:       # the last encoder layer outputs (mean, log-variance)
            enc = enc[:-1] + [(enc[-1][0], 2 * enc[-1][1])] if enc else []
        self.enc = nn.ModuleList([nn.Linear(i, o) for i, o in enc])
        self.dec = nn.ModuleList([nn.Linear(sizes[i + 1], sizes[i]) for i in reversed(range(len(sizes) - 1))])
        self.w_out = nn.Parameter(torch.empty(self.n, sizes[0]))
        self.b_out = nn.Parameter(torch.empty(self.n))
        for w in [self.w_in, self.w_out, *(m.weight for m in [*self.enc, *self.dec])]:
            nn.init.xavier_uniform_(w)
        for b in [self.b_in, self.b_out, *(m.bias for m in [*self.enc, *self.dec])]:
            nn.init.trunc_normal_(b, std=0.001, a=-0.002, b=0.002)

    def weights(self) -> list[torch.Tensor]:
        """The weight matrices the L2 penalty reads (not the biases)."""
        return [self.w_in, self.w_out, *(m.weight for m in [*self.enc, *self.dec])]

    def encode(self, offsets, cols, vals, dense_x: torch.Tensor | None = None):
        """(mean, log-variance or None) of CSR input rows (``dense_x``: the same rows, dense)."""
        if dense_x is not None:
            h = dense_x @ self.w_in
        else:
            h = F.embedding_bag(cols, self.w_in, offsets, mode="sum", per_sample_weights=vals,
                                include_last_offset=True)
        h = torch.tanh(h + self.b_in)
        for k, lin in enumerate(self.enc):
            h = lin(h)
            if not (self.variational and k == len(self.enc) - 1):
                h = torch.tanh(h)
        if self.variational and self.enc:
            d = self.layers[-1]
            return h[:, :d], h[:, d:]
        return h, None

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden activations (B x layers[0]) of codes ``z``."""
        for lin in self.dec:
            z = torch.tanh(lin(z))
        return z

    def forward(self, offsets, cols, vals, dense_x: torch.Tensor | None = None):
        """Training pass: (logits B x n, mean, log-variance or None); VAE codes sampled."""
        mu, logvar = self.encode(offsets, cols, vals, dense_x)
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return F.linear(self.hidden(z), self.w_out, self.b_out), mu, logvar


# --------------------------------------------------------------------------- engine task
class MultTask(Task):
    """The multinomial loss (+ β·KL for the VAE) for :class:`recozoo.engine.Trainer`.

    Counts its optimiser updates (β's schedule reads them); the count is part
    of the checkpoint, so a resumed fit anneals exactly as an uninterrupted one.
    ``held_out``: VALID is a :class:`HeldOutValid` and epochs are selected on its
    NDCG@:data:`SELECT_K` (higher is better); otherwise on the VALID negative
    log-likelihood of :meth:`valid_rmse`.
    """

    def __init__(self, n_cols: int, settings: _MultSettings, variational: bool, held_out: bool = False):
        self.n_cols, self.s, self.variational = int(n_cols), settings, bool(variational)
        self.updates = 0
        if held_out:
            self.valid_metric, self.higher_is_better = f"ndcg@{SELECT_K}", True

    def build_module(self) -> nn.Module:
        return MultNet(self.n_cols, self.s.layers, self.variational, self.s.dropout)

    def make_optimizers(self, module) -> dict[str, torch.optim.Optimizer]:
        """Adam through torch's fused kernel where there is one (CPU, CUDA): the same update in one pass
        over the weights instead of several — 9x faster on CPU for two 20,720 x 600 matrices, where
        Adam's dense update is a fifth of a batch's work."""
        fused = next(module.parameters()).device.type in ("cpu", "cuda")
        return {"main": torch.optim.Adam(module.parameters(), lr=self.s.lr, fused=fused or None)}

    def beta(self) -> float:
        if not self.variational:
            return 0.0
        return anneal_beta(self.updates, self.s.total_anneal_steps, self.s.anneal_cap)

    def train_losses(self, net, batch: RowBatch) -> Iterator[Loss]:
        ones = torch.ones_like(batch.vals)
        vals = F.dropout(normalized_values(batch.offsets, ones), self.s.dropout, training=True)
        dense_x = None
        if self.s.first_layer == "dense":
            dense_x = RowBatch(batch.rows, batch.offsets, batch.cols, vals, batch.n_cols).dense()
        logits, mu, logvar = net(batch.offsets, batch.cols, vals, dense_x)
        loss = multinomial_nll(logits, batch.row_index(), batch.cols)
        if logvar is not None:
            loss = loss + self.beta() * gaussian_kl(mu, logvar)
        module = getattr(net, "module", net)
        penalty = self.s.reg * sum((w * w).sum() for w in module.weights()) if self.s.reg > 0 else None
        yield Loss(loss, batch.n_rows, penalty, ends_batch=True)
        self.updates += 1

    def valid_rmse(self, module, valid) -> float | None:
        """Mean negative log-likelihood of VALID's items given each user's TRAIN row (lower is better)."""
        inputs, targets = valid
        rows = np.flatnonzero((targets.lengths() > 0) & (inputs.lengths() > 0))
        dev = next(module.parameters()).device
        total, count = 0.0, 0
        for s in range(0, rows.size, 1024):
            r = rows[s:s + 1024]
            x, t = inputs.take(r).to(dev), targets.take(r).to(dev)
            logits, _, _ = module(x.offsets, x.cols, normalized_values(x.offsets, torch.ones_like(x.vals)))
            total += float(multinomial_nll(logits, t.row_index(), t.cols).item())
            count += t.nnz
        return total / max(count, 1)

    def valid_score(self, module, valid) -> float | None:
        """NDCG@100 of held-out VALID users (their fold-in rows as input), or the NLL."""
        if not isinstance(valid, HeldOutValid):
            return self.valid_rmse(module, valid)

        def scores_of(x):
            return module(x.offsets, x.cols, normalized_values(x.offsets, torch.ones_like(x.vals)))[0]
        return valid.mean_ndcg(scores_of, next(module.parameters()).device)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])


def multinomial_nll(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``−Σ_u Σ_i x_ui log softmax(logits_u)_i`` for binary ``x`` stored at (rows, cols), summed over rows."""
    return -torch.log_softmax(logits.float(), dim=1)[rows, cols].sum()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``Σ_u KL(N(μ_u, σ_u²) ‖ N(0, I))``, summed over rows."""
    return 0.5 * (-logvar + torch.exp(logvar) + mu * mu - 1.0).sum()


# --------------------------------------------------------------------------- model
class _MultModel(Model):
    """Fit, scoring, fold-in and persistence shared by Mult-VAE and Mult-DAE."""

    variational: ClassVar[bool] = True
    predicts_ratings = False
    uses_device = True
    #: scoring is torch end to end (see :meth:`_logits`): a server may score many users in one call
    batch_invariant = True
    folds_in = FoldIn.YES
    fold_in_method = ("the encoder's mean for the user's L2-normalised interaction vector (every stored "
                      "entry is one interaction), decoded into logits: the paper's held-out-user scoring")
    fallback = ("a user without training interactions (or unknown): the items' training interaction "
                "counts (most popular first); an unknown item: score 0")
    warm_starts = True
    warm_start_method = ("the run's network weights (new users only add rows: the network's shape is the "
                         "item count's); fresh Adam state, epochs counted from 0 (--set epochs=N); Mult-VAE's "
                         "beta continues from the run's update count (runs saved before it was kept: from 0)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.net_: MultNet | None = None
        self.history_: list[dict[str, Any]] = []
        #: after a fit: β of the kept epoch's last update (0 for Mult-DAE; not saved with the model)
        self.best_beta_: float = 0.0

    def _fit(self, train, valid, reporter, run_dir, resume):
        rows = _binary_rows(train.to_csr())
        vpair: Any = None
        if valid is not None and valid.nnz and self.valid_fold_in is not None and self.valid_fold_in.nnz:
            vpair = HeldOutValid.from_tables(self.valid_fold_in, valid)       # strong generalisation
        elif valid is not None and valid.nnz:
            vrows = _binary_rows(valid.to_csr())
            if np.any((vrows.lengths() > 0) & (rows.lengths() > 0)):
                vpair = (rows, vrows)
        task = MultTask(rows.n_cols, self.settings, self.variational, isinstance(vpair, HeldOutValid))
        prev = self._warm_previous(train.n_users, train.n_items)
        if prev is not None:          # beta's schedule goes on where the run's left it
            task.updates = prev.updates_
        first_update = task.updates
        cfg = EngineConfig.from_settings(self.settings, device=self.device, seed=self.seed,
                                         optimizer="adam", milestones=())
        trainer = Trainer(task, cfg, reporter=reporter, run_dir=run_dir, resume=resume,
                          signature={"model": self.name, "n_rows": rows.n_rows, "n_cols": rows.n_cols},
                          start_from=None if prev is None else lambda net: copy_weights(prev.net_, net))
        res = trainer.fit(rows, vpair)
        self.updates_ = task.updates
        self.net_ = res.module.cpu().eval()
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        per_epoch = (task.updates - first_update) // max(len(res.history), 1)
        self.best_beta_ = (anneal_beta(first_update + res.best_epoch * per_epoch - 1, self.settings.total_anneal_steps,
                                       self.settings.anneal_cap) if self.variational and res.best_epoch else 0.0)
        self.popularity_ = np.bincount(np.asarray(train.items), minlength=train.n_items).astype(np.float32)

    @torch.no_grad()
    def _hidden_of(self, csr: sp.csr_matrix) -> np.ndarray:
        """The decoder's last hidden activations for CSR rows (their stored entries = interactions)."""
        out = np.empty((csr.shape[0], self.net_.layers[0]), dtype=np.float32)
        for s in range(0, csr.shape[0], 2048):
            part = csr[s:s + 2048]
            b = _binary_rows(part).take(np.arange(part.shape[0]))
            mu, _ = self.net_.encode(b.offsets, b.cols, normalized_values(b.offsets, b.vals))
            out[s:s + part.shape[0]] = self.net_.hidden(mu).numpy()
        return out

    @torch.no_grad()
    def _logits(self, csr: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for CSR rows; rows without entries get the popularity fallback.

        All in torch (eval mode: no dropout, the encoder's mean, no sampling), so a row's scores do not
        depend on the other rows of the call (:attr:`batch_invariant`): the first layer sums each row's
        own entries (``embedding_bag``; the L2 norm of a binary row is exact), the later layers and the
        output product are torch's CPU products, which give every row of 8 or more the same bits
        whatever its companions (the server calls with multiples of 8 rows). numpy's OpenBLAS product,
        used here before, rounded a row differently by its position in the batch."""
        out = torch.empty(csr.shape[0], self.n_items_)
        for s in range(0, csr.shape[0], 2048):
            part = csr[s:s + 2048]
            b = _binary_rows(part).take(np.arange(part.shape[0]))
            mu, _ = self.net_.encode(b.offsets, b.cols, normalized_values(b.offsets, b.vals))
            out[s:s + part.shape[0]] = F.linear(self.net_.hidden(mu), self.net_.w_out, self.net_.b_out)
        out = out.numpy()
        out[np.diff(csr.indptr) == 0] = self.popularity_
        return out

    def score_items(self, users):
        self._check_fitted()
        return self._logits(self._seen[np.asarray(users, dtype=np.int64).reshape(-1)])

    def _predict(self, users, items):
        uniq, local = np.unique(users, return_inverse=True)
        seen = self._seen[uniq]
        H = self._hidden_of(seen)
        W, b = self.net_.w_out.detach().numpy(), self.net_.b_out.detach().numpy()
        out = np.einsum("ij,ij->i", H[local], W[items]) + b[items]
        empty = (np.diff(seen.indptr) == 0)[local]
        out[empty] = self.popularity_[items[empty]]
        return out.astype(np.float32)

    def _predict_unknown(self, users, items):
        ok = (items >= 0) & (items < self.n_items_)
        return np.where(ok, self.popularity_[np.clip(items, 0, self.n_items_ - 1)], 0.0).astype(np.float32)

    def _score_new_users(self, ratings):
        return self._logits(ratings)

    def n_parameters(self) -> int:
        return 0 if self.net_ is None else int(sum(p.numel() for p in self.net_.parameters()))

    def _get_state(self) -> dict[str, Any]:
        st: dict[str, Any] = {f"net.{k}": v.detach().float().cpu().numpy()
                              for k, v in self.net_.state_dict().items()}
        st["popularity"] = self.popularity_
        st["best_epoch"] = int(self.best_epoch_)
        st["updates"] = int(self.updates_)
        return st

    def _set_state(self, state: dict[str, Any]) -> None:
        net = MultNet(self.n_items_, self.settings.layers, self.variational, self.settings.dropout)
        sd = {k[4:]: torch.from_numpy(np.asarray(v)) for k, v in state.items() if k.startswith("net.")}
        try:
            net.load_state_dict(sd)
        except RuntimeError as e:
            raise ValueError(str(e).splitlines()[0]) from None
        self.net_ = net.eval()
        self.popularity_ = np.asarray(state["popularity"], dtype=np.float32)
        self.best_epoch_ = int(state["best_epoch"])
        #: optimiser updates of the fit (beta's schedule); runs saved before it was kept say 0
        self.updates_ = int(state["updates"]) if "updates" in state else 0


def _binary_rows(csr: sp.csr_matrix) -> RowMatrix:
    """CSR rows with every stored entry as value 1 (an interaction), as the engine's RowMatrix."""
    return RowMatrix(csr.indptr, csr.indices, np.ones(csr.nnz, dtype=np.float32), csr.shape[1])


class MultVAE(_MultModel):
    __doc__ = __doc__
    name = "mult-vae"
    Settings = MultVAESettings
    variational = True
    summary = "Mult-VAE: variational autoencoder with a multinomial likelihood (Liang et al. 2018)"
    conformance_settings = {"layers": "16,8", "epochs": 3, "batch_size": 32, "total_anneal_steps": 10}
    #: what ``recozoo tune mult-vae`` tries: the paper's two layers, around its sizes, and the β cap
    search_space = SearchSpace(Layers("layers", depth=(2, 2), width=(50, 800)), Float("dropout", 0.0, 0.8),
                               Float("anneal_cap", 0.0, 1.0), Float("lr", 1e-4, 1e-2, log=True),
                               Int("epochs", 20, 200, log=True))


class MultDAE(_MultModel):
    __doc__ = __doc__
    name = "mult-dae"
    Settings = MultDAESettings
    variational = False
    summary = "Mult-DAE: denoising autoencoder with a multinomial likelihood (Liang et al. 2018)"
    conformance_settings = {"layers": "16", "epochs": 3, "batch_size": 32}
    search_space = SearchSpace(Layers("layers", depth=(1, 2), width=(50, 800)), Float("dropout", 0.0, 0.8),
                               Float("reg", 1e-5, 1e-1, log=True), Float("lr", 1e-4, 1e-2, log=True),
                               Int("epochs", 20, 200, log=True))
