"""The ranking evaluator against a direct per-user computation, its exclusions and its tie order (~15 s).

The oracle ranks one user at a time the slow, obvious way: the model's scores
for that user alone (``score_new_user`` / ``score_items`` of one row), the
known items removed, then ``sorted`` by (-score, item), then the metric
definitions of PROTOCOLS.md rule 6 written out as sums.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recozoo.data.table import RatingsTable
from recozoo.errors import RecozooError
from recozoo.models.als_implicit import ImplicitALS
from recozoo.models.baselines import GlobalMean
from recozoo.protocols import apply_protocol
from recozoo.rank_eval import rank_part
from recozoo.strong_generalization import strong_generalization_split

KS = (1, 3, 10)


def _interactions(seed: int, n_users: int, n_items: int, lo: int = 5, hi: int = 12) -> RatingsTable:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lo, hi + 1, n_users)
    u = np.repeat(np.arange(n_users), sizes)
    i = np.concatenate([rng.choice(n_items, s, replace=False) for s in sizes])
    r = rng.choice(np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32), u.size)
    return RatingsTable.from_raw(u, i, r)


def _naive(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    hits = [1.0 if x in relevant else 0.0 for x in ranked[:k]]
    m = min(k, len(relevant))
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(m))
    ap = sum(sum(hits[:j + 1]) / (j + 1) for j, h in enumerate(hits) if h) / m
    return {"ndcg": dcg / idcg, "recall": sum(hits) / m, "recall_std": sum(hits) / len(relevant),
            "map": ap, "hitrate": float(any(hits))}


def _rows(t: RatingsTable, u: int) -> np.ndarray:
    csr = t.to_csr()
    return csr.indices[csr.indptr[u]:csr.indptr[u + 1]]


def _check_against_oracle(res, split, part, one_user_scores, known_of):
    pos = split.table(part)
    assert res.users.size > 0
    for row, u in enumerate(res.users):
        scores = one_user_scores(u).astype(np.float64)
        known = set(known_of(u).tolist())
        ranked = sorted((i for i in range(scores.size) if i not in known), key=lambda i: (-scores[i], i))
        kmax = res.items.shape[1]
        assert res.items[row].tolist() == (ranked + [-1] * kmax)[:kmax]
        relevant = set(_rows(pos, u).tolist())
        for k in res.ks:
            ref = _naive(ranked, relevant, k)
            for name, v in ref.items():
                assert res.per_user[f"{name}@{k}"][row] == pytest.approx(v, rel=1e-12), (u, name, k)
    for key, v in res.per_user.items():
        assert res.summary[key] == pytest.approx(float(np.mean(v)))


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.integers(40, 70), st.integers(15, 40))
def test_held_out_users_match_a_per_user_fold_in(seed, n_users, n_items):
    split = strong_generalization_split(_interactions(seed, n_users, n_items), "t", 6, threshold=None,
                                        seed=seed)
    model = ImplicitALS(settings={"factors": 4, "iterations": 2}, seed=0).fit(split.train)
    for part in ("valid", "test"):
        res = rank_part(model, split, part, KS)
        fold = split.fold_in(part)
        assert res.summary["scored_by"] == "fold-in" and res.summary["excluded"] == f"{part}_fold_in"
        # a held-out user's interactions were never in training, and its fold-in items are never recommended
        assert (split.train.user_counts()[res.users] == 0).all()
        for row, u in enumerate(res.users):
            assert not set(res.items[row].tolist()) & set(_rows(fold, u).tolist())
        _check_against_oracle(
            res, split, part,
            lambda u: model.score_new_user(_rows(fold, u), np.ones(_rows(fold, u).size, np.float32)),
            lambda u: _rows(fold, u))
        # users with fewer scored items than K are among them (the min(K, n) denominators)
        assert (split.table(part).user_counts()[res.users] < KS[-1]).any()


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000))
def test_known_users_exclude_everything_known_before_the_part(seed):
    split = apply_protocol(_interactions(seed, 50, 30, 6, 14), "t", "user-random", seed,
                           {"threshold": 2.5, "test_fraction": 0.3, "valid_fraction": 0.3})
    assert split.info["implicit"]
    model = ImplicitALS(settings={"factors": 4, "iterations": 2}, seed=0).fit(split.train)
    before = {"valid": [split.train], "test": [split.train, split.valid]}
    for part in ("valid", "test"):
        res = rank_part(model, split, part, KS)
        assert res.summary["excluded"] == ("train" if part == "valid" else "train+valid")
        _check_against_oracle(
            res, split, part, lambda u: model.score_items(np.array([u]))[0],
            lambda u: np.concatenate([_rows(t, u) for t in before[part]]))


def test_ties_go_to_the_lower_item_index_and_refits_are_ranked_alike():
    """Every score equal: each list is the lowest-indexed items not known before TEST, for a model fitted
    on TRAIN and for one refitted on TRAIN + VALID alike (the exclusion is the split's, not the model's)."""
    split = apply_protocol(_interactions(3, 60, 40, 6, 14), "t", "user-random", 0,
                           {"threshold": 2.5, "test_fraction": 0.3, "valid_fraction": 0.3})
    plain = rank_part(GlobalMean().fit(split.train), split, "test", (10,))
    refit = rank_part(GlobalMean().fit(split.train_and_valid()), split, "test", (10,))
    np.testing.assert_array_equal(plain.items, refit.items)
    for row, u in enumerate(plain.users):
        known = set(_rows(split.train, u).tolist()) | set(_rows(split.valid, u).tolist())
        assert plain.items[row].tolist() == [i for i in range(40) if i not in known][:10]
    # the model's own recommend breaks ties the same way (over its own seen items)
    model = GlobalMean().fit(split.train)
    items, _ = model.recommend(plain.users, k=5)
    for row, u in enumerate(plain.users):
        assert items[row].tolist() == [i for i in range(40) if i not in set(_rows(split.train, u))][:5]


def test_coverage_popularity_and_bad_input():
    split = strong_generalization_split(_interactions(5, 80, 30), "t", 8, threshold=None)
    model = GlobalMean().fit(split.train)
    res = rank_part(model, split, "test", (5,))
    # every list is the 5 lowest-indexed items outside the user's fold-in part
    assert res.summary["coverage@5"] == pytest.approx(np.unique(res.items).size / split.train.n_items)
    pop = split.train.item_counts() / np.count_nonzero(split.train.user_counts())
    np.testing.assert_allclose(res.per_user["popularity@5"], pop[res.items].mean(axis=1))
    with pytest.raises(RecozooError, match="valid or test"):
        rank_part(model, split, "train")
    with pytest.raises(RecozooError, match="cut-offs must be >= 1"):
        rank_part(model, split, "test", (0,))


def test_search_on_implicit_data_selects_on_a_ranking_metric():
    from recozoo.errors import SettingsError
    from recozoo.search import search
    split = strong_generalization_split(_interactions(7, 80, 30), "t", 8, threshold=None)
    with pytest.raises(SettingsError, match="implicit feedback"):
        search("bias", split, {"reg_user": [1.0]}, metric="rmse")
    res = search("als-implicit", split, {"factors": [2, 4]}, metric="ndcg", k=10,
                 base={"iterations": 2})
    scores = [r["ndcg"] for r in res.results]
    assert res.best["ndcg"] == max(scores)
    model = ImplicitALS(settings={**res.best["settings"]}, seed=0).fit(split.train)
    assert rank_part(model, split, "valid", (10,)).summary["ndcg@10"] == pytest.approx(res.best["ndcg"])
