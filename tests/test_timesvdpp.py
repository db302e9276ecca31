"""TimeSVD++: time features, sparse day terms, the SGD step, persistence, accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from recozoo.data.synthetic import generate
from recozoo.data.table import IdMap, RatingsTable
from recozoo.metrics import rmse
from recozoo.models.timesvdpp import TimeSVDpp, _sgd_pass, bin_of, dev_u
from recozoo.splits import time_fraction_split

DAY = 86400


def test_dev_u_hand_computed():
    got = dev_u(np.array([10, 0, 2, 34]), np.array([2.0, 2.0, 2.0, 2.0]), 0.4)
    want = [8 ** 0.4, -(2 ** 0.4), 0.0, 32 ** 0.4]          # 2.2974, -1.3195, 0, 4
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[3] == pytest.approx(4.0)


def test_bin_assignment_hand_computed():
    # training range days 100..399 = 300 days, 30 bins of 10 days
    days = np.array([100, 109, 110, 250, 399, 400, 1000, 50])
    np.testing.assert_array_equal(bin_of(days, 100, 399, 30), [0, 0, 1, 15, 29, 29, 29, 0])
    # uneven: 7 days in 3 bins -> floor(rel*3/7): 0,0,0,1,1,2,2
    np.testing.assert_array_equal(bin_of(np.arange(7), 0, 6, 3), [0, 0, 0, 1, 1, 2, 2])


def _tiny_table():
    # user 0 rates items 0,1 on days 10, 20; user 1 rates item 1 on day 40
    return RatingsTable.from_coo(np.array([0, 0, 1]), np.array([0, 1, 1]),
                                 np.array([4.0, 2.0, 5.0]), np.array([10, 20, 40]) * DAY,
                                 user_ids=IdMap(np.arange(2)), item_ids=IdMap(np.arange(2)))


def test_fitted_time_features_and_day_index():
    m = TimeSVDpp(settings={"epochs": 1, "n_bins": 3}, seed=0).fit(_tiny_table())
    assert m.d_min_ == 10 and m.d_max_ == 40 and m.default_day_ == 41
    np.testing.assert_allclose(m.t_u_, [5.0, 30.0])            # relative mean days
    # (user, day) rows exist only for training days
    rows = m._day_rows(np.array([0, 0, 0, 1, 1]), np.array([0, 10, 5, 30, 31]))
    assert (rows[[0, 1, 3]] >= 0).all() and (rows[[2, 4]] == -1).all()
    assert len(set(rows[[0, 1, 3]].tolist())) == 3


def test_unseen_days_take_default_terms():
    table = generate(300, 60, 6000, seed=1, drift=True, start="2005-01-01", end="2005-03-31")
    st = {"epochs": 2, "scaling": True, "day_factors": True, "factors": 4}
    m = TimeSVDpp(settings=st, seed=0).fit(table)
    u = np.repeat(np.arange(20), 3)
    i = np.tile(np.arange(3), 20)
    after = np.full(u.size, (m.d_max_ + 5) * DAY)             # after the training range
    train_day = m.d_min_ + m.ud_keys_[m.ud_keys_ // (m.d_max_ - m.d_min_ + 1) == 0][0] % (
        m.d_max_ - m.d_min_ + 1)
    on_train_day = np.full(3, int(train_day) * DAY)
    before_after = m.predict(u, i, after)
    before_train = m.predict(np.zeros(3, np.int64), np.arange(3), on_train_day)
    m.but_ = m.but_ + 1.0
    m.cut_ = m.cut_ + 1.0
    m.Pt_ = m.Pt_ + 1.0
    np.testing.assert_array_equal(m.predict(u, i, after), before_after)
    assert not np.allclose(m.predict(np.zeros(3, np.int64), np.arange(3), on_train_day), before_train)
    # no timestamps = the first day after training
    np.testing.assert_array_equal(m.predict(u, i), m.predict(u, i, np.full(u.size, m.default_day_ * DAY)))


def _loss(p, r, dev, bn, lam, k):
    """The regularised squared loss of one rating (float64), user 0, item 0, day row 0."""
    s = p["cu"][0] + p["cut"][0]
    ib = p["bi"][0] + p["bib"][0, bn]
    pu = p["P"][0] + p["A"][0] * dev + p["Pt"][0] + p["Y"][0]    # |R(u)| = 1
    pred = 3.5 + p["bu"][0] + p["au"][0] * dev + p["but"][0] + ib * s + pu @ p["Q"][0]
    e = r - pred
    reg = (lam[0] * p["bu"][0] ** 2 + lam[1] * p["au"][0] ** 2 + lam[2] * p["but"][0] ** 2
           + lam[3] * p["bi"][0] ** 2 + lam[4] * p["bib"][0, bn] ** 2 + lam[5] * (p["cu"][0] - 1) ** 2
           + lam[6] * p["cut"][0] ** 2 + lam[7] * p["P"][0] @ p["P"][0] + lam[8] * p["Q"][0] @ p["Q"][0]
           + lam[9] * p["Y"][0] @ p["Y"][0] + lam[10] * p["A"][0] @ p["A"][0]
           + lam[11] * p["Pt"][0] @ p["Pt"][0])
    return 0.5 * e * e + 0.5 * reg


def test_sgd_step_matches_finite_differences_of_regularised_loss():
    rng = np.random.default_rng(0)
    k, bn, dev, r = 3, 1, 1.7, 4.0
    f32 = np.float32
    p = {"bu": rng.normal(0, .3, 1), "au": rng.normal(0, .1, 1), "but": rng.normal(0, .3, 1),
         "bi": rng.normal(0, .3, 2), "bib": rng.normal(0, .3, (2, 2)), "cu": 1 + rng.normal(0, .2, 1),
         "cut": rng.normal(0, .2, 1), "P": rng.normal(0, .3, (1, k)), "A": rng.normal(0, .1, (1, k)),
         "Pt": rng.normal(0, .3, (1, k)), "Q": rng.normal(0, .3, (2, k)), "Y": rng.normal(0, .3, (2, k))}
    p = {n: a.astype(f32) for n, a in p.items()}
    lam = np.array([0.01, 0.5, 0.02, 0.03, 0.1, 0.05, 0.02, 0.015, 0.025, 0.035, 0.4, 0.01])
    lr = np.full(12, 1e-2)
    before = {n: a.astype(np.float64) for n, a in p.items()}
    names = ("bu", "au", "but", "bi", "bib", "cu", "cut", "P", "A", "Pt", "Q", "Y")
    _sgd_pass(np.array([0], np.int64), np.array([0, 1], np.int64), np.array([0], np.int32),
              np.array([r], f32), np.array([dev], f32), np.array([bn], np.int32),
              np.array([0], np.int32), f32(3.5), *(p[n] for n in names), lr, lam, True, True, True)
    eps = 1e-6
    checked = 0
    for n in names:
        for idx in np.ndindex(before[n].shape):
            plus = {m: a.copy() for m, a in before.items()}
            minus = {m: a.copy() for m, a in before.items()}
            plus[n][idx] += eps
            minus[n][idx] -= eps
            grad = (_loss(plus, r, dev, bn, lam, k) - _loss(minus, r, dev, bn, lam, k)) / (2 * eps)
            step = (p[n][idx] - before[n][idx]) / -lr[0]
            assert step == pytest.approx(grad, rel=2e-3, abs=2e-4), (n, idx)
            checked += 1
    assert checked == 11 + 7 * k     # 11 bias entries; P, A, Pt (1 row), Q, Y (2 rows)
    # untouched rows (item 1, bin 0) did not move
    assert p["Q"][1].tolist() == before["Q"][1].astype(f32).tolist()


def test_save_load_roundtrip(tmp_path):
    table = generate(200, 50, 3000, seed=2, drift=True, start="2005-01-01", end="2005-02-28")
    m = TimeSVDpp(settings={"epochs": 2, "factors": 3, "day_factors": True, "scaling": True},
                  seed=3).fit(table)
    m.save(tmp_path / "m.rz")
    m2 = TimeSVDpp.load(tmp_path / "m.rz")
    u, i, ts = table.users, table.items, table.timestamps
    np.testing.assert_array_equal(m.predict(u, i, ts), m2.predict(u, i, ts))
    np.testing.assert_array_equal(m.predict(u[:50], i[:50]), m2.predict(u[:50], i[:50]))


def test_unknown_ids_get_static_bias_fallback():
    m = TimeSVDpp(settings={"epochs": 1}, seed=0).fit(_tiny_table())
    out = m.predict(np.array([5, 0]), np.array([1, 9]), np.array([0, 0]) + 50 * DAY)
    assert out[0] == pytest.approx(m.global_mean_ + m.bi_[1], rel=1e-6)
    assert out[1] == pytest.approx(m.global_mean_ + m.bu_[0], rel=1e-6)


def test_drift_helps_against_its_own_static_ablation():
    """On data with user-bias drift, the time terms must pay off on VALID (chosen on VALID)."""
    table = generate(1500, 200, 60_000, seed=4, drift=True, start="2003-01-01", end="2005-12-31")
    split = time_fraction_split(table, "drift", 0.9, seed=0)
    base = {"epochs": 25, "factors": 8, "lr_bin": 1e-3, "lr_bu": 5e-3, "lr_bi": 5e-3,
            "lr_decay": 0.95, "reg_factors": 0.015, "lr_factors": 0.007}
    static = dict(base, lr_alpha=0.0, lr_alpha_factors=0.0, lr_bin=0.0, day_bias=False)
    temporal = dict(base, lr_alpha=1e-3, reg_alpha=0.1)
    r = {}
    for name, st in (("static", static), ("temporal", temporal)):
        m = TimeSVDpp(settings=st, seed=0).fit(split.train, split.valid)
        r[name] = rmse(m.predict_table(split.valid), split.valid.ratings)
    assert r["temporal"] < r["static"] - 0.005, r


def test_resume_continues_to_the_uninterrupted_result(tmp_path):
    table = generate(300, 60, 6000, seed=5, drift=True, start="2005-01-01", end="2005-04-30")
    split = time_fraction_split(table, "r", 0.85, seed=0)
    st = {"factors": 4, "patience": 0, "scaling": True}
    full = TimeSVDpp(settings={**st, "epochs": 4}, seed=1).fit(split.train, split.valid,
                                                                 run_dir=tmp_path / "a")
    TimeSVDpp(settings={**st, "epochs": 2}, seed=1).fit(split.train, split.valid, run_dir=tmp_path / "b")
    resumed = TimeSVDpp(settings={**st, "epochs": 4}, seed=1).fit(split.train, split.valid,
                                                                    run_dir=tmp_path / "b", resume=True)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.predict_table(split.valid), full.predict_table(split.valid))
    from recozoo.errors import CheckpointError
    with pytest.raises(CheckpointError):
        TimeSVDpp(settings={**st, "epochs": 4, "factors": 5}, seed=1).fit(
            split.train, split.valid, run_dir=tmp_path / "b", resume=True)


def test_a_damaged_checkpoint_is_a_one_line_error_and_the_fit_loads_no_torch(tmp_path):
    """TimeSVD++'s checkpoint is numpy (``last.npz``): written and read without torch; a truncated
    or foreign file is a one-line CheckpointError naming it, never a traceback from numpy's zip reader."""
    import subprocess
    import sys
    from recozoo.errors import CheckpointError
    from recozoo.models.timesvdpp import CHECKPOINT
    code = ("import sys\nfrom recozoo.data.synthetic import generate\nfrom recozoo.splits import time_fraction_split\n"
            "from recozoo.models.timesvdpp import TimeSVDpp\n"
            "t = generate(200, 40, 3000, seed=5, drift=True, start='2005-01-01', end='2005-04-30')\n"
            "s = time_fraction_split(t, 'r', 0.85, seed=0)\n"
            f"TimeSVDpp(settings={{'factors': 3, 'epochs': 2}}, seed=1).fit(s.train, s.valid, run_dir={str(tmp_path)!r})\n"
            "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["False"]
    table = generate(200, 40, 3000, seed=5, drift=True, start="2005-01-01", end="2005-04-30")
    split = time_fraction_split(table, "r", 0.85, seed=0)
    path = tmp_path / CHECKPOINT
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a checkpoint", b""):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=f"{CHECKPOINT}: not a TimeSVD\\+\\+ checkpoint") as e:
            TimeSVDpp(settings={"factors": 3, "epochs": 3}, seed=1).fit(split.train, split.valid,
                                                                        run_dir=tmp_path, resume=True)
        assert "\n" not in str(e.value)


def test_small_preset_is_a_named_preset_and_defaults_stay_bellkor():
    """`recozoo fit timesvdpp --preset small` resolves to the README's timesvdpp@small settings; the
    defaults are BellKor's but for the bias rates, decay and passes, which a shape rule sets."""
    from recozoo.defaults import TIMESVDPP_BELLKOR, TIMESVDPP_SMALL, DataShape, timesvdpp_rule
    from recozoo.runs import resolve_settings
    from recozoo.models.timesvdpp import SMALL_DATA_SETTINGS
    s = resolve_settings(TimeSVDpp, {"epochs": 5}, "small", "synthetic-drift")
    assert s.lr_bin == 1e-3 and s.lr_factors == 7e-3 and s.reg_factors == 0.015
    assert s.epochs == 5                                      # explicit settings win over the preset
    assert resolve_settings(TimeSVDpp, {}, "small", "x").epochs == SMALL_DATA_SETTINGS["epochs"]
    d = TimeSVDpp.Settings()
    assert (d.lr_bin, d.lr_factors, d.reg_factors) == (5e-5, 0.008, 0.0015)
    assert TIMESVDPP_BELLKOR == {"lr_bu": 3e-3, "lr_bi": 2e-3, "lr_decay": 0.9, "epochs": 30}
    assert timesvdpp_rule(DataShape(480_189, 17_770, 98_074_901)) == TIMESVDPP_BELLKOR     # netflix-full
    assert timesvdpp_rule(DataShape(9_760, 1_000, 191_722)) == TIMESVDPP_SMALL            # synthetic
    small = resolve_settings(TimeSVDpp, {}, "small", "x")      # the preset's values, not the rule's
    assert (small.lr_bu, small.lr_bi, small.lr_decay) == (5e-3, 5e-3, 0.95)
