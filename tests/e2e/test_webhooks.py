"""Per-task webhooks through the real local stack: gateway + Lambda handlers, moto, the agent, our runtime.

A receiver on loopback (allowed only because the local stack says so) gets one signed POST per task and
event, which verifies with the stack's secret; a failing receiver gets the bounded retries, and the status
record shows them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import yaml
from standardwebhooks import WebhookVerificationError

from contract import verify
from local_stack.stack import LocalStack, StackOptions
from tests.agent_fakes.aws_world import wait_until
from tests.e2e.conftest import MODEL_CACHE
from tests.loopback import QuietHandler, serve_on_loopback

CONFIG = {
    "stackName": "hooks",
    "modelBucketArn": "arn:aws:s3:::hooks-models",
    "modelsRuntime": [{"name": "sdruntime", "type": "diffusers"}],
    "queue": {"visibilityTimeout": 60},
}
GEN = {"prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64, "seed": 1}
ATTEMPTS = 3


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: answers ``status`` for every POST and keeps what it got."""

    status: int = 204
    got: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliveries(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.got if d.path == path]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                state.got.append(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            code = 500 if self.path.startswith("/failing") else state.status
            self.send_response(code)
            self.end_headers()

    with serve_on_loopback(Handler) as url:
        yield state, url


@pytest.fixture(scope="module")
def hook_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("hook-stack")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    agent = {"WEBHOOK_ATTEMPTS": str(ATTEMPTS), "WEBHOOK_BACKOFF_SECONDS": "0.1"}
    options = StackOptions(
        config_path=config, workdir=workdir, generated_model="tiny", model_cache=MODEL_CACHE, extra_env={"agent": agent}
    )
    with LocalStack(options) as running:
        yield running


def _submit(stack: LocalStack, task_id: str, webhook: object) -> None:
    body = {
        "task": {
            "metadata": {
                "id": task_id,
                "runtime": "sdruntime",
                "tasktype": "text-to-image",
                "webhook": webhook,
                "context": {"who": task_id},
            },
            "content": GEN,
        }
    }
    with httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30) as api:
        response = api.post("/tasks", json=body)
    assert response.status_code == 202, response.text


def _status(stack: LocalStack, task_id: str) -> dict:
    with httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30) as api:
        return api.get(f"/tasks/{task_id}").json()


def test_each_task_gets_one_signed_post_per_event(hook_stack: LocalStack, receiver: tuple[Receiver, str]) -> None:
    state, base = receiver
    _submit(hook_stack, "hook-a", f"{base}/a")
    _submit(hook_stack, "hook-b", {"url": f"{base}/b", "events": ["running", "completed"]})
    wait_until(lambda: len(state.deliveries("/a")) >= 1 and len(state.deliveries("/b")) >= 2, 120, what="webhooks")
    wait_until(lambda: (_status(hook_stack, "hook-b").get("webhook") or {}).get("delivered"), 30, what="record")

    (a,) = state.deliveries("/a")  # terminal events only by default: one POST
    note = verify(hook_stack.webhook_secret, a.body, a.headers)
    assert note["id"] == "hook-a" and note["status"] == "completed" and note["context"] == {"who": "hook-a"}
    assert a.headers["webhook-id"] == "hook-a.completed"
    events = [json.loads(d.body)["status"] for d in state.deliveries("/b")]
    assert events == ["running", "completed"]
    for delivery in state.deliveries("/b"):
        verify(hook_stack.webhook_secret, delivery.body, delivery.headers)
    # Signed with the stack's secret, not any other: a tampered body or another secret fails.
    with pytest.raises(WebhookVerificationError):
        verify(hook_stack.webhook_secret, a.body.replace(b"completed", b"failed"), a.headers)
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 44, a.body, a.headers)
    record = _status(hook_stack, "hook-a")["webhook"]
    assert record == {"attempts": 1, "last_status": 204, "delivered": True}


def test_a_failing_receiver_gets_bounded_retries_on_the_record(
    hook_stack: LocalStack, receiver: tuple[Receiver, str]
) -> None:
    state, base = receiver
    _submit(hook_stack, "hook-fail", f"{base}/failing")
    wait_until(
        lambda: (_status(hook_stack, "hook-fail").get("webhook") or {}).get("attempts") == ATTEMPTS,
        120,
        what="the last attempt on the record",
    )
    assert _status(hook_stack, "hook-fail")["status"] == "completed"  # the task itself is unaffected
    assert _status(hook_stack, "hook-fail")["webhook"] == {"attempts": ATTEMPTS, "last_status": 500, "delivered": False}
    posts = state.deliveries("/failing")
    assert len(posts) == ATTEMPTS
    assert {p.headers["webhook-id"] for p in posts} == {"hook-fail.completed"}  # one event, retried


def test_webhook_targets_are_vetted_at_submit(hook_stack: LocalStack) -> None:
    with httpx.Client(base_url=hook_stack.api_url, headers={"x-api-key": hook_stack.api_key}, timeout=30) as api:
        for url in ("http://example.com/hook", "https://10.0.0.5/hook", "https://169.254.169.254/latest", "ftp://x"):
            body = {
                "task": {
                    "metadata": {"runtime": "sdruntime", "tasktype": "text-to-image", "webhook": url},
                    "content": GEN,
                }
            }
            response = api.post("/tasks", json=body)
            assert response.status_code == 400, (url, response.text)
            fields = [f["field"] for f in response.json()["error"]["fields"]]
            assert fields == ["task.metadata.webhook.url"], (url, fields)


def test_the_stack_describes_its_secret(hook_stack: LocalStack) -> None:
    assert hook_stack.describe()["webhook_secret"] == hook_stack.webhook_secret
    assert hook_stack.webhook_secret.startswith("whsec_")
