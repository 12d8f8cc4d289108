"""Dead letters: the DLQ consumer (the real Lambda handler, fed SQS events built from moto's DLQ) fails and
announces what the agents could not, and ``sdq redrive`` (the real CLI against moto over HTTP) runs them again.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from task_api import dead_letters

from contract.layout import dead_letter_prefix
from local_stack.gateway_events import LambdaContext
from sdq.cli import main as sdq
from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, task
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent

pytestmark = pytest.mark.timeout(120)

CONTEXT = LambdaContext(function_name="dead-letters-test")


@pytest.fixture
def consumer_env(world: AgentWorld, monkeypatch: pytest.MonkeyPatch) -> AgentWorld:
    monkeypatch.setenv("STATUS_TABLE", world.table)
    monkeypatch.setenv("RESULTS_TOPIC_ARN", world.results_topic)
    monkeypatch.setenv("OUTPUT_BUCKET", world.bucket)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    return world


def dead_letter(world: AgentWorld, task_id: str, **status: Any) -> None:
    """Submit a task and do what SQS does once its deliveries ran out: move the message to the DLQ."""
    world.submit(task(task_id), via="sqs")
    if status:
        world.update_status(task_id, **status)
    sqs = world.client("sqs")
    [message] = sqs.receive_message(QueueUrl=world.queue_url, WaitTimeSeconds=0)["Messages"]
    sqs.send_message(QueueUrl=world.dlq_url, MessageBody=message["Body"])
    sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=message["ReceiptHandle"])


def consume_dlq(world: AgentWorld) -> dict[str, Any]:
    """One invocation of the consumer with what the DLQ holds, as the SQS event source delivers it; the
    records it does not report as failed are deleted (what the event source does)."""
    sqs = world.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=world.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(QueueUrl=world.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    event = {
        "Records": [
            {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"], "eventSourceARN": arn}
            for m in messages
        ]
    }
    answer = dead_letters.handler(event, CONTEXT)
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=world.dlq_url, ReceiptHandle=m["ReceiptHandle"])
    return {"event": event, "answer": answer}


def test_a_dead_lettered_task_is_failed_and_announced_once(consumer_env: AgentWorld) -> None:
    world = consumer_env
    dead_letter(world, "oom", status="running")  # its agent was OOM-killed while running it
    first = consume_dlq(world)
    assert first["answer"] == {"batchItemFailures": []}
    record = world.status("oom")
    assert record is not None and record["status"] == "failed"
    assert record["error"]["code"] == "dead_lettered" and record["notified"] == "failed"
    # The same record delivered again (the event source retries a batch) announces nothing more.
    dead_letters.handler(first["event"], CONTEXT)
    notes = world.notifications()
    assert [(n["id"], n["status"], n["error"]["code"]) for n in notes] == [("oom", "failed", "dead_lettered")]
    assert notes[0]["_attributes"] == {"runtime": "sdruntime", "status": "failed"}


def test_tasks_already_finished_are_left_alone(consumer_env: AgentWorld) -> None:
    world = consumer_env
    # The agent failed this one on its last delivery (and announced it); that one completed meanwhile.
    dead_letter(world, "gave-up", status="failed", notified="failed", error={"code": "runtime_error", "message": "x"})
    dead_letter(world, "done", status="completed", notified="completed")
    consume_dlq(world)
    assert world.status_of("gave-up") == "failed" and world.status("gave-up")["error"]["code"] == "runtime_error"
    assert world.status_of("done") == "completed"
    assert world.notifications() == []


async def test_redrive_runs_dead_lettered_tasks_again(
    consumer_env: AgentWorld, a1111: FakeA1111, tmp_path: Path
) -> None:
    world = consumer_env
    dead_letter(world, "consumed", status="running")
    consume_dlq(world)  # failed and announced, kept in the archive, gone from the DLQ
    dead_letter(world, "still-in-dlq", status="running")  # not consumed yet
    world.client("sqs").send_message(QueueUrl=world.dlq_url, MessageBody="not a task")
    assert world.status_of("consumed") == "failed"
    local = tmp_path / "local.json"
    resources = {
        "table": world.table,
        "bucket": world.bucket,
        "runtimes": {"sdruntime": {"queue_url": world.queue_url, "dlq_url": world.dlq_url}},
    }
    local.write_text(json.dumps({"endpoint": "http://unused", "aws_endpoint": world.endpoint, "resources": resources}))
    out = io.StringIO()
    assert sdq(["redrive", "sdruntime", "--local-file", str(local)], out=out) == 0
    assert "2 task(s) requeued" in out.getvalue() and "1 dead letter(s) that are no task kept" in out.getvalue()
    for task_id in ("consumed", "still-in-dlq"):
        record = world.status(task_id)
        assert record is not None and record["status"] == "queued" and "notified" not in record
    listing = world.client("s3").list_objects_v2(
        Bucket=world.bucket, Prefix=dead_letter_prefix(world.dlq_url.rsplit("/", 1)[-1])
    )
    assert listing.get("KeyCount", 0) == 0, "the archive is emptied by the redrive"
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = await world.await_notifications(3)  # the consumer's "failed", then two completions
    finished = {n["id"]: n["status"] for n in notes[1:]}
    assert finished == {"consumed": "completed", "still-in-dlq": "completed"}
    assert world.status_of("consumed") == "completed" and len(a1111.finished_calls(200)) == 2
