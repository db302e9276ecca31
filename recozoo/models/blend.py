"""A linear blend of zoo models, its weights fitted on VALID (recozoo's own, not from a paper).

    r̂(u, i) = w_0 + Σ_k w_k · r̂_k(u, i)

Each component ``k`` is a registered rating model with its own settings; all are
fitted on TRAIN (with VALID passed along, so the torch components select their
epoch on VALID as they do alone). The weights are then the ridge regression of
the VALID ratings on the components' VALID predictions (intercept not
penalised; ``ridge`` is our default, small against VALID's thousands of
ratings). This is the classic Netflix-Prize blend (e.g. Töscher & Jahrer 2009,
who fitted it on a probe set), reduced to one linear layer.

What is honest here and what is not: TEST is never read. VALID, however, is
used twice — for the components' early stopping and for the weights — so the
blend's VALID RMSE is optimistic. ``fit`` therefore also records
``valid_cv_rmse_``: 10-fold cross-validation of the weights over the VALID
ratings (folds seeded), the figure to quote for VALID. Settings of the
components must have been chosen on VALID beforehand (e.g. with
:func:`recozoo.search.search`); the ``ml-100k`` preset holds the ones
docs/zoo.md records.

``components``: ``;``-separated component specs, each a registered model name
followed by optional ``NAME=VALUE`` settings separated by spaces, e.g.
``"biasedmf factors=200 reg=0.1; autorec-i optimizer=lbfgs lr=1 lam=200"``.

Fallbacks: each component answers unseen users/items with its own documented
fallback, and the blend combines those answers with the same weights. Nothing
is clipped unless asked (``clip=(1, 5)``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import numpy as np

from recozoo.errors import RecozooError, SettingsError
from recozoo.models.base import FoldIn, Model
from recozoo.registry import get_model
from recozoo.search_space import Float, SearchSpace
from recozoo.settings import BaseSettings, parse_assignments, setting

__all__ = ["Blend", "BlendSettings", "parse_components", "component_spec", "ML100K_COMPONENTS"]

#: components with the settings chosen on ml-100k u1 VALID (docs/zoo.md)
ML100K_COMPONENTS = ("glocal-k; "
                     "autorec-i optimizer=lbfgs lr=1 lam=200 eval_every=1 patience=50 hidden=500 baseline=none; "
                     "biasedmf factors=200 epochs=80 lr=0.005 reg=0.1 reg_bias=0.02 init_std=0.05; "
                     "als rank=40 reg=0.12 iterations=15; "
                     "timesvdpp; "
                     "bias reg_user=3 reg_item=5")


def parse_components(text: str) -> list[tuple[str, dict[str, str]]]:
    """``"a x=1; b"`` -> ``[("a", {"x": "1"}), ("b", {})]`` (names are checked by the settings)."""
    out = []
    for part in text.split(";"):
        tokens = part.split()
        if not tokens:
            continue
        out.append((tokens[0], parse_assignments(tokens[1:])))
    return out


def component_spec(name: str, settings: BaseSettings) -> str:
    """``settings`` of model ``name`` written as one component of ``components`` (``"name k=v ..."``),
    naming only what differs from the model's defaults; reads back to equal settings.

    Used where a blend is made of models already chosen elsewhere (``compare --tune`` blends the
    tuned rows). A value that the spec syntax cannot carry (a text with a space or a ``;``) is a
    one-line error rather than a component that would read back as something else."""
    defaults = type(settings)()
    parts = [name]
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value == getattr(defaults, f.name):
            continue
        text = _spec_value(value)
        if any(c.isspace() or c == ";" for c in text):
            raise SettingsError(f"setting {f.name!r} of {name}: {value!r} cannot be written as a blend component")
        parts.append(f"{f.name}={text}")
    return " ".join(parts)


def _spec_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):             # bracketed, so that an empty list is written too
        return "[" + ",".join(_spec_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class BlendSettings(BaseSettings):
    components: str = setting("biasedmf; autorec-i", "';'-separated 'MODEL NAME=VALUE ...' specs of the "
                                                     "blended models")
    ridge: float = setting(1.0, "ridge penalty on the blend weights (intercept free; ours)", min=0.0)
    refit: bool = setting(False, "after fitting the weights on VALID, refit every component on TRAIN + "
                                 "VALID for the training length VALID chose (Netflix Prize practice)")

    def validate(self) -> None:
        specs = parse_components(self.components)
        if not specs:
            raise SettingsError("setting 'components': name at least one model")
        for name, values in specs:
            if name == "blend":
                raise SettingsError("setting 'components': a blend cannot contain a blend")
            cls = get_model(name)
            if not cls.predicts_ratings:
                raise SettingsError(f"setting 'components': {name} predicts no ratings")
            cls(settings=values)        # a bad component setting fails here, with its own message


def _ml100k_preset(dataset: str) -> dict[str, Any]:
    return {"components": ML100K_COMPONENTS}


class Blend(Model):
    __doc__ = __doc__
    name = "blend"
    Settings = BlendSettings
    summary = "linear blend of zoo models, weights fitted on VALID (ours)"
    fallback = "each component's own fallback, combined with the blend weights"
    needs_valid = True
    folds_in = FoldIn.SETTINGS
    fold_in_method = ("w_0 + Σ_k w_k · (component k's fold-in), when every component folds in (the "
                      "ml-100k preset's glocal-k and autorec-i cannot)")
    presets: ClassVar[dict[str, Callable[[str], dict[str, Any]]]] = {"ml-100k": _ml100k_preset}
    #: tiny settings for the conformance kit (recozoo.testing.check_model)
    conformance_settings = {"components": "bias; biasedmf epochs=5 factors=4"}
    #: what ``recozoo tune blend`` tries: the ridge on the weights (the components are given)
    search_space = SearchSpace(Float("ridge", 0.01, 100.0, log=True))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.components_: list[Model] = []
        self.weights_: np.ndarray | None = None
        self.valid_cv_rmse_: float | None = None

    def device_used(self) -> str:
        """A torch component's device when one computed on it, else "cpu"."""
        devices = {c.device_used() for c in self.components_} - {"cpu"}
        return min(devices) if devices else "cpu"

    @classmethod
    def uses_device_with(cls, settings: BlendSettings) -> bool:
        """When a component computes on a device (DeepRec, AutoRec, ...): the blend hands it its own."""
        return any(get_model(name).uses_device for name, _ in parse_components(settings.components))

    def _make_components(self) -> list[Model]:
        return [get_model(n)(settings=v, seed=self.seed, device=self.device)
                for n, v in parse_components(self.settings.components)]

    def _ridge(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        pen = self.settings.ridge * np.eye(X.shape[1])
        pen[0, 0] = 0.0
        return np.linalg.solve(X.T @ X + pen, X.T @ y)

    def _design(self, users, items) -> np.ndarray:
        cols = [np.ones(users.shape[0])] + [c.predict(users, items).astype(np.float64)
                                            for c in self.components_]
        return np.column_stack(cols)

    def _fit(self, train, valid, reporter, run_dir, resume):
        if valid is None or valid.nnz == 0:
            raise RecozooError("blend fits its weights on VALID: give it a split with a VALID part")
        self.components_ = []
        for i, comp in enumerate(self._make_components()):
            reporter.message(f"blend: fitting {comp.name} ({i + 1})")
            sub = run_dir / f"{i}-{comp.name}" if run_dir else None
            comp.fit(train, valid, reporter=reporter, run_dir=sub, resume=resume)
            self.components_.append(comp)
        users, items = valid.users.astype(np.int64), np.asarray(valid.items, dtype=np.int64)
        X, y = self._design(users, items), np.asarray(valid.ratings, dtype=np.float64)
        self.weights_ = self._ridge(X, y)
        idx = np.random.default_rng(0).permutation(y.size)
        se = 0.0
        for fold in np.array_split(idx, min(10, y.size)):
            rest = np.setdiff1d(idx, fold)
            if rest.size == 0:
                continue
            w = self._ridge(X[rest], y[rest])
            se += float(((X[fold] @ w - y[fold]) ** 2).sum())
        self.valid_cv_rmse_ = float(np.sqrt(se / max(y.size, 1)))
        if self.settings.refit:
            self._refit_components(train.union(valid, source="blend train+valid"), reporter, run_dir)

    def _refit_components(self, full, reporter, run_dir) -> None:
        """Components again on TRAIN ∪ VALID, each for the length it chose on VALID; weights kept.

        Why: the weights were fitted on VALID predictions of the TRAIN-fitted
        components; refitting them on more data changes them a little, which
        the Netflix Prize blends accepted for the extra data (probe retraining).
        The recorded ``valid_cv_rmse_`` stays the pre-refit figure: VALID is in
        the refitted components' training data.
        """
        refitted = []
        for i, comp in enumerate(self.components_):
            reporter.message(f"blend: refitting {comp.name} ({i + 1}) on train+valid")
            sub = run_dir / f"{i}-{comp.name}-refit" if run_dir else None
            refitted.append(comp.refit_copy().fit(full, None, reporter=reporter, run_dir=sub))
        self.components_ = refitted
        self._remember_training(full)   # a loaded blend hands these to its components

    def refit_settings(self) -> dict[str, Any]:
        """A blend refits through its ``refit`` setting: weights on VALID, components on TRAIN ∪ VALID."""
        return {"refit": True}

    def _predict(self, users, items):
        return (self._design(users, items) @ self.weights_).astype(np.float32)

    _predict_unknown = _predict

    def can_fold_in(self) -> bool:
        return bool(self.components_) and all(c.can_fold_in() for c in self.components_)

    def _score_new_users(self, ratings):
        """The blend of the components' fold-ins, with the weights fitted on VALID."""
        out = np.full(ratings.shape, self.weights_[0], dtype=np.float64)
        for w, c in zip(self.weights_[1:], self.components_):
            out += w * c.score_new_users(ratings)
        return out.astype(np.float32)

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"weights": self.weights_, "valid_cv_rmse": self.valid_cv_rmse_}
        for i, c in enumerate(self.components_):
            st.update({f"c{i}.{k}": v for k, v in c._get_state().items()})
        return st

    def _set_state(self, state: dict[str, Any]) -> None:
        comps = self._make_components()
        for i, c in enumerate(comps):
            c.n_users_, c.n_items_, c.global_mean_ = self.n_users_, self.n_items_, self.global_mean_
            c._seen = self._seen
            p = f"c{i}."
            c._set_state({k[len(p):]: v for k, v in state.items() if k.startswith(p)})
        self.components_ = comps
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
        self.valid_cv_rmse_ = state.get("valid_cv_rmse")

    def n_parameters(self) -> int:
        return int(sum(c.n_parameters() for c in self.components_)) + (
            0 if self.weights_ is None else int(self.weights_.size))

