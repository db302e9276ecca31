"""The micro-batcher's rule on its own (no server): who waits, who is batched together, where a batch runs."""

from __future__ import annotations

import asyncio
import threading
import time

from recozoo.serve.batcher import INLINE_BELOW_S, MicroBatcher


def _run(coro):
    return asyncio.run(coro)


def test_a_lone_sequential_client_waits_for_nobody():
    """wait_s is 2 s here: the old rule made every request of a lone client wait it out."""
    sizes = []

    async def main():
        b = MicroBatcher(lambda owner, items: sizes.append(len(items)) or [2 * i for i in items], wait_s=2.0)
        b.start()
        t0 = time.perf_counter()
        got = [await b.submit("run", i) for i in range(5)]
        took = time.perf_counter() - t0
        await b.stop()
        return got, took
    got, took = _run(main())
    assert got == [0, 2, 4, 6, 8] and sizes == [1] * 5 and took < 1.0


def test_closed_loop_clients_are_batched_together_as_soon_as_all_are_in():
    """8 clients that each send their next request when answered: after the first rounds every batch
    holds all 8, and none waits out wait_s (2 s) for a ninth that never comes."""
    sizes = []

    def score(owner, items):
        sizes.append(len(items))
        t = time.thread_time()
        while time.thread_time() - t < 2 * INLINE_BELOW_S:      # costly enough for the worker thread
            pass
        return [(owner, i) for i in items]

    async def client(b, c):
        return [await b.submit("run", (c, r)) for r in range(6)]

    async def main():
        b = MicroBatcher(score, wait_s=2.0, max_batch=64)
        b.start()
        t0 = time.perf_counter()
        out = await asyncio.gather(*[client(b, c) for c in range(8)])
        took = time.perf_counter() - t0
        await b.stop()
        return out, took
    out, took = _run(main())
    assert out == [[("run", (c, r)) for r in range(6)] for c in range(8)]       # nobody mixed up
    assert sum(sizes) == 48 and sizes[-3:] == [8, 8, 8] and took < 1.5


def test_cheap_batches_run_on_the_event_loop_and_costly_ones_on_the_worker_thread():
    threads = []

    def cheap(owner, items):
        threads.append(threading.get_ident())
        return items

    def costly(owner, items):
        threads.append(threading.get_ident())
        t = time.thread_time()
        while time.thread_time() - t < 3 * INLINE_BELOW_S:
            pass
        return items

    async def main(score):
        b = MicroBatcher(score, wait_s=0.0)
        b.start()
        for i in range(4):
            assert await b.submit("run", i) == i
        await b.stop()
        return threading.get_ident()
    loop_thread = _run(main(cheap))
    assert threads[0] != loop_thread and threads[1:] == [loop_thread] * 3     # the first one: no timing yet
    threads.clear()
    loop_thread = _run(main(costly))
    assert loop_thread not in threads



def test_a_hot_swap_does_not_inherit_the_old_runs_timing():
    """The old run's batches were cheap (scored on the loop); the new run's first batch goes to the
    worker thread all the same, since the old timing says nothing of the new model's cost."""
    threads = []

    def score(owner, items):
        threads.append((owner, threading.get_ident()))
        return items

    async def main():
        b = MicroBatcher(score, wait_s=0.0)
        b.start()
        for i in range(3):
            await b.submit("old run", i)
        for i in range(2):
            await b.submit("new run", i)
        await b.stop()
        return threading.get_ident()
    loop_thread = _run(main())
    where = [(owner, t == loop_thread) for owner, t in threads]
    assert where == [("old run", False), ("old run", True), ("old run", True),
                     ("new run", False), ("new run", True)]


def test_a_backlog_of_cheap_batches_yields_to_the_loop_between_batches():
    """Six requests pending with max_batch 1: each cheap batch scored on the loop is followed by one
    turn of the other tasks (the connections' reads), not the next batch at once."""
    events = []

    def score(owner, items):
        events.append("batch")
        return items

    async def main():
        b = MicroBatcher(score, wait_s=0.0, max_batch=1)
        b.start()
        await b.submit("run", -1)                  # timed once: later batches run on the loop
        done = False

        async def ticker():
            while not done:
                events.append("tick")
                await asyncio.sleep(0)
        t = asyncio.get_running_loop().create_task(ticker())
        events.clear()
        got = await asyncio.gather(*[b.submit("run", i) for i in range(6)])
        done = True
        await t
        await b.stop()
        return got
    assert _run(main()) == list(range(6))
    batches = [i for i, e in enumerate(events) if e == "batch"]
    assert len(batches) == 6
    assert all("tick" in events[a:c] for a, c in zip(batches, batches[1:])), events



def test_a_scorer_that_answers_too_few_fails_its_requests_instead_of_leaving_them_waiting():
    """zip over fewer results than requests left the rest waiting for ever (a client's hang, not a 500)."""
    async def main():
        b = MicroBatcher(lambda owner, items: items[:-1], wait_s=0.5, max_batch=8)
        b.start()
        got = await asyncio.wait_for(asyncio.gather(*[b.submit("run", i) for i in range(3)],
                                                    return_exceptions=True), 5.0)
        await b.stop()
        return got
    got = _run(main())
    assert len(got) == 3 and all(isinstance(g, RuntimeError) and "answered 2 of 3" in str(g) for g in got), got


def test_settle_heap_freezes_what_is_alive_and_a_swap_reclaims_old_cycles():
    """The served run is frozen out of the cyclic collector's full passes (which stopped the server
    30-130 ms each with a 17,768-item DeepRec loaded); settling again after a swap frees the old run's
    reference cycles instead of keeping them frozen forever."""
    import gc
    import weakref

    from recozoo.serve.app import settle_heap

    class Node:
        pass

    try:
        old_run = Node()
        old_run.me = old_run                     # a reference cycle, as model objects have
        ref = weakref.ref(old_run)
        settle_heap()
        assert gc.get_freeze_count() > 0
        del old_run
        gc.collect()
        assert ref() is not None                 # frozen: a full collection does not walk it
        settle_heap()                            # what the server does after switching runs
        assert ref() is None
    finally:
        gc.unfreeze()
