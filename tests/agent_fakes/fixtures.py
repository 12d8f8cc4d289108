"""pytest fixtures for the agent's tests; test modules import the ones they use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.moto_server import MotoServer
from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import AgentWorld


# Named fixtures, so that importing them into a test module does not shadow the test's parameters.
@pytest.fixture(name="world")
def world_fixture(aws_env: MotoServer) -> AgentWorld:
    return AgentWorld(aws_env.endpoint).create()


@pytest.fixture(name="a1111")
def a1111_fixture() -> Iterator[FakeA1111]:
    with FakeA1111() as fake:
        yield fake
