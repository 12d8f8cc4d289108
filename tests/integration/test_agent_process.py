"""The agent as a real process (``python -m queue_agent``): crash, drain and health behaviour.

The fake runtime runs in this process (a thread), so each test knows exactly which calls the
runtime saw and when; AWS is the session's moto server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.agent_fakes.a1111 import Behavior, FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, task, wait_until
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import ROOT, AgentProcess

pytestmark = pytest.mark.timeout(180)


def _in_progress(fake: FakeA1111, for_at_least: float) -> str | None:
    """The prompt of the call the runtime has been working on for at least ``for_at_least`` seconds."""
    now = time.monotonic()
    running = [c for c in list(fake.calls) if not c.ended and now - c.started >= for_at_least]
    return str(running[0].payload["prompt"]) if running else None


def test_sigkill_mid_job_then_restart_completes_every_job_exactly_once(
    aws_env, a1111: FakeA1111, tmp_path: Path
) -> None:
    # A visibility wide enough that a late beat on a loaded machine never lets a message reappear.
    world = AgentWorld(aws_env.endpoint, visibility_timeout=5).create()
    a1111.behavior = Behavior(delay=1.5)
    ids = [world.submit(task(f"crash{i}")) for i in range(4)]
    env = world.agent_env(a1111.base_url)
    first = AgentProcess(env, tmp_path / "agent1.log").start().wait_ready()
    try:
        world.wait_notifications(1, timeout=30)
        # Kill while a later job is well into its runtime call (the earlier one is fully finished).
        victim = wait_until(lambda: _in_progress(a1111, 0.3), 30, what="a job in progress")
        first.kill()
    finally:
        first.stop()
    second = AgentProcess(env, tmp_path / "agent2.log").start().wait_ready()
    try:
        world.wait_notifications(4, timeout=60)
        wait_until(lambda: world.queue_counts() == (0, 0), 15, what="queue empty")
    finally:
        assert second.stop() == 0, second.log_tail()
    assert world.notes_per_task() == {i: 1 for i in ids}, "one notification per task"
    assert all(n["status"] == "completed" for n in world.notifications())
    for task_id in ids:
        keys = set(world.objects(f"output/{task_id}/"))
        assert keys == {f"output/{task_id}/{task_id}-1.png", f"output/{task_id}/{task_id}.out"}
        assert world.status_of(task_id) == "completed"
    runs = Counter(str(c.payload["prompt"]) for c in a1111.calls)
    assert runs[victim] == 2, "the killed attempt never finished, so its job ran again"
    # Every call at the runtime when the agent died ran again (the victim, and the second of the
    # RUNTIME_INFLIGHT=2 calls if it had been dispatched); nothing else did.
    assert len(ids) + 1 <= sum(runs.values()) <= len(ids) + 2
    assert all(count <= 2 for count in runs.values())


def test_sigterm_finishes_the_calls_at_the_runtime_and_returns_prefetched_messages_at_once(
    aws_env, a1111: FakeA1111, tmp_path: Path
) -> None:
    # A visibility timeout far longer than the test: a message visible again was handed back.
    world = AgentWorld(aws_env.endpoint, visibility_timeout=120).create()
    a1111.behavior = Behavior(delay=4.0)
    ids = [world.submit(task(f"drain{i}")) for i in range(5)]
    env = world.agent_env(a1111.base_url, PREFETCH="2", RUNTIME_INFLIGHT="2")
    agent = AgentProcess(env, tmp_path / "agent.log").start()
    try:
        agent.wait_ready()
        # Two calls at the runtime (one running, one queued there: both marked running once their
        # request is on the wire) and two prefetched.
        wait_until(lambda: world.queue_counts() == (1, 4), 60, what="four messages held")
        wait_until(lambda: _marked_running(world, ids) == 2, 60, what="two calls at the runtime")
        wait_until(lambda: _in_progress(a1111, 0.2), 30, what="a job in progress")
        agent.signal(signal.SIGTERM)
        signalled = time.monotonic()
        wait_until(lambda: world.queue_counts()[0] == 3, 60, what="prefetched messages visible again")
        returned_after = time.monotonic() - signalled
        assert agent.wait(60) == 0, agent.log_tail()
    finally:
        agent.stop()
    # Handed back, not left to time out: far sooner than the 120 s visibility timeout.
    assert returned_after < 60
    notes = world.notifications()
    at_runtime = {str(c.payload["prompt"]).removeprefix("a fake picture ") for c in a1111.calls}
    assert len(at_runtime) == 2 and len(a1111.calls) == 2
    assert sorted((n["id"], n["status"]) for n in notes) == sorted((i, "completed") for i in at_runtime)
    assert not any(c.interrupted for c in a1111.finished_calls())  # both ran to their end
    assert world.queue_counts() == (3, 0)
    assert {world.status_of(i) for i in set(ids) - at_runtime} == {"queued"}


def _marked_running(world: AgentWorld, ids: list[str]) -> int:
    return sum(world.status_of(i) == "running" for i in ids)


def test_healthz_turns_unhealthy_when_the_runtime_dies(world: AgentWorld, tmp_path: Path) -> None:
    fake = FakeA1111().start()
    port = fake.port
    env = world.agent_env(fake.base_url, HEALTH_CHECK_INTERVAL_SECONDS="0.2", HEALTH_FAILURE_THRESHOLD="2")
    agent = AgentProcess(env, tmp_path / "agent.log").start()
    try:
        agent.wait_ready()
        assert agent.probe("/healthz") == 200
        fake.stop()
        wait_until(lambda: agent.probe("/healthz") == 503, 10, what="/healthz 503")
        assert agent.probe("/ready") == 503
        fake = FakeA1111().start(port=port)
        wait_until(lambda: agent.probe("/healthz") == 200, 10, what="/healthz 200 again")
        assert b"queue_agent_runtime_healthy 1.0" in _get(agent.url("/metrics"))
    finally:
        assert agent.stop() == 0, agent.log_tail()
        fake.stop()


def test_runtime_never_ready_exits_non_zero(world: AgentWorld, tmp_path: Path) -> None:
    env = world.agent_env("http://127.0.0.1:9/sdapi/v1/", RUNTIME_READY_TIMEOUT_SECONDS="1")
    agent = AgentProcess(env, tmp_path / "agent.log").start()
    assert agent.wait(30) == 1
    assert "runtime did not become ready" in agent.log_tail()


def test_bad_setting_fails_at_start_naming_the_variable() -> None:
    env = {"SQS_QUEUE_URL": "http://q", "SNS_TOPIC_ARN": "arn:x", "S3_BUCKET": "bkt", "RUNTIME_NAME": "r"}
    result = subprocess.run(
        [sys.executable, "-m", "queue_agent"],
        env={**env, "PREFETCH": "lots", "RUNTIME_TYPE": "midjourney", "PATH": "/usr/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PREFETCH" in result.stderr and "RUNTIME_TYPE" in result.stderr


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bytes(resp.read())


def test_a_second_signal_aborts_the_running_job_and_hands_it_back(aws_env, a1111: FakeA1111, tmp_path: Path) -> None:
    world = AgentWorld(aws_env.endpoint, visibility_timeout=60).create()
    a1111.behavior = Behavior(delay=30.0)
    task_id = world.submit(task("abort-me"))
    agent = AgentProcess(world.agent_env(a1111.base_url), tmp_path / "agent.log").start()
    try:
        agent.wait_ready()
        wait_until(lambda: _in_progress(a1111, 0.2), 30, what="the job in progress")
        agent.abort(drain_timeout=5, exit_timeout=15)
    finally:
        agent.stop()
    assert a1111.interrupts == 1 and a1111.finished_calls()[0].interrupted
    assert world.queue_counts() == (1, 0)  # visible again at once, for the next pod to run from scratch
    assert world.notifications() == []
    assert world.status_of(task_id) == "running"  # not terminal: it will run again
