"""The replaced sample's clients and queues against the whole local stack: every request payload posted as its
smoke test posts it (``{endpoint}/{version}/``, and without the slash), every queue message dropped on the
runtime's queue as its Lambda and SNS left it, raw and enveloped. The real gateway, handlers, agent and
runtime (tiny model), moto over HTTP.

Payloads run as the files have them, but for their size: width, height and steps are scaled down to 64 px
and 2 steps, so that a CPU runs them in seconds (the tiny model makes noise at any size).

Text-to-image tasks of both versions complete. Everything else ends clearly: refused at submit with the
field named, or ``failed`` with a message (images behind public URLs cannot be fetched here; the runtime
does not run AnimateDiff; a pipeline needs a ComfyUI runtime), never a silent drop or a wrong success.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from local_stack.notifications import NotificationInbox
from local_stack.resources import client
from local_stack.stack import LocalStack
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES

pytestmark = pytest.mark.timeout(900)

SOURCES = [("own", TEST_FIXTURES)] + ([("sample", SHARED_FIXTURES)] if SHARED_FIXTURES.exists() else [])


def _small(content: dict[str, Any]) -> dict[str, Any]:
    """The same generation payload at 64 px and 2 steps (only fields it already has)."""
    scaled = {"width": 64, "height": 64, "steps": 2}
    return {**content, **{k: v for k, v in scaled.items() if k in content}}


@dataclass(frozen=True)
class Case:
    task_id: str
    tasktype: str
    body: dict[str, Any]
    animatediff: bool


def _request_cases() -> list[tuple[str, str, Case]]:
    """(route, label, case) for every request file, each under an id of its own (the sample reuses ids)."""
    cases = []
    for source, root in SOURCES:
        for version in ("v1alpha2", "v1alpha1"):
            for path in sorted((root / f"requests-{version}").glob("*.json")):
                for slash in ("/", ""):
                    task_id = f"rp-{source}-{version}-{path.stem}-{'s' if slash else 'n'}"
                    body = json.loads(path.read_text())
                    if version == "v1alpha2":
                        body["task"]["metadata"]["id"] = task_id
                        tasktype = body["task"]["metadata"]["tasktype"]
                        if tasktype != "pipeline":
                            body["task"]["content"] = _small(body["task"]["content"])
                    else:
                        body["alwayson_scripts"]["id_task"] = task_id
                        tasktype = body["alwayson_scripts"]["task"]
                        body = _small(body)
                    animatediff = "AnimateDiff" in json.dumps(body)
                    label = f"{source}/{version}{slash}/{path.name}"
                    cases.append((f"/{version}{slash}", label, Case(task_id, tasktype, body, animatediff)))
    return cases


def test_sample_requests_replay_through_the_stack(
    stack: LocalStack, inbox: NotificationInbox, api: httpx.Client
) -> None:
    accepted: dict[str, tuple[str, Case]] = {}
    for route, label, case in _request_cases():
        answer = api.post(route, json=case.body)
        if answer.status_code == 400:
            fields = answer.json()["error"]["fields"]
            assert fields and all(f["message"] for f in fields), (label, answer.text)
            # Refused only for what this deployment cannot or may not do: a pipeline on a diffusers runtime, an
            # s3:// input outside the input buckets. (The t2v body's batch_size of 32 is its frame count: allowed.)
            if case.tasktype == "pipeline":
                assert fields[0]["rule"] == "runtime_type" and "diffusers" in fields[0]["message"], label
            else:
                assert "s3://" in json.dumps(case.body) and fields[0]["rule"] == "s3_input", (label, answer.text)
            continue
        assert answer.status_code == 200, (label, answer.text)
        got = answer.json()
        assert got["id"] == case.task_id and got["status"] == "queued", label
        if route.startswith("/v1alpha1"):
            assert got["id_task"] == case.task_id and got["sd_model_checkpoint"], label
            assert got["output_location"].endswith(f"/outputs/{case.task_id}"), label
        accepted[case.task_id] = (label, case)

    assert any(c.tasktype == "text-to-image" for _, c in accepted.values())
    received = inbox.wait_for(accepted, timeout=600)
    for task_id, (label, case) in accepted.items():
        note = received[task_id].notification
        status = api.get(f"/tasks/{task_id}/").json()
        assert status["status"] == note.status, label
        if case.tasktype == "text-to-image" and not case.animatediff:
            assert note.status == "completed" and note.image_url, (label, note)
            assert status["images"] and all(link["url"] for link in status["images"]), label
        elif case.animatediff:
            # This stack's model folder has no motion module (mm_sd15_v3): failed, saying so, never completed
            # with stills. (With one, the video completes: tests/integration/test_agent_real_runtime.py.)
            assert note.status == "failed" and note.error is not None, (label, note)
            assert "AnimateDiff" in note.error.message and not note.image_url, (label, note)
        else:
            assert note.status in {"completed", "failed"}, (label, note)
            if note.status == "failed":
                assert note.error is not None and note.error.message, (label, note)


def _with_id(raw: str, task_id: str) -> str:
    """The message under its own id (the sample reuses ids across files), its generation scaled down."""
    data = json.loads(raw)
    enveloped = data.get("Type") == "Notification"
    inner = json.loads(data["Message"]) if enveloped else data
    inner["metadata"]["id"] = task_id
    if inner["metadata"]["tasktype"] != "pipeline":
        inner["content"] = _small(inner["content"])
    return json.dumps({**data, "Message": json.dumps(inner)} if enveloped else inner)


def _inner(raw: str) -> dict[str, Any]:
    data = json.loads(raw)
    return json.loads(data["Message"]) if data.get("Type") == "Notification" else data


def test_sample_queue_messages_drain_through_the_stack(stack: LocalStack, inbox: NotificationInbox) -> None:
    assert stack.resources is not None
    sqs = client("sqs", stack.aws_endpoint)
    queue_url = stack.resources.runtimes["sdruntime"].queue_url
    sent: dict[str, tuple[str, dict[str, Any]]] = {}
    for source, root in SOURCES:
        for path in sorted((root / "queue-messages").glob("*.json")):
            task_id = f"qm-{source}-{path.name.removesuffix('.json').replace('.', '-')}"
            body = _with_id(path.read_text(), task_id)
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            sent[task_id] = (f"{source}/{path.name}", _inner(body))

    received = inbox.wait_for(sent, timeout=600)
    for task_id, (label, message) in sent.items():
        note = received[task_id].notification
        assert note.runtime == "sdruntime", label
        tasktype = message["metadata"]["tasktype"]
        if tasktype == "pipeline":
            assert note.status == "failed" and note.error is not None and "comfyui" in note.error.message, label
        elif tasktype == "text-to-image":
            assert note.status == "completed" and note.image_url, (label, note)
        elif "https://" in json.dumps(message["content"]):
            # No internet here: the public image cannot be fetched, which fails the task with a message.
            assert note.status == "failed" and note.error is not None and note.error.message, (label, note)
        else:
            assert note.status == "completed" and note.image_url, (label, note)


def test_own_fixtures_cover_the_sample_folders() -> None:
    for folder in ("requests-v1alpha1", "requests-v1alpha2", "queue-messages"):
        assert list((TEST_FIXTURES / folder).glob("*.json")), folder
    if SHARED_FIXTURES.exists():
        for folder in ("requests-v1alpha1", "requests-v1alpha2", "queue-messages"):
            own = {p.name for p in (TEST_FIXTURES / folder).glob("*.json")}
            sample = {p.name for p in (SHARED_FIXTURES / folder).glob("*.json")}
            assert sample <= own, f"{folder}: own fixtures lack {sorted(sample - own)}"
