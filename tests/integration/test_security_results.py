"""Results belong to their submission: the real agent (or its result store) against moto over HTTP.

Attacks and accidents: a reused task id that would "complete" at once with another task's images, a
redelivery that must re-announce its own result and nothing else, and a duplicate run (lost lease) that
must not overwrite images already announced.
"""

from __future__ import annotations

import json

import aioboto3
import pytest

from contract import QueueMessage, image_key, output_key, parse_request, to_queue_message
from queue_agent.job import Artifact, RuntimeResult
from queue_agent.results import ResultStore
from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, task
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent

pytestmark = pytest.mark.timeout(120)


def out_document(world: AgentWorld, task_id: str) -> dict:
    return json.loads(world.objects(f"output/{task_id}/")[output_key("output", task_id)])


async def test_a_reused_id_runs_afresh_instead_of_taking_the_old_outputs(world: AgentWorld, a1111: FakeA1111) -> None:
    body = task("reused", content={"prompt": "the first holder's picture", "steps": 4})
    env = world.agent_env(a1111.base_url)
    async with running_agent(env):
        world.submit(body, nonce="first")
        [first] = await world.await_notifications(1)
        assert out_document(world, "reused")["nonce"] == "first"
        # The record expires (TTL); the outputs are still there when someone submits the same id, same body.
        world.client("dynamodb").delete_item(TableName=world.table, Key={"id": {"S": "reused"}})
        world.submit(body, nonce="second")
        notes = await world.await_notifications(2)
    assert [n["status"] for n in notes] == ["completed", "completed"]
    assert len(a1111.finished_calls(200)) == 2, "the second submission must run, not adopt the first one's .out"
    assert out_document(world, "reused")["nonce"] == "second"
    head = world.client("s3").head_object(Bucket=world.bucket, Key=image_key("output", "reused", 1))
    assert head["Metadata"]["nonce"] == "second"
    assert notes[1]["image_url"] == first["image_url"]  # same keys: the layout is deterministic


async def test_a_redelivery_re_announces_its_own_result_without_running(world: AgentWorld, a1111: FakeA1111) -> None:
    body = task("again")
    async with running_agent(world.agent_env(a1111.base_url)):
        world.submit(body, nonce="n1")
        [first] = await world.await_notifications(1)
        # The agent died after storing the result but before the record and the announcement: the same
        # submission comes back (same nonce) to a record that still says queued.
        world.client("dynamodb").delete_item(TableName=world.table, Key={"id": {"S": "again"}})
        world.submit(body, nonce="n1")
        notes = await world.await_notifications(2)
    assert len(a1111.finished_calls(200)) == 1, "its own stored result is re-announced, not recomputed"
    assert notes[1]["status"] == "completed" and notes[1]["image_url"] == first["image_url"]


def message(nonce: str, prompt: str = "p") -> QueueMessage:
    request = parse_request(task("dup", content={"prompt": prompt}), runtimes={"sdruntime"})
    return to_queue_message(request, nonce=nonce)


def result(data: bytes) -> RuntimeResult:
    return RuntimeResult([Artifact(data, "png", "image/png")], {"parameters": {}, "info": data.decode()})


async def test_a_duplicate_run_never_overwrites_an_announced_result(world: AgentWorld) -> None:
    key = image_key("output", "dup", 1)
    async with aioboto3.Session().client("s3", endpoint_url=world.endpoint) as s3:
        store = ResultStore(s3, world.bucket)
        first = await store.write(message("n1"), result(b"run A"))
        # A second run of the same submission (its lease was lost while it ran) finishes later.
        second = await store.write(message("n1"), result(b"run B"))
        assert second == first
        assert world.objects("output/dup/")[key] == b"run A"
        assert out_document(world, "dup")["info"] == "run A"
        # Another submission that holds the id now (the first one's record expired) replaces everything.
        await store.write(message("n2", "new"), result(b"new holder"))
        assert world.objects("output/dup/")[key] == b"new holder"
        assert out_document(world, "dup")["nonce"] == "n2"


async def test_an_unfinished_attempts_leftovers_are_replaced(world: AgentWorld) -> None:
    key = image_key("output", "dup", 1)
    # An attempt of this submission crashed after uploading an image, before its .out: nothing was announced.
    meta = {"nonce": "n1", "fingerprint": message("n1").fingerprint}
    world.client("s3").put_object(Bucket=world.bucket, Key=key, Body=b"crashed attempt", Metadata=meta)
    async with aioboto3.Session().client("s3", endpoint_url=world.endpoint) as s3:
        stored = await ResultStore(s3, world.bucket).write(message("n1"), result(b"retry"))
    assert world.objects("output/dup/")[key] == b"retry"
    assert stored.image_url == [f"s3://{world.bucket}/{key}"]
