"""MicroBatcher on its own: grouping by key, size cap, failures, cancellation, overload, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from seqgan.serve.batcher import MicroBatcher, Overloaded, ShuttingDown


class Recorder:
    """A batch function that records each call and answers item -> (key, item)."""

    def __init__(self, fail_on: object = None, delay: float = 0.0):
        self.calls: list[tuple[object, list]] = []
        self.threads: set[int] = set()
        self.fail_on, self.delay = fail_on, delay

    def __call__(self, key, items):
        self.calls.append((key, list(items)))
        self.threads.add(threading.get_ident())
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on!r}")
        return [(key, x) for x in items]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_with_one_key_share_a_batch_off_the_loop():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=200)
        out = await asyncio.gather(*(b.submit("k", i) for i in range(8)))
        stats = b.stats()
        await b.close()
        return out, stats

    out, stats = run(main())
    assert out == [("k", i) for i in range(8)]
    assert fn.calls == [("k", list(range(8)))]
    assert stats["batches"] == 1 and stats["largest_batch"] == 8 and stats["requests"] == 8
    assert threading.get_ident() not in fn.threads and len(fn.threads) == 1


def test_keys_never_mix_and_the_size_is_capped():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=3, max_wait_ms=100)
        jobs = [b.submit("a" if i % 2 else "b", i) for i in range(10)]
        out = await asyncio.gather(*jobs)
        await b.close()
        return out

    out = run(main())
    assert out == [("a" if i % 2 else "b", i) for i in range(10)]
    for key, items in fn.calls:
        assert len(items) <= 3 and all(("a" if i % 2 else "b") == key for i in items)
    assert sorted(i for _, items in fn.calls for i in items) == list(range(10))


def test_batch_size_one_turns_batching_off():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=1, max_wait_ms=100)
        await asyncio.gather(*(b.submit("k", i) for i in range(5)))
        stats = b.stats()
        await b.close()
        return stats

    stats = run(main())
    assert [len(items) for _, items in fn.calls] == [1] * 5
    assert stats["batch_sizes"] == {"1": 5}


def test_requests_arriving_while_the_worker_is_busy_form_the_next_batch():
    fn = Recorder(delay=0.2)

    async def main():
        b = MicroBatcher(fn, max_batch_size=16, max_wait_ms=0)
        first = asyncio.ensure_future(b.submit("k", 0))
        await asyncio.sleep(0.05)  # the worker is now busy with [0]
        rest = await asyncio.gather(*(b.submit("k", i) for i in range(1, 6)))
        await first
        await b.close()
        return rest

    assert run(main()) == [("k", i) for i in range(1, 6)]
    assert [items for _, items in fn.calls] == [[0], [1, 2, 3, 4, 5]]


def test_one_bad_item_fails_only_its_own_request():
    fn = Recorder(fail_on="bad")

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=100)
        out = await asyncio.gather(*(b.submit("k", x) for x in ["x", "bad", "y"]), return_exceptions=True)
        await b.close()
        return out

    ok1, bad, ok2 = run(main())
    assert ok1 == ("k", "x") and ok2 == ("k", "y")
    assert isinstance(bad, ValueError) and "bad" in str(bad)


def test_cancelled_requests_are_dropped_before_the_batch_runs():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=100)
        gone = asyncio.ensure_future(b.submit("k", "gone"))
        kept = asyncio.ensure_future(b.submit("k", "kept"))
        await asyncio.sleep(0.01)
        gone.cancel()
        out = await kept
        await b.close()
        return out

    assert run(main()) == ("k", "kept")
    assert fn.calls == [("k", ["kept"])]


def test_a_full_queue_refuses_and_close_fails_waiting_requests():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=5000, max_queue=2)
        waiting = [asyncio.ensure_future(b.submit("k", i)) for i in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await b.submit("k", 3)
        await b.close()
        return await asyncio.gather(*waiting, return_exceptions=True)

    out = run(main())
    assert all(isinstance(e, ShuttingDown) for e in out)
    assert fn.calls == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(Recorder(), max_wait_ms=-1)


def test_close_fails_the_batch_in_flight_and_the_batcher_starts_again():
    fn = Recorder(delay=0.3)

    async def main():
        b = MicroBatcher(fn, max_batch_size=4, max_wait_ms=0)
        busy = asyncio.ensure_future(b.submit("k", 1))
        await asyncio.sleep(0.05)
        await b.close()
        first = await asyncio.gather(busy, return_exceptions=True)
        again = await b.submit("k", 2)  # a new loop/lifespan may start it again
        await b.close()
        return first, again

    first, again = run(main())
    assert isinstance(first[0], ShuttingDown) and again == ("k", 2)


def test_refuse_waiting_answers_queued_requests_at_once_and_lets_the_running_batch_finish():
    """A server that is stopping: what waits for a batch gets ShuttingDown now (a 503), the batch
    being computed still answers, and later requests are refused until close()."""
    fn = Recorder(delay=0.3)

    async def main():
        b = MicroBatcher(fn, max_batch_size=1, max_wait_ms=0)
        jobs = [asyncio.ensure_future(b.submit("k", i)) for i in range(4)]
        await asyncio.sleep(0.05)  # item 0 is being computed, 1-3 wait
        assert b.refuse_waiting() == 3
        with pytest.raises(ShuttingDown):
            await b.submit("k", 9)
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await b.close()
        again = await b.submit("k", 5)  # closed, then started by a new lifespan: serves again
        await b.close()
        return out, again

    out, again = run(main())
    assert out[0] == ("k", 0) and all(isinstance(e, ShuttingDown) for e in out[1:])
    assert fn.calls[0] == ("k", [0]) and again == ("k", 5)


def test_refuse_waiting_while_a_batch_fills_leaves_the_batcher_able_to_close():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=300)
        job = asyncio.ensure_future(b.submit("k", 1))
        await asyncio.sleep(0.05)  # the consumer waits for the batch to fill
        assert b.refuse_waiting() == 1
        await asyncio.sleep(0.4)  # its wait ends with nothing left to run
        await b.close()  # the consumer did not die: close() returns
        again = await b.submit("k", 2)
        await b.close()
        return await asyncio.gather(job, return_exceptions=True), again

    (first,), again = run(main())
    assert isinstance(first, ShuttingDown) and again == ("k", 2) and fn.calls == [("k", [2])]
