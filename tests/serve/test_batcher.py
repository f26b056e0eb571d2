"""Dynamic batching, with a recording test double in place of a model backend."""

import asyncio
import threading
import time

import numpy as np
import pytest

from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
)
from habitat_eqarm.serve.batcher import BatcherClosed, DynamicBatcher


class RecordingBackend(RewardBackend):
    """Test double: records each generate call's batch, echoes the request's text K times."""

    def __init__(self, delay=0.0, fail=False):
        self.calls, self.delay, self.fail = [], delay, fail
        self.threads = set()

    def sample(self, requests, params):
        self.threads.add(threading.current_thread().name)
        self.calls.append([r.messages[0]["content"] for r in requests])
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        return [GenerationResult([r.messages[0]["content"]] * params.k) for r in requests]


def request(text):
    return GenerationRequest([{"role": "user", "content": text}], np.zeros((0, 1, 1, 3), np.uint8))


async def submit_all(batcher, items, stagger=0.0):
    async def one(i, text, params):
        await asyncio.sleep(i * stagger)
        return await batcher.submit(request(text), params)

    return await asyncio.gather(*(one(i, t, p) for i, (t, p) in enumerate(items)))


def run(backend, items, stagger=0.0, **kwargs):
    async def main():
        batcher = DynamicBatcher(backend, **kwargs)
        batcher.start()
        try:
            return await submit_all(batcher, items, stagger), batcher.stats
        finally:
            await batcher.stop()

    return asyncio.run(main())


P = SamplingParams(k=2)


def test_concurrent_requests_share_calls_up_to_max_batch():
    backend = RecordingBackend()
    results, stats = run(backend, [(f"r{i}", P) for i in range(10)], max_batch=4, max_wait_ms=50)
    assert [r.texts for r in results] == [[f"r{i}"] * 2 for i in range(10)]  # each gets its own
    assert [len(c) for c in backend.calls] == [4, 4, 2]
    assert stats.to_dict()["sizes"] == {"2": 1, "4": 2} and stats.requests == 10
    assert backend.threads == {"eqarm-generate_0"}  # never on the event loop's thread


def test_a_lone_request_waits_at_most_max_wait():
    t0 = time.perf_counter()
    (result,), _ = run(RecordingBackend(), [("alone", P)], max_batch=8, max_wait_ms=100)
    elapsed = time.perf_counter() - t0
    assert result.texts == ["alone", "alone"] and 0.1 <= elapsed < 1.0
    assert result.timings["queue_s"] >= 0.09


def test_requests_arriving_while_the_model_works_form_the_next_batch():
    backend = RecordingBackend(delay=0.2)
    items = [(f"r{i}", P) for i in range(6)]
    run(backend, items, stagger=0.03, max_batch=8, max_wait_ms=0)
    # the first request runs at once (max_wait 0); the rest arrive during its 0.2 s call
    assert len(backend.calls) == 2 and len(backend.calls[1]) >= 4


def test_different_sampling_parameters_never_share_a_call():
    backend = RecordingBackend()
    items = [("a", P), ("b", SamplingParams(k=3)), ("c", P), ("d", SamplingParams(k=2, seed=1))]
    results, stats = run(backend, items, max_batch=8, max_wait_ms=50)
    assert sorted(backend.calls) == [["a", "c"], ["b"], ["d"]]
    assert [len(r.texts) for r in results] == [2, 3, 2, 2] and stats.batches == 1


def test_max_batch_one_runs_each_request_alone():
    backend = RecordingBackend()
    run(backend, [(f"r{i}", P) for i in range(5)], max_batch=1, max_wait_ms=50)
    assert [len(c) for c in backend.calls] == [1] * 5


def test_a_failing_call_fails_each_of_its_requests():
    backend = RecordingBackend(fail=True)
    with pytest.raises(RuntimeError, match="model exploded"):
        run(backend, [("a", P), ("b", P)], max_batch=8, max_wait_ms=20)


def test_stop_finishes_queued_work_and_refuses_new():
    async def main():
        backend = RecordingBackend(delay=0.05)
        batcher = DynamicBatcher(backend, max_batch=2, max_wait_ms=0)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(request(f"r{i}"), P)) for i in range(5)]
        await asyncio.sleep(0.01)
        await batcher.stop()
        assert all(f.done() and not f.exception() for f in pending)
        with pytest.raises(BatcherClosed):
            await batcher.submit(request("late"), P)
        return backend.calls

    assert sum(len(c) for c in asyncio.run(main())) == 5
