"""Every real payload of the replaced sample, and our own of the same shapes, validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract import ContractError, TaskType, parse_queue_body, parse_request, to_queue_message
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES

OWN = sorted((TEST_FIXTURES / "requests-v1alpha2").glob("*.json"))
SHARED = sorted((SHARED_FIXTURES / "requests-v1alpha2").glob("*.json")) if SHARED_FIXTURES.exists() else []


def test_own_fixtures_cover_every_task_type() -> None:
    types = {json.loads(p.read_text())["task"]["metadata"]["tasktype"] for p in OWN}
    assert types == {t.value for t in TaskType}


@pytest.mark.parametrize("path", OWN + SHARED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_fixture_validates_and_normalizes(path: Path) -> None:
    raw = path.read_bytes()
    request = parse_request(raw, runtimes={"sdruntime"})
    original = json.loads(raw)["task"]
    assert request.task.metadata.id == original["metadata"]["id"]
    message = to_queue_message(request)
    # The content travels exactly as the client wrote it.
    assert message.content == original["content"]
    assert parse_queue_body(message.model_dump_json()) == message


PIPELINES = [p for p in OWN + SHARED if p.name == "pipeline.json"]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.parent.parent.name)
def test_pipeline_is_a_comfyui_workflow(path: Path) -> None:
    request = parse_request(path.read_bytes())
    assert request.task.metadata.tasktype is TaskType.PIPELINE
    class_types = {node["class_type"] for node in request.task.content.values()}
    assert {"KSampler", "CheckpointLoaderSimple", "SaveImage"} <= class_types


def test_replaced_sample_message_body_is_accepted_raw_and_enveloped() -> None:
    # The replaced sample published the client's request as is, wrapped in an SNS envelope.
    body = (TEST_FIXTURES / "requests-v1alpha2" / "t2i.json").read_text()
    envelope = json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": body})
    raw_msg, wrapped_msg = parse_queue_body(body), parse_queue_body(envelope)
    assert raw_msg.id == wrapped_msg.id == "fixture-t2i"
    assert raw_msg.content == wrapped_msg.content


@pytest.mark.parametrize(
    "body",
    [
        "[1, 2]",
        "null",
        "7",
        "not json",
        '{"Type": "Notification", "Message": "[]"}',
        '{"schema_version": "1", "id": "x"}',
    ],
)
def test_malformed_queue_bodies_are_contract_errors(body: str) -> None:
    with pytest.raises(ContractError):
        parse_queue_body(body)
