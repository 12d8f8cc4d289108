"""The task API handlers against SNS, SQS, DynamoDB and S3 on the moto server, over real HTTP."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from task_api import app, cancel, observability, status, submit

from contract import TaskStatus, parse_request, transition_update
from contract.limits import MAX_REQUEST_BYTES
from contract.messages import fingerprint
from local_stack.ports import free_port
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES
from tests.integration import test_api_support as support
from tests.integration.test_api_support import REGION, RUNTIMES, ApiStack, call

api_stack = support.api_stack  # the fixture, shared by the API test modules

OWN = sorted((TEST_FIXTURES / "requests-v1alpha2").glob("*.json"))
SHARED = sorted((SHARED_FIXTURES / "requests-v1alpha2").glob("*.json")) if SHARED_FIXTURES.exists() else []


def t2i(task_id: str | None = "t-1", runtime: str = "sdruntime", **content: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"runtime": runtime, "tasktype": "text-to-image", "prefix": "out", "context": {"k": 1}}
    if task_id is not None:
        metadata["id"] = task_id
    return {"task": {"metadata": metadata, "content": {"prompt": "a cat", "steps": 4, **content}}}


def table(stack: ApiStack) -> Any:
    return boto3.resource("dynamodb", endpoint_url=stack.endpoint, region_name=REGION).Table(stack.table)


def move(stack: ApiStack, task_id: str, target: TaskStatus, **extra: Any) -> None:
    """What the queue agent does to a record, with the contract's conditional updates."""
    table(stack).update_item(**transition_update(task_id, target, datetime.now(UTC), extra=extra or None))


# -- submit -------------------------------------------------------------------------------------------------------


def test_v1alpha2_answers_like_the_replaced_sample_and_routes_by_runtime(api_stack: ApiStack) -> None:
    answer = call(app.handler, "POST", "/v1alpha2", t2i("t-1", override_settings={"sd_model_checkpoint": "m.ckpt"}))
    assert answer.status == 200
    assert answer.json == {
        "id": "t-1",
        "runtime": "sdruntime",
        "output_location": f"s3://{api_stack.bucket}/out/t-1",
        "status": "queued",
    }
    [message] = api_stack.drain("sdruntime")
    assert api_stack.drain("comfyruntime") == []
    assert message["body"]["id"] == "t-1" and message["body"]["content"]["prompt"] == "a cat"
    assert message["body"]["fingerprint"] == fingerprint(
        parse_request(json.dumps(t2i("t-1", override_settings={"sd_model_checkpoint": "m.ckpt"})))
    )
    assert message["attributes"]["runtime"]["StringValue"] == "sdruntime"
    assert message["attributes"]["sd_model_checkpoint"]["StringValue"] == "m.ckpt"

    other = call(app.handler, "POST", "/v1alpha2", t2i("t-2", runtime="comfyruntime"))
    assert other.status == 200
    assert [m["body"]["id"] for m in api_stack.drain("comfyruntime")] == ["t-2"]
    assert api_stack.drain("sdruntime") == []


def test_the_status_record_is_written_before_the_answer(api_stack: ApiStack) -> None:
    before = datetime.now(UTC).timestamp()
    call(app.handler, "POST", "/v1alpha2", t2i("t-1"))
    item = api_stack.item("t-1")
    assert item is not None
    assert item["status"] == "queued" and item["runtime"] == "sdruntime" and item["tasktype"] == "text-to-image"
    assert item["context"] == {"k": 1} and item["attempts"] == 0 and len(item["fingerprint"]) == 64
    # TTL: 30 days by default.
    assert abs(int(item["expires_at"]) - (before + 30 * 86400)) < 60


def test_post_tasks_answers_202_with_location_and_generates_an_id(api_stack: ApiStack) -> None:
    answer = call(app.handler, "POST", "/tasks", t2i(task_id=None))
    assert answer.status == 202
    task_id = answer.json["id"]
    uuid.UUID(task_id)
    assert answer.headers["location"] == f"/tasks/{task_id}"
    assert answer.json["status"] == "queued"
    assert [m["body"]["id"] for m in api_stack.drain("sdruntime")] == [task_id]


def test_resubmitting_the_same_body_is_idempotent(api_stack: ApiStack) -> None:
    first = call(app.handler, "POST", "/tasks", t2i("same"))
    move(api_stack, "same", TaskStatus.RUNNING)
    again = call(app.handler, "POST", "/tasks", json.dumps(t2i("same"), indent=4))  # formatting is not content
    assert first.status == again.status == 202
    assert again.json == {**first.json, "status": "running"}
    assert len(api_stack.drain("sdruntime")) == 1, "a resubmit must not queue the task twice"


def test_reusing_an_id_for_a_different_body_is_409(api_stack: ApiStack) -> None:
    call(app.handler, "POST", "/tasks", t2i("dup"))
    answer = call(app.handler, "POST", "/tasks", t2i("dup", steps=5))
    assert answer.status == 409
    assert answer.json["error"]["code"] == "conflict"
    assert "status" not in answer.json and "queued" not in answer.text, "a 409 tells only that the id is taken"
    assert len(api_stack.drain("sdruntime")) == 1


def test_unknown_runtime_is_400_naming_the_configured_ones(api_stack: ApiStack) -> None:
    answer = call(app.handler, "POST", "/v1alpha2", t2i("t-x", runtime="nosuchruntime"))
    assert answer.status == 400
    [issue] = [f for f in answer.json["error"]["fields"] if f["field"] == "task.metadata.runtime"]
    assert all(name in issue["message"] for name in RUNTIMES)
    assert api_stack.item("t-x") is None
    assert api_stack.drain("sdruntime") == api_stack.drain("comfyruntime") == []


def test_body_over_the_limit_is_413_pointing_at_references(api_stack: ApiStack) -> None:
    huge = t2i("big", init_images=["A" * (MAX_REQUEST_BYTES + 10)])
    answer = call(app.handler, "POST", "/tasks", huge)
    assert answer.status == 413
    assert answer.json["error"]["code"] == "request_too_large"
    assert "s3://" in answer.json["error"]["message"] and "https://" in answer.json["error"]["message"]
    assert api_stack.item("big") is None


@pytest.mark.parametrize(
    ("body", "rule"),
    [("{not json", "json"), ("", "json"), ("[1, 2]", "model_type"), ('{"task": {"metadata": {}}}', "missing")],
)
def test_malformed_bodies_are_400_with_fields(api_stack: ApiStack, body: str, rule: str) -> None:
    answer = call(app.handler, "POST", "/tasks", body)
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    assert rule in {f["rule"] for f in answer.json["error"]["fields"]}


@pytest.mark.parametrize(
    "context",
    [10**40, {"n": -(10**39)}, json.loads("[" * 40 + "]" * 40), {"a": [{"": 1}]}],
    ids=["bigint", "nested-bigint", "deep", "empty-key"],
)
def test_a_context_dynamodb_cannot_hold_is_400_not_500(api_stack: ApiStack, context: Any) -> None:
    body = t2i("ctx")
    body["task"]["metadata"]["context"] = context
    answer = call(app.handler, "POST", "/tasks", json.dumps(body))
    assert answer.status == 400
    assert answer.json["error"]["fields"][0]["field"] == "task.metadata.context"
    assert api_stack.drain("sdruntime") == []


@pytest.mark.parametrize("model", ["", "bad\u0000name"])
def test_a_model_name_sns_cannot_carry_is_400(api_stack: ApiStack, model: str) -> None:
    answer = call(app.handler, "POST", "/tasks", t2i("m-1", override_settings={"sd_model_checkpoint": model}))
    assert answer.status == 400
    assert answer.json["error"]["fields"][0]["field"] == "task.content.override_settings.sd_model_checkpoint"
    assert api_stack.item("m-1") is None


def test_a_workflow_node_with_an_object_as_class_type_is_400(api_stack: ApiStack) -> None:
    body = {
        "task": {
            "metadata": {"runtime": "sdruntime", "tasktype": "pipeline"},
            "content": {"1": {"class_type": {}, "inputs": {}}},
        }
    }
    answer = call(app.handler, "POST", "/tasks", body)
    assert answer.status == 400
    assert answer.json["error"]["fields"][0]["field"] == "task.content.1.class_type"


def test_deeply_nested_json_is_400(api_stack: ApiStack) -> None:
    answer = call(app.handler, "POST", "/tasks", "[" * 50_000 + "]" * 50_000)
    assert answer.status == 400


@pytest.mark.parametrize("path", OWN + SHARED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_fixture_is_accepted_and_queued(api_stack: ApiStack, path: Path) -> None:
    answer = call(app.handler, "POST", "/v1alpha2", path.read_text())
    assert answer.status == 200, answer.text
    task_id = json.loads(path.read_text())["task"]["metadata"]["id"]
    assert answer.json["id"] == task_id
    [message] = api_stack.drain("sdruntime")
    assert message["body"]["content"] == json.loads(path.read_text())["task"]["content"]


# -- publish failure ----------------------------------------------------------------------------------------------


def test_a_failed_publish_withdraws_the_task_and_a_retry_succeeds(
    api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKS_TOPIC_ARN", api_stack.topic_arn + "-missing")
    failed = call(app.handler, "POST", "/tasks", t2i("pf"))
    assert failed.status == 503 and failed.headers["retry-after"] == "1"
    assert failed.json["error"]["code"] == "service_unavailable"
    assert api_stack.item("pf") is None, "the task must not stay queued with no message behind it"

    monkeypatch.setenv("TASKS_TOPIC_ARN", api_stack.topic_arn)
    retry = call(app.handler, "POST", "/tasks", t2i("pf"))
    assert retry.status == 202
    assert [m["body"]["id"] for m in api_stack.drain("sdruntime")] == ["pf"]


def test_an_unreachable_status_table_is_503(api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    answer = call(app.handler, "GET", "/tasks/t-1")
    assert answer.status == 503 and answer.json["error"]["code"] == "service_unavailable"


def test_missing_configuration_is_500_without_details(api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATUS_TABLE")
    answer = call(app.handler, "POST", "/tasks", t2i("cfg"))
    assert answer.status == 500
    assert answer.json == {"error": {"code": "internal_error", "message": "the service is misconfigured", "fields": []}}


# -- status -------------------------------------------------------------------------------------------------------


def test_get_returns_the_record_with_presigned_result_urls(api_stack: ApiStack) -> None:
    call(app.handler, "POST", "/tasks", t2i("done"))
    s3 = api_stack.client("s3")
    s3.put_object(Bucket=api_stack.bucket, Key="out/done/done-1.png", Body=b"png-bytes")
    s3.put_object(Bucket=api_stack.bucket, Key="out/done/done.out", Body=b"{}")
    move(api_stack, "done", TaskStatus.RUNNING)
    images = [f"s3://{api_stack.bucket}/out/done/done-1.png", "s3://some-other-bucket/x.png"]
    move(
        api_stack,
        "done",
        TaskStatus.COMPLETED,
        image_url=images,
        output_url=f"s3://{api_stack.bucket}/out/done/done.out",
    )

    answer = call(status.handler, "GET", "/tasks/done")
    assert answer.status == 200
    view = answer.json
    assert view["status"] == "completed" and view["image_url"] == images
    assert view["started_at"] and view["finished_at"] and view["context"] == {"k": 1}
    assert answer.headers["cache-control"] == "no-store"
    mine, foreign = view["images"]
    assert mine["s3"] == images[0] and foreign == {"s3": images[1], "url": None}
    with urllib.request.urlopen(mine["url"], timeout=10) as response:
        assert response.read() == b"png-bytes"
    with urllib.request.urlopen(view["output"]["url"], timeout=10) as response:
        assert response.read() == b"{}"


@pytest.mark.parametrize("task_id", ["never-submitted", "bad%20id", "x" * 65])
def test_unknown_or_impossible_ids_are_404(api_stack: ApiStack, task_id: str) -> None:
    for handler, method in ((status.handler, "GET"), (cancel.handler, "DELETE")):
        answer = call(handler, method, f"/tasks/{task_id}")
        assert answer.status == 404
        assert answer.json["error"]["code"] == "not_found"


# -- cancel -------------------------------------------------------------------------------------------------------


def test_cancelling_a_queued_task_cancels_it_and_a_second_cancel_is_409(api_stack: ApiStack) -> None:
    call(app.handler, "POST", "/tasks", t2i("c-1"))
    answer = call(app.handler, "DELETE", "/tasks/c-1")
    assert answer.status == 200
    assert answer.json["status"] == "cancelled" and answer.json["finished_at"]
    assert api_stack.item("c-1")["status"] == "cancelled"  # type: ignore[index]

    again = call(app.handler, "DELETE", "/tasks/c-1")
    assert again.status == 409
    assert again.json["status"] == "cancelled" and again.json["error"]["code"] == "task_finished"


def test_cancelling_a_running_task_requests_it_and_leaves_the_status_to_the_agent(api_stack: ApiStack) -> None:
    call(app.handler, "POST", "/tasks", t2i("c-2"))
    move(api_stack, "c-2", TaskStatus.RUNNING)
    answer = call(app.handler, "DELETE", "/tasks/c-2")
    assert answer.status == 202
    assert answer.json["status"] == "running" and answer.json["cancel_requested"] is True
    assert call(app.handler, "DELETE", "/tasks/c-2").status == 202  # asking twice changes nothing
    item = api_stack.item("c-2")
    assert item is not None and item["status"] == "running" and item["cancel_requested"] is True


@pytest.mark.parametrize("final", [TaskStatus.COMPLETED, TaskStatus.FAILED])
def test_finished_tasks_are_never_cancelled(api_stack: ApiStack, final: TaskStatus) -> None:
    call(app.handler, "POST", "/tasks", t2i("c-3"))
    move(api_stack, "c-3", TaskStatus.RUNNING)
    move(api_stack, "c-3", final)
    answer = call(cancel.handler, "DELETE", "/tasks/c-3")
    assert answer.status == 409 and answer.json["status"] == final.value
    assert api_stack.item("c-3")["status"] == final.value  # type: ignore[index]


# -- per-function handlers, logs ----------------------------------------------------------------------------------


def test_each_function_serves_only_its_routes(api_stack: ApiStack) -> None:
    assert call(submit.handler, "GET", "/tasks/x").status == 404
    assert call(status.handler, "POST", "/tasks", t2i("f-1")).status == 404
    assert call(cancel.handler, "GET", "/tasks/x").status == 404
    assert call(submit.handler, "POST", "/tasks", t2i("f-1")).status == 202
    assert call(status.handler, "GET", "/tasks/f-1").status == 200
    assert call(cancel.handler, "DELETE", "/tasks/f-1").status == 200


def test_logs_are_json_with_the_task_id_and_never_the_api_key(api_stack: ApiStack) -> None:
    # Powertools bound its handler to the stdout of import time; listen with its own JSON formatter instead.
    stream = io.StringIO()
    listener = logging.StreamHandler(stream)
    listener.setFormatter(observability.logger.registered_formatter)
    logging.getLogger(observability.SERVICE).addHandler(listener)
    secret = "k3y-" + uuid.uuid4().hex
    headers = {"content-type": "application/json", "x-api-key": secret, "Authorization": secret}
    try:
        call(app.handler, "POST", "/tasks", t2i("log-1"), headers=headers)
        call(app.handler, "POST", "/tasks", t2i("log-1", steps=9), headers=headers)
        call(app.handler, "GET", "/tasks/log-1", headers=headers)
    finally:
        logging.getLogger(observability.SERVICE).removeHandler(listener)
    text = stream.getvalue()
    assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records and all(r["service"] == "task-api" and r["correlation_id"] for r in records)
    assert {r.get("task_id") for r in records} == {"log-1"}
    assert {"task queued", "request answered with an error"} <= {r["message"] for r in records}
