"""Micro-batching: requests that arrive together are scored in one pass.

Why: a forward pass of a wide network costs nearly the same for 1 row as for
32 (the weights are read once either way), so under load the server answers
many requests for the price of a few. The rule:

* the first request of an idle batcher waits at most ``wait_s`` (default 2 ms)
  for companions, or until ``max_batch`` requests are there;
* requests that arrive while a batch is being scored have waited already:
  they form the next batch as soon as the scorer is free, without a further wait;
* a batch is scored on one worker thread (``run_batch``), so the event loop
  keeps reading and parsing requests meanwhile (numpy and torch release the GIL).

Items carry the :class:`~recozoo.serve.recommender.Recommender` they were
parsed against; a batch never mixes two (a hot swap splits it), so a request's
indices are always scored by the run that produced them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Collect ``(owner, item)`` submissions and answer them with ``run_batch(owner, items)``.

    ``run_batch`` returns one result per item (same order); ``on_batch(size)`` is
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
        self._wakeup.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                # an idle batcher: give companions up to wait_s to arrive
                if self.wait_s > 0 and len(self._pending) < self.max_batch:
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), self.wait_s)
                    except asyncio.TimeoutError:
                        pass
            owner = self._pending[0][0]
            batch = [p for p in self._pending[:self.max_batch] if p[0] is owner]
            taken = {id(p[2]) for p in batch}
            self._pending = [p for p in self._pending if id(p[2]) not in taken]
            if len(self._pending) < self.max_batch:
                self._full.clear()
            self.on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, owner,
                                                     [p[1] for p in batch])
            except Exception as e:          # noqa: BLE001 (handed to every waiting request)
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, _, fut), res in zip(batch, results):
                if not fut.done():          # (a client that went away cancelled its future)
                    fut.set_result(res)
