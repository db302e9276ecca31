"""I-AutoRec and U-AutoRec (Sedhain, Menon, Sanner & Xie, WWW 2015).

    h(r) = f(W · g(V r + μ) + b),   g = sigmoid,  f = identity

``r`` is an item's vector of ratings over users (I-AutoRec, ``autorec-i``) or a
user's vector over items (U-AutoRec, ``autorec-u``). The objective is the
paper's: squared error over *observed* entries only, plus ``λ/2 (‖W‖² + ‖V‖²)``
(biases are not regularised)::

    min  Σ_rows ‖r − h(r)‖²_observed + λ/2 (‖W‖²_F + ‖V‖²_F)

recozoo minimises that objective divided by the number of training ratings N,
estimated on minibatches: ``sse_batch / count_batch + λ/(2N) (‖W‖² + ‖V‖²)``, so
``lam`` keeps the paper's meaning whatever the batch size.

Where the defaults come from:

* ``hidden`` and ``baseline`` are ``auto`` (:func:`recozoo.defaults.autorec_i_rule`,
  :func:`~recozoo.defaults.autorec_u_rule`; docs/defaults.md): the paper's 500 hidden units on raw
  ratings for I-AutoRec from 30 training ratings per user up, 100 units on the bias model's residuals
  below; U-AutoRec always 500 units on the residuals (on raw ratings it lost to ``bias`` on ml-100k);
  under 5 ratings per user both take 20 units (the Netflix sample's VALID);
* ``lam=300`` — selected on ml-100k u1 VALID with full-batch Rprop (docs/deeprec.md
  records the search); re-tune it for other data;
* optimiser — the paper trains with resilient propagation (Rprop) or L-BFGS on
  full batches; the default here is full-batch Rprop (``optimizer=rprop``,
  ``batch_size=0``, initial step 0.01, PyTorch's Rprop defaults otherwise),
  which on ml-100k beat minibatch Adam clearly. Full batch gathers every rating's hidden vector at once (N x hidden floats), so
  on Netflix-size data use a minibatch optimiser (e.g. ``optimizer=adam
  batch_size=256 lr=0.001``);
* ``eval_every=5``/``patience=10`` — model selection on VALID (Rprop's VALID
  RMSE bottoms out after ~30-150 steps on ml-100k, then overfits); ``eval_every`` is
  ``auto``: every step under 5 training ratings per user, where VALID is best after a few;

``optimizer=lbfgs`` (the paper's other optimiser) takes one full-batch L-BFGS
iteration per epoch (torch ``LBFGS``, strong-Wolfe line search, history 10 —
scipy L-BFGS-B's default; ``lr=1``, its natural step). On ml-100k u1 VALID it
beats Rprop but needs a smaller λ than Rprop's early-stopped optimum: λ=200 with
``eval_every=1`` and ``patience=50`` is the ``ml-100k`` preset (``recozoo fit
autorec-i --dataset ml-100k --preset ml-100k``; the λ search is in
docs/zoo.md). The defaults stay Rprop's: its epochs are cheaper, and the
Netflix-scale configurations use them.

The network, sparse fast path (observed inputs only, outputs gathered at the
observed targets — same loss and gradients as the dense masked computation),
prediction, fallbacks and export are the shared autoencoder machinery
(:mod:`recozoo.models.autoencoder`, which DeepRec uses too): AutoRec *is* a
one-hidden-layer sigmoid autoencoder with a linear output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import torch

from recozoo.engine import EngineConfig
from recozoo.models.autoencoder import AutoencoderTask, LossName, LossSettingAutoencoder
from recozoo.models.base import FoldIn
from recozoo.search_space import Categorical, Float, Int, SearchSpace, When
from recozoo.defaults import autorec_i_rule, autorec_u_rule
from recozoo.settings import AUTO, BaseSettings, setting

__all__ = ["AutoRecSettings", "IAutoRec", "UAutoRec"]


@dataclass(frozen=True)
class AutoRecSettings(BaseSettings):
    hidden: int = setting(AUTO, "hidden units (the paper's 500; auto: docs/defaults.md)", min=1, auto=True)
    lam: float = setting(300.0, "L2 strength λ of the paper's objective (on W and V, not biases)", min=0.0)
    optimizer: Literal["rprop", "lbfgs", "adam", "momentum", "sgd", "adagrad", "rmsprop"] = setting(
        "rprop", "rprop or lbfgs (the paper's; full batch) or a minibatch optimiser such as adam")
    lr: float = setting(0.01, "learning rate (rprop: initial step size; lbfgs: step scale, use 1)", min=0.0, min_exclusive=True)
    batch_size: int = setting(0, "rows per batch; 0 = all rows in one batch (full-batch Rprop)", min=0)
    epochs: int = setting(800, "training epochs (one Rprop step each when full-batch)", min=1, max=100_000)
    eval_every: int = setting(AUTO, "evaluate VALID every N epochs (auto: 5, 1 under 5 ratings per user; "
                                    "docs/defaults.md)", min=1, auto=True)
    patience: int = setting(10, "early stop after N evaluations without VALID improvement (0 = off)",
                            min=0)
    precision: Literal["fp32", "bf16", "fp16"] = setting("fp32", "fp32, bf16 (CPU/GPU) or fp16 (GPU)")
    loss: LossName = setting("mse", "mse on ratings (the paper's); multinomial or logistic: implicit "
                                    "feedback (binary input, the whole row scored; a ranking model)")
    baseline: Literal["none", "bias"] = setting(AUTO, "bias: the network learns residuals over the bias "
                                                "model μ + b_u + b_i (fitted on TRAIN); none: raw ratings "
                                                "(the paper's); auto: docs/defaults.md", auto=True)


#: chosen on ml-100k u1 VALID with full-batch L-BFGS (see the module docstring for the λ search)
ML100K_SETTINGS: dict[str, Any] = {"optimizer": "lbfgs", "lr": 1.0, "lam": 200.0, "batch_size": 0,
                                   "epochs": 400, "eval_every": 1, "patience": 50, "hidden": 500,
                                   "baseline": "none"}


def _ml100k_preset(dataset: str) -> dict[str, Any]:
    return dict(ML100K_SETTINGS)


class _AutoRec(LossSettingAutoencoder):
    Settings = AutoRecSettings
    empty_row = "mean"
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    conformance_settings = {"hidden": 16, "epochs": 20}
    #: what ``recozoo tune autorec-i|autorec-u`` tries; L-BFGS comes with its own step and schedule
    search_space = SearchSpace(Int("hidden", 100, 1000, log=True), Float("lam", 1.0, 1000.0, log=True),
                               Categorical("optimizer", ("rprop", "lbfgs")),
                               When("optimizer", "lbfgs", fixed={"lr": 1.0, "batch_size": 0, "epochs": 400,
                                                                 "eval_every": 1, "patience": 50}))
    fallback = ("a row (item for I-AutoRec, user for U-AutoRec) without training ratings: the other "
                "side's mean training rating (an empty input is never trained on); a column never "
                "seen in training: the row's mean training rating; global mean if neither is known")

    def _net_kwargs(self) -> dict[str, Any]:
        return {"layers": (self.settings.hidden,), "activation": "sigmoid", "tied": False,
                "dropout": 0.0, "last_linear": True}

    def _engine_config(self) -> EngineConfig:
        # the paper's L2 term is the task's penalty, not the optimiser's weight decay; no lr schedule
        return EngineConfig.from_settings(self.settings, device=self.device, seed=self.seed, milestones=())

    def _task(self, n_cols: int, n_train: int) -> AutoencoderTask:
        scale = self.settings.lam / (2.0 * max(n_train, 1))

        def penalty(net) -> torch.Tensor:
            return scale * (net.w_in.float().pow(2).sum() + net.w_out.float().pow(2).sum())

        return AutoencoderTask(lambda: self._build_net(n_cols), refeed=0, noise=0.0,
                               penalty=penalty if scale > 0 else None, loss=self.settings.loss)


class IAutoRec(_AutoRec):
    """Item-based AutoRec: each item's ratings vector over users is reconstructed."""

    name = "autorec-i"
    row_mode = "item"
    #: ``--preset ml-100k``: full-batch L-BFGS, λ=200 (chosen on ml-100k u1 VALID; I-AutoRec only)
    presets: ClassVar[dict[str, Callable[[str], dict[str, Any]]]] = {"ml-100k": _ml100k_preset}
    summary = "I-AutoRec: item-based one-hidden-layer autoencoder (Sedhain et al. 2015)"
    folds_in = FoldIn.NO
    auto_rule = autorec_i_rule
    fold_in_method = ("cannot: item-based, a new user is a new input column of every item's vector, which "
                      "the network has no weights for (refit, or use autorec-u)")


class UAutoRec(_AutoRec):
    """User-based AutoRec: each user's ratings vector over items is reconstructed."""

    name = "autorec-u"
    row_mode = "user"
    summary = "U-AutoRec: user-based one-hidden-layer autoencoder (Sedhain et al. 2015)"
    folds_in = FoldIn.YES
    auto_rule = autorec_u_rule
    fold_in_method = ("the forward pass on the new user's ratings vector (entries on items without training "
                      "ratings left out: their input weights never learned)")

