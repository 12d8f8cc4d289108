"""The micro-batcher's grouping rules. The runner is a recording coroutine; the real one runs in the
integration tests (tests/integration/test_runtime_lifecycle.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from inference_api.batcher import MicroBatcher, QueueFull


@dataclass(frozen=True)
class Job:
    name: str
    key: str = "k"
    image_count: int = 1
    mergeable: bool = True

    def batch_key(self) -> str:
        return self.key


class Recorder:
    """Runs batches only when released, so tests decide when the worker is busy."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.fail_on: str | None = None

    async def __call__(self, jobs: list[Job]) -> list[object]:
        self.started.set()
        await self.gate.wait()
        self.batches.append([j.name for j in jobs])
        if self.fail_on and any(j.name == self.fail_on for j in jobs):
            raise RuntimeError("boom")
        return [f"done:{j.name}" for j in jobs]


async def _submit_all(batcher: MicroBatcher, jobs: list[Job]) -> list[object]:
    return await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)


async def test_compatible_jobs_queued_while_busy_share_the_next_batch() -> None:
    runner = Recorder()
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=4, window=0)
    batcher.start()
    runner.gate.clear()
    first = asyncio.create_task(batcher.submit(Job("a")))
    await runner.started.wait()  # "a" is running; the rest queue up behind it
    rest = [asyncio.create_task(batcher.submit(Job(n))) for n in ("b", "c", "d")]
    await asyncio.sleep(0)
    while batcher.waiting < 3:
        await asyncio.sleep(0)
    runner.gate.set()
    assert await first == "done:a"
    assert [await t for t in rest] == ["done:b", "done:c", "done:d"]
    assert runner.batches == [["a"], ["b", "c", "d"]]
    assert batcher.stats.merged_batches == 1 and batcher.stats.merged_requests == 3
    await batcher.stop()


async def test_incompatible_jobs_wait_in_order_and_max_batch_counts_images() -> None:
    runner = Recorder()
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=3, window=0)
    runner.gate.clear()
    batcher.start()
    blocker = asyncio.create_task(batcher.submit(Job("blocker", key="z")))
    await runner.started.wait()
    jobs = [Job("a1"), Job("b1", key="other"), Job("a2", image_count=2), Job("a3"), Job("solo", mergeable=False)]
    tasks = [asyncio.create_task(batcher.submit(j)) for j in jobs]
    while batcher.waiting < len(jobs):
        await asyncio.sleep(0)
    runner.gate.set()
    await blocker
    await asyncio.gather(*tasks)
    # a1 + a2 fill 3 images; b1 (other key) and a3 wait their turn in arrival order; "solo" never merges.
    assert runner.batches == [["blocker"], ["a1", "a2"], ["b1"], ["a3"], ["solo"]]
    await batcher.stop()


async def _taken(batcher: MicroBatcher, runner: Recorder) -> None:
    """Until the collector has taken every submitted job (and runs none yet)."""
    await asyncio.sleep(0)  # let the submitting task run first
    while batcher.waiting:
        await asyncio.sleep(0)
    assert not runner.started.is_set()


async def test_window_gathers_requests_that_arrive_after_the_first() -> None:
    runner = Recorder()
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=3, window=30)
    batcher.start()
    first = asyncio.create_task(batcher.submit(Job("a")))
    await _taken(batcher, runner)  # "a" is held, waiting for companions: the idle worker does not start
    second = asyncio.create_task(batcher.submit(Job("b")))
    await _taken(batcher, runner)  # a late "b" joins the held batch
    third = asyncio.create_task(batcher.submit(Job("c")))
    # The third fills the batch, which leaves at once: the 30 s window is only an upper bound.
    results = await asyncio.wait_for(asyncio.gather(first, second, third), timeout=10)
    assert results == ["done:a", "done:b", "done:c"] and runner.batches == [["a", "b", "c"]]
    await batcher.stop()


async def test_without_a_window_an_idle_worker_starts_the_first_request_alone() -> None:
    runner = Recorder()
    runner.gate.clear()
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=3, window=0)
    batcher.start()
    first = asyncio.create_task(batcher.submit(Job("a")))
    await runner.started.wait()
    late = asyncio.create_task(batcher.submit(Job("b")))
    runner.gate.set()
    assert await asyncio.gather(first, late) == ["done:a", "done:b"]
    assert runner.batches == [["a"], ["b"]]
    await batcher.stop()


async def test_a_failing_batch_fails_its_callers_and_the_loop_goes_on() -> None:
    runner = Recorder()
    runner.fail_on = "bad"
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=1, window=0)
    batcher.start()
    results = await _submit_all(batcher, [Job("bad"), Job("good")])
    assert isinstance(results[0], RuntimeError) and results[1] == "done:good"
    await batcher.stop()


async def test_per_job_exceptions_from_the_runner_reach_only_their_caller() -> None:
    async def runner(jobs: list[Job]) -> list[object]:
        return [ValueError(j.name) if j.name == "x" else j.name for j in jobs]

    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=2, window=5)
    batcher.start()
    results = await _submit_all(batcher, [Job("x"), Job("y")])
    assert isinstance(results[0], ValueError) and results[1] == "y"
    await batcher.stop()


async def test_cancelled_callers_are_skipped() -> None:
    runner = Recorder()
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=1, window=0)
    runner.gate.clear()
    batcher.start()
    busy = asyncio.create_task(batcher.submit(Job("busy")))
    await runner.started.wait()
    gone = asyncio.create_task(batcher.submit(Job("gone")))
    kept = asyncio.create_task(batcher.submit(Job("kept")))
    while batcher.waiting < 2:
        await asyncio.sleep(0)
    gone.cancel()
    while batcher.waiting > 1:  # the cancelled caller's job leaves the queue at once
        await asyncio.sleep(0)
    runner.gate.set()
    assert await busy == "done:busy" and await kept == "done:kept"
    assert runner.batches == [["busy"], ["kept"]]
    await batcher.stop()


async def test_the_queue_is_bounded() -> None:
    runner = Recorder()
    runner.gate.clear()
    batcher: MicroBatcher[Job] = MicroBatcher(runner, max_batch=1, window=0, max_waiting=1)
    batcher.start()
    busy = asyncio.create_task(batcher.submit(Job("busy")))
    await runner.started.wait()
    queued = asyncio.create_task(batcher.submit(Job("queued")))
    while batcher.waiting < 1:
        await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await batcher.submit(Job("refused"))
    runner.gate.set()
    assert await asyncio.gather(busy, queued) == ["done:busy", "done:queued"]
    assert runner.batches == [["busy"], ["queued"]]
    await batcher.stop()


def test_max_batch_must_be_positive() -> None:
    async def runner(jobs: list[Job]) -> list[object]:
        return []

    with pytest.raises(ValueError):
        MicroBatcher(runner, max_batch=0)
