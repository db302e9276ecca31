"""The contract every recozoo model honours, built-in or plugin.

A model is configured by a frozen ``Settings`` dataclass (see
:mod:`recozoo.settings`), learns from a :class:`~recozoo.data.table.RatingsTable`
and answers in *indices* of that table's id maps (the split's maps: index ``u``
is the same user in train, valid and test). Learned state ends with ``_``
(scikit-learn's convention) so "fitted or not" is visible.

Unseen ids: an index outside ``[0, n_users_)`` / ``[0, n_items_)``, or one
that had no training rating, gets the model's documented fallback (its
``fallback`` class attribute says what it is, e.g. "global mean + item bias").

Persistence is one format for every model: :meth:`Model.save` writes a zip of
numpy arrays plus a JSON header (model name, settings, shapes, recozoo
version), atomically; :func:`load_model` reads any model back through the
registry. Subclasses only provide ``_get_state`` / ``_set_state``.

Usage::

    model = get_model("bias")(settings={"reg": 5.0}, seed=1)
    model.fit(split.train, split.valid)
    model.predict(users, items)           # float32, one per pair
    items, scores = model.recommend(3, k=10)
"""

from __future__ import annotations

import json
import zipfile
from abc import ABC, abstractmethod
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import scipy.sparse as sp

from recozoo import __version__
from recozoo.data.table import RatingsTable
from recozoo.defaults import resolve as resolve_defaults
from recozoo.errors import CheckpointError, RecozooError, SettingsError
from recozoo.io import atomic_open
from recozoo.progress import Reporter, NullReporter
from recozoo.registry import get_model
from recozoo.search_space import SearchSpace
from recozoo.settings import BaseSettings, parse_settings, settings_to_dict
from recozoo.topk import top_k_rows

__all__ = ["Model", "FoldIn", "load_model", "NotFittedError", "top_k_rows", "scores_at_pairs"]

FORMAT_VERSION = 1


class NotFittedError(RecozooError):
    """A model used before ``fit`` or ``load``."""


class FoldIn(str, Enum):
    """Whether a model scores users who are not in its training data without refitting.

    Why declared per class: a server, ``recozoo models`` and the evaluator of
    strong generalisation must know *before* calling :meth:`Model.score_new_users`
    whether it can answer. ``SETTINGS``: it depends on the fitted model's settings
    (DeepRec folds in in user mode only); :meth:`Model.can_fold_in` then decides.
    """

    YES = "yes"
    NO = "no"
    SETTINGS = "depends on settings"


class Model(ABC):
    """Base class of all models. See the module docstring for the contract."""

    #: registry name, e.g. ``"deeprec"``
    name: ClassVar[str] = ""
    #: the settings dataclass (subclass of :class:`BaseSettings`)
    Settings: ClassVar[type[BaseSettings]] = BaseSettings
    #: False for ranking-only models (implicit ALS, EASE): no RMSE is ever reported for them
    predicts_ratings: ClassVar[bool] = True
    #: True for models that read timestamps (TimeSVD++, RRN)
    uses_timestamps: ClassVar[bool] = False
    #: what ``predict`` returns for users/items without training data
    fallback: ClassVar[str] = "global mean of the training ratings"
    #: one line for ``recozoo models``
    summary: ClassVar[str] = ""
    #: True when ``fit`` needs VALID for more than choosing a training length (the blend fits its
    #: weights on it): a refit then still passes VALID, and ``refit_settings`` says what changes
    needs_valid: ClassVar[bool] = False
    #: whether :meth:`score_new_users` works for this class (see :class:`FoldIn`)
    folds_in: ClassVar[FoldIn] = FoldIn.NO
    #: one line: how a new user is folded in, or why the model cannot (``recozoo models`` shows it)
    fold_in_method: ClassVar[str] = "cannot score a user absent from training without refitting"
    #: whether :meth:`warm_start_from` works: a fit that starts from another fitted model's state
    #: (``recozoo fit --warm-start``, :mod:`recozoo.warm`)
    warm_starts: ClassVar[bool] = False
    #: one line: what a warm start starts from
    warm_start_method: ClassVar[str] = "no warm start: fit anew on the extended data"
    #: True when each row of :meth:`score_items` / :meth:`score_new_users` comes out of the same
    #: arithmetic whatever the other rows of the call, so a server may score many users in one call
    #: and answer each exactly as alone. Torch's CPU products with 8 or more rows were in every test
    #: (recozoo.serve.recommender); numpy's OpenBLAS products are not (a row's rounding depends on its
    #: position in the kernel's tiles), so numpy models leave it False and are scored user by user
    batch_invariant: ClassVar[bool] = False
    #: named settings for ``--preset NAME``: name -> function(dataset name) -> setting values
    presets: ClassVar[dict[str, Callable[[str], dict[str, Any]]]] = {}
    #: tiny settings the conformance kit fits with (:func:`recozoo.testing.check_model`)
    conformance_settings: ClassVar[dict[str, Any]] = {}
    #: what ``recozoo tune`` samples, declared beside the settings (:mod:`recozoo.search_space`): every
    #: point must be valid ``Settings`` (``check_model`` samples it); empty = nothing to tune
    search_space: ClassVar[SearchSpace] = SearchSpace()
    #: True for models that compute with torch on ``device`` (the autoencoders, RRN); the others
    #: run on the CPU whatever ``--device`` says, and their runs record "cpu" (:meth:`device_used`)
    uses_device: ClassVar[bool] = False
    #: the rule that fills settings left at "auto" from the training data's shape (recozoo.defaults)
    auto_rule: ClassVar[Callable[[Any, Any], dict[str, Any]] | None] = None
    #: True when ``fit(train, valid, reporter=)`` with a non-empty VALID reports a VALID learning curve:
    #: after every epoch one ``reporter.log`` record with ``epoch`` (1, 2, ...) and ``valid_rmse`` (a
    #: float on the epochs it scores VALID, the last one at least; None on the others) -- the record the
    #: torch engine writes (:mod:`recozoo.engine`). ``recozoo tune`` prunes trials from it, so a model
    #: that declares it is checked to send it (:func:`recozoo.testing.check_model`, check ``valid_curve``)
    valid_curve: ClassVar[bool] = False
    #: True when ``recozoo tune --pruner auto`` (the default) prunes this model's trials from that curve
    #: (Optuna's median rule, epoch by epoch). False for the factor models fitted by SGD or ALS: their
    #: trials take seconds, so pruning saves little, and on ml-100k it cost 0.008 of VALID RMSE at the
    #: same budget by stopping the slow-learning settings that end best (docs/tuning.md, "Pruning")
    tune_prunes: ClassVar[bool] = True

    def __init__(self, settings: BaseSettings | dict[str, Any] | None = None, *, seed: int = 0,
                 device: str = "cpu", clip: tuple[float, float] | None = None):
        if settings is None or isinstance(settings, dict):
            settings = parse_settings(self.Settings, settings or {}, model=self.name)
        elif not isinstance(settings, self.Settings):
            raise SettingsError(f"{self.name}: settings must be {self.Settings.__name__}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise SettingsError(f"seed must be an integer, got {seed!r}")
        self.settings = settings
        #: the class's :attr:`predicts_ratings`, unless these settings change it (:meth:`predicts_ratings_with`)
        self.predicts_ratings = self.predicts_ratings_with(settings)
        self.seed = int(seed)
        self.device = device
        #: explicit rating-scale clipping of ``predict`` (None = no clipping, the default)
        self.clip = tuple(clip) if clip is not None else None
        self.n_users_: int | None = None
        self.n_items_: int | None = None
        self.global_mean_: float | None = None
        #: models that train in epochs and select one on VALID set it (0 = none chosen / no epochs)
        self.best_epoch_: int = 0
        self._seen: sp.csr_matrix | None = None
        #: during :meth:`fit` only: VALID users' fold-in rows on splits with held-out users (None else)
        self.valid_fold_in: RatingsTable | None = None

    @classmethod
    def uses_device_with(cls, settings: BaseSettings) -> bool:
        """Whether a fit of this class with ``settings`` may compute with torch on ``device``:
        :attr:`uses_device`, unless the settings decide it (a blend's components). What ``compare``
        asks before resolving ``--device auto``, which imports torch."""
        return cls.uses_device

    @classmethod
    def predicts_ratings_with(cls, settings: BaseSettings) -> bool:
        """Whether a model of this class fitted with ``settings`` predicts ratings.

        :attr:`predicts_ratings` unless the settings decide it (an autoencoder
        trained with an implicit loss ranks instead); what ``compare`` asks
        before it has a model, what a model instance answers as its own
        ``predicts_ratings``.
        """
        return cls.predicts_ratings

    # ------------------------------------------------------------------ contract
    @abstractmethod
    def _fit(self, train: RatingsTable, valid: RatingsTable | None, reporter: Reporter,
             run_dir: Path | None, resume: bool) -> None:
        """Learn from ``train``; ``valid`` may be used for model selection only."""

    @abstractmethod
    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores for pairs of *known-range* indices (both arrays int64, same length).

        Out-of-range indices never reach this method: :meth:`predict` handles them.
        Users/items in range but without training data are the model's business.
        """

    def _get_state(self) -> dict[str, Any]:
        """Arrays (numpy) and JSON-able scalars that fully describe the fitted model."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- public API
    def fit(self, train: RatingsTable, valid: RatingsTable | None = None, *,
            reporter: Reporter | None = None, run_dir: str | Path | None = None,
            resume: bool = False, valid_fold_in: RatingsTable | None = None) -> "Model":
        """Fit on ``train``; ``valid`` (same id maps) only for selection/early stopping.

        ``valid_fold_in``: on splits with held-out users (strong generalisation) VALID's users are
        not in TRAIN, so a model that selects on VALID needs their fold-in rows as its input
        (``split.valid_fold_in``). :meth:`_fit` finds them in :attr:`valid_fold_in` (None
        otherwise, and again after the fit); models that select nothing ignore them.
        """
        for part, name in ((valid, "valid"), (valid_fold_in, "valid_fold_in")):
            if part is not None and (part.n_users != train.n_users or part.n_items != train.n_items):
                raise RecozooError(f"{name} must share the train table's id maps")
        if train.nnz == 0:
            raise RecozooError(f"{self.name}: the training table has no ratings")
        if self.uses_timestamps and not train.has_timestamps:
            raise RecozooError(f"{self.name} needs timestamps, and this dataset has none")
        self._remember_training(train)
        # "auto" settings become the rule's values for this data: what _fit, save and refit see
        self.settings = resolve_defaults(self.settings, type(self).auto_rule, train)
        self.valid_fold_in = valid_fold_in
        try:
            self._fit(train, valid, reporter or NullReporter(), Path(run_dir) if run_dir else None, resume)
        finally:
            self.valid_fold_in = None
        return self

    def _remember_training(self, train: RatingsTable) -> None:
        """Shape, global mean (the last fallback) and seen pairs (excluded by ``recommend``)."""
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.global_mean_ = float(np.mean(train.ratings, dtype=np.float64))
        csr = train.to_csr()
        self._seen = sp.csr_matrix((np.ones(csr.nnz, dtype=np.bool_), csr.indices.copy(),
                                    csr.indptr.copy()), shape=csr.shape)
        # the rating values beside the seen pattern: a known user's history, which a server folds in
        # together with the user's live events (no copy: the table's array is read-only to us)
        self._seen_ratings = np.asarray(csr.data, dtype=np.float32)

    def refit_settings(self) -> dict[str, Any]:
        """Setting overrides that repeat this fit's VALID-chosen training length without VALID.

        Why: once VALID has chosen the settings (and, through early stopping,
        the number of epochs), the usual last step is to refit on TRAIN ∪ VALID
        — more data, same recipe (scikit-learn's ``refit=True``; the Netflix
        Prize teams retrained on probe). A model that stopped early on VALID
        records ``best_epoch_``; the default turns it into ``epochs=best_epoch_``
        with early stopping off. Models whose length is fixed (ALS iterations,
        a set number of SGD epochs) repeat their settings as they are. Models
        with several stages override this (GLocal-K); see
        :func:`recozoo.search.refit`.
        """
        self._check_fitted()
        best = self.best_epoch_
        fields = set(self.settings.__dataclass_fields__)
        if best > 0 and "epochs" in fields:
            out: dict[str, Any] = {"epochs": best}
            if "patience" in fields:
                out["patience"] = 0
            return out
        return {}

    def refit_copy(self) -> "Model":
        """An unfitted model of this class with this fit's settings plus :meth:`refit_settings`,
        the same seed, device and clipping — what a refit on TRAIN ∪ VALID fits."""
        values = {**settings_to_dict(self.settings), **self.refit_settings()}
        return type(self)(settings=values, seed=self.seed, device=self.device, clip=self.clip)

    def _check_fitted(self) -> None:
        if self.n_users_ is None:
            raise NotFittedError(f"{self.name}: fit or load the model first")

    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings (float32) for index pairs; unseen indices get the fallback."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise RecozooError(f"predict: {users.size} users but {items.size} items")
        known = (users >= 0) & (users < self.n_users_) & (items >= 0) & (items < self.n_items_)
        out = np.empty(users.shape[0], dtype=np.float32)
        if known.all():
            out[:] = self._predict(users, items)
        else:
            if known.any():
                out[known] = self._predict(users[known], items[known])
            if (~known).any():
                out[~known] = self._predict_unknown(users[~known], items[~known])
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out

    def _predict_unknown(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores for pairs with an out-of-range user or item (either index may be out of range).

        The default treats an unknown id as "no data" and answers the global
        mean; models with biases override it to keep the known side's bias
        (e.g. global mean + the item's bias for an unknown user).
        """
        return np.full(users.shape[0], self.global_mean_, dtype=np.float32)

    def score_items(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for each user in ``users`` (len(users) x n_items, float32).

        The default calls :meth:`_predict` on the full cross product in chunks;
        models with a faster dense form override it.
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        out = np.empty((users.size, self.n_items_), dtype=np.float32)
        items = np.arange(self.n_items_, dtype=np.int64)
        step = max(1, 2_000_000 // max(self.n_items_, 1))
        for s in range(0, users.size, step):
            u = users[s:s + step]
            out[s:s + u.size] = self._predict(np.repeat(u, self.n_items_), np.tile(items, u.size)) \
                .reshape(u.size, self.n_items_)
        return out

    def recommend(self, users, k: int = 10, exclude_seen: bool = True):
        """Top-``k`` items for one user index or an array of them.

        Returns ``(items, scores)``: 1-d arrays for one user, 2-d (users x k) for
        an array. Items the user rated in training are excluded unless
        ``exclude_seen`` is False. A user index out of range gets the items with
        the highest fallback score.
        """
        self._check_fitted()
        single = np.ndim(users) == 0
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if k < 1:
            raise RecozooError(f"recommend: k must be >= 1, got {k}")
        k = min(k, self.n_items_)
        known = (users >= 0) & (users < self.n_users_)
        scores = np.empty((users.size, self.n_items_), dtype=np.float32)
        if known.any():
            scores[known] = self.score_items(users[known])
        if (~known).any():
            it = np.arange(self.n_items_, dtype=np.int64)
            fb = self._predict_unknown(np.full(it.size, -1, dtype=np.int64), it)
            scores[~known] = fb
        if exclude_seen and known.any():
            seen = self._seen[users[known]]
            rows = np.repeat(np.flatnonzero(known), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
        items, sc = top_k_rows(scores, k)
        return (items[0], sc[0]) if single else (items, sc)

    # ------------------------------------------------------------- warm start
    def warm_start_from(self, previous: "Model") -> None:
        """Make the next :meth:`fit` start from ``previous``'s learned state (see :attr:`warm_start_method`).

        ``previous`` is a fitted model of the same class; the data the next fit
        sees has the same items and the previous users at the same indices
        (new users appended). Models that cannot raise a one-line error.
        """
        if not self.warm_starts:
            raise RecozooError(f"{self.name} cannot warm-start ({self.warm_start_method})")
        if type(previous) is not type(self):
            raise RecozooError(f"--warm-start: the run holds a {previous.name} model, not {self.name}")
        previous._check_fitted()
        self._warm_from = previous

    def _warm_previous(self, n_users: int, n_items: int) -> "Model | None":
        """The model set by :meth:`warm_start_from` (checked against the new data's shape), or None."""
        prev = getattr(self, "_warm_from", None)
        if prev is None:
            return None
        if prev.n_items_ != n_items or prev.n_users_ > n_users:
            raise RecozooError(f"--warm-start: the run has {prev.n_users_} users x {prev.n_items_} items, "
                               f"the data {n_users} x {n_items}")
        return prev

    # ---------------------------------------------------------------- fold-in
    def can_fold_in(self) -> bool:
        """Whether :meth:`score_new_users` answers for this fitted model (see :attr:`folds_in`)."""
        return self.folds_in is FoldIn.YES

    def score_new_users(self, ratings) -> np.ndarray:
        """Scores of every item for users who are not in the training data (fold-in, batch first).

        ``ratings`` is a ``(B x n_items)`` sparse matrix (anything
        ``scipy.sparse.csr_matrix`` accepts): row ``b`` holds the item indices
        new user ``b`` rated and the ratings (for ranking models: the
        interaction values). Every stored entry counts, whatever its value.
        Returns a ``(B x n_items)`` float32 array. How each model folds a user
        in is its :attr:`fold_in_method`; a row without entries gets the
        model's unknown-user fallback. Models that cannot raise a one-line
        :class:`~recozoo.errors.RecozooError`.
        """
        self._check_fitted()
        if not self.can_fold_in():
            raise RecozooError(f"{self.name} cannot score a new user's ratings without refitting "
                               f"({self.fold_in_method})")
        csr = self._new_user_rows(ratings)
        out = np.asarray(self._score_new_users(csr), dtype=np.float32)
        if out.shape != csr.shape:
            raise RecozooError(f"{self.name}: fold-in returned shape {out.shape}, expected {csr.shape}")
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out

    def _score_new_users(self, ratings: sp.csr_matrix) -> np.ndarray:
        """The fold-in of models that can: ``ratings`` is canonical CSR (float32, sorted, no duplicates,
        finite, indices in range). Declared by :attr:`folds_in`; the default is never reached."""
        raise NotImplementedError

    def _new_user_rows(self, ratings) -> sp.csr_matrix:
        """Check and canonicalise a batch of new users' ratings (one-line errors, no traceback)."""
        try:
            csr = sp.csr_matrix(ratings, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise RecozooError(f"new users: ratings must be a (users x items) sparse matrix ({e})") from None
        if csr.ndim != 2 or csr.shape[1] != self.n_items_:
            raise RecozooError(f"new users: expected {self.n_items_} item columns, got shape {csr.shape}")
        if not csr.has_canonical_format:
            csr = csr.copy()
            before = csr.nnz
            csr.sum_duplicates()
            if csr.nnz != before:
                raise RecozooError("new users: an item appears twice in one user's ratings")
        if not np.all(np.isfinite(csr.data)):
            raise RecozooError("new users: ratings must be finite numbers")
        return csr

    def score_new_user(self, items, ratings) -> np.ndarray:
        """:meth:`score_new_users` for one user given item indices and ratings (1-d result)."""
        return self.score_new_users(self._one_row(items, ratings))[0]

    def _one_row(self, items, ratings) -> sp.csr_matrix:
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        ratings = np.asarray(ratings, dtype=np.float32).reshape(-1)
        if items.shape != ratings.shape:
            raise RecozooError("new user: as many ratings as items are needed")
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise RecozooError("new user: item index out of range")
        if np.unique(items).size != items.size:
            raise RecozooError("new user: an item appears twice in the ratings")
        order = np.argsort(items, kind="stable")
        return sp.csr_matrix((ratings[order], items[order], np.array([0, items.size])),
                             shape=(1, self.n_items_))

    def recommend_new_users(self, ratings, k: int = 10, exclude_seen: bool = True):
        """Top-``k`` (items, scores), each ``(B x k)``, for new users (see :meth:`score_new_users`);
        the items each user rated are excluded unless ``exclude_seen`` is False."""
        csr = self._new_user_rows(ratings)
        scores = self.score_new_users(csr)
        if exclude_seen and csr.nnz:
            scores[np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr)), csr.indices] = -np.inf
        return top_k_rows(scores, k)

    def recommend_new_user(self, items, ratings, k: int = 10, exclude_seen: bool = True):
        """Top-``k`` (items, scores) for a new user given their ratings (indices)."""
        items, scores = self.recommend_new_users(self._one_row(items, ratings), k, exclude_seen)
        return items[0], scores[0]

    def seen_items(self, users=None) -> sp.csr_matrix:
        """The items each of ``users`` (known indices; None = every user) rated in training: a
        boolean CSR row each (what :meth:`recommend` excludes). Read-only."""
        self._check_fitted()
        if users is None:
            return self._seen
        return self._seen[np.asarray(users, dtype=np.int64).reshape(-1)]

    def history(self, users) -> sp.csr_matrix:
        """The training ratings of known ``users`` (indices) as a ``(len(users) x n_items)`` CSR matrix.

        What a server folds in, together with a user's live events, to refresh a
        known user's scores. Model files written before the ratings were kept
        beside the seen pattern raise a one-line error.
        """
        self._check_fitted()
        if getattr(self, "_seen_ratings", None) is None:
            raise RecozooError(f"{self.name}: this model file keeps no training ratings (saved by an "
                               "older recozoo); refit it to fold in known users' histories")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        full = sp.csr_matrix((self._seen_ratings, self._seen.indices, self._seen.indptr),
                             shape=self._seen.shape)
        return full[users]

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` (one file, written atomically)."""
        self._check_fitted()
        state = self._get_state()
        header = {"format": FORMAT_VERSION, "model": self.name, "recozoo": __version__,
                  "settings": settings_to_dict(self.settings), "seed": self.seed,
                  "n_users": self.n_users_, "n_items": self.n_items_,
                  "global_mean": self.global_mean_, "clip": self.clip, "scalars": {}}
        arrays = {"__seen_indptr": self._seen.indptr, "__seen_indices": self._seen.indices}
        if getattr(self, "_seen_ratings", None) is not None:
            arrays["__seen_ratings"] = self._seen_ratings
        for k, v in state.items():
            if isinstance(v, np.ndarray):
                arrays[k] = v
            else:
                header["scalars"][k] = v
        header_text = json.dumps(header, default=_json_default)
        path = Path(path)
        # streamed, array by array, into the temp file: no copy of the model in memory (a bytes
        # buffer and its copy were the peak of a whole fit; docs/reliability.md, "Memory")
        with atomic_open(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for k, a in arrays.items():
                with zf.open(f"{k}.npy", "w", force_zip64=a.nbytes > 1 << 30) as out:
                    np.save(out, np.ascontiguousarray(a), allow_pickle=False)
            zf.writestr("header.json", header_text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Model":
        """Read a model saved by :meth:`save` (any registered model class)."""
        return load_model(path, expect=cls if cls is not Model else None)

    def export(self, path: str | Path, format: str = "torchscript") -> Path:
        """Write the model for serving outside recozoo (torch models: TorchScript or ONNX); others cannot."""
        raise RecozooError(f"{self.name} has no export (only torch models export)")

    def device_used(self) -> str:
        """The device this model computes on — what a run records: ``device`` resolved for models
        that use one (:attr:`uses_device`), "cpu" for the rest."""
        if not self.uses_device:
            return "cpu"
        from recozoo.devices import resolve_device
        return resolve_device(self.device)

    def n_parameters(self) -> int:
        """Number of learned scalars (for leaderboards)."""
        try:
            state = self._get_state()
        except NotImplementedError:
            return 0
        return int(sum(v.size for v in state.values() if isinstance(v, np.ndarray)
                       and v.dtype.kind == "f"))


def scores_at_pairs(score_rows: Callable[[np.ndarray], np.ndarray], users: np.ndarray, items: np.ndarray,
                    n_items: int, cells: int = 2_000_000) -> np.ndarray:
    """float32 scores at ``(users[k], items[k])`` read from whole rows of item scores.

    For a model that scores a user's every item at once (``score_rows(user_indices)`` ->
    ``(len, n_items)``): its ``_predict`` through this computes each distinct user's row once and
    holds at most ``cells`` scores at a time, whatever the number of pairs. Public for plugins.
    """
    uniq, local = np.unique(users, return_inverse=True)
    out = np.empty(users.shape[0], dtype=np.float32)
    step = max(1, cells // max(n_items, 1))
    for s in range(0, uniq.size, step):       # a chunk of users' full rows at a time
        rows = score_rows(uniq[s:s + step])
        sel = (local >= s) & (local < s + step)
        out[sel] = rows[local[sel] - s, items[sel]]
    return out


def _json_default(o):
    """numpy scalars in a model's header become numbers; anything else is an error, not a string:
    a saved model must load back exactly (unlike a log record, see :func:`recozoo.io.json_default`)."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_model(path: str | Path, expect: type | None = None) -> Model:
    """Load any saved model; a corrupt or foreign file is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("header.json"))
            arrays = {}
            for n in zf.namelist():
                if n.endswith(".npy"):
                    with zf.open(n) as f:      # read in chunks, not through a bytes copy
                        arrays[n[:-4]] = np.load(f, allow_pickle=False)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable recozoo model ({e})") from None
    _check_header(header, path)
    cls = get_model(header["model"])
    if expect is not None and not issubclass(cls, expect):
        raise CheckpointError(f"{path}: holds a {header['model']} model, not {expect.name}")
    model = cls(settings=header["settings"], seed=header["seed"],
                clip=tuple(header["clip"]) if header["clip"] is not None else None)
    model.n_users_, model.n_items_ = header["n_users"], header["n_items"]
    model.global_mean_ = header["global_mean"]
    model._seen, model._seen_ratings = _seen_pattern(arrays, model.n_users_, model.n_items_, path)
    state: dict[str, Any] = dict(header["scalars"])
    state.update(arrays)
    try:
        model._set_state(state)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{path}: model state does not fit {header['model']} "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return model


#: header fields of a saved model and the JSON types each may hold
_HEADER_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,), "settings": (dict,), "seed": (int,), "n_users": (int,), "n_items": (int,),
    "global_mean": (int, float), "clip": (list, type(None)), "scalars": (dict,)}


def _check_header(header: Any, path: Path) -> None:
    """Every field a model file's header must hold, with its type: a hand-edited or foreign header
    is a one-line :class:`CheckpointError` naming the field, never a KeyError deep in loading."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header.json must be a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported model format {header.get('format')!r}")
    for key, types in _HEADER_FIELDS.items():
        if key not in header:
            raise CheckpointError(f"{path}: header.json has no {key!r}")
        v = header[key]
        if not isinstance(v, types) or isinstance(v, bool):
            raise CheckpointError(f"{path}: header.json field {key!r} has the wrong type "
                                  f"({type(v).__name__}: {str(v)[:40]})")
    for key in ("n_users", "n_items"):
        if header[key] < 1:
            raise CheckpointError(f"{path}: header.json field {key!r} must be >= 1, got {header[key]}")
    clip = header["clip"]
    if clip is not None and (len(clip) != 2 or not all(isinstance(c, (int, float)) for c in clip)):
        raise CheckpointError(f"{path}: header.json field 'clip' must be [lo, hi] or null, got {clip}")


def _seen_pattern(arrays: dict[str, np.ndarray], n_users: int, n_items: int, path: Path):
    """The training pattern (and ratings) saved beside the state, checked against the header's shape."""
    try:
        ip, ix = arrays.pop("__seen_indptr"), arrays.pop("__seen_indices")
    except KeyError as e:
        raise CheckpointError(f"{path}: the model file lacks {e.args[0]}.npy") from None
    ratings = arrays.pop("__seen_ratings", None)
    if ip.ndim != 1 or ip.size != n_users + 1:
        raise CheckpointError(f"{path}: header says n_users={n_users}, the saved training pattern has "
                              f"{max(ip.size - 1, 0)} users")
    try:
        seen = sp.csr_matrix((np.ones(ix.size, dtype=np.bool_), ix, ip), shape=(n_users, n_items))
        seen.check_format(full_check=True)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: the saved training pattern does not fit {n_users} x {n_items} "
                              f"({str(e).splitlines()[0]})") from None
    if ratings is not None and ratings.shape != ix.shape:
        raise CheckpointError(f"{path}: the saved training ratings do not match the seen pattern")
    return seen, ratings
