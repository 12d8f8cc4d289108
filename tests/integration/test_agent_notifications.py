"""Notifications always fit: one over SNS's 256 KiB cap goes out slim, and the full one waits in S3.

Real SNS (moto over HTTP, which enforces the cap) delivering to a real SQS subscriber; the second test runs
the real agent on a task whose full notification would be refused.
"""

from __future__ import annotations

import json

import aioboto3
import pytest
from botocore.exceptions import ClientError

from contract import SNS_MAX_MESSAGE_BYTES, ErrorInfo, Notification, QueueMessage, TaskType
from queue_agent.notifier import Notifier
from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import REGION, AgentWorld
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent

pytestmark = pytest.mark.timeout(120)


def _big(task_id: str = "big") -> Notification:
    return Notification(
        id=task_id,
        runtime="sdruntime",
        status="failed",
        result=False,
        context={"blob": "x" * (SNS_MAX_MESSAGE_BYTES + 1000)},
        error=ErrorInfo(code="runtime_rejected", message="y" * 5000),
    )


async def _publish(world: AgentWorld, notification: Notification, prefix: str = "output") -> None:
    session = aioboto3.Session()
    async with (
        session.client("sns", endpoint_url=world.endpoint, region_name=REGION) as sns,
        session.client("s3", endpoint_url=world.endpoint, region_name=REGION) as s3,
    ):
        await Notifier(sns, world.results_topic, s3=s3, bucket=world.bucket).publish(notification, prefix)


async def test_sns_refuses_the_full_notification(world: AgentWorld) -> None:
    # What happened before: the publish itself fails, and the task is never announced.
    session = aioboto3.Session()
    async with session.client("sns", endpoint_url=world.endpoint, region_name=REGION) as sns:
        with pytest.raises(ClientError):
            await sns.publish(TopicArn=world.results_topic, Message=_big().model_dump_json())


async def test_an_oversized_notification_goes_out_slim_and_the_full_one_is_in_s3(world: AgentWorld) -> None:
    await _publish(world, _big(), prefix="team/a")
    (note,) = world.notifications()
    assert note["truncated"] is True
    assert note["id"] == "big" and note["status"] == "failed" and note["result"] is False
    assert note["context"] is None and note["image_url"] == []
    assert note["error"]["code"] == "runtime_rejected" and len(note["error"]["message"]) == 1000
    assert note["_attributes"] == {"runtime": "sdruntime", "status": "failed"}
    assert note["full_url"] == f"s3://{world.bucket}/team/a/big/big.notification.json"
    full = json.loads(world.objects("team/a/big/")["team/a/big/big.notification.json"])
    assert full == _big().model_dump(mode="json")


async def test_a_notification_that_fits_goes_out_whole(world: AgentWorld) -> None:
    small = Notification(id="small", runtime="sdruntime", status="completed", result=True, context={"k": 1})
    await _publish(world, small)
    (note,) = world.notifications()
    assert note["truncated"] is False and note["full_url"] is None and note["context"] == {"k": 1}
    assert world.objects("output/small/") == {}


async def test_the_agent_announces_a_task_whose_full_notification_would_not_fit(
    world: AgentWorld, a1111: FakeA1111
) -> None:
    # A message put on the queue without the API (which bounds context): near-cap context, 64 outputs with long
    # URLs. The message fits SQS; the notification listing the outputs would not fit SNS.
    task_id = "n" * 64
    message = QueueMessage(
        id=task_id,
        runtime=world.runtime,
        tasktype=TaskType.TEXT_TO_IMAGE,
        prefix="p" * 200,
        context={"blob": "c" * 250_000},
        content={"prompt": "a", "batch_size": 8, "n_iter": 8},
    )
    body = message.model_dump_json()
    assert len(body) < SNS_MAX_MESSAGE_BYTES
    world.send_raw(body)
    async with running_agent(world.agent_env(a1111.base_url)):
        (note,) = await world.await_notifications(1)
    assert note["status"] == "completed" and note["truncated"] is True and note["context"] is None
    full = json.loads(
        world.objects(f"{message.prefix}/{task_id}/")[f"{message.prefix}/{task_id}/{task_id}.notification.json"]
    )
    assert len(full["image_url"]) == 64 and full["context"] == message.context
    assert world.status_of(task_id) == "completed"
