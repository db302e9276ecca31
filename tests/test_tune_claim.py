"""Two workers on one SQLite study never claim the same queued trial.

Optuna claims a queued trial with ``SELECT ... FOR UPDATE`` then an update; SQLite ignores ``FOR UPDATE``,
so without :class:`recozoo.tune.claim.ClaimSafeRDBStorage` two processes popping in lockstep both got
the same trial (4-10 of 20 rounds did, measured), and a ``--jobs 2`` or cluster study's second worker
later failed on a trial that "has already finished"."""

from __future__ import annotations

import multiprocessing as mp

from recozoo.tune.claim import ClaimSafeRDBStorage, claim_lock_path
from recozoo.tune.study import open_storage, quiet_optuna

ROUNDS = 30


def _popper(url: str, barrier, results) -> None:
    optuna = quiet_optuna()
    study = optuna.load_study(study_name="claims", storage=open_storage(url, shared=False))
    got = []
    for _ in range(ROUNDS):
        barrier.wait()                       # both workers reach for the queue at the same moment
        got.append(study._pop_waiting_trial_id())
    results.put(got)


def test_two_workers_popping_in_lockstep_never_get_the_same_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    optuna = quiet_optuna()
    storage = open_storage(url, shared=False)
    assert isinstance(storage, ClaimSafeRDBStorage)
    study = optuna.create_study(storage=storage, study_name="claims")
    for r in range(2 * ROUNDS):
        study.enqueue_trial({"x": float(r)}, skip_if_exists=False)
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_popper, args=(url, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    a, b = results.get(timeout=120), results.get(timeout=120)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert None not in a + b, "every round had a queued trial for each worker"
    assert not set(a) & set(b), "a queued trial was claimed by both workers"
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert len(running) == 2 * ROUNDS
    assert (tmp_path / "study.sqlite3-claim").exists() and claim_lock_path(url).endswith("-claim")

