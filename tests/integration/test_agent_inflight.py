"""Every guarantee with two calls in flight at the runtime (RUNTIME_INFLIGHT=2), in process.

The fake runtime runs one generation at a time, like the webui: of the two calls the agent keeps
there, one runs and the other waits in the runtime's queue. Waits are on events (a status record,
a call arriving), and timing assertions are lower bounds only, so a loaded machine cannot fail them.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import pytest

from contract import cancel_request_update, utcnow
from queue_agent.runtimes.base import retry_after
from tests.agent_fakes.a1111 import Behavior, FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until, task
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent

pytestmark = pytest.mark.timeout(180)

K2 = {"RUNTIME_INFLIGHT": "2"}


def _prompt(task_id: str) -> str:
    return f"a fake picture {task_id}"


async def _both_at_runtime(world: AgentWorld, a1111: FakeA1111, ids: list[str]) -> tuple[str, str]:
    """Wait until both tasks are at the runtime; return (the one running, the one waiting in its queue)."""
    await async_wait_until(lambda: len(a1111.arrivals) >= 2, 60, what="two arrivals")
    first, second = (next(i for i in ids if _prompt(i) == prompt) for prompt in a1111.arrivals[:2])
    await async_wait_until(
        lambda: world.status_of(first) == world.status_of(second) == "running", 30, what="both marked running"
    )
    return first, second


async def _cancel_one_of_two(
    world: AgentWorld, a1111: FakeA1111, cancel: Literal["running", "queued"]
) -> tuple[str, str, list[dict[str, Any]]]:
    """Two 4 s tasks both at the runtime, then a cancel request for the one ``cancel`` names; once both are
    notified and off the queue: (the task that was running, the one that was queued, the notifications)."""
    a1111.behavior = Behavior(delay=4.0)
    ids = [world.submit(task("one")), world.submit(task("two"))]
    async with running_agent(world.agent_env(a1111.base_url, **K2)):
        running, queued = await _both_at_runtime(world, a1111, ids)
        world._table().update_item(**cancel_request_update(running if cancel == "running" else queued, utcnow()))
        notes = await world.await_notifications(2, timeout=60)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 30, what="queue empty")
    return running, queued, notes


async def test_jobs_longer_than_the_visibility_timeout_run_once_each_with_two_in_flight(
    aws_env, a1111: FakeA1111
) -> None:
    # Each is held for several visibility timeouts: the second waits a whole job at the runtime first.
    world = AgentWorld(aws_env.endpoint, visibility_timeout=3).create()
    a1111.behavior = Behavior(delay=5.0)
    ids = [world.submit(task(f"long{i}")) for i in range(2)]
    async with running_agent(world.agent_env(a1111.base_url, **K2)) as agent:
        notes = await world.await_notifications(2, timeout=90)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 30, what="queue empty")
        assert agent.ctx.leases.beats >= 3
    assert sorted(a1111.prompts()) == sorted(_prompt(i) for i in ids)  # each ran exactly once
    assert world.notes_per_task() == {i: 1 for i in ids}
    assert all(n["status"] == "completed" for n in notes)
    # The second call was already at the runtime while the first ran (it arrived, then waited for the
    # worker), so the runtime went from one to the next without waiting for the agent.
    first, second = sorted(a1111.finished_calls(), key=lambda c: c.started)
    assert second.started < first.ended


async def test_cancelling_a_call_queued_at_the_runtime_leaves_the_running_one_alone(
    world: AgentWorld, a1111: FakeA1111
) -> None:
    running, queued, notes = await _cancel_one_of_two(world, a1111, "queued")
    assert {n["id"]: n["status"] for n in notes} == {queued: "cancelled", running: "completed"}
    assert a1111.interrupts == 0  # the running job was never interrupted on the queued one's behalf
    assert not a1111.finished_calls()[0].interrupted
    assert world.status_of(queued) == "cancelled" and world.objects(f"output/{queued}/") == {}
    assert world.notes_per_task() == {running: 1, queued: 1}


async def test_cancelling_the_running_call_interrupts_it_and_the_queued_one_runs(
    world: AgentWorld, a1111: FakeA1111
) -> None:
    running, queued, notes = await _cancel_one_of_two(world, a1111, "running")
    assert {n["id"]: n["status"] for n in notes} == {running: "cancelled", queued: "completed"}
    assert a1111.interrupts == 1
    calls = {str(c.payload["prompt"]): c for c in a1111.finished_calls()}
    assert calls[_prompt(running)].interrupted and not calls[_prompt(queued)].interrupted
    assert world.notes_per_task() == {running: 1, queued: 1}


async def test_job_timeout_counts_from_the_head_of_the_runtime_queue(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(delay=60.0)  # never ends by itself
    ids = [world.submit(task("slow0")), world.submit(task("slow1"))]
    env = world.agent_env(a1111.base_url, JOB_TIMEOUT_SECONDS="2", **K2)
    async with running_agent(env):
        notes = {n["id"]: n for n in await world.await_notifications(2, timeout=90)}
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 30, what="messages settled")
    for task_id in ids:
        note = notes[task_id]
        assert note["status"] == "failed" and note["error"]["code"] == "timeout", note
        assert world.status_of(task_id) == "failed"
    assert a1111.interrupts >= 2 and all(c.interrupted for c in a1111.finished_calls())
    # The second waited for the first's 2 s at the runtime before its own 2 s began: its time started
    # only once the first had left the runtime (the fake and the agent share this process's clock).
    second = next(i for i in ids if _prompt(i) == a1111.arrivals[1])
    calls = {str(c.payload["prompt"]): c for c in a1111.finished_calls()}
    first_call, second_call = calls[a1111.arrivals[0]], calls[a1111.arrivals[1]]
    assert second_call.done - first_call.done >= 2.0
    # Its reported runtime covers the wait (from its dispatch, a moment after the first's) and its own 2 s;
    # timings are rounded to 0.1 ms.
    waited = first_call.done - second_call.started
    assert waited > 0  # it was queued at the runtime behind the first
    assert notes[second]["timings"]["runtime"] >= waited + 2.0 - 1e-4
    assert world.notes_per_task() == {i: 1 for i in ids}


async def test_retry_after_is_waited_in_process(world: AgentWorld, a1111: FakeA1111) -> None:
    # Backoff alone would retry after 50-200 ms; the runtime asks for 1.5 s.
    a1111.behavior = Behavior(fail_first=2, retry_after=1.5)
    task_id = world.submit(task("asked-to-wait"))
    async with running_agent(world.agent_env(a1111.base_url, TRANSIENT_RETRIES="3", **K2)):
        (note,) = await world.await_notifications(1, timeout=60)
    assert note["status"] == "completed" and note["id"] == task_id
    calls = sorted(a1111.finished_calls(), key=lambda c: c.started)
    assert [c.status for c in calls] == [503, 503, 200]
    for before, after in itertools.pairwise(calls):
        assert after.started - before.ended >= 1.5


@pytest.mark.parametrize(("visibility", "asked", "at_least"), [(2, None, 2.0), (1, 3.0, 3.0)])
async def test_a_later_retry_waits_the_retry_visibility_or_the_runtimes_retry_after(
    world: AgentWorld, a1111: FakeA1111, visibility: int, asked: float | None, at_least: float
) -> None:
    # No in-process retries: the message goes back to SQS, and comes back no sooner than asked.
    a1111.behavior = Behavior(fail_first=1, retry_after=asked)
    task_id = world.submit(task("later"))
    env = world.agent_env(a1111.base_url, TRANSIENT_RETRIES="0", RETRY_VISIBILITY_SECONDS=str(visibility), **K2)
    async with running_agent(env):
        (note,) = await world.await_notifications(1, timeout=60)
    assert note["status"] == "completed" and note["attempts"] == 2
    failed, succeeded = sorted(a1111.finished_calls(), key=lambda c: c.started)
    assert (failed.status, succeeded.status) == (503, 200)
    assert succeeded.started - failed.ended >= at_least
    assert world.notes_per_task() == {task_id: 1}


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_headers_are_read(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds
