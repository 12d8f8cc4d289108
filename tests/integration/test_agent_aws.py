"""The agent against an AWS that is slow or fails: an HTTP proxy in front of moto (``AwsProxy``).

- Faults: S3, SNS, SQS and DynamoDB answer throttling errors and 5xx at random; every job still
  ends exactly once (one terminal status, one notification, the message gone).
- Latency: every AWS call takes 0.25 s; the runtime's call log shows each next call starting before
  the previous job's outputs are stored, so the runtime never waits for AWS.
"""

from __future__ import annotations

import itertools

import pytest

from tests.agent_fakes.a1111 import Behavior, FakeA1111
from tests.agent_fakes.aws_proxy import AwsProxy
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until, task
from tests.agent_fakes.fixtures import a1111_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent

pytestmark = pytest.mark.timeout(300)


async def test_every_job_ends_exactly_once_while_aws_throttles_and_fails_at_random(
    aws_env, a1111: FakeA1111, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide margins: a visibility timeout far above a beat's retries, and deliveries to spare.
    world = AgentWorld(aws_env.endpoint, visibility_timeout=10, max_receive_count=10).create()
    a1111.behavior = Behavior(delay=0.2)
    ids = [world.submit(task(f"faulty{i}")) for i in range(8)]
    with AwsProxy(aws_env.endpoint, fault_rate=0.3, seed=11) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # the agent's clients; the test's talk to moto
        env = world.agent_env(a1111.base_url, RUNTIME_INFLIGHT="2", RETRY_VISIBILITY_SECONDS="1")
        async with running_agent(env):
            await world.await_notifications(len(ids), timeout=180)
            await async_wait_until(lambda: world.queue_counts() == (0, 0), 120, what="every message deleted")
        injected = [c for c in proxy.calls() if c.injected]
    assert world.notes_per_task() == {i: 1 for i in ids}
    assert all(n["status"] == "completed" for n in world.notifications())
    assert {world.status_of(i) for i in ids} == {"completed"}
    assert world.dlq_bodies() == []
    # The faults really reached every service the agent uses.
    assert {c.service for c in injected} == {"s3", "sns", "sqs", "dynamodb"}, injected


@pytest.mark.parametrize("inflight", ["1", "2"])
async def test_the_next_runtime_call_starts_before_the_previous_jobs_upload_ends(
    aws_env, a1111: FakeA1111, inflight: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = AgentWorld(aws_env.endpoint, visibility_timeout=30).create()
    a1111.behavior = Behavior(delay=1.0)
    ids = [world.submit(task(f"overlap{i}")) for i in range(4)]
    with AwsProxy(aws_env.endpoint, delay=0.25) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        env = world.agent_env(a1111.base_url, RUNTIME_INFLIGHT=inflight)
        async with running_agent(env):
            await world.await_notifications(len(ids), timeout=120)
        stored = {
            c.path.rsplit("/", 1)[1].removesuffix(".out"): c.answered
            for c in proxy.calls("s3")
            if c.operation == "PUT" and c.path.endswith(".out")
        }
    assert sorted(stored) == sorted(ids)
    calls = sorted(a1111.finished_calls(200), key=lambda c: c.began)
    assert len(calls) == len(ids)
    for previous, following in itertools.pairwise(calls):
        previous_id = str(previous.payload["prompt"]).removeprefix("a fake picture ")
        # The runtime had its next call while the agent was still storing the previous job's outputs.
        assert following.began < stored[previous_id], (previous_id, following.began, stored[previous_id])
