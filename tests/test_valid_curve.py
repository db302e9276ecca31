"""The per-epoch VALID curve of the non-torch epoch models (PMF, biased MF): reported, exact, and pruned on.

``recozoo tune`` prunes from the curve models declare with ``Model.valid_curve``; these
tests hold PMF and biased MF to that contract on small generated data (fits of a few ms).
"""

from __future__ import annotations


import numpy as np
import pytest

from recozoo.data.synthetic import generate
from recozoo.evaluate import evaluate
from recozoo.models.mf import PMF, BiasedMF
from recozoo.progress import Reporter
from recozoo.registry import register_temporarily
from recozoo.search_space import Categorical, Float, SearchSpace
from recozoo.splits import random_split
from recozoo.tune import TuneConfig, tune


@pytest.fixture(scope="module")
def split():
    table = generate(n_users=300, n_items=120, n_ratings=9000, seed=4)
    return random_split(table, "tiny-curve", test_fraction=0.1, valid_fraction=0.1, seed=0)


class _Log(Reporter):
    def __init__(self):
        self.records = []

    def log(self, record):
        self.records.append(dict(record))


@pytest.mark.parametrize("cls, settings", [
    (BiasedMF, {"factors": 8, "epochs": 6}),
    (PMF, {"factors": 6, "epochs": 5}),                                       # linear link on the bias baseline
    (PMF, {"factors": 6, "epochs": 5, "link": "logistic", "baseline": "none"}),
])
def test_each_epoch_reports_valid_rmse_and_predictions_do_not_change(split, cls, settings):
    log = _Log()
    model = cls(settings=settings, seed=3).fit(split.train, split.valid, reporter=log)
    assert cls.valid_curve is True
    assert [r["epoch"] for r in log.records] == list(range(1, settings["epochs"] + 1))
    curve = [r["valid_rmse"] for r in log.records]
    assert all(np.isfinite(curve)) and len(set(curve)) == len(curve)        # a real curve, epoch by epoch
    # the last epoch's figure is evaluate()'s on the fitted model (float32 factors: rounding only)
    assert curve[-1] == pytest.approx(evaluate(model, split, "valid")["rmse"], rel=1e-5)
    # VALID is scored, never used: the same fit without VALID predicts identically
    plain = cls(settings=settings, seed=3).fit(split.train)
    u, i = split.test.users.astype(np.int64), np.asarray(split.test.items, dtype=np.int64)
    assert np.array_equal(model.predict(u, i), plain.predict(u, i))
    assert cls(settings=settings, seed=3).fit(split.train, reporter=(quiet := _Log())) is not None
    assert all("valid_rmse" not in r for r in quiet.records)                 # no VALID, no curve


class _TunedMF(BiasedMF):
    """The real biased MF; only its space is narrowed, to a learning rate that learns and one that
    barely moves off the initial factors (a high, flat VALID curve)."""
    name = "tune-biasedmf"
    search_space = SearchSpace(Categorical("lr", (0.02, 1e-5)), Float("reg", 0.01, 0.1, log=True))


def test_tune_prunes_a_bad_biasedmf_learning_curve(split, tmp_path):
    # the seed only decides which trials draw the bad rate; it must draw some after the pruner's
    # warm-up: since a study's first trial starts from the defaults (bcfb649) seed 2 drew it at trials
    # 0 and 1 only, seed 1 at trials 3, 4 and 7 (the assertions below hold for every such trial)
    with register_temporarily(_TunedMF, "tests"):
        r = tune(TuneConfig("tune-biasedmf", "tiny-curve", trials=8, seed=1, out=tmp_path / "p", refit=False,
                            plots=False, fixed={"factors": 8, "epochs": 6, "lr_bias": None}, pruner="median"),
                 split=split)
    import optuna
    study = optuna.load_study(study_name=r["study"], storage=f"sqlite:///{tmp_path / 'p' / 'study.sqlite3'}")
    bad = [t for t in study.trials if t.params["lr"] == 1e-5]
    late = [t for t in bad if t.number >= 3]                   # (the pruner judges from the fourth trial on)
    assert late, [t.params for t in study.trials]
    for t in late:                                             # each stopped at the first epoch after warm-up
        assert t.state.name == "PRUNED" and t.user_attrs["info"]["pruned_at"] == 4, (t.number, t.user_attrs)
        assert t.user_attrs["info"]["epochs_run"] == 4         # the fit itself stopped: 4 of its 6 epochs
    assert all(t.user_attrs["info"]["epochs_run"] == 6 for t in study.trials if t.state.name == "COMPLETE")
    assert r["best"]["params"]["lr"] == 0.02



@pytest.mark.parametrize("cold", [False, True])
@pytest.mark.parametrize("cls, settings", [
    (BiasedMF, {"factors": 8, "epochs": 4}),
    (PMF, {"factors": 6, "epochs": 4}),
    (PMF, {"factors": 6, "epochs": 4, "link": "logistic", "baseline": "none"}),
])
def test_every_epochs_figure_is_what_predict_gives_at_that_epoch(split, cls, settings, cold):
    """ValidCurve scores the training arrays with its own compiled loop and fallback (not predict,
    which reads the float32 copies a fit makes at its end); so each epoch's figure is held to
    predict() on a fit stopped at that epoch (the same seed draws the same factors and permutations,
    so a k-epoch fit is the first k epochs of the longer one). ``cold``: TRAIN without the ratings of
    5 users and 3 items, so VALID holds pairs that take predict's fallback."""
    train = split.train
    if cold:
        train = train.select(~(np.isin(train.users, np.arange(5)) | np.isin(train.items, np.arange(3))))
    v = split.valid
    u, i = v.users.astype(np.int64), np.asarray(v.items, dtype=np.int64)
    assert not cold or (train.user_counts()[u] == 0).any() and (train.item_counts()[i] == 0).any()
    log = _Log()
    cls(settings=settings, seed=5).fit(train, v, reporter=log)
    curve = [r["valid_rmse"] for r in log.records]
    for k in range(1, settings["epochs"] + 1):
        short = cls(settings={**settings, "epochs": k}, seed=5).fit(train)
        err = short.predict(u, i).astype(np.float64) - np.asarray(v.ratings, dtype=np.float64)
        assert curve[k - 1] == pytest.approx(float(np.sqrt(np.mean(err ** 2))), rel=1e-5), k


def test_biasedmf_is_not_pruned_under_the_auto_pruner(split, tmp_path):
    """``--pruner auto`` leaves biased MF's trials whole (Model.tune_prunes is False for it): the same
    study as above runs every trial, the bad rate too, to its last epoch, and reports no curve to Optuna."""
    with register_temporarily(_TunedMF, "tests"):
        r = tune(TuneConfig("tune-biasedmf", "tiny-curve", trials=8, seed=1, out=tmp_path / "a", refit=False,
                            plots=False, fixed={"factors": 8, "epochs": 6, "lr_bias": None}),
                 split=split)
    import optuna
    study = optuna.load_study(study_name=r["study"], storage=f"sqlite:///{tmp_path / 'a' / 'study.sqlite3'}")
    assert r["pruner"] == "none" and r["trials"]["pruned"] == 0 and r["trials"]["complete"] == 8
    assert any(t.params["lr"] == 1e-5 for t in study.trials)
    assert all(t.user_attrs["info"]["epochs_run"] == 6 and not t.intermediate_values for t in study.trials)
    assert r["best"]["params"]["lr"] == 0.02
