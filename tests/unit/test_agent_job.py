"""A received message as a Job: body formats, identity of broken messages, timings; plus the retry policy."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from contract import TaskType
from queue_agent.errors import PermanentError, TransientError
from queue_agent.job import Delivery, Disposition, Job, Outcome, Span
from queue_agent.retry import RetryPolicy
from queue_agent.stages.receiver import Slots
from tests.agent_fakes.aws_world import task


def delivery(body: str) -> Delivery:
    return Delivery(
        message_id="m-1",
        receipt_handle="r-1",
        body=body,
        receive_count=1,
        sent_epoch=time.time() - 2.0,
        trace_header=None,
        received_at=time.monotonic(),
        receive_wait=0.01,
        received_epoch=time.time(),
    )


def test_raw_request_and_sns_envelope_parse_to_the_same_task() -> None:
    body = json.dumps(task("same", "image-to-image", {"prompt": "p", "init_images": ["aGVsbG8="]}))
    envelope = json.dumps({"Type": "Notification", "MessageId": "x", "Message": body})
    raw, wrapped = Job.from_delivery(delivery(body)), Job.from_delivery(delivery(envelope))
    assert raw.message is not None and wrapped.message is not None
    assert raw.message.id == wrapped.message.id == "same"
    assert raw.message.tasktype is TaskType.IMAGE_TO_IMAGE and raw.message.content == wrapped.message.content


def test_sqs_attributes_are_read() -> None:
    msg = {
        "MessageId": "m",
        "ReceiptHandle": "r",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123", "AWSTraceHeader": "Root=1-a"},
    }
    d = Delivery.from_sqs(msg, received_at=5.0, receive_wait=0.2)
    assert (d.receive_count, d.sent_epoch, d.trace_header) == (3, 1700000000.123, "Root=1-a")


@pytest.mark.parametrize(
    ("body", "task_id", "context"),
    [
        (json.dumps(task("named", content={"prompt": "x", "steps": 10**6}, context={"k": 1})), "named", {"k": 1}),
        (
            json.dumps({"Type": "Notification", "Message": json.dumps(task("wrapped", content={"steps": -1}))}),
            "wrapped",
            None,
        ),
        (json.dumps(task("bad id!", content={"steps": -1})), "m-1", None),
        ("not json at all", "m-1", None),
        ("[1, 2]", "m-1", None),
    ],
)
def test_a_broken_message_keeps_whatever_identity_can_be_trusted(body: str, task_id: str, context: object) -> None:
    job = Job.from_delivery(delivery(body))
    assert job.message is None and job.contract_error is not None
    assert job.task_id == task_id and job.fallback_context == context


def test_timings_cover_the_phases_that_happened() -> None:
    job = Job.from_delivery(delivery(json.dumps(task("t"))))
    start = job.delivery.received_at
    assert set(job.timings(now=start + 1)) == {"receive_wait", "queue_time", "total"}
    ran = Outcome(Disposition.COMPLETED, run=Span(start + 0.25, start + 1.25), upload=Span(start + 1.3, start + 1.4))
    timings = job.timings(ran, now=start + 1.5)
    assert timings["prefetch_wait"] == 0.25 and timings["runtime"] == 1.0 and timings["upload"] == 0.1
    assert timings["total"] == 1.5 and 1.9 <= timings["queue_time"] < 2.5


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(retries=5, backoff=1.0, backoff_max=5.0)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (8, 5.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)


async def test_transient_errors_are_retried_and_permanent_ones_are_not() -> None:
    policy = RetryPolicy(retries=2, backoff=0.0, backoff_max=0.0)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("busy")
        return "ok"

    retried: list[int] = []
    assert await policy.run(flaky, "step", lambda: retried.append(1)) == "ok"
    assert len(calls) == 3 and len(retried) == 2

    async def tries_of_always(error: Exception) -> int:
        """How many times the policy runs a step that always raises ``error`` (which it raises in the end)."""
        tries: list[int] = []

        async def failing() -> str:
            tries.append(1)
            raise error

        with pytest.raises(type(error)):
            await policy.run(failing, "step")
        return len(tries)

    assert await tries_of_always(TransientError("busy")) == 3  # 1 try + 2 retries
    assert await tries_of_always(PermanentError("no")) == 1


async def test_slots_bound_what_the_receiver_may_hold() -> None:
    slots = Slots(2)
    assert await slots.take_all() == 2  # the receiver asks for as many messages as slots are free
    waiting = asyncio.create_task(slots.take_all())
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing free: no receive at all
    slots.give_back()
    assert await asyncio.wait_for(waiting, 1) == 1
    slots.give_back(5)
    assert slots.free == 2  # never more than the size, whatever is given back
