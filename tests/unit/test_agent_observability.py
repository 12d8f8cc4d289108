"""What operators see: JSON logs with task ids, /metrics and /healthz, X-Ray segments continuing a trace."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from queue_agent import logs
from queue_agent.health import Health
from queue_agent.metrics import Metrics
from queue_agent.server import StatusServer
from queue_agent.tracing import Tracer


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("INFO", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_lines_are_json_with_the_task_id_inside_a_task_context(log_stream: io.StringIO) -> None:
    log = logging.getLogger("queue_agent.test")
    log.info("outside")
    with logs.task_context("task-7"):
        log.info("inside", extra={"receive_count": 2})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    outside, inside, failed = lines(log_stream)
    assert "task_id" not in outside and outside["msg"] == "outside" and outside["level"] == "INFO"
    assert inside["task_id"] == "task-7" and inside["receive_count"] == 2 and inside["logger"] == "queue_agent.test"
    assert failed["task_id"] == "task-7" and "ValueError: boom" in failed["exc"]


async def test_the_task_id_follows_into_tasks_started_inside_the_context(log_stream: io.StringIO) -> None:
    async def helper() -> None:
        logging.getLogger("queue_agent.helper").info("from a helper that knows nothing about tasks")

    with logs.task_context("task-9"):
        task = asyncio.create_task(helper())
    await task
    assert lines(log_stream)[0]["task_id"] == "task-9"


def test_library_debug_chatter_stays_quiet_even_at_debug(log_stream: io.StringIO) -> None:
    logs.configure("DEBUG", log_stream)
    logging.getLogger("botocore.endpoint").debug("request body with a prompt")
    logging.getLogger("queue_agent.x").debug("ours")
    assert [line["msg"] for line in lines(log_stream)] == ["ours"]


@pytest.fixture
async def status_server() -> AsyncIterator[tuple[str, Health, Metrics]]:
    health, metrics = Health(threshold=2), Metrics()
    server = StatusServer(health, metrics)
    port = await server.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", health, metrics
    await server.stop()


async def test_metrics_endpoint_serves_the_agents_registry(status_server) -> None:
    url, _, metrics = status_server
    metrics.jobs.labels(status="completed").inc(3)
    metrics.runtime_idle_gap.observe(0.004)
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{url}/metrics")).text
    assert 'queue_agent_jobs_total{status="completed"} 3.0' in body
    assert "queue_agent_runtime_idle_gap_seconds_count 1.0" in body
    for name in ("queue_agent_job_duration_seconds", "queue_agent_receive_latency_seconds", "queue_agent_in_flight"):
        assert name in body


async def test_healthz_reports_a_dead_runtime_and_recovers(status_server) -> None:
    url, health, _ = status_server
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/healthz")).status_code == 200  # loading counts as alive
        assert (await client.get(f"{url}/ready")).status_code == 503
        health.mark_ready()
        assert (await client.get(f"{url}/ready")).status_code == 200
        health.record_probe(False)
        assert (await client.get(f"{url}/healthz")).status_code == 200  # one failed probe is not death
        health.record_probe(False)
        dead = await client.get(f"{url}/healthz")
        assert dead.status_code == 503 and dead.json()["runtime_failures"] == 2
        assert not health.runtime_up.is_set()  # and the receiver stops taking work
        health.record_probe(True)
        assert (await client.get(f"{url}/healthz")).status_code == 200 and health.runtime_up.is_set()
        health.mark_broken("runner crashed")
        assert (await client.get(f"{url}/healthz")).json()["broken"] == "runner crashed"
        assert (await client.get(f"{url}/nope")).status_code == 404
        assert (await client.post(f"{url}/healthz")).status_code == 405


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A UDP socket standing in for the X-Ray daemon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{sock.getsockname()[1]}")
    yield sock
    sock.close()


def received_segment(sock: socket.socket) -> dict:
    header, _, body = sock.recv(65536).decode().partition("\n")
    assert json.loads(header) == {"format": "json", "version": 1}
    return json.loads(body)


def test_a_job_segment_continues_the_trace_from_the_sqs_header(daemon: socket.socket) -> None:
    tracer = Tracer(enabled=True, service="queue-agent-sdruntime")
    root, parent = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
    segment = tracer.start(f"Root={root};Parent={parent};Sampled=1", "task-1")
    with tracer.span(segment, "runtime", tasktype="text-to-image"):
        pass
    with pytest.raises(RuntimeError), tracer.span(segment, "s3"):
        raise RuntimeError("upload failed")
    tracer.finish(segment, "completed")
    sent = received_segment(daemon)
    assert sent["trace_id"] == root and sent["parent_id"] == parent and sent["name"] == "queue-agent-sdruntime"
    assert sent["annotations"] == {"task_id": "task-1", "status": "completed"}
    runtime, s3 = sent["subsegments"]
    assert runtime["name"] == "runtime" and runtime["annotations"] == {"tasktype": "text-to-image"}
    assert s3["namespace"] == "remote" and s3["fault"] is True


def test_a_job_without_a_header_starts_its_own_trace(daemon: socket.socket) -> None:
    tracer = Tracer(enabled=True, service="svc")
    tracer.finish(tracer.start(None, "task-2"), "failed", error="rejected")
    sent = received_segment(daemon)
    assert sent["trace_id"].startswith("1-") and "parent_id" not in sent and sent["error"] is True


def test_unsampled_and_disabled_traces_send_nothing(daemon: socket.socket) -> None:
    tracer = Tracer(enabled=True, service="svc")
    tracer.finish(tracer.start("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0", "t"), "completed")
    off = Tracer(enabled=False, service="svc")
    assert off.start("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", "t") is None
    off.finish(None, "completed")
    with off.span(None, "runtime"):
        pass
    daemon.settimeout(0.3)
    with pytest.raises(TimeoutError):
        daemon.recv(65536)
