"""Time-to-live and priority through the real agent, moto over HTTP and a fake AUTOMATIC1111 that logs every call.

- A task that has not started within ``ttl_seconds`` ends ``expired``, with its notification, and the
  runtime never sees it: whether the deadline passed before the agent received it, or while it waited
  behind a busy runtime (checked again just before dispatch).
- A ``high`` task submitted behind a queue of normal ones goes to the high-priority queue, which the agent
  reads first: it finishes before most of them. The normal queue is not starved meanwhile.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contract import parse_request, to_queue_message
from local_stack.moto_server import MotoServer
from sdq.cli import main as sdq
from tests.agent_fakes.a1111 import Behavior, FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until, task
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent


def _prompt(task_id: str) -> str:
    return f"a fake picture {task_id}"


async def test_a_task_past_its_deadline_at_receive_never_runs(world: AgentWorld, a1111: FakeA1111) -> None:
    long_ago = datetime.now(UTC) - timedelta(seconds=30)
    world.submit(task("stale", ttl_seconds=5), submitted_at=long_ago)
    world.submit(task("fresh", ttl_seconds=600))
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = {n["id"]: n for n in await world.await_notifications(2)}
    assert notes["stale"]["status"] == "expired" and notes["stale"]["result"] is False
    assert notes["stale"]["error"]["code"] == "expired"
    assert notes["fresh"]["status"] == "completed"
    assert world.status_of("stale") == "expired"
    assert _prompt("stale") not in a1111.arrivals  # the runtime's call log: never sent
    assert _prompt("fresh") in a1111.prompts()


async def test_a_task_that_expires_behind_a_busy_runtime_never_runs(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(delay=3.0)
    world.submit(task("busy"))
    env = world.agent_env(a1111.base_url, RUNTIME_INFLIGHT="1", PREFETCH="1", VISIBILITY_EXTENSION_SECONDS="30")
    async with running_agent(env):
        # Submitted only once the runtime is busy: SQS does not keep order, so both at once could run "late" first.
        await async_wait_until(lambda: len(a1111.arrivals) >= 1, 30, what="the busy task's call")
        world.submit(task("late", ttl_seconds=2))
        notes = {n["id"]: n for n in await world.await_notifications(2, timeout=60)}
    assert notes["busy"]["status"] == "completed"
    assert notes["late"]["status"] == "expired"
    assert world.status_of("late") == "expired"
    assert a1111.arrivals == [_prompt("busy")]
    assert world.notes_per_task()["late"] == 1


async def test_a_started_task_is_never_expired(world: AgentWorld, a1111: FakeA1111) -> None:
    # An earlier delivery marked it running, then died: a redelivery past the deadline finishes it.
    long_ago = datetime.now(UTC) - timedelta(seconds=30)
    world.submit(task("started", ttl_seconds=5), submitted_at=long_ago)
    world.update_status("started", status="running")
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = await world.await_notifications(1)
    assert notes[0]["status"] == "completed"
    assert _prompt("started") in a1111.prompts()


async def test_a_high_priority_task_overtakes_the_normal_queue(aws_env: MotoServer, a1111: FakeA1111) -> None:
    world = AgentWorld(aws_env.endpoint, high_queue=True).create()
    a1111.behavior = Behavior(delay=0.3)
    normal = [world.submit(task(f"normal{i}")) for i in range(8)]
    assert world.queue_counts(world.queue_url)[0] == 8 and world.queue_counts(world.high_queue_url)[0] == 0
    env = world.agent_env(a1111.base_url, RUNTIME_INFLIGHT="1", PREFETCH="1")
    async with running_agent(env):
        await async_wait_until(lambda: len(a1111.arrivals) >= 1, 30, what="the first call")
        world.submit(task("urgent", priority="high"))
        notes = await world.await_notifications(9, timeout=60)
    order = [n["id"] for n in notes]
    assert set(order) == {*normal, "urgent"}
    # At most the call at the runtime and the prefetched one were ahead of it, plus one receive's grace.
    assert order.index("urgent") <= 3, order
    assert world.status("urgent")["priority"] == "high"  # type: ignore[index]


async def test_the_normal_queue_is_not_starved(aws_env: MotoServer, a1111: FakeA1111) -> None:
    world = AgentWorld(aws_env.endpoint, high_queue=True).create()
    for i in range(12):
        world.submit(task(f"hi{i}", priority="high"))
    world.submit(task("lonely"))
    env = world.agent_env(a1111.base_url, RUNTIME_INFLIGHT="1", PREFETCH="0", NORMAL_QUEUE_SHARE="0.25")
    async with running_agent(env):
        notes = await world.await_notifications(13, timeout=60)
    order = [n["id"] for n in notes]
    # One receive in four looks at the normal queue first: the lonely task does not wait for all twelve.
    assert order.index("lonely") < 12, order


async def test_the_deployed_agent_reads_its_webhook_secret_from_secrets_manager(aws_env: MotoServer) -> None:
    import boto3

    from queue_agent.agent import _webhook_secret
    from queue_agent.settings import load_settings

    stored = "Q7rT2xWk9pLm3vB8nC4dF6gH1jK5sZ0aY2eU7iO9"  # as generate_secret_string makes it: letters, digits
    client = boto3.client("secretsmanager", endpoint_url=aws_env.endpoint, region_name="us-east-1")
    arn = client.create_secret(Name="hooks-webhook-secret", SecretString=stored)["ARN"]
    base = {"SQS_QUEUE_URL": "http://127.0.0.1/q", "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "S3_BUCKET": "bkt",
            "RUNTIME_NAME": "sdruntime"}
    assert await _webhook_secret(load_settings({**base, "WEBHOOK_SECRET_ARN": arn}), None) == "whsec_" + stored
    assert await _webhook_secret(load_settings(base), None) is None
    local = load_settings({**base, "WEBHOOK_SECRET": "whsec_abc", "WEBHOOK_SECRET_ARN": arn})
    assert await _webhook_secret(local, None) == "whsec_abc"  # the local stack's wins


def test_redrive_puts_a_high_priority_task_back_on_the_high_queue(aws_env: MotoServer, tmp_path: Path) -> None:
    world = AgentWorld(aws_env.endpoint, high_queue=True).create()
    sqs = world.client("sqs")
    for task_id, priority in (("dead-high", "high"), ("dead-normal", "normal")):
        message = to_queue_message(parse_request(task(task_id, priority=priority), runtimes={world.runtime}))
        sqs.send_message(QueueUrl=world.dlq_url, MessageBody=message.model_dump_json())
    local = tmp_path / "local.json"
    queues = {"queue_url": world.queue_url, "dlq_url": world.dlq_url, "high_queue_url": world.high_queue_url}
    resources = {"table": world.table, "bucket": world.bucket, "runtimes": {world.runtime: queues}}
    local.write_text(json.dumps({"endpoint": "http://unused", "aws_endpoint": world.endpoint, "resources": resources}))
    assert sdq(["redrive", world.runtime, "--local-file", str(local)], out=io.StringIO()) == 0
    assert world.queue_counts(world.high_queue_url)[0] == 1
    assert world.queue_counts(world.queue_url)[0] == 1
