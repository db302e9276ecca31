"""``recozoo tune --cluster ADDRESS``: the trials run on a Dask cluster's workers, the study stays here.

Why this shape (docs/tuning.md, "On a Dask cluster"): a worker on another machine cannot open the
study's SQLite file in this machine's output folder, and asking every cluster for a database server
that all its workers reach would leave out the clusters that run nothing but Dask. The one address
every worker already reaches is the scheduler's, so for the run the study is *served by the
scheduler*: optuna-integration's ``DaskStorage`` keeps a copy of it in the scheduler's memory,
seeded with every trial the study here holds. The workers run Optuna's own loop on that copy —
the TPE sampler sees every trial and the median pruner reads the other trials' per-epoch VALID
values there, as with a local storage — and this process copies each trial back into the study
here as it finishes (:class:`Mirror`), so the study in ``--out`` stays the record: ``trials.csv``,
``best.json``, the final run and a later resume all read it.

With ``--storage URL`` of a database server the workers open that URL themselves, as ``--jobs``
workers and other machines do, and nothing is served by the scheduler.

Trial numbers: the seeded trials keep theirs; a new trial is numbered here when it is copied back
(in the order trials finish). A point queued again after an interrupted run is run on the cluster
and filled in under its own number. If this process dies mid-run, the trials in flight and those
finished since the last poll (:data:`POLL_S`) are lost with the scheduler's copy: a rerun samples
afresh from the trials the study here kept. The workers notice: this process bumps a counter in
the copy at every poll (:class:`Orphaned`), and a worker that has seen no bump for
:data:`STALE_S` seconds of its own clock starts no further trial, so its slot is free for the rerun.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from recozoo.errors import RecozooError
from recozoo.tune.study import quiet_optuna
from recozoo.tune.trials import Progress, run_worker

__all__ = ["connect", "run_on_cluster", "Mirror", "Orphaned", "POLL_S", "STALE_S", "HEARTBEAT"]

#: seconds between two looks at the scheduler's copy for finished trials
POLL_S = 0.25
#: seconds without a heartbeat from this process after which a worker starts no further trial
STALE_S = 30.0
#: the study system attribute of the copy that carries the heartbeat (a counter: no clock to agree on)
HEARTBEAT = "recozoo:heartbeat"


@contextlib.contextmanager
def connect(cfg) -> Iterator[tuple[Any, Any]]:
    """``(fan-out, served storage)`` for ``cfg.cluster``, closed after; the storage is None with a
    ``--storage`` URL. Every failure is a one-line error raised before the caller writes anything."""
    if cfg.storage is None:
        try:
            import optuna_integration.dask  # noqa: F401 - checked here, used by serve()
        except ImportError:
            raise RecozooError("--cluster serves the study from the Dask scheduler, which needs "
                               "optuna-integration: pip install 'recozoo[cluster]'") from None
    from recozoo.fanout import DaskFanout
    fan = DaskFanout(cfg.cluster)
    served = None
    try:
        served = serve(fan, cfg.cluster) if cfg.storage is None else None
        yield fan, served
    finally:
        if served is not None:
            _drop(fan, served.name)
        fan.close()


def serve(fan, address: str):
    """An empty in-memory Optuna storage living on the scheduler (optuna-integration's DaskStorage)."""
    quiet_optuna()
    from optuna_integration.dask import DaskStorage
    try:
        return DaskStorage(client=fan.client)
    except Exception as e:  # noqa: BLE001 - whatever the scheduler answers: one line, not a traceback
        raise RecozooError(f"--cluster {address}: the scheduler cannot serve the study ({_line(e)}); it needs "
                           "optuna and optuna-integration where it runs (pip install 'recozoo[cluster]')") from None


def _drop(fan, name: str) -> None:
    """Forget the served copy on the scheduler: workers still in a trial (cancelled, or after Ctrl-C)
    fail at their next storage call instead of going on with the study."""
    def drop(dask_scheduler):     # (a nested function travels by value: the scheduler needs no recozoo)
        ext = dask_scheduler.extensions.get("optuna")
        if ext is not None:
            ext.storages.pop(name, None)
    with contextlib.suppress(Exception):
        fan.client.run_on_scheduler(drop)


def run_on_cluster(cfg, study, storage, fan, served, split, seconds: float | None, reporter) -> None:
    """``cfg.jobs`` optimisation loops on the cluster until the study's end (trials or budget); each
    finished trial is copied into ``study`` (in ``storage``) here, with its progress line."""
    labels = [f"tune worker {i}" for i in range(cfg.jobs)]
    if served is None:          # a --storage server: the workers open it themselves
        futures = fan.submit(_own_storage_worker, range(cfg.jobs), shared=(cfg, split, seconds), labels=labels)
        _wait(futures, lambda: None, cfg.cluster)
        return
    optuna = quiet_optuna()
    copy = optuna.create_study(storage=served, study_name=study.study_name, direction=study.direction)
    copy.add_trials(study.get_trials(deepcopy=False))
    mirror = Mirror(study, storage, copy, Progress(cfg, reporter, None))
    copy_id = served.get_study_id_from_name(study.study_name)
    beats = iter(range(1, 1 << 62))

    def poll() -> None:
        served.set_study_system_attr(copy_id, HEARTBEAT, next(beats))
        mirror.poll()
    poll()
    futures = fan.submit(_served_worker, range(cfg.jobs), shared=(cfg, split, seconds, served.name), labels=labels)
    _wait(futures, poll, cfg.cluster)


class Mirror:
    """Copies the finished trials of the scheduler's ``copy`` into ``study`` (stored in ``storage``)."""

    def __init__(self, study, storage, copy, progress: Callable[[Any, Any], None]):
        self.study, self.storage, self.copy, self.progress = study, storage, copy, progress
        self.study_id = storage.get_study_id_from_name(study.study_name)
        seeded = study.get_trials(deepcopy=False)
        #: queued points (WAITING here): filled in under their own number once the cluster ran them
        self.waiting = {t.number: t._trial_id for t in seeded if t.state.name == "WAITING"}
        self.done = {t.number for t in seeded} - set(self.waiting)

    def poll(self) -> int:
        """Copy what finished since the last poll; returns how many trials were copied."""
        optuna = quiet_optuna()
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        new = sorted((t for t in self.copy.get_trials(deepcopy=False, states=states) if t.number not in self.done),
                     key=lambda t: t.number)
        for t in new:
            trial_id = self._store(t)
            self.done.add(t.number)
            self.progress(self.study, self.storage.get_trial(trial_id))
        return len(new)

    def _store(self, t) -> int:
        trial_id = self.waiting.pop(t.number, None)
        if trial_id is None:       # a new trial: all of it at once (its own start and end times too)
            return self.storage.create_new_trial(self.study_id, template_trial=t)
        s = self.storage
        s.set_trial_state_values(trial_id, quiet_optuna().trial.TrialState.RUNNING)
        for name, value in t.params.items():
            dist = t.distributions[name]
            s.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
        for step, value in t.intermediate_values.items():
            s.set_trial_intermediate_value(trial_id, step, value)
        for key, value in t.user_attrs.items():
            s.set_trial_user_attr(trial_id, key, value)
        for key, value in t.system_attrs.items():
            s.set_trial_system_attr(trial_id, key, value)
        s.set_trial_state_values(trial_id, t.state, t.values)
        return trial_id


class Orphaned:
    """A worker's after-each-trial callback: stop the study's loop here once the heartbeat of the
    ``recozoo tune`` that started it has not moved for ``stale_s`` seconds (that process is gone:
    nothing would copy this worker's trials back)."""

    def __init__(self, served, study_name: str, stale_s: float = STALE_S):
        self.served, self.stale_s = served, stale_s
        self.study_id = served.get_study_id_from_name(study_name)
        self.seen, self.since = self._beat(), time.monotonic()

    def _beat(self):
        return self.served.get_study_system_attrs(self.study_id).get(HEARTBEAT)

    def __call__(self, study, trial) -> None:
        beat = self._beat()
        if beat != self.seen:
            self.seen, self.since = beat, time.monotonic()
        elif time.monotonic() - self.since > self.stale_s:
            study.stop()


def _wait(futures: list, poll: Callable[[], Any], address: str) -> None:
    """Poll until every worker loop has ended; the first error (a worker's line or exception) is raised."""
    try:
        while not all(f.done() for f in futures):
            poll()
            time.sleep(POLL_S)
        poll()
    except (OSError, TimeoutError) as e:      # the scheduler went away mid-run (its comms raise OSErrors)
        for f in futures:
            f.cancel()
        raise RecozooError(f"--cluster {address}: the scheduler went away mid-run ({_line(e)}); the trials "
                           "copied so far are kept, rerun to resume") from None
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    for f in futures:
        if f.status == "error":
            raise RecozooError(f"--cluster {address}: a worker failed ({_line(f.exception())})")
        if f.status != "finished":       # cancelled or lost: the scheduler (or the cluster) went away
            raise RecozooError(f"--cluster {address}: a worker loop ended {f.status}, not finished (the scheduler "
                               "or its workers went away?); the trials copied so far are kept, rerun to resume")
        if f.result()[0]:
            raise RecozooError(f.result()[0])


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _served_worker(shared, index: int) -> str | None:
    """Worker loop ``index`` on the scheduler-served copy named ``name``; returns its error line or None."""
    cfg, split, seconds, name = shared
    quiet_optuna()              # (before DaskStorage: it is marked experimental, which warns on every worker)
    from optuna_integration.dask import DaskStorage
    served = DaskStorage(name=name, register=False)
    return _guarded(lambda: run_worker(cfg, index, split=split, storage=served, seconds=seconds,
                                       callbacks=[Orphaned(served, cfg.study_name)]))


def _own_storage_worker(shared, index: int) -> str | None:
    """Worker loop ``index`` on ``cfg.storage`` (a database server every worker reaches)."""
    cfg, split, seconds = shared
    return _guarded(lambda: run_worker(cfg, index, split=split, seconds=seconds))


def _guarded(loop: Callable[[], None]) -> str | None:
    try:
        loop()
    except RecozooError as e:
        return str(e)
    return None
