"""Micro-batching: requests that arrive together are scored in one pass.

Why: a forward pass of a wide network costs nearly the same for 1 row as for
32 (the weights are read once either way), so under load the server answers
many requests for the price of a few. The rule:

* when the scorer is free, a batch starts as soon as as many requests are
  pending as the clients have shown they send at once (the most requests
  in flight, submitted and not yet answered, during each of the last
  :data:`PEAK_WINDOW` batches; at most ``max_batch``), and at the latest
  ``wait_s`` (default 2 ms) after the scorer became free or the first pending
  request arrived, whichever is later. So a lone sequential client waits for
  nobody, and 8 closed-loop clients are scored together as soon as the
  eighth request is in — without the fixed wait, which cost 2 ms per batch
  (2 of every 5 ms at 8 connections on ML-100K), and without splitting 8
  clients into a batch of 1 and one of 7 whenever one answer came back early;
* a batch is scored on one worker thread (``run_batch``), so the event loop
  keeps reading and parsing requests meanwhile (numpy and torch release the GIL)
  — unless the previous batch took less than :data:`INLINE_BELOW_S`: then it is
  scored on the event loop itself, because handing it to the thread and back
  (two wake-ups and two GIL hand-overs) cost more than the scoring (ML-100K item
  mode, whose answers are rows of a cached matrix: a fifth of the event loop's
  time went into ``ThreadPoolExecutor.submit``, measured with py-spy). A batch
  that takes longer sends the next one back to the thread, and so does a hot
  swap (the timing is the previous run's: a cheap model's says nothing of the
  next one's). After a batch scored on the loop, the loop yields once before
  the next one if requests are still pending, so a backlog of cheap batches
  never holds the other connections' reads for more than one batch.

Items carry the :class:`~recozoo.serve.recommender.Recommender` they were
parsed against; a batch never mixes two (a hot swap splits it), so a request's
indices are always scored by the run that produced them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from typing import Any, Callable

__all__ = ["MicroBatcher", "PEAK_WINDOW", "INLINE_BELOW_S"]

#: a batch is scored on the event loop when the previous one (same run) took less than this, in CPU
#: seconds. Why 1 ms: a batch on the loop delays the reading of every other connection by its length,
#: and 1 ms stays below the p99 latency served at 8 connections on ML-100K (3.5 ms, docs/online.md)
#: while scoring rows of a cached matrix (ML-100K item mode) falls under it
INLINE_BELOW_S = 0.001

#: batches over which the clients' concurrency (the most requests in flight) is remembered
PEAK_WINDOW = 32


class MicroBatcher:
    """Collect ``(owner, item)`` submissions and answer them with ``run_batch(owner, items)``.

    ``run_batch`` returns one result per item (same order; any other count fails the batch's
    requests instead of leaving some unanswered); ``on_batch(size)`` is
    called for every batch scored (metrics).
    """

    def __init__(self, run_batch: Callable[[Any, list], list], *, max_batch: int = 64,
                 wait_s: float = 0.002, on_batch: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.wait_s = max(0.0, float(wait_s))
        self.on_batch = on_batch or (lambda n: None)
        self._pending: list[tuple[Any, Any, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        #: requests submitted and not yet answered; its peak since the last batch started; past peaks
        self._in_flight = 0
        self._peak = 0
        self._peaks: collections.deque[int] = collections.deque(maxlen=PEAK_WINDOW)
        #: seconds the last batch's scoring took (None: none scored yet), and whose batch it was
        self._last_s: float | None = None
        self._last_owner: Any = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="recozoo-batch")

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish what is pending, then stop (graceful shutdown)."""
        if self._task is not None:
            while self._pending:
                await asyncio.sleep(0.001)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, owner, item):
        """The result for ``item`` (scored with others of the same ``owner``)."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((owner, item, fut))
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        self._wakeup.set()
        if len(self._pending) >= self.target():
            self._full.set()
        try:
            return await fut
        finally:
            self._in_flight -= 1

    def target(self) -> int:
        """Pending requests that start a batch at once: the clients' recent concurrency (see the module
        docstring), at most ``max_batch``."""
        return max(1, min(self.max_batch, max(self._peak, max(self._peaks, default=0))))

    def _timed(self, owner, items: list) -> list:
        """``run_batch``, noting its CPU time (the thread's: a scorer preempted by other processes on a
        loaded machine is not slow, and should not leave the event loop)."""
        t0 = time.thread_time()
        try:
            return self.run_batch(owner, items)
        finally:
            self._last_s, self._last_owner = time.thread_time() - t0, owner

    def _inline(self, owner) -> bool:
        """Whether ``owner``'s next batch is cheap enough for the event loop (module docstring)."""
        return self._last_owner is owner and self._last_s is not None and self._last_s < INLINE_BELOW_S

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            # the scorer is free: give companions up to wait_s to arrive, unless the clients' usual
            # number is already there
            if self.wait_s > 0 and len(self._pending) < self.target():
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), self.wait_s)
                except asyncio.TimeoutError:
                    pass
            owner = self._pending[0][0]
            batch = [p for p in self._pending[:self.max_batch] if p[0] is owner]
            taken = {id(p[2]) for p in batch}
            self._pending = [p for p in self._pending if id(p[2]) not in taken]
            self._full.clear()
            self._peaks.append(self._peak)
            self._peak = self._in_flight
            self.on_batch(len(batch))
            items = [p[1] for p in batch]
            inline = self._inline(owner)
            try:
                if inline:
                    results = self._timed(owner, items)
                else:
                    results = await loop.run_in_executor(self._executor, self._timed, owner, items)
                if len(results) != len(items):    # zip would leave the extra requests waiting forever
                    raise RuntimeError(f"run_batch answered {len(results)} of {len(items)} requests")
            except Exception as e:          # noqa: BLE001 (handed to every waiting request)
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
            else:
                for (_, _, fut), res in zip(batch, results):
                    if not fut.done():      # (a client that went away cancelled its future)
                        fut.set_result(res)
            if inline and self._pending:    # nothing awaited since the last batch: let the others read
                await asyncio.sleep(0)
