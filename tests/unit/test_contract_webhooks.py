"""The contract of webhooks, time-to-live and priority, and `sdq webhook-verify`."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks import WebhookVerificationError

from contract import (
    ContractError,
    RefError,
    TaskStatus,
    new_secret,
    parse_request,
    secret_from_stored,
    sign,
    to_queue_message,
    verify,
    vet_webhook_url,
)
from contract.messages import fingerprint
from contract.tasks import can_transition
from sdq.cli import main as sdq


def _request(**meta: object) -> dict:
    return {"task": {"metadata": {"id": "t1", "runtime": "rt", "tasktype": "text-to-image", **meta},
                     "content": {"prompt": "x"}}}


def test_signature_round_trip_and_tampering() -> None:
    secret = new_secret()
    body = json.dumps({"id": "t1", "status": "completed"})
    headers = sign(secret, "t1.completed", body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(secret, body, headers) == {"id": "t1", "status": "completed"}
    with pytest.raises(WebhookVerificationError):
        verify(secret, body.replace("completed", "failed"), headers)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), body, headers)
    stale = sign(secret, "t1.completed", body, at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError):
        verify(secret, body, stale)


def test_the_stored_secret_is_the_key_of_the_whsec_secret() -> None:
    stored = "AbC123xyz0" * 4  # what Secrets Manager generates: 40 letters and digits
    assert secret_from_stored(stored) == "whsec_" + stored
    assert secret_from_stored("whsec_" + stored) == "whsec_" + stored
    assert verify(secret_from_stored(stored), "{}", sign(secret_from_stored(stored), "m", "{}")) == {}


def test_webhook_field_shapes() -> None:
    bare = parse_request(_request(webhook="https://hooks.example.com/x")).task.metadata.webhook
    assert bare is not None and bare.url == "https://hooks.example.com/x"
    assert [e.value for e in bare.events] == ["completed", "failed", "cancelled", "expired"]
    assert not bare.wants("running")
    full = parse_request(_request(webhook={"url": "https://h.example/x", "events": ["running"]})).task.metadata
    assert full.webhook is not None and full.webhook.wants(TaskStatus.RUNNING)
    for bad, field in (
        ({"url": "https://h.example", "events": []}, "task.metadata.webhook.events"),
        ({"url": "https://h.example", "events": ["done"]}, "task.metadata.webhook.events.0"),
        ({"url": "https://h.example", "secret": "x"}, "task.metadata.webhook.secret"),
    ):
        with pytest.raises(ContractError) as caught:
            parse_request(_request(webhook=bad))
        assert field in [i.field for i in caught.value.issues]
    for bad_meta, field in (({"ttl_seconds": 0}, "task.metadata.ttl_seconds"),
                            ({"ttl_seconds": 10**9}, "task.metadata.ttl_seconds"),
                            ({"priority": "urgent"}, "task.metadata.priority")):
        with pytest.raises(ContractError) as caught:
            parse_request(_request(**bad_meta))
        assert [i.field for i in caught.value.issues] == [field]


@pytest.mark.parametrize(
    ("url", "loopback_ok", "allowed"),
    [
        ("https://hooks.example.com/x", False, True),
        ("http://hooks.example.com/x", False, False),
        ("https://10.1.2.3/x", False, False),
        ("https://169.254.169.254/latest", False, False),
        ("http://127.0.0.1:8000/hook", False, False),
        ("http://127.0.0.1:8000/hook", True, True),
        ("http://localhost:8000/hook", True, True),
        ("http://10.1.2.3/hook", True, False),
        ("https://user:pw@hooks.example.com/", False, False),
    ],
)
def test_webhook_urls_are_vetted(url: str, loopback_ok: bool, allowed: bool) -> None:
    if allowed:
        vet_webhook_url(url, allow_loopback=loopback_ok)
    else:
        with pytest.raises(RefError):
            vet_webhook_url(url, allow_loopback=loopback_ok)


def test_ttl_priority_and_fingerprints() -> None:
    plain = parse_request(_request())
    assert fingerprint(plain) == fingerprint(parse_request(_request(priority="normal")))  # defaults change nothing
    assert fingerprint(plain) != fingerprint(parse_request(_request(priority="high")))
    submitted = datetime(2026, 1, 1, tzinfo=UTC)
    message = to_queue_message(parse_request(_request(ttl_seconds=60, priority="high")), submitted_at=submitted)
    assert message.expires_at == submitted + timedelta(seconds=60)
    assert not message.expired(submitted + timedelta(seconds=59))
    assert message.expired(submitted + timedelta(seconds=60))
    # High: addressed to the runtime's high-priority subscription only.
    assert message.message_attributes() == {
        "runtime_high": {"DataType": "String", "StringValue": "rt"},
        "priority": {"DataType": "String", "StringValue": "high"},
    }
    assert to_queue_message(plain).message_attributes()["runtime"]["StringValue"] == "rt"
    assert to_queue_message(plain).expires_at is None and not to_queue_message(plain).expired()


def test_expired_is_terminal_and_only_reachable_before_running() -> None:
    assert TaskStatus.EXPIRED.terminal
    assert can_transition(TaskStatus.QUEUED, TaskStatus.EXPIRED)
    assert not can_transition(TaskStatus.RUNNING, TaskStatus.EXPIRED)
    assert not can_transition(TaskStatus.EXPIRED, TaskStatus.RUNNING)


def test_sdq_webhook_verify(tmp_path: Path) -> None:
    secret = new_secret()
    body = tmp_path / "body.json"
    body.write_text('{"id": "t1", "status": "completed"}')
    headers = sign(secret, "t1.completed", body.read_text())
    argv = ["webhook-verify", str(body), "--id", headers["webhook-id"], "--timestamp", headers["webhook-timestamp"],
            "--signature", headers["webhook-signature"], "--secret", secret]
    out = io.StringIO()
    assert sdq(argv, out=out) == 0 and out.getvalue() == "genuine\n"
    out = io.StringIO()
    assert sdq([*argv[:-1], new_secret()], out=out) == 1 and out.getvalue().startswith("NOT genuine")
    local = tmp_path / "local.json"
    local.write_text(json.dumps({"endpoint": "http://127.0.0.1:1", "api_key": "k", "webhook_secret": secret}))
    out = io.StringIO()
    assert sdq(["webhook-secret", "--local-file", str(local)], out=out) == 0 and out.getvalue() == secret + "\n"
    assert sdq([*argv[:-2], "--local-file", str(local)], out=io.StringIO()) == 0


def test_an_animatediff_batch_is_its_frame_count() -> None:
    from contract import DEFAULT_LIMITS, batch_size_limit

    video = {"AnimateDiff": {"args": [{"model": "mm.safetensors", "video_length": 32, "enable": True}]}}
    body = _request(tasktype="text-to-image")
    body["task"]["content"] = {"prompt": "x", "batch_size": 32, "width": 512, "height": 512, "alwayson_scripts": video}
    parse_request(body)  # 32 frames of 512x512: allowed
    assert batch_size_limit(video) == DEFAULT_LIMITS.max_video_frames
    for off in ({"AnimateDiff": {"args": [False]}}, {"AnimateDiff": {"args": [{"enable": False}]}}, {}):
        body["task"]["content"]["alwayson_scripts"] = off
        with pytest.raises(ContractError) as caught:
            parse_request(body)
        assert [i.field for i in caught.value.issues] == ["task.content.batch_size"]
    body["task"]["content"] = {"prompt": "x", "batch_size": 65, "alwayson_scripts": video}
    with pytest.raises(ContractError):
        parse_request(body)
