"""The engine's model selection (best epoch on VALID, early stopping), shared by the Trainer and TimeSVD++."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from recozoo.engine import Selection

_rmse = st.one_of(st.none(), st.floats(0.5, 1.5, allow_nan=False))


@given(st.lists(_rmse, min_size=1, max_size=40), st.integers(0, 5))
def test_best_is_the_first_minimum_and_patience_counts_evaluations(scores, patience):
    sel = Selection(uses_valid=True, patience=patience)
    best, best_epoch, bad = math.inf, 0, 0
    for epoch, v in enumerate(scores, start=1):
        improved = sel.update(epoch, v)
        if v is None:                                       # VALID not scored after this epoch
            assert not improved and not sel.stopped
            continue
        assert improved == (v < best)
        if v < best:
            best, best_epoch, bad = v, epoch, 0
        else:
            bad += 1
        assert sel.stopped == bool(patience and bad >= patience)
        assert (sel.best_epoch, sel.best_rmse, sel.bad) == (best_epoch, best, bad)
        if sel.stopped:
            break


@given(st.integers(1, 30))
def test_without_valid_every_epoch_is_the_best(n):
    sel = Selection(uses_valid=False, patience=2)
    assert all(sel.update(e, None) for e in range(1, n + 1))
    assert sel.best_epoch == n and sel.best_rmse is None and not sel.stopped


def test_state_round_trip():
    a = Selection(uses_valid=True, patience=3)
    for e, v in enumerate([1.0, 0.9, 0.95, 0.97], start=1):
        a.update(e, v)
    b = Selection(uses_valid=True, patience=3)
    b.load_state_dict(a.state_dict())
    assert b == a and set(a.state_dict()) == {"best_epoch", "best_rmse", "bad", "stopped"}


@given(st.lists(_rmse, min_size=1, max_size=40), st.integers(0, 5))
def test_a_ranking_metric_selects_the_first_maximum(scores, patience):
    """higher_is_better (NDCG on VALID): the mirror image of the RMSE rule."""
    up = Selection(uses_valid=True, patience=patience, higher_is_better=True)
    down = Selection(uses_valid=True, patience=patience)
    for epoch, v in enumerate(scores, start=1):
        assert up.update(epoch, v) == down.update(epoch, None if v is None else -v)
        assert (up.best_epoch, up.bad, up.stopped) == (down.best_epoch, down.bad, down.stopped)
        assert up.best_rmse == (None if down.best_rmse is None else -down.best_rmse)
        if up.stopped:
            break
