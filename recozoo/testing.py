"""The conformance kit: does a model honour the recozoo model contract?

In the spirit of scikit-learn's ``check_estimator``: one call runs the whole
interface contract of :class:`recozoo.models.base.Model` against any model —
built-in or from a plugin — on a tiny generated dataset, in seconds::

    from recozoo.testing import check_model
    check_model(MyModel)                                  # the class, default settings
    check_model(MyModel, settings={"epochs": 2})          # tiny settings for speed
    check_model(lambda settings, seed: MyModel(settings, seed=seed))   # or a factory

A failed check raises :class:`AssertionError` whose message starts with
``check_model[<model>] <check>:`` and says what was expected. The checks:

``settings``       the class declares a ``Settings`` dataclass whose fields all carry help
``bad_settings``   an unknown setting, out-of-range / not-a-choice values derived from the
                   settings' declared constraints, and the caller's ``bad_settings`` each
                   raise :class:`~recozoo.errors.SettingsError` at construction
``search_space``   the class's ``search_space`` is a :class:`~recozoo.search_space.SearchSpace` naming
                   only its settings, and points sampled from it (seeded) are valid settings
``not_fitted``     ``predict`` before ``fit`` raises :class:`~recozoo.models.base.NotFittedError`
``fit``            ``fit`` returns the model and sets ``n_users_`` / ``n_items_``
``valid_curve``    a rating model that declares ``valid_curve = True`` logged, during that fit with
                   VALID, records with ``epoch``, the last of them with a finite ``valid_rmse``
                   (the curve ``recozoo tune`` prunes from)
``predict``        float32, one finite score per pair, any length (0 included)
``unseen``         out-of-range indices (negative, ``n_users_``, ``n_items_`` + 5) and
                   in-range ids without training data get the fallback: no exception,
                   finite float32, equal to ``_predict_unknown`` for out-of-range pairs
``ratings``        (rating models only) predictions live on the rating scale: train RMSE
                   below 1.5x the ratings' standard deviation, fallbacks inside the scale ±1
``score_items``    (users x n_items) float32, equal to ``predict`` on the same pairs
``recommend``      k distinct items per user, none seen in training, scores sorted
                   descending and equal to ``predict``; the array form matches the
                   one-user form; ``exclude_seen=False`` may return seen items
``fold_in``        the class declares ``folds_in`` (a :class:`~recozoo.models.base.FoldIn`) and a
                   one-line ``fold_in_method``; a fitted model that cannot fold in refuses
                   ``score_new_users`` with a one-line error (and ``folds_in = YES`` may not); one
                   that can returns (users x n_items) finite float32 scores, the same for a
                   batch as for each user alone and in any order, the unknown-user fallback for
                   a user without ratings, and ``recommend_new_users`` excludes the rated items
``save_load``      ``save`` + ``load_model`` give identical predictions and recommendations
``determinism``    two fits with one seed give the same predictions
``refit``          ``refit_settings()`` is a dict the model's settings accept, it survives
                   save/load, and :func:`recozoo.search.refit` fits on TRAIN ∪ VALID and predicts
``prepared``       ``recozoo fit NAME --dataset D`` (the real command, run in-process) exits 0 on
                   :func:`tiny_split` registered as pre-split files in a temporary data home and
                   prepared there, so the model trains on read-only memory-mapped arrays, as
                   every user's second ``fit`` does (a model that writes into its input, or
                   hands it to native code that wants writable buffers, fails here)

Models that declare ``predicts_ratings = False`` (ranking-only models) skip the
``ratings`` check. A model may declare a class attribute
``conformance_settings`` (a dict of tiny settings, e.g. ``{"epochs": 2}``)
that the kit uses when no ``settings`` are passed, so that suites which run the
kit over every registered model stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable

import numpy as np

from recozoo import registry
from recozoo.data.synthetic import generate
from recozoo.errors import RecozooError, SettingsError
from recozoo.models.base import FoldIn, Model, NotFittedError, load_model
from recozoo.progress import Reporter
from recozoo.search import refit
from recozoo.search_space import SearchSpace, first_invalid_point
from recozoo.settings import BaseSettings
from recozoo.splits import random_split

__all__ = ["check_model", "check_search_space", "tiny_split", "CHECKS"]

CHECKS = ("settings", "bad_settings", "search_space", "not_fitted", "fit", "valid_curve", "predict", "unseen", "ratings",
          "score_items", "recommend", "fold_in", "save_load", "determinism", "refit", "prepared")

_TINY: dict[int, Any] = {}


def tiny_split(seed: int = 0):
    """A small generated split (80 users, 60 items, 1,600 ratings with dates) for the kit.

    Some users and items of VALID/TEST have no TRAIN rating, so fallbacks are exercised.
    """
    if seed not in _TINY:
        table = generate(n_users=80, n_items=60, n_ratings=1600, seed=seed)
        _TINY[seed] = random_split(table, "conformance", test_fraction=0.1, valid_fraction=0.1,
                                   seed=seed)
    return _TINY[seed]


class _Fail:
    def __init__(self, model_name: str):
        self.model = model_name

    def __call__(self, check: str, cond: bool, message: str) -> None:
        if not cond:
            raise AssertionError(f"check_model[{self.model}] {check}: {message}")


def _factory(model_cls_or_factory) -> tuple[Callable[..., Model], type | None]:
    if isinstance(model_cls_or_factory, type):
        if not issubclass(model_cls_or_factory, Model):
            raise TypeError(f"{model_cls_or_factory!r} is not a recozoo Model subclass")
        cls = model_cls_or_factory
        return (lambda settings=None, seed=0: cls(settings=settings, seed=seed)), cls
    if callable(model_cls_or_factory):
        return model_cls_or_factory, None
    raise TypeError("check_model needs a Model subclass or a factory(settings=, seed=) -> Model")


def _derived_bad_settings(cls: type) -> list[dict[str, Any]]:
    """Values the declared constraints must reject: below min, above max, not a choice."""
    bad: list[dict[str, Any]] = [{"no_such_setting_xyz": 1}]
    try:
        fields = dataclasses.fields(cls.Settings)
        hints = typing.get_type_hints(cls.Settings)
    except TypeError:
        return bad
    for f in fields:
        m = f.metadata or {}
        tp = hints.get(f.name)
        numeric = tp in (int, float) or (typing.get_origin(tp) is typing.Union
                                        and any(a in (int, float) for a in typing.get_args(tp)))
        if m.get("min") is not None and numeric:
            lo = m["min"]
            bad.append({f.name: lo if m.get("min_exclusive") else lo - 1})
        if m.get("max") is not None and numeric:
            hi = m["max"]
            bad.append({f.name: hi if m.get("max_exclusive") else hi + 1})
        if m.get("choices"):
            bad.append({f.name: "__not_a_choice__"})
        if typing.get_origin(tp) is typing.Literal:
            bad.append({f.name: "__not_a_choice__"})
        if tp in (int, float):
            bad.append({f.name: "not-a-number"})
    return bad


@contextlib.contextmanager
def _registered(cls: type):
    """Make ``cls`` loadable by name while the kit runs, if no plugin registered it.

    ``load_model`` finds the class through the registry; a model under test
    need not be registered yet (an author runs the kit before packaging).
    """
    with registry.register_temporarily(cls, "recozoo.testing") as ours:
        yield ours


def _all_pairs(n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.repeat(np.arange(n_users, dtype=np.int64), n_items),
            np.tile(np.arange(n_items, dtype=np.int64), n_users))


def check_model(model_cls_or_factory, *, settings: dict[str, Any] | None = None,
                bad_settings: list[dict[str, Any]] | tuple = (), data=None,
                skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Run the contract checks (see the module docstring); return ``{check: "ok"|"skipped"}``.

    ``settings``: settings used for every fit (default: the class's
    ``conformance_settings``, else its defaults). ``bad_settings``: extra
    setting dicts that must be rejected. ``data``: a
    :class:`~recozoo.splits.Split` (default :func:`tiny_split`). ``skip``:
    checks to leave out (named in the returned report).
    """
    make, cls = _factory(model_cls_or_factory)
    split = data if data is not None else tiny_split()
    train = split.train
    probe = make(settings=None if settings is None else dict(settings), seed=0) if cls is None else None
    cls = cls or type(probe)
    if settings is None:
        settings = dict(getattr(cls, "conformance_settings", None) or {})
    fail = _Fail(getattr(cls, "name", "") or cls.__name__)
    report: dict[str, str] = {}

    def run(check: str) -> bool:
        if check in skip or (check == "ratings" and not getattr(cls, "predicts_ratings", True)):
            report[check] = "skipped"
            return False
        report[check] = "ok"
        return True

    if run("settings"):
        _check_settings(cls, fail)
    if run("bad_settings"):
        _check_bad_settings(cls, make, bad_settings, fail)
    if run("search_space"):
        check_search_space(cls, fail=fail)
    # -- fitting and prediction
    model = make(settings=dict(settings), seed=0)
    if run("not_fitted"):
        _check_not_fitted(model, fail)
    log = _Log()
    fitted = model.fit(train, split.valid, reporter=log)
    if run("fit"):
        fail("fit", fitted is model, "fit must return the model itself")
        fail("fit", model.n_users_ == train.n_users and model.n_items_ == train.n_items,
             f"n_users_/n_items_ are {model.n_users_}/{model.n_items_}, expected "
             f"{train.n_users}/{train.n_items}")
    if run("valid_curve"):
        _check_valid_curve(cls, model, log.records, split.valid, fail)
    p_train = model.predict(train.users.astype(np.int64), np.asarray(train.items, dtype=np.int64))
    if run("predict"):
        _check_predict(model, p_train, train.nnz, fail)
    if run("unseen"):
        _check_unseen(model, train, fail)
    if run("ratings"):
        _check_ratings(model, train, p_train, fail)
    users = np.arange(min(train.n_users, 12), dtype=np.int64)
    seen_max = int(np.diff(train.indptr).max()) if train.nnz else 0
    k = max(1, min(10, train.n_items - seen_max))
    if run("score_items"):
        _check_score_items(model, users, train.n_items, fail)
    if run("recommend"):
        _check_recommend(model, users, k, train, fail)
    if run("fold_in"):
        _check_fold_in(model, users, fail)
    # -- persistence and determinism
    pu, pi = _all_pairs(min(train.n_users, 30), train.n_items)
    before = model.predict(pu, pi)
    if run("save_load"):
        _check_save_load(model, cls, users, k, pu, pi, before, fail)
    if run("determinism"):
        again = make(settings=dict(settings), seed=0).fit(train, split.valid).predict(pu, pi)
        fail("determinism", np.allclose(before, again, rtol=1e-5, atol=1e-6),
             f"two fits with seed 0 differ (max difference {np.abs(before - again).max():.3g})")
    if run("refit"):
        _check_refit(model, split, fail, pu, pi)
    if run("prepared"):
        _check_prepared(cls, settings, fail)
    return report


class _Log(Reporter):
    """Keeps what a fit sends to ``reporter.log``."""

    def __init__(self):
        self.records: list[dict[str, Any]] = []

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))


def _check_valid_curve(cls, model, records: list[dict[str, Any]], valid, fail) -> None:
    fail("valid_curve", isinstance(getattr(cls, "valid_curve", None), bool), "valid_curve must be True or False")
    if not (cls.valid_curve and model.predicts_ratings and valid is not None and valid.nnz):
        return
    epochs = [r for r in records if r.get("epoch") is not None]
    fail("valid_curve", bool(epochs), "valid_curve = True, but the fit with VALID logged no record with an epoch")
    last = epochs[-1].get("valid_rmse")
    fail("valid_curve", last is not None and bool(np.isfinite(last)),
         f"valid_curve = True, but the last epoch's record has valid_rmse {last!r} (a finite float expected)")


def _check_settings(cls, fail) -> None:
    fail("settings", isinstance(getattr(cls, "Settings", None), type)
         and issubclass(cls.Settings, BaseSettings),
         "the class needs a Settings dataclass derived from recozoo.settings.BaseSettings")
    fail("settings", bool(getattr(cls, "name", "")), "the class needs a registry name (name = ...)")
    for f in dataclasses.fields(cls.Settings):
        fail("settings", bool((f.metadata or {}).get("help")),
             f"setting {f.name!r} has no help text (declare it with recozoo.settings.setting)")
    fail("settings", bool(getattr(cls, "fallback", "")), "the class must document its fallback")


def _check_bad_settings(cls, make, bad_settings, fail) -> None:
    for bad in list(_derived_bad_settings(cls)) + list(bad_settings):
        try:
            make(settings=dict(bad), seed=0)
        except SettingsError:
            continue
        except Exception as e:  # noqa: BLE001 - the wrong exception type is the failure
            fail("bad_settings", False, f"settings {bad!r} raised {type(e).__name__}: {e} "
                                        f"(expected SettingsError)")
        fail("bad_settings", False, f"settings {bad!r} were accepted (expected SettingsError)")


def check_search_space(cls, n_points: int = 25, seed: int = 0, fail=None) -> None:
    """The ``search_space`` check alone: ``n_points`` seeded samples must each be valid settings.

    Why sampled and not proved: a space may hold conditional parts and cross-field rules
    (``Settings.validate``) that only concrete points exercise; ``recozoo tune`` runs the same
    check before it writes anything, so a bad space fails there in one line too.
    """
    fail = fail or _Fail(getattr(cls, "name", "") or cls.__name__)
    space = getattr(cls, "search_space", None)
    fail("search_space", isinstance(space, SearchSpace),
         "search_space must be a recozoo.search_space.SearchSpace (SearchSpace() = nothing to tune)")
    known = {f.name for f in dataclasses.fields(cls.Settings)}
    unknown = sorted(space.setting_names() - known)
    fail("search_space", not unknown, f"the space names settings the model does not have: {unknown}")
    bad = first_invalid_point(space, cls.Settings, cls.name, n_points=n_points, seed=seed)
    fail("search_space", bad is None, f"the sampled point {bad and bad[0]!r} is not valid settings: {bad and bad[1]}")


def _check_not_fitted(model, fail) -> None:
    try:
        model.predict([0], [0])
    except NotFittedError:
        return
    fail("not_fitted", False, "predict before fit must raise NotFittedError")


def _check_predict(model, p_train: np.ndarray, n: int, fail) -> None:
    fail("predict", isinstance(p_train, np.ndarray) and p_train.dtype == np.float32,
         f"predict must return float32, got {getattr(p_train, 'dtype', type(p_train))}")
    fail("predict", p_train.shape == (n,), f"predict returned shape {p_train.shape}, expected ({n},)")
    fail("predict", bool(np.all(np.isfinite(p_train))), "predict returned non-finite values")
    empty = model.predict(np.zeros(0, np.int64), np.zeros(0, np.int64))
    fail("predict", empty.shape == (0,) and empty.dtype == np.float32,
         "predict on no pairs must return an empty float32 array")


def _check_unseen(model, train, fail) -> None:
    nu, ni = model.n_users_, model.n_items_
    u = np.array([-1, nu, nu + 100, 0, -5, nu], dtype=np.int64)
    i = np.array([0, 0, ni + 5, ni, -1, ni + 5], dtype=np.int64)
    try:
        out = model.predict(u, i)
    except Exception as e:  # noqa: BLE001
        fail("unseen", False, f"predict on out-of-range ids raised {type(e).__name__}: {e}")
    fail("unseen", out.dtype == np.float32 and out.shape == (u.size,)
         and bool(np.all(np.isfinite(out))),
         f"out-of-range ids must get finite float32 fallbacks, got {out!r}")
    expect = model._predict_unknown(u, i)
    fail("unseen", np.allclose(out, expect, rtol=1e-5, atol=1e-6),
         f"out-of-range ids got {out.tolist()}, but _predict_unknown says {np.asarray(expect).tolist()}")
    cold_u = np.flatnonzero(train.user_counts() == 0)
    cold_i = np.flatnonzero(train.item_counts() == 0)
    if cold_u.size or cold_i.size:
        cu = np.concatenate([cold_u, np.zeros(cold_i.size, np.int64)]).astype(np.int64)
        ci = np.concatenate([np.zeros(cold_u.size, np.int64), cold_i]).astype(np.int64)
        out = model.predict(cu, ci)
        fail("unseen", bool(np.all(np.isfinite(out))),
             "users/items without training ratings must get finite fallbacks")


def _check_ratings(model, train, p_train: np.ndarray, fail) -> None:
    r = np.asarray(train.ratings, dtype=np.float64)
    train_rmse = float(np.sqrt(np.mean((p_train - r) ** 2)))
    fail("ratings", train_rmse < 1.5 * float(r.std()) + 1e-6,
         f"train RMSE {train_rmse:.3f} is not below 1.5x the ratings' std {r.std():.3f}: "
         f"predict should return ratings (set predicts_ratings = False for ranking models)")
    fb = model.predict(np.array([-1, model.n_users_ + 3]), np.array([0, model.n_items_ + 3]))
    fail("ratings", bool(np.all((fb >= r.min() - 1) & (fb <= r.max() + 1))),
         f"fallback predictions {fb.tolist()} are outside the rating scale "
         f"[{r.min():g}, {r.max():g}] ± 1")


def _check_score_items(model, users: np.ndarray, n_items: int, fail) -> None:
    sc = model.score_items(users)
    fail("score_items", isinstance(sc, np.ndarray) and sc.shape == (users.size, n_items)
         and sc.dtype == np.float32, f"score_items must be (users x n_items) float32, got "
                                     f"{getattr(sc, 'shape', None)} {getattr(sc, 'dtype', None)}")
    pu, pi = _all_pairs(users.size, n_items)
    pr = model.predict(pu, pi).reshape(users.size, n_items)
    fail("score_items", np.allclose(sc, pr, rtol=1e-4, atol=1e-4),
         f"score_items disagrees with predict (max difference {np.abs(sc - pr).max():.3g})")


def _check_recommend(model, users: np.ndarray, k: int, train, fail) -> None:
    items, scores = model.recommend(users, k=k)
    fail("recommend", np.shape(items) == (users.size, k) and np.shape(scores) == (users.size, k),
         f"recommend(array of {users.size}, k={k}) returned shapes {np.shape(items)}, "
         f"{np.shape(scores)}; expected ({users.size}, {k})")
    csr = train.to_csr()
    for row, u in enumerate(users):
        it = np.asarray(items[row])
        seen = set(csr.indices[csr.indptr[u]:csr.indptr[u + 1]].tolist())
        fail("recommend", len(set(it.tolist())) == k, f"user {u}: recommended items repeat: {it}")
        fail("recommend", not (seen & set(it.tolist())),
             f"user {u}: recommended seen items {sorted(seen & set(it.tolist()))}")
        s = np.asarray(scores[row], dtype=np.float64)
        fail("recommend", bool(np.all(np.diff(s) <= 1e-6 * np.maximum(1.0, np.abs(s[:-1])))),
             f"user {u}: scores are not sorted descending: {s}")
        pr = model.predict(np.full(k, u), it)
        fail("recommend", np.allclose(s, pr, rtol=1e-4, atol=1e-4),
             f"user {u}: recommend scores {s} differ from predict {pr}")
    one_items, _ = model.recommend(int(users[0]), k=k)
    fail("recommend", np.ndim(one_items) == 1 and np.array_equal(one_items, items[0]),
         "recommend(one user) must return the 1-d row of the array form")
    all_items, _ = model.recommend(users[:1], k=train.n_items, exclude_seen=False)
    fail("recommend", np.shape(all_items) == (1, train.n_items)
         and len(set(np.asarray(all_items[0]).tolist())) == train.n_items,
         "recommend(k=n_items, exclude_seen=False) must rank every item once")
    far = model.recommend(np.array([model.n_users_ + 7]), k=k)
    fail("recommend", np.shape(far[0]) == (1, k), "recommend for an unknown user must still "
                                                  "return k items (the fallback ranking)")


def _fold_in_batch(model, users: np.ndarray):
    """New users for the fold-in check: training users' histories (as new users), one user without
    ratings and one who rated three items."""
    import scipy.sparse as sp
    hist = model.history(users[:6])
    n = model.n_items_
    extra = sp.csr_matrix((np.array([5.0, 1.0, 4.0], dtype=np.float32), np.array([0, n // 2, n - 1]),
                           np.array([0, 0, 3])), shape=(2, n))
    return sp.vstack([hist, extra]).tocsr()


def _check_fold_in(model, users: np.ndarray, fail) -> None:
    cls = type(model)
    method = getattr(cls, "fold_in_method", "")
    fail("fold_in", isinstance(getattr(cls, "folds_in", None), FoldIn) and bool(method) and "\n" not in method,
         "the class must declare folds_in (a FoldIn) and a one-line fold_in_method")
    if not model.can_fold_in():
        fail("fold_in", cls.folds_in is not FoldIn.YES, "folds_in = YES but can_fold_in() is False")
        try:
            model.score_new_users(np.zeros((1, model.n_items_), dtype=np.float32))
            refused = ""
        except RecozooError as e:
            refused = str(e)
        fail("fold_in", bool(refused) and "\n" not in refused,
             "a model that cannot fold in must refuse score_new_users with a one-line RecozooError")
        return
    R = _fold_in_batch(model, users)
    sc = model.score_new_users(R)
    fail("fold_in", isinstance(sc, np.ndarray) and sc.shape == R.shape and sc.dtype == np.float32
         and bool(np.all(np.isfinite(sc))), f"score_new_users must return finite {R.shape} float32, got "
                                            f"{getattr(sc, 'shape', None)} {getattr(sc, 'dtype', None)}")
    alone = np.vstack([model.score_new_users(R[b]) for b in range(R.shape[0])])
    fail("fold_in", np.allclose(sc, alone, rtol=1e-4, atol=1e-4),
         f"a user's fold-in depends on the batch (max difference {np.abs(sc - alone).max():.3g})")
    rev = model.score_new_users(R[::-1])[::-1]
    fail("fold_in", np.allclose(sc, rev, rtol=1e-4, atol=1e-4), "fold-in depends on the users' order")
    n = model.n_items_
    fb = model.predict(np.full(n, -1, dtype=np.int64), np.arange(n, dtype=np.int64))
    fail("fold_in", np.allclose(sc[-2], fb, rtol=1e-4, atol=1e-4),
         "a new user without ratings must get the unknown-user fallback of predict")
    k = min(5, n - 3)
    items, scores = model.recommend_new_users(R[-1:], k=k)
    fail("fold_in", not {0, n // 2, n - 1} & set(items[0].tolist())
         and np.allclose(scores[0], sc[-1, items[0]], rtol=1e-4, atol=1e-4),
         "recommend_new_users must exclude the rated items and score like score_new_users")


def _check_save_load(model, cls, users: np.ndarray, k: int, pu, pi, before: np.ndarray, fail) -> None:
    with tempfile.TemporaryDirectory() as tmp, _registered(cls) as ours:
        fail("save_load", ours, f"another class is registered as {cls.name!r}")
        path = Path(tmp) / "model.rz"
        model.save(path)
        loaded = load_model(path)
        fail("save_load", type(loaded) is cls, f"loaded a {type(loaded).__name__}, not {cls.__name__}")
        after = loaded.predict(pu, pi)
        fail("save_load", np.array_equal(before, after),
             f"predictions changed after save/load (max difference {np.abs(before - after).max():.3g})")
        ri, rs = model.recommend(users, k=k)
        li, ls = loaded.recommend(users, k=k)
        fail("save_load", np.array_equal(ri, li) and np.allclose(rs, ls),
             "recommendations changed after save/load")


def _check_refit(model, split, fail, pu, pi) -> None:
    over = model.refit_settings()
    fail("refit", isinstance(over, dict), f"refit_settings() returned {type(over).__name__}, not a dict")
    try:
        model.refit_copy()
    except SettingsError as e:
        fail("refit", False, f"refit_settings() {over} are not valid settings: {e}")
    with tempfile.TemporaryDirectory() as tmp, _registered(type(model)):
        model.save(Path(tmp) / "model.rz")
        again = load_model(Path(tmp) / "model.rz").refit_settings()
    fail("refit", again == over, f"refit_settings() changed after save/load: {over} -> {again}")
    if not split.has_valid:
        return
    new = refit(model, split)
    fail("refit", type(new) is type(model) and new.n_users_ == model.n_users_,
         "refit must return a fitted model of the same class over the same id maps")
    full = split.train_and_valid()
    fail("refit", bool(np.isclose(new.global_mean_, float(np.mean(full.ratings, dtype=np.float64)))),
         f"the refitted model did not learn from TRAIN ∪ VALID ({full.nnz} ratings): its global mean "
         f"is {new.global_mean_}")
    out = new.predict(pu, pi)
    fail("refit", out.dtype == np.float32 and bool(np.all(np.isfinite(out))),
         "the refitted model's predictions must be finite float32")


@contextlib.contextmanager
def _data_home(path: Path):
    """``RECOZOO_DATA`` pointed at ``path`` while the block runs (the user's data home is untouched)."""
    before = os.environ.get("RECOZOO_DATA")
    os.environ["RECOZOO_DATA"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("RECOZOO_DATA", None)
        else:
            os.environ["RECOZOO_DATA"] = before


def _cli(args: list[str]):
    """``recozoo ARGS`` run in-process (the model under test may be registered only here)."""
    from typer.testing import CliRunner

    from recozoo.cli.main import app
    return CliRunner().invoke(app, [str(a) for a in args])


def _why(result) -> str:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"{type(result.exception).__name__}: {result.exception}"
    lines = [ln for ln in (result.output or "").splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {result.exit_code}"


def _check_prepared(cls, settings: dict[str, Any], fail) -> None:
    split = tiny_split()
    with tempfile.TemporaryDirectory() as tmp, _data_home(Path(tmp) / "home"), _registered(cls) as ours:
        fail("prepared", ours, f"another class is registered as {cls.name!r}")
        files = []
        for part in ("train", "valid", "test"):
            path = Path(tmp) / f"{part}.tsv"
            getattr(split, part).to_frame().to_csv(path, sep="\t", header=False, index=False)
            files += [f"--{part}", path]
        prep = _cli(["data", "prepare", "conformance-kit", *files, "--json"])
        fail("prepared", prep.exit_code == 0, f"`recozoo data prepare` of the tiny split failed: {_why(prep)}")
        sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
        fit = _cli(["fit", cls.name, "--dataset", "conformance-kit", *sets, "--device", "cpu",
                    "--out", Path(tmp) / "run", "--json", "--quiet"])
        fail("prepared", fit.exit_code == 0, f"`recozoo fit {cls.name}` on a prepared (read-only, "
                                            f"memory-mapped) split failed: {_why(fit)}")
        metrics = json.loads(fit.stdout)["metrics"]
        fail("prepared", "test" in metrics, f"`recozoo fit {cls.name}` scored no TEST part: {metrics}")
