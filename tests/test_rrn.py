"""RRN: causality (no leakage), the two future modes, observe(), persistence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recozoo.data.synthetic import generate
from recozoo.models.rrn.model import RRN
from recozoo.splits import time_fraction_split

DAY = 86400
SMALL = {"epochs": 2, "hidden": 8, "embed": 8, "dynamic": 4, "stationary": 4, "batch_size": 64,
         "movie_batch_size": 16}
#: the paper's formula and input only: our additions (biases, dynamic biases, step summary) off,
#: the indicator channel on — the causality tests run on both configurations
PAPER_ONLY = {**SMALL, "biases": False, "dynamic_bias": False, "step_summary": False,
              "indicator": True, "baseline": "none"}


@pytest.fixture(scope="module")
def split():
    table = generate(300, 60, 8000, seed=3, drift=True, start="2005-01-01", end="2005-04-30")
    return time_fraction_split(table, "tiny-drift", 0.85, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    torch.set_num_threads(1)
    return RRN(settings=SMALL, seed=0).fit(split.train, split.valid)


@pytest.fixture(scope="module", params=["ours", "paper-only"])
def any_fitted(request, split, fitted):
    if request.param == "ours":
        return fitted
    torch.set_num_threads(1)
    return RRN(settings=PAPER_ONLY, seed=0).fit(split.train, split.valid)


def _pairs(split, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, split.train.n_users, n).astype(np.int64),
            rng.integers(0, split.train.n_items, n).astype(np.int64))


def test_fit_selects_best_epoch_on_valid(fitted):
    assert 1 <= fitted.best_epoch_ <= len(fitted.history_)
    best = min(h["valid_rmse"] for h in fitted.history_)
    assert fitted.history_[fitted.best_epoch_ - 1]["valid_rmse"] == best


def test_no_rating_at_or_after_the_predicted_time_is_read(split, any_fitted):
    """Perturb every history rating on/after day t: predictions at t (and before) must not move."""
    m = any_fitted
    train = split.train
    days = train.timestamps // DAY
    t = int(np.quantile(days, 0.6))
    late = days >= t
    assert late.sum() > 100 and (~late).sum() > 100
    perturbed_r = train.ratings.copy()
    perturbed_r[late] = 6.0 - perturbed_r[late]               # flip every late rating
    keep = ~late | (np.arange(train.nnz) % 3 != 0)            # and drop a third of them
    from recozoo.data.table import RatingsTable
    perturbed = RatingsTable(train.indptr, train.items, perturbed_r, train.timestamps,
                             train.user_ids, train.item_ids).select(keep)
    u, i = _pairs(split)
    at_t = np.full(u.size, t * DAY + 3600)                    # during day t
    earlier = np.full(u.size, (t - 9) * DAY)
    later = np.full(u.size, (t + 15) * DAY)
    ref = [m.predict(u, i, ts) for ts in (at_t, earlier, later)]
    m.set_history(perturbed)
    try:
        got = [m.predict(u, i, ts) for ts in (at_t, earlier, later)]
    finally:
        m.set_history(train)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert not np.allclose(got[2], ref[2])                    # the perturbation is visible later


def test_training_states_equal_causal_prediction_states(split, any_fitted):
    """The state training uses for a rating is the one prediction builds from earlier steps only.

    (Training states come from the fused ``nn.LSTM``, prediction states from the hand-stepped
    recurrence, so this also checks that the two agree.)"""
    m = any_fitted
    with torch.no_grad():
        dyn_u = m._all_dynamic(m._us, m.user_net_)
        dyn_m = m._all_dynamic(m._ms, m.movie_net_)
    train = split.train
    sel = np.arange(0, train.nnz, 7)
    d = train.timestamps[sel] // DAY
    at_u = m._dynamic_at(m._us, m.user_net_, train.users[sel].astype(np.int64), d)
    at_m = m._dynamic_at(m._ms, m.movie_net_, train.items[sel].astype(np.int64), d)
    np.testing.assert_allclose(at_u.numpy(), dyn_u[m._us.rating_pair[sel]].numpy(), atol=2e-5)
    np.testing.assert_allclose(at_m.numpy(), dyn_m[m._ms.rating_pair[sel]].numpy(), atol=2e-5)


def test_future_modes(split, fitted):
    u, i = _pairs(split, 100, 1)
    first = np.full(u.size, fitted.default_day_ * DAY)
    far = np.full(u.size, (fitted.default_day_ + 20) * DAY)
    one = [fitted.predict(u, i, ts) for ts in (first, far)]
    cal = copy.copy(fitted)                                   # same weights and history
    cal.settings = fitted.settings.replace(future="calendar")
    calendar = [cal.predict(u, i, ts) for ts in (first, far)]
    np.testing.assert_allclose(one[0], calendar[0], atol=1e-6)  # first day after training: same
    assert not np.allclose(one[1], calendar[1])                # one step vs 20 empty steps
    np.testing.assert_array_equal(fitted.predict(u, i), one[0])  # no timestamps = first day after


def test_observe_feeds_earlier_ratings_only(split, fitted):
    """The "no retraining" mode: VALID ratings before day t change predictions at t; later ones don't."""
    valid = split.valid
    vd = valid.timestamps // DAY
    t = int(np.median(vd))
    u, i = valid.users.astype(np.int64), valid.items.astype(np.int64)
    at = np.full(u.size, t * DAY)
    strict = fitted.predict(u, i, at)
    fitted.observe(valid.select(vd < t))
    try:
        fed = fitted.predict(u, i, at)
        fitted.observe(valid)                                  # adding ratings on/after t ...
        fed_all = fitted.predict(u, i, at)
    finally:
        fitted.set_history(split.train)
    assert not np.allclose(fed, strict)
    np.testing.assert_array_equal(fed_all, fed)               # ... changes nothing at t


def test_save_load_roundtrip(tmp_path, split, fitted):
    fitted.save(tmp_path / "rrn.rz")
    m2 = RRN.load(tmp_path / "rrn.rz")
    v = split.valid
    np.testing.assert_allclose(m2.predict_table(v), fitted.predict_table(v), atol=1e-6)


def test_resume_continues_to_the_uninterrupted_result(tmp_path, split):
    st = {**SMALL, "patience": 0}
    full = RRN(settings={**st, "epochs": 3}, seed=2).fit(split.train, split.valid, run_dir=tmp_path / "a")
    RRN(settings={**st, "epochs": 2}, seed=2).fit(split.train, split.valid, run_dir=tmp_path / "b")
    resumed = RRN(settings={**st, "epochs": 3}, seed=2).fit(split.train, split.valid,
                                                          run_dir=tmp_path / "b", resume=True)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    np.testing.assert_allclose(resumed.predict_table(split.valid), full.predict_table(split.valid),
                               atol=1e-5)


def test_stationary_steps_do_not_scale_with_rating_count(split):
    """A batch holds all ratings of its movies: the stationary gradients are per-movie means."""
    m = RRN(settings={**SMALL, "epochs": 1, "lr_stationary": 0.5}, seed=0).fit(split.train)
    for par in (m.U_, m.M_, m.BU_, m.BM_):
        assert torch.isfinite(par.detach()).all() and float(par.detach().abs().max()) < 5.0
    with torch.no_grad():
        m.BM_.zero_()
        m.BM_.grad = None
    ii = torch.tensor([3, 3, 3, 3, 7])
    m.BM_.grad = torch.zeros_like(m.BM_)
    m.BM_.grad.index_add_(0, ii, torch.ones(5))              # summed: 4 for movie 3, 1 for movie 7
    m._mean_grads(torch.zeros(5, dtype=torch.long), ii)
    assert float(m.BM_.grad[3]) == 1.0 and float(m.BM_.grad[7]) == 1.0


def test_packed_lstm_backward_matches_autograd():
    """The hand-written backward of the training recurrence equals autograd's (float64)."""
    from recozoo.models.rrn.lstm import PackedLSTM
    torch.manual_seed(0)
    sizes, H = [5, 5, 4, 2, 2, 1], 3
    offs = np.concatenate([[0], np.cumsum(sizes)])
    prev = np.full(offs[-1], -1)
    for j in range(1, len(sizes)):
        prev[offs[j]:offs[j] + sizes[j]] = np.arange(offs[j - 1], offs[j - 1] + sizes[j])
    xw = torch.randn(offs[-1], 4 * H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(H, 4 * H, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: PackedLSTM.apply(a, b, sizes, torch.from_numpy(prev)),
                                    (xw, w))


def test_bias_baseline_gives_the_biases_and_the_networks_start_without_an_offset(split):
    """baseline=bias: μ + b_u + b_i are the bias model's (RRN's own biases stay unused at zero), the
    LSTMs read the bias model's residuals, and the dynamic outputs start without a bias of their own;
    baseline=bias with biases=false is refused in one line."""
    from recozoo.errors import SettingsError
    from recozoo.models.baselines import Bias
    m = RRN(settings={**SMALL, "baseline": "bias"}, seed=0).fit(split.train, split.valid)
    bias = Bias(seed=0).fit(split.train)
    np.testing.assert_allclose(m.base_.item_bias, bias.item_bias_, atol=1e-6)
    assert float(m.BU_.detach().abs().max()) == 0.0 and float(m.BM_.detach().abs().max()) == 0.0
    u, i = split.train.users.astype(np.int64), split.train.items.astype(np.int64)
    want = split.train.ratings - m.base_.at(u, i)                      # the residuals the LSTMs read
    np.testing.assert_allclose(np.sort(m._us.bag_r), np.sort(want.astype(np.float32)), atol=1e-5)
    fresh = RRN(settings={**SMALL, "baseline": "bias"}, seed=0)
    fresh._set_baseline(m.base_)
    fresh._build_nets(m.n_users_, m.n_items_)
    D = fresh.settings.dynamic
    for net in (fresh.user_net_, fresh.movie_net_):
        w, b = net.out.weight.detach(), net.out.bias.detach()
        assert float(b.abs().max()) == 0.0 and float(w[D].abs().max()) == 0.0
        assert float(w[:D].abs().max()) > 0.0          # the dynamic states still start random
    with pytest.raises(SettingsError, match="baseline") as e:
        RRN(settings={"baseline": "bias", "biases": False})
    assert "\n" not in str(e.value)


def test_als_init_starts_the_stationary_part_at_the_als_fit(split):
    """stationary_init=als: before the first step, μ + b_u + b_i + ⟨u_i, m_j⟩ is the prediction of
    recozoo's ALS (rank = stationary, baseline=bias) fitted on TRAIN; random keeps the seeded draw."""
    from recozoo.models._baseline import BiasBaseline
    from recozoo.models.als import ALS
    train = split.train
    m = RRN(settings={**SMALL, "baseline": "bias", "stationary_init": "als"}, seed=0)
    m._set_baseline(BiasBaseline.fit(train))
    m._als_init = m._fit_als_init(train)
    m._build_nets(train.n_users, train.n_items)
    als = ALS(settings={"rank": SMALL["stationary"], "baseline": "bias"}, seed=0).fit(train)
    u, i = train.users.astype(np.int64), train.items.astype(np.int64)
    start = m.base_.at(u, i) + (m.U_.detach().numpy()[u] * m.M_.detach().numpy()[i]).sum(1)
    np.testing.assert_allclose(start, als.predict(u, i), atol=1e-4)
    assert float(np.abs(start - m.base_.at(u, i)).max()) > 0.1      # the factors are not zero
    rnd = RRN(settings={**SMALL, "baseline": "bias", "stationary_init": "random"}, seed=0)
    rnd._build_nets(train.n_users, train.n_items)
    g = torch.Generator().manual_seed(0)
    np.testing.assert_array_equal(rnd.U_.detach().numpy(),
                                  (torch.randn(train.n_users, SMALL["stationary"], generator=g) * 0.1).numpy())
    fitted = RRN(settings={**SMALL, "baseline": "bias", "stationary_init": "als", "epochs": 1},
                 seed=0).fit(train, split.valid)
    assert fitted._als_init is None and np.isfinite(fitted.predict(u[:50], i[:50])).all()
