"""recozoo-ease: installed for real, found through the entry point, conforming."""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np


def test_installed_and_discovered_by_entry_point():
    eps = [ep for ep in entry_points(group="recozoo") if ep.name == "ease"]
    assert eps, "recozoo-ease is not installed (pip install ./plugins/recozoo-ease)"
    assert eps[0].value == "recozoo_ease.plugin"
    assert eps[0].dist.name == "recozoo-ease"
    from recozoo import registry
    registry.reset()
    entry = {e.name: e for e in registry.list_models()}["ease"]
    assert entry.provider == "recozoo-ease"
    from recozoo_ease import EASE
    assert entry.cls is EASE


def test_plugins_can_be_switched_off(monkeypatch):
    from recozoo import registry
    monkeypatch.setenv("RECOZOO_PLUGINS", "")
    registry.reset()
    try:
        assert "ease" not in {e.name for e in registry.list_models()}
    finally:
        monkeypatch.undo()
        registry.reset()


def test_conformance():
    from recozoo.testing import check_model
    from recozoo_ease import EASE
    report = check_model(EASE, bad_settings=[{"reg": 0.0}])
    assert report["ratings"] == "skipped" and report["save_load"] == "ok"


def test_closed_form_matches_the_constrained_least_squares():
    """B solves min ‖X − XB‖² + λ‖B‖² s.t. diag(B)=0: column j is ridge regression of
    X[:, j] on the other columns (the constraint just removes column j)."""
    from recozoo.data.synthetic import generate
    from recozoo_ease import EASE
    t = generate(n_users=60, n_items=12, n_ratings=300, seed=4)
    lam = 3.0
    B = EASE(settings={"reg": lam}).fit(t).weights_.astype(np.float64)
    X = (t.to_csr() > 0).astype(np.float64).toarray()
    assert np.all(np.diag(B) == 0)
    for j in range(X.shape[1]):
        others = np.delete(np.arange(X.shape[1]), j)
        A = X[:, others]
        w = np.linalg.solve(A.T @ A + lam * np.eye(others.size), A.T @ X[:, j])
        np.testing.assert_allclose(B[others, j], w, rtol=1e-4, atol=1e-6)


def test_ranks_better_than_the_global_mean_on_generated_data():
    """Self-contained (no downloads): a generated split from recozoo itself."""
    from recozoo.data.synthetic import generate
    from recozoo.evaluate import evaluate_ranking
    from recozoo.models.baselines import GlobalMean
    from recozoo.splits import random_split
    from recozoo_ease import EASE

    def split():
        t = generate(n_users=600, n_items=300, n_ratings=20000, seed=1)
        return random_split(t, "gen", test_fraction=0.1, valid_fraction=0.1, seed=0)
    got = evaluate_ranking(EASE(settings={"reg": 50.0}).fit(split().train), split(), "valid")["ndcg@10"]
    base = evaluate_ranking(GlobalMean().fit(split().train), split(), "valid")["ndcg@10"]
    assert got > base + 0.02, (got, base)


def test_fit_leaves_the_training_table_untouched():
    from recozoo.data.synthetic import generate
    from recozoo_ease import EASE
    t = generate(n_users=50, n_items=30, n_ratings=600, seed=0)
    before = (t.indptr.copy(), t.items.copy(), t.ratings.copy())
    EASE(settings={"reg": 5.0, "min_rating": 4}).fit(t)
    for a, b in zip(before, (t.indptr, t.items, t.ratings)):
        np.testing.assert_array_equal(a, b)


def test_a_recozoo_without_what_the_plugin_uses_is_one_line_naming_it(monkeypatch):
    """An older recozoo 0.1.0 (the bound in pyproject.toml cannot tell it apart) lacks
    recozoo.models.base.scores_at_pairs: the plugin's load fails in one line that says which recozoo
    it needs, not with a bare 'cannot import name'."""
    import sys

    import pytest
    import recozoo.models.base as base
    from recozoo import registry
    from recozoo.errors import RegistryError
    monkeypatch.delattr(base, "scores_at_pairs")
    for name in [m for m in sys.modules if m == "recozoo_ease" or m.startswith("recozoo_ease.")]:
        monkeypatch.delitem(sys.modules, name)
    registry.reset()
    try:
        with pytest.raises(RegistryError) as e:
            registry.list_models()
    finally:
        monkeypatch.undo()
        registry.reset()
    msg = str(e.value)
    assert "\n" not in msg and "'ease'" in msg and "needs a recozoo" in msg and "scores_at_pairs" in msg, msg
