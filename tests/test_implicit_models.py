"""pop, itemknn, bpr: each against its definition; fold-in on held-out users; `recozoo fit` on a
prepared (memory-mapped) strong-generalisation split for every implicit model (~25 s).

Expected values are computed here directly (loops over items and users), never by calling the
code under test twice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recozoo.data.table import RatingsTable
from recozoo.datasets import load_split
from recozoo.registry import get_model
from recozoo.runs import RunConfig, fit_run
from recozoo.strong_generalization import strong_generalization_split

from cli_helpers import invoke_json

#: tiny settings per model for the fold-in and CLI checks
TINY = {"pop": {}, "itemknn": {"neighbours": 8}, "bpr": {"factors": 6, "iterations": 20},
        "mult-vae": {"layers": "16,8", "epochs": 3}, "mult-dae": {"layers": "8", "epochs": 3},
        "deeprec": {"loss": "multinomial", "refeed": 0, "layers": "16", "epochs": 3, "optimizer": "adam"}}
#: models whose empty-history fallback is the popularity ranking
POPULARITY_FALLBACK = {"pop", "itemknn", "bpr", "mult-vae", "mult-dae"}


@pytest.fixture(scope="module")
def strong():
    rng = np.random.default_rng(5)
    u = np.repeat(np.arange(160), 10)
    i = np.concatenate([rng.choice(40, 10, replace=False, p=_skew(40)) for _ in range(160)])
    return strong_generalization_split(RatingsTable.from_raw(u, i, np.ones(u.size, np.float32)), "x", 20)


def _skew(n):
    p = 1.0 / np.arange(1, n + 1)
    return p / p.sum()


def _fit(name, split, **extra):
    return get_model(name)({**TINY[name], **extra}, seed=1).fit(split.train, split.valid)


def test_itemknn_is_cosine_top_k(strong):
    m = _fit("itemknn", strong, neighbours=5, shrink=2.0)
    X = (strong.train.to_csr().toarray() > 0).astype(np.float64)
    n = X.shape[1]
    norms = np.sqrt(X.sum(0))
    W = np.zeros((n, n))
    for j in range(n):
        sim = np.array([X[:, i] @ X[:, j] / (norms[i] * norms[j] + 2.0) if i != j else 0.0 for i in range(n)])
        top = sorted(range(n), key=lambda i: (-sim[i], i))[:5]
        W[top, j] = np.where(sim[top] > 0, sim[top], 0)
    np.testing.assert_allclose(m.weights_.toarray(), W, rtol=1e-6, atol=1e-7)
    users = np.arange(30)
    np.testing.assert_allclose(m.score_items(users), X[users] @ W, rtol=1e-5, atol=1e-6)


def test_pop_scores_are_the_training_counts(strong):
    m = _fit("pop", strong)
    counts = np.bincount(np.asarray(strong.train.items), minlength=strong.train.n_items)
    fold = strong.test_fold_in.to_csr()[strong.held_out_users("test")]
    np.testing.assert_array_equal(m.score_new_users(fold), np.tile(counts, (fold.shape[0], 1)))


def test_bpr_fold_in_maximises_its_objective(strong):
    m = _fit("bpr", strong, fold_in_negatives=15, fold_in_iterations=400)
    users = strong.held_out_users("test")[:6]
    R = strong.test_fold_in.to_csr()[users]
    got = m.score_new_users(R)
    Q = m.item_factors_.astype(np.float64)
    S = m.fold_in_negatives_
    for b in range(R.shape[0]):
        items = R[b].indices
        neg = np.array([j for j in S if j not in set(items)])
        p = np.linalg.lstsq(Q[:, :-1], got[b] - Q[:, -1], rcond=None)[0]     # the vector behind the scores
        d = (Q[items][:, None, :-1] - Q[neg][None, :, :-1]).reshape(-1, Q.shape[1] - 1)
        x = d @ p + (Q[items][:, None, -1] - Q[neg][None, :, -1]).reshape(-1)
        grad = (d / (1 + np.exp(x))[:, None]).mean(0) - m.settings.reg * p
        assert np.abs(grad).max() < 1e-6, (b, np.abs(grad).max())
        np.testing.assert_allclose(got[b], m.score_new_users(R[b])[0], rtol=1e-5, atol=1e-6)


def test_bpr_fold_in_equals_a_direct_maximisation(strong):
    """The Newton fold-in against scipy's L-BFGS on the objective written out pair by pair, user by
    user; cut into one-user chunks it gives the same vectors."""
    from scipy.optimize import minimize

    from recozoo.models._bpr_fold_in import bpr_fold_in
    m = _fit("bpr", strong, fold_in_negatives=12)
    R = strong.test_fold_in.to_csr()[strong.held_out_users("test")[:5]]
    R = sp.csr_matrix((np.ones(R.nnz, np.float32), R.indices, R.indptr), shape=R.shape)
    Q = m.item_factors_.astype(np.float64)
    got = bpr_fold_in(R, m.item_factors_, m.fold_in_negatives_, m.settings.reg, 50)
    assert np.all(got[:, -1] == 1.0)
    for b in range(R.shape[0]):
        pairs = [(i, j) for i in R[b].indices for j in m.fold_in_negatives_ if j not in set(R[b].indices)]

        def neg_f(p):
            x = np.array([np.append(p, 1.0) @ (Q[i] - Q[j]) for i, j in pairs])
            return np.mean(np.logaddexp(0.0, -x)) + 0.5 * m.settings.reg * p @ p

        want = minimize(neg_f, np.zeros(Q.shape[1] - 1), method="L-BFGS-B", options={"gtol": 1e-10}).x
        np.testing.assert_allclose(got[b, :-1], want, atol=2e-4)
    np.testing.assert_allclose(bpr_fold_in(R, m.item_factors_, m.fold_in_negatives_, m.settings.reg, 50,
                                           max_pairs=1), got, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_fold_in_items_are_never_recommended(name, strong):
    m = _fit(name, strong)
    assert m.can_fold_in()
    users = strong.held_out_users("test")
    fold = strong.test_fold_in.to_csr()
    items, scores = m.recommend_new_users(fold[users], k=25)
    assert np.isfinite(scores).all()
    for row, u in enumerate(users):
        assert not set(items[row].tolist()) & set(fold[u].indices.tolist())
    if name not in POPULARITY_FALLBACK:
        return
    # a user folded in with an empty history gets the popularity fallback
    empty = m.score_new_users(sp.csr_matrix((1, m.n_items_)))[0]
    np.testing.assert_array_equal(empty, np.bincount(np.asarray(strong.train.items),
                                                     minlength=m.n_items_).astype(np.float32))


def test_every_implicit_model_fits_on_a_prepared_split(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    lines = ["uid,sku"] + [f"u{u},{i}" for u in range(150)
                           for i in rng.choice(60, size=int(rng.integers(5, 20)), replace=False)]
    (tmp_path / "clicks.csv").write_text("\n".join(lines) + "\n")
    home = {"RECOZOO_DATA": str(tmp_path / "home")}
    invoke_json("data", "prepare", "clicks", "--source", tmp_path / "clicks.csv", "--protocol", "strong",
                "--columns", "user=uid,item=sku,rating=none,string_ids=true", "--data-param", "heldout_users=15",
                env=home)
    # bpr through the CLI (implicit's kernels and the read-only memory maps), the others in process
    s = invoke_json("fit", "bpr", "--dataset", "clicks", "--out", tmp_path / "bpr", "-q",
                    *[a for k, v in TINY["bpr"].items() for a in ("--set", f"{k}={v}")], env=home)
    assert s["predicts_ratings"] is False and (tmp_path / "bpr" / "model.rcz").exists()
    monkeypatch.setenv("RECOZOO_DATA", home["RECOZOO_DATA"])
    split = load_split("clicks")
    assert not split.train.indptr.flags.writeable          # memory-mapped, read-only
    for name, st in TINY.items():
        s = fit_run(RunConfig(model=name, dataset="clicks", settings=st), tmp_path / name, split=split)
        t = s["metrics"]["test"]
        assert s["predicts_ratings"] is False and t["scored_by"] == "fold-in", name
        assert t["n_users"] == split.held_out_users("test").size and 0 <= t["ndcg@100"] <= 1, name
