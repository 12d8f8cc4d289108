"""Ownership, through the local API Gateway with two tenants' keys, in front of the real handlers and moto.

Each test is an attack by one key holder on another's tasks (read, cancel, squat, copy results out),
and shows it refused or harmless.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from task_api import app

from contract import image_key, s3_uri
from local_stack.gateway import LocalGateway
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack

api_stack = support.api_stack

ALICE = {"x-api-key": "alice-secret"}
MALLORY = {"x-api-key": "mallory-secret"}
INPUT_BUCKET = "sdtest-inputs"


def t2i(task_id: str, **content: Any) -> dict[str, Any]:
    return {
        "task": {"metadata": {"id": task_id, "runtime": "sdruntime", "tasktype": "text-to-image"}, "content": content}
    }


def i2i(task_id: str, image: str) -> dict[str, Any]:
    metadata = {"id": task_id, "runtime": "sdruntime", "tasktype": "image-to-image"}
    return {"task": {"metadata": metadata, "content": {"prompt": "p", "init_images": [image]}}}


@pytest.fixture
def client(api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    monkeypatch.setenv("INPUT_BUCKETS", INPUT_BUCKET)
    keys = {ALICE["x-api-key"]: "key-alice", MALLORY["x-api-key"]: "key-mallory"}
    with LocalGateway(keys, app.handler) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as c:
        yield c


def test_the_submitting_key_is_recorded_as_the_owner(client: httpx.Client, api_stack: ApiStack) -> None:
    assert client.post("/tasks", json=t2i("mine"), headers=ALICE).status_code == 202
    item = api_stack.item("mine")
    assert item is not None and item["owner"] == "key-alice"
    seen = client.get("/tasks/mine", headers=ALICE).json()
    assert seen["status"] == "queued" and "owner" not in seen


def test_another_key_can_neither_read_nor_cancel_a_task(client: httpx.Client, api_stack: ApiStack) -> None:
    client.post("/tasks", json=t2i("alices"), headers=ALICE)
    missing_get = client.get("/tasks/nobodys", headers=MALLORY)
    for method in ("GET", "DELETE"):
        attack = client.request(method, "/tasks/alices", headers=MALLORY)
        missing = client.request(method, "/tasks/nobodys", headers=MALLORY)
        assert attack.status_code == missing.status_code == 404
        # Indistinguishable from a task that does not exist (only the id in the message differs).
        assert attack.json()["error"]["code"] == missing_get.json()["error"]["code"] == "not_found"
        assert attack.text.replace("alices", "X") == missing.text.replace("nobodys", "X")
    item = api_stack.item("alices")
    assert item is not None and item["status"] == "queued", "the cancel attempt changed nothing"
    assert client.delete("/tasks/alices", headers=ALICE).json()["status"] == "cancelled"


def test_a_taken_id_is_409_whoever_holds_it_and_tells_nothing_else(client: httpx.Client, api_stack: ApiStack) -> None:
    client.post("/tasks", json=t2i("squat", steps=3), headers=ALICE)
    for body in (t2i("squat", steps=3), t2i("squat", steps=4)):  # the same body too: it is not Mallory's task
        answer = client.post("/tasks", json=body, headers=MALLORY)
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "conflict"
        assert "queued" not in answer.text and "status" not in answer.json()
    # Alice's own retry is still idempotent.
    assert client.post("/tasks", json=t2i("squat", steps=3), headers=ALICE).status_code == 202
    assert [m["body"]["id"] for m in api_stack.drain("sdruntime")] == ["squat"]


def test_s3_inputs_reach_only_input_buckets_and_the_callers_own_results(
    client: httpx.Client, api_stack: ApiStack
) -> None:
    client.post("/tasks", json=t2i("source"), headers=ALICE)
    result = s3_uri(api_stack.bucket, image_key("output", "source", 1))
    # Mallory tries to copy Alice's result out through an image-to-image task, and to read any other key.
    for n, ref in enumerate((result, s3_uri(api_stack.bucket, "output/x.png"), "s3://someone-elses/a.png")):
        answer = client.post("/tasks", json=i2i(f"steal{n}", ref), headers=MALLORY)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["fields"][0]["field"] == "task.content.init_images.0"
        assert answer.json()["error"]["fields"][0]["rule"] == "s3_input"
        assert api_stack.item(f"steal{n}") is None
    # Alice may chain her own result, under the prefix it was written to, once it exists (the agent writes it
    # with the submission's nonce); anyone may use an input bucket.
    assert client.post("/tasks", json=i2i("early", result), headers=ALICE).status_code == 400
    source = api_stack.item("source")
    assert source is not None
    s3 = api_stack.client("s3")
    key = image_key("output", "source", 1)
    s3.put_object(Bucket=api_stack.bucket, Key=key, Body=b"png", Metadata={"nonce": source["nonce"]})
    assert client.post("/tasks", json=i2i("chain", result), headers=ALICE).status_code == 202
    other_prefix = s3_uri(api_stack.bucket, image_key("elsewhere", "source", 1))
    assert client.post("/tasks", json=i2i("chain2", other_prefix), headers=ALICE).status_code == 400
    staged = f"s3://{INPUT_BUCKET}/staged/cat.png"
    assert client.post("/tasks", json=i2i("staged", staged), headers=MALLORY).status_code == 202


def test_results_left_by_an_earlier_holder_of_an_id_are_not_the_new_holders(
    client: httpx.Client, api_stack: ApiStack
) -> None:
    # Mallory's task "reused" expired; its images are still in the bucket when Alice takes the id.
    key = image_key("output", "reused", 1)
    api_stack.client("s3").put_object(Bucket=api_stack.bucket, Key=key, Body=b"png", Metadata={"nonce": "old"})
    assert client.post("/tasks", json=t2i("reused"), headers=ALICE).status_code == 202
    answer = client.post("/tasks", json=i2i("copy", s3_uri(api_stack.bucket, key)), headers=ALICE)
    assert answer.status_code == 400 and answer.json()["error"]["fields"][0]["rule"] == "s3_input"


def test_an_unknown_key_is_still_403(client: httpx.Client) -> None:
    assert client.get("/tasks/x", headers={"x-api-key": "alice-secretx"}).status_code == 403
