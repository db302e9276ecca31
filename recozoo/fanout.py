"""Run independent jobs in parallel: in this process, in local worker processes, or on a Dask cluster.

``compare`` fans its fits (models x seeds) out through this module, and tuning trials can use
it the same way. A job is a picklable object; a module-level function ``fn(shared, job)``
turns it into a picklable result. ``shared`` is one object every job needs (the data split),
shipped once per worker rather than once per job::

    with open_fanout(jobs=2) as fan:                    # or cluster="tcp://10.0.0.5:8786"
        results = fan.map(fit_job, jobs, shared=split, labels=names, on_result=store_it)

``map`` hands the results back in submission order; ``on_result(index, result)`` runs in the
calling process as each job finishes (completion order), so the caller alone writes its files
and a run killed part-way keeps every finished result. Progress goes to stderr.

Threads: ``--jobs N`` on a machine of C cores gives every worker ``max(1, C // N)`` torch,
BLAS/OpenMP and numba threads, so workers x threads never exceeds the cores. On a Dask
cluster each worker's share is its host's cores divided by the task slots (``nthreads``)
of all workers on that host, computed from the scheduler's view when the map starts.

Why Dask distributed and not Ray: see docs/dependencies.md.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from recozoo.errors import RecozooError

__all__ = ["Fanout", "InlineFanout", "ProcessFanout", "DaskFanout", "open_fanout", "pin_threads",
           "threads_per_worker", "check_jobs", "imported_module", "cpu_cores", "LineProgress",
           "DEFAULT_CONNECT_TIMEOUT"]

#: seconds ``--cluster ADDRESS`` waits for the scheduler (and for a first worker) to answer
DEFAULT_CONNECT_TIMEOUT = 10.0
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")

OnResult = Callable[[int, Any], None]


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or cpu_cores()) // max(1, workers))


def check_jobs(jobs: Any) -> int:
    """``--jobs`` / ``jobs =``: a whole number >= 1 (0 is not "all cores": say how many)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise RecozooError(f"jobs must be a whole number >= 1, got {jobs!r}")
    return jobs


def pin_threads(n: int):
    """Cap torch, BLAS/OpenMP and numba at ``n`` threads in this process (before and after import).

    torch and numba are capped here only if already imported; otherwise the variables do it when
    they load (torch reads ``OMP_NUM_THREADS``), so a worker whose jobs never touch torch does not
    pay its import (5-6 s on a loaded 2-core machine, per worker). Returns threadpoolctl's limiter
    (``restore_original_limits()`` puts the BLAS/OpenMP caps back), or None without threadpoolctl."""
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    torch = imported_module("torch")
    if torch is not None:
        torch.set_num_threads(n)
    limits = None
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(n)
    except ImportError:  # pragma: no cover - optional: the variables above cover fresh processes
        pass
    numba = imported_module("numba")
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return limits


def imported_module(name: str):
    """The module ``name`` if this process has imported it (or is importing it), else None.

    A Dask worker runs jobs in threads: while one job's thread is still importing numba, the
    partly initialised module is already in ``sys.modules`` without ``set_num_threads``.
    ``import_module`` on a module being imported waits on the import's lock for it to finish
    (and is a dictionary lookup for one already imported)."""
    if name not in sys.modules:
        return None
    return importlib.import_module(name)


class LineProgress:
    """One line on stderr per finished job: ``fanout: 3/6 done (bias seed 1, 4.2 s)``."""

    def __init__(self, name: str = "fanout", stream=None):
        self.name, self.stream = name, stream or sys.stderr

    def __call__(self, done: int, total: int, label: str, seconds: float) -> None:
        self.stream.write(f"{self.name}: {done}/{total} done ({label}, {seconds:.1f} s)\n")
        self.stream.flush()


class Fanout:
    """Runs ``fn(shared, job)`` for every job; subclasses decide where."""

    #: jobs that run at the same time
    workers: int = 1

    def map(self, fn: Callable[[Any, Any], Any], jobs: Sequence[Any], *, shared: Any = None,
            labels: Sequence[str] | None = None, on_result: OnResult | None = None,
            on_start: Callable[[int], None] | None = None, progress=None) -> list[Any]:
        """Results in submission order. ``on_start(i)`` runs here as job ``i`` is handed out.

        When a job fails, jobs not yet started are cancelled, the running ones are waited for
        (their results still reach ``on_result``) and the first failure is raised.
        """
        labels = list(labels) if labels is not None else [f"job {i}" for i in range(len(jobs))]
        return self._map(fn, list(jobs), shared, labels, on_result, on_start, progress)

    def _map(self, fn, jobs, shared, labels, on_result, on_start, progress) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlineFanout(Fanout):
    """One job after another in this process (``--jobs 1``: exactly the sequential run)."""

    def _map(self, fn, jobs, shared, labels, on_result, on_start, progress):
        out = []
        for i, job in enumerate(jobs):
            if on_start is not None:
                on_start(i)
            t0 = time.perf_counter()
            res = fn(shared, job)
            out.append(res)
            if on_result is not None:
                on_result(i, res)
            if progress is not None:
                progress(i + 1, len(jobs), labels[i], time.perf_counter() - t0)
        return out


# ---------------------------------------------------------------- local worker processes
_WORKER_SHARED: Any = None


def _init_worker(threads: int, shared: Any) -> None:
    global _WORKER_SHARED
    _die_with_parent()
    pin_threads(threads)
    _WORKER_SHARED = shared


def _die_with_parent() -> None:
    """Linux: a worker is killed when its parent dies (``kill -9`` of ``compare``), so no orphan
    goes on writing a run directory that the resumed comparison has removed and refits."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _timed_call(fn, job) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return fn(_WORKER_SHARED, job), time.perf_counter() - t0


class _Collector:
    """Completion bookkeeping shared by the process and Dask fan-outs."""

    def __init__(self, n: int, labels, on_result, progress):
        self.results: list[Any] = [None] * n
        self.labels, self.on_result, self.progress = labels, on_result, progress
        self.done = 0
        self.error: BaseException | None = None

    def finished(self, i: int, res: Any, seconds: float) -> None:
        self.results[i] = res
        self.done += 1
        if self.on_result is not None:
            self.on_result(i, res)
        if self.progress is not None:
            self.progress(self.done, len(self.results), self.labels[i], seconds)

    def failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc


class ProcessFanout(Fanout):
    """``workers`` jobs at a time in fresh (spawned) Python processes on this machine, threads pinned
    per worker.

    With ``caller_works`` this process is one of the ``workers``: it runs jobs itself, ``fn`` on
    its own ``shared``, between handing jobs to ``workers - 1`` spawned processes. It has its
    imports done and its data loaded, so its first job starts at once where a fresh worker spends
    seconds importing; and one process fewer is spawned. Jobs are handed out one at a time as a
    process becomes free, so neither side idles while jobs wait. ``fn`` must then be safe to run
    here (it must not change ``shared``) and the callbacks may run on a helper thread (serialised
    by a lock, never two at once). This process's thread caps are those of a worker during the
    map and restored after it.
    """

    def __init__(self, workers: int, *, threads: int | None = None, caller_works: bool = False):
        self.workers = check_jobs(workers)
        #: None: cores // the processes actually started (no more than there are jobs)
        self.threads = threads
        self.caller_works = caller_works

    def _map(self, fn, jobs, shared, labels, on_result, on_start, progress):
        import multiprocessing
        col = _Collector(len(jobs), labels, on_result, progress)
        ctx = multiprocessing.get_context("spawn")   # no fork of a process holding torch/OpenMP threads
        n = min(self.workers, max(1, len(jobs)))
        threads = self.threads or threads_per_worker(n)
        if self.caller_works:
            return _SharedWork(fn, jobs, shared, col, on_start, threads).run(n - 1, ctx)
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads, shared)) as pool:
            pending: dict[Future, int] = {}
            for i, job in enumerate(jobs):
                if on_start is not None:
                    on_start(i)
                pending[pool.submit(_timed_call, fn, job)] = i
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        i = pending.pop(fut)
                        if fut.cancelled():
                            continue
                        if fut.exception() is not None:
                            col.failed(fut.exception())
                            for other in pending:
                                other.cancel()
                            continue
                        col.finished(i, *fut.result())
            except BaseException:
                for other in pending:       # Ctrl-C here: nothing new starts
                    other.cancel()
                raise
        if col.error is not None:
            raise col.error
        return col.results


class _SharedWork:
    """One map of :class:`ProcessFanout` with ``caller_works``: this process and ``helpers`` spawned
    ones take the next job from one counter as each becomes free.

    A feeder thread per spawned process hands it one job at a time and waits for it, so a job is
    never queued behind another in one process while a different process idles. Callbacks run
    under one lock, on whichever thread saw the job start or finish. After a failure no job
    starts; the running ones finish and reach ``on_result``, then the first failure is raised.
    """

    def __init__(self, fn, jobs, shared, col: _Collector, on_start, threads: int):
        self.fn, self.jobs, self.shared, self.col = fn, jobs, shared, col
        self.on_start, self.threads = on_start, threads
        self.lock = threading.Lock()          # the counter, the callbacks and the first error
        self.next = 0
        self.stop = False

    def run(self, helpers: int, ctx) -> list[Any]:
        saved = _ThreadCaps.pin(self.threads)
        try:
            if helpers == 0:
                self._work_here()
            else:
                with ProcessPoolExecutor(max_workers=helpers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(self.threads, self.shared)) as pool:
                    feeders = [threading.Thread(target=self._feed, args=(pool,), daemon=True,
                                                name=f"fanout-feeder-{k}") for k in range(helpers)]
                    for t in feeders:
                        t.start()
                    try:
                        self._work_here()
                    finally:        # (after Ctrl-C here nothing new starts: _work_here set stop)
                        for t in feeders:
                            t.join()
        finally:
            saved.restore()
        if self.col.error is not None:
            raise self.col.error
        return self.col.results

    def _take(self) -> int | None:
        """The next job's index (its ``on_start`` done), or None when none is left or one failed."""
        with self.lock:
            if self.stop or self.next >= len(self.jobs):
                return None
            i = self.next
            self.next += 1
            if self.on_start is not None and not self._calls(self.on_start, i):
                return None
            return i

    def _work_here(self) -> None:
        while (i := self._take()) is not None:
            t0 = time.perf_counter()
            try:
                res = self.fn(self.shared, self.jobs[i])
            except Exception as e:          # raised by run() once the running jobs have finished
                self._failed(e)
                continue
            except BaseException:           # Ctrl-C: nothing new starts anywhere
                with self.lock:
                    self.stop = True
                raise
            self._finished(i, res, time.perf_counter() - t0)

    def _feed(self, pool: ProcessPoolExecutor) -> None:
        while (i := self._take()) is not None:
            try:
                res, seconds = pool.submit(_timed_call, self.fn, self.jobs[i]).result()
            except Exception as e:          # the job's error, or a broken pool
                self._failed(e)
                continue
            self._finished(i, res, seconds)

    def _finished(self, i: int, res: Any, seconds: float) -> None:
        with self.lock:
            self._calls(self.col.finished, i, res, seconds)

    def _calls(self, callback, *args) -> bool:
        """``callback(*args)`` (the lock held); a callback that raises (a store it cannot write) stops
        the map as a failed job does, on a helper thread too, rather than ending that thread alone."""
        try:
            callback(*args)
            return True
        except Exception as e:
            self._stop_with(e)
            return False

    def _failed(self, exc: BaseException) -> None:
        with self.lock:
            self._stop_with(exc)

    def _stop_with(self, exc: BaseException) -> None:
        """(The lock held.) No job starts from now on; ``exc`` is raised at the end if it came first."""
        self.stop = True
        self.col.failed(exc)


class _ThreadCaps:
    """This process's thread caps, pinned for a map's jobs and put back after it."""

    def __init__(self, env: dict[str, str | None], torch_threads: int | None, numba_threads: int | None):
        self.env, self.limits = env, None
        self.torch_threads, self.numba_threads = torch_threads, numba_threads

    @classmethod
    def pin(cls, n: int) -> "_ThreadCaps":
        torch, numba = imported_module("torch"), imported_module("numba")
        saved = cls({v: os.environ.get(v) for v in _THREAD_VARS},
                    torch.get_num_threads() if torch is not None else None,
                    numba.get_num_threads() if numba is not None else None)
        saved.limits = pin_threads(n)
        return saved

    def restore(self) -> None:
        for var, value in self.env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if self.limits is not None:
            self.limits.restore_original_limits()
        torch = imported_module("torch")
        if torch is not None:       # (imported during the map: its default, every core)
            torch.set_num_threads(self.torch_threads or cpu_cores())
        numba = imported_module("numba")
        if numba is not None:
            numba.set_num_threads(self.numba_threads or numba.config.NUMBA_NUM_THREADS)


# ---------------------------------------------------------------- Dask distributed
def _dask_call(fn, shared, job, threads_by_worker: dict[str, int]) -> tuple[Any, float]:
    from distributed import get_worker
    n = threads_by_worker.get(get_worker().address)
    if n:
        pin_threads(n)
    t0 = time.perf_counter()
    return fn(shared, job), time.perf_counter() - t0


def check_scheduler(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """A one-line error unless a Dask scheduler answers at ``address`` (before any Client exists:
    a Client that fails to connect leaves a traceback behind at exit)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        scheme, loc = parse_address(address)
        host, port = parse_host_port(loc)
    except (ValueError, TypeError) as e:
        raise RecozooError(f"--cluster {address}: not a scheduler address ({e}); expected tcp://HOST:PORT") \
            from None
    if scheme != "tcp":
        return      # tls://, ucx://...: the Client's own connection attempt is the check
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise RecozooError(f"--cluster {address}: no Dask scheduler answers there "
                           f"({e.strerror or type(e).__name__})") from None
    try:
        ident = asyncio.run(_identity(address, timeout))
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        ident = {"error": " ".join(str(e).split()) or type(e).__name__}
    if not isinstance(ident, dict) or ident.get("type") != "Scheduler":
        raise RecozooError(f"--cluster {address}: something answers there, but not a Dask scheduler "
                           f"({ident.get('error') if isinstance(ident, dict) else ident!r})")


async def _identity(address: str, timeout: float):
    from distributed.comm import connect
    comm = await connect(address, timeout=timeout)
    try:
        await comm.write({"op": "identity"})
        return await asyncio.wait_for(comm.read(), timeout)
    finally:
        await comm.close()


class DaskFanout(Fanout):
    """Jobs sent to a running Dask distributed scheduler (``dask scheduler`` + ``dask worker``).

    Every worker must be able to import recozoo (the same version) and read the dataset the
    jobs name; the results come back to this process, which alone writes them.
    """

    def __init__(self, address: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT):
        try:
            from distributed import Client
        except ImportError:
            raise RecozooError("--cluster needs Dask distributed: pip install 'recozoo[cluster]'") from None
        self.address = address
        check_scheduler(address, timeout)
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:   # pragma: no cover - it answered check_scheduler just now
            raise RecozooError(f"--cluster {address}: {' '.join(str(e).split())}") from None
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as e:
            self.client.close()
            raise RecozooError(f"--cluster {address}: the scheduler has no worker after {timeout:g} s "
                               "(start some with `dask worker ADDRESS`)") from e
        self.workers = max(1, sum(w["nthreads"] for w in self._workers().values()))

    def _workers(self) -> dict[str, dict[str, Any]]:
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def _threads_by_worker(self) -> dict[str, int]:
        """Each worker's share of its host's cores: cores // task slots of all workers on the host."""
        info = self._workers()
        cores = self.client.run(cpu_cores)
        slots: dict[str, int] = {}
        for w in info.values():
            slots[w["host"]] = slots.get(w["host"], 0) + w["nthreads"]
        return {addr: threads_per_worker(slots[w["host"]], cores.get(addr))
                for addr, w in info.items() if addr in cores}

    def _map(self, fn, jobs, shared, labels, on_result, on_start, progress):
        with self.client.as_current():   # as_completed looks the client up (set_as_default=False)
            return self._map_here(fn, jobs, shared, labels, on_result, on_start, progress)

    def submit(self, fn: Callable[[Any, Any], Any], jobs: Sequence[Any], *, shared: Any = None,
               labels: Sequence[str] | None = None, on_start: Callable[[int], None] | None = None) -> list:
        """Hand every job to the cluster and return at once: one ``distributed.Future`` per job (its
        result is ``(fn(shared, job), seconds)``), for a caller with work of its own while they run."""
        labels = list(labels) if labels is not None else [f"job {i}" for i in range(len(jobs))]
        threads = self._threads_by_worker()
        shared_f = self.client.scatter(shared, broadcast=True, hash=False) if shared is not None else None
        futures = []
        for i, job in enumerate(jobs):
            if on_start is not None:
                on_start(i)
            futures.append(self.client.submit(_dask_call, fn, shared_f, job, threads, pure=False,
                                              key=f"recozoo-{labels[i]}-{os.getpid()}-{time.time_ns()}"))
        return futures

    def _map_here(self, fn, jobs, shared, labels, on_result, on_start, progress):
        from distributed import as_completed
        col = _Collector(len(jobs), labels, on_result, progress)
        futures = self.submit(fn, jobs, shared=shared, labels=labels, on_start=on_start)
        pending = {fut.key: (i, fut) for i, fut in enumerate(futures)}
        try:
            for fut in as_completed([f for _, f in pending.values()]):
                i, _ = pending.pop(fut.key)
                if fut.status == "error":
                    col.failed(fut.exception())
                    for _, other in pending.values():
                        other.cancel()
                    continue
                if fut.status == "finished":
                    col.finished(i, *fut.result())
        except BaseException:
            for _, other in pending.values():
                other.cancel()
            raise
        if col.error is not None:
            raise col.error
        return col.results

    def close(self) -> None:
        self.client.close()


def open_fanout(jobs: int = 1, cluster: str | None = None, *,
                timeout: float = DEFAULT_CONNECT_TIMEOUT, caller_works: bool = False) -> Fanout:
    """``cluster`` wins over ``jobs``; ``jobs=1`` runs in this process; ``caller_works``: see
    :class:`ProcessFanout`."""
    if cluster:
        return DaskFanout(cluster, timeout=timeout)
    return InlineFanout() if check_jobs(jobs) == 1 else ProcessFanout(jobs, caller_works=caller_works)
