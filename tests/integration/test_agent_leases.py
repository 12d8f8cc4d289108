"""The visibility heartbeat against SQS (moto over HTTP): held messages stay invisible, released ones return."""

from __future__ import annotations

import asyncio
import time

import aioboto3
import pytest

from queue_agent.job import Delivery
from queue_agent.leases import Leases
from queue_agent.sqs import TaskQueue
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until
from tests.agent_fakes.fixtures import world_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(60)


async def test_held_messages_stay_invisible_and_released_ones_come_back(world: AgentWorld) -> None:
    sqs_sync = world.client("sqs")
    for n in range(3):
        sqs_sync.send_message(QueueUrl=world.queue_url, MessageBody=f"m{n}")
    async with aioboto3.Session().client("sqs", endpoint_url=world.endpoint) as sqs:
        queue = TaskQueue(sqs, world.queue_url)
        info = await queue.info()
        assert (info.visibility_timeout, info.max_receive_count) == (3, 3)
        # A beat may be 2.5 s late before a message would reappear: wide enough for a loaded machine.
        leases = Leases(queue, extension=3, interval=0.5)
        deliveries: list[Delivery] = []
        while len(deliveries) < 3:
            deliveries += await queue.receive(3, 1, visibility_timeout=leases.visibility_seconds)
        for d in deliveries:
            leases.hold(d.receipt_handle, since=d.received_at)
        beating = asyncio.create_task(leases.run())
        try:
            # Three extensions' worth of time: without the heartbeat all three would be back by now.
            deadline = time.monotonic() + 9
            while time.monotonic() < deadline:
                assert await asyncio.to_thread(world.queue_counts) == (0, 3)
                await asyncio.sleep(0.25)
            released = deliveries[0]
            leases.release(released.receipt_handle)
            await async_wait_until(lambda: world.queue_counts() == (1, 2), 30, what="released message visible")
            # The one that came back is the released one; the others are still held.
            back = sqs_sync.receive_message(QueueUrl=world.queue_url, VisibilityTimeout=30)["Messages"]
            assert [m["Body"] for m in back] == [released.body]
        finally:
            beating.cancel()
        assert leases.beats >= 8 and len(leases) == 2


async def test_a_message_that_is_no_longer_held_is_dropped_from_the_heartbeat(world: AgentWorld) -> None:
    sqs_sync = world.client("sqs")
    sqs_sync.send_message(QueueUrl=world.queue_url, MessageBody="a")
    sqs_sync.send_message(QueueUrl=world.queue_url, MessageBody="b")
    async with aioboto3.Session().client("sqs", endpoint_url=world.endpoint) as sqs:
        queue = TaskQueue(sqs, world.queue_url)
        leases = Leases(queue, extension=2, interval=0.5)
        deliveries: list[Delivery] = []
        while len(deliveries) < 2:
            deliveries += await queue.receive(2, 1, visibility_timeout=2)
        for d in deliveries:
            leases.hold(d.receipt_handle, since=d.received_at - 1)  # due at the next beat
        gone, kept = deliveries
        sqs_sync.delete_message(QueueUrl=world.queue_url, ReceiptHandle=gone.receipt_handle)
        await leases.beat()
        assert not leases.held(gone.receipt_handle) and leases.held(kept.receipt_handle)
        assert await queue.delete(kept.receipt_handle) is True
        assert await queue.set_visibility(gone.receipt_handle, 0) is False  # stale receipts are not errors
