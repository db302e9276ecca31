"""DeepRec: deep autoencoders for collaborative filtering (Kuchaiev & Ginsburg 2017).

The model, as in the paper and NVIDIA's DeepRecommender reference:

* one training example is one user's sparse rating vector over all ``n`` items
  (``mode=user``; ``mode=item`` swaps the roles, as I-AutoRec does);
* encoder ``n -> layers[0] -> ... -> layers[-1]`` (the code), decoder mirrors it
  back to ``n``; every layer is ``act(W h + b)``; ``tied`` uses the transposed
  encoder weights in the decoder (the paper's "constrained" autoencoder), with
  separate decoder biases; Xavier-uniform weights, zero biases;
* dropout on the code layer only (``dropout``), optional input dropout-noise
  (``noise``, scaled like ``nn.Dropout``, applied to the sparse step's input
  only; the target stays clean);
* masked MSE: the sum of squared errors over entries with a non-zero target
  divided by their count;
* dense re-feeding: after the update on sparse ``x``, ``y = f(x)`` (the dense
  output of that same forward pass, detached) is fed again with ``y`` as both
  input and target, every entry counting, and a second update is taken; this
  repeats ``refeed`` times, each time on the previous step's output;
* ``optimizer=momentum``: SGD, momentum 0.9, learning rate halved after epochs
  24, 36, 48, 66 and 72 — the scheduler is stepped *after* each epoch's
  optimiser steps; the reference steps it first and so halves one epoch early.

``last_linear`` (default True): the last decoder layer is linear. The reference
applies the activation there too unless told otherwise; its maintainers
acknowledged that this invalidates the paper's sigmoid/tanh results (a bounded
output cannot reach ratings 1..5), so recozoo defaults to the paper's stated
intent and you opt in to an activated output with ``last_linear=false``.

The network, its sparse fast paths, prediction, fallbacks and export are the
shared autoencoder machinery of :mod:`recozoo.models.autoencoder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

from recozoo.defaults import DEEPREC_SMALL, deeprec_rule
from recozoo.engine import EngineConfig
from recozoo.errors import SettingsError
from recozoo.models.autoencoder import ActivationName, AutoencoderTask, LossName, LossSettingAutoencoder
from recozoo.search_space import Categorical, Float, Layers, SearchSpace, When
from recozoo.settings import AUTO, BaseSettings, setting

__all__ = ["DeepRec", "DeepRecSettings"]

OptimizerName = Literal["momentum", "sgd", "adam", "adagrad", "rmsprop", "rprop"]


@dataclass(frozen=True)
class DeepRecSettings(BaseSettings):
    """"auto" settings follow :func:`recozoo.defaults.deeprec_rule` (docs/defaults.md): up to 5M
    training ratings an item-based Rprop recipe (30+ ratings per user) or a user-based Adam recipe on
    the bias model's residuals (fewer), above that the paper's network for the data's size."""

    layers: tuple[int, ...] = setting(AUTO, "encoder layer sizes; the decoder mirrors them", min=1, auto=True)
    activation: ActivationName = setting(AUTO, "activation of every hidden layer", auto=True)
    tied: bool = setting(False, "decoder weights = transposed encoder weights (constrained autoencoder)")
    dropout: float = setting(AUTO, "dropout on the code layer only", min=0.0, max=1.0, max_exclusive=True,
                             auto=True)
    noise: float = setting(0.0, "input dropout-noise on the sparse step", min=0.0, max=1.0,
                           max_exclusive=True)
    last_linear: bool = setting(True, "linear last decoder layer (see the model docstring)")
    mode: Literal["user", "item"] = setting(AUTO, "rows are users (U-based) or items (I-based)", auto=True)
    refeed: int = setting(AUTO, "dense re-feeding steps per iteration (0 disables)", min=0, max=16, auto=True)
    optimizer: OptimizerName = setting(AUTO, "momentum = SGD 0.9 with lr halved after epochs "
                                       "24,36,48,66,72; rprop = full-batch (batch_size=0)", auto=True)
    lr: float = setting(AUTO, "learning rate", min=0.0, min_exclusive=True, auto=True)
    momentum: float = setting(0.9, "momentum of optimizer=momentum", min=0.0, max=1.0, max_exclusive=True)
    weight_decay: float = setting(AUTO, "L2 weight decay in the optimiser", min=0.0, auto=True)
    batch_size: int = setting(AUTO, "rows per batch (0 = all rows: full-batch, e.g. for rprop)", min=0,
                              auto=True)
    epochs: int = setting(AUTO, "most training epochs", min=1, max=100_000, auto=True)
    eval_every: int = setting(AUTO, "evaluate VALID every N epochs", min=1, auto=True)
    patience: int = setting(AUTO, "early stop after N evaluations without VALID improvement (0 = off); "
                            "the best epoch's weights are kept", min=0, auto=True)
    precision: Literal["fp32", "bf16", "fp16"] = setting("fp32", "fp32, bf16 (CPU/GPU) or fp16 (GPU)")
    loss: LossName = setting("mse", "mse on ratings; multinomial or logistic: implicit feedback (binary "
                                    "input, the whole row scored; a ranking model; needs refeed=0)")
    baseline: Literal["bias", "none"] = setting(AUTO, "bias: the network learns residuals over the bias "
                                                "model μ + b_u + b_i (fitted on TRAIN); none: raw ratings",
                                                auto=True)

    def validate(self) -> None:
        if self.layers != AUTO and not self.layers:
            raise SettingsError("setting 'layers': give at least one encoder layer size, e.g. 512,512,1024")
        if self.loss != "mse" and self.refeed:
            raise SettingsError(f"loss={self.loss}: dense re-feeding fits squared error; set refeed=0")


def _paper_preset(dataset: str) -> dict[str, Any]:
    """The best architecture the paper reports per Netflix split, with SELU, SGD momentum and one re-feed."""
    common = {"activation": "selu", "optimizer": "momentum", "lr": 0.005, "refeed": 1,
              "batch_size": 128, "last_linear": True, "tied": False, "mode": "user"}
    arch = {"netflix-3m": ((128, 256, 256), 0.65), "netflix-6m": ((256, 256, 512), 0.8),
            "netflix-1y": ((256, 256, 512), 0.8), "netflix-full": ((512, 512, 1024), 0.8)}
    layers, dp = arch.get(dataset, arch["netflix-full"])
    # the settings that "auto" now fills, at the values this preset always had (no early stopping)
    fixed = {"weight_decay": 0.0, "eval_every": 1, "patience": 0, "baseline": "none"}
    return {**common, **fixed, "layers": ",".join(map(str, layers)), "dropout": dp, "epochs": 100}


def _small_preset(dataset: str) -> dict[str, Any]:
    """Settings selected on ml-100k u1 VALID (the search is in docs/deeprec.md)."""
    return dict(SMALL_DATA_SETTINGS)


#: chosen on ml-100k u1 VALID (benchmarks/deeprec_findings.py, then the L2 strength by benchmarks/bench_zoo.py;
#: docs/deeprec.md has the search): on 76K ratings a shallow, item-based, L2-regularised, full-batch Rprop
#: autoencoder beats the deeper user-based ones.
SMALL_DATA_SETTINGS: dict[str, Any] = {"mode": "item", **DEEPREC_SMALL, "baseline": "none"}


class DeepRec(LossSettingAutoencoder):
    __doc__ = __doc__
    name = "deeprec"
    Settings = DeepRecSettings
    summary = "deep autoencoder with dense re-feeding (Kuchaiev & Ginsburg 2017)"
    fallback = ("rows without training ratings (e.g. a user unseen in training): the column's mean "
                "training rating (the item's mean in user mode); columns never rated in training: the "
                "row's mean training rating (global mean if none)")
    #: an empty input row is outside what the network was trained on (every training row has
    #: ratings), so its output there is arbitrary; the column mean is the honest fallback
    empty_row = "mean"
    presets: ClassVar[dict[str, Callable[[str], dict[str, Any]]]] = {
        "paper": _paper_preset, "ml-100k": _small_preset}
    auto_rule = deeprec_rule
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    conformance_settings = {"layers": "32,16", "epochs": 10, "optimizer": "adam", "lr": 0.01, "dropout": 0.2}
    #: what ``recozoo tune deeprec`` tries: a sampled depth with a width per layer, and the optimiser's
    #: own parts (rprop is full-batch; minibatch optimisers draw a batch size and a learning rate)
    search_space = SearchSpace(
        Categorical("mode", ("item", "user")), Layers("layers", depth=(1, 3), width=(64, 1024)),
        Categorical("activation", ("selu", "sigmoid", "elu", "swish", "tanh")), Float("dropout", 0.0, 0.9),
        Categorical("refeed", (0, 1)), Float("weight_decay", 1e-6, 1e-2, log=True),
        Categorical("optimizer", ("rprop", "adam", "momentum")),
        When("optimizer", "rprop", fixed={"batch_size": 0, "lr": 0.01}),
        When("optimizer", ("adam", "momentum"), Float("lr", 1e-4, 0.05, log=True),
             Categorical("batch_size", (32, 64, 128, 256))),
        When("optimizer", "momentum", Float("momentum", 0.5, 0.99)),
        fixed={"epochs": 300, "eval_every": 5, "patience": 6})

    def _mode(self) -> str:
        return self.settings.mode

    def _net_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {"layers": s.layers, "activation": s.activation, "tied": s.tied, "dropout": s.dropout,
                "last_linear": s.last_linear}

    def _engine_config(self) -> EngineConfig:
        return EngineConfig.from_settings(self.settings, device=self.device, seed=self.seed)

    def _task(self, n_cols: int, n_train: int) -> AutoencoderTask:
        return AutoencoderTask(lambda: self._build_net(n_cols), refeed=self.settings.refeed,
                               noise=self.settings.noise, loss=self.settings.loss)

