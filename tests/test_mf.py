"""PMF and biased MF (recozoo.models.mf)."""

from __future__ import annotations

import numpy as np
import pytest

from recozoo.data.synthetic import generate
from recozoo.evaluate import evaluate
from recozoo.models.baselines import GlobalMean
from recozoo.models.mf import PMF, BiasedMF, sgd_epoch


@pytest.mark.parametrize("cls,settings", [
    (BiasedMF, {"factors": 50, "epochs": 15, "lr": 0.01, "reg": 0.08}),
    (PMF, {"epochs": 15, "reg_user": 0.05, "reg_item": 0.05}),
    (PMF, {"epochs": 15, "link": "linear", "lr": 0.01, "reg_user": 0.05, "reg_item": 0.05}),
])
def test_beats_global_mean_on_ml100k_valid(ml100k_split, cls, settings):
    split = ml100k_split
    base = evaluate(GlobalMean().fit(split.train), split, "valid")["rmse"]
    got = evaluate(cls(settings=settings, seed=0).fit(split.train), split, "valid")["rmse"]
    assert got < base - 0.05, (cls.name, got, base)


def test_minibatch_gradients_use_batch_start_parameters():
    """Two ratings of one user in one minibatch: both gradients see the same p_u
    (minibatch semantics), unlike per-rating SGD where the second sees the update."""
    users = np.array([0, 0], np.int32)
    items = np.array([0, 1], np.int32)
    r = np.array([5.0, 1.0])
    perm = np.array([0, 1])

    def run(batch):
        P = np.array([[0.5, -0.2]])
        Q = np.array([[0.3, 0.1], [-0.4, 0.2]])
        b = np.zeros(1), np.zeros(2)
        g = np.empty((batch, 2)), np.empty((batch, 2)), np.empty((batch, 2))
        sgd_epoch(users, items, r, perm, P, Q, b[0], b[1], 0.0, False, False, 0.0, 1.0,
                  0.1, 0.0, np.full(1, 0.02), np.full(2, 0.02), 0.0, 0.0, batch, *g)
        return P, Q

    P2, Q2 = run(2)
    P0, Q0 = np.array([0.5, -0.2]), np.array([[0.3, 0.1], [-0.4, 0.2]])
    e = r - Q0 @ P0
    want_p = P0 + 0.1 * ((e[:, None] * Q0).sum(0) - 2 * 0.02 * P0)
    np.testing.assert_allclose(P2[0], want_p, rtol=1e-12)
    P1, _ = run(1)
    assert not np.allclose(P1, P2)


def test_logistic_pmf_predicts_inside_the_scale_without_clipping():
    """The logistic link keeps predictions in [min, max] by construction; clip stays None."""
    t = generate(n_users=100, n_items=50, n_ratings=2000, seed=2)
    m = PMF(settings={"epochs": 3, "factors": 4, "link": "logistic", "baseline": "none"}, seed=0).fit(t)
    assert m.clip is None
    u, i = np.meshgrid(np.arange(100), np.arange(50))
    p = m.predict(u.ravel(), i.ravel())
    assert p.min() >= t.ratings.min() and p.max() <= t.ratings.max()


def test_biasedmf_does_not_clip_silently():
    """Linear models may predict outside the scale; only clip= clips."""
    t = generate(n_users=100, n_items=50, n_ratings=2000, seed=2)
    s = {"epochs": 30, "factors": 8, "lr": 0.05, "reg": 0.0}
    free = BiasedMF(settings=s, seed=0).fit(t)
    u, i = np.meshgrid(np.arange(100), np.arange(50))
    p = free.predict(u.ravel(), i.ravel())
    assert p.max() > 5 or p.min() < 1
    clipped = BiasedMF(settings=s, seed=0, clip=(1, 5)).fit(t).predict(u.ravel(), i.ravel())
    np.testing.assert_allclose(clipped, np.clip(p, 1, 5))


def test_divergence_is_a_one_line_error():
    from recozoo.errors import RecozooError
    t = generate(n_users=50, n_items=40, n_ratings=800, seed=0)
    with pytest.raises(RecozooError, match="diverged"):
        BiasedMF(settings={"lr": 5.0, "epochs": 5}, seed=0).fit(t)
