"""pytest fixtures for the agent's tests; test modules import the ones they use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.moto_server import MotoServer
from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import AgentWorld
from tests.agent_fakes.tls import IMAGE_HOST, TlsServer, make_certs


# Named fixtures, so that importing them into a test module does not shadow the test's parameters.
@pytest.fixture(name="world")
def world_fixture(aws_env: MotoServer) -> AgentWorld:
    return AgentWorld(aws_env.endpoint).create()


@pytest.fixture(name="a1111")
def a1111_fixture() -> Iterator[FakeA1111]:
    with FakeA1111() as fake:
        yield fake


@pytest.fixture(name="certs", scope="module")
def tls_certs_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(ca, cert, key) for IMAGE_HOST."""
    return make_certs(tmp_path_factory.mktemp("tls"), IMAGE_HOST)


@pytest.fixture(name="server")
def tls_server_fixture(certs: tuple[Path, Path, Path]) -> Iterator[TlsServer]:
    """A fresh HTTPS server for IMAGE_HOST (the test resolves the name to it) with no routes yet."""
    _, cert, key = certs
    srv = TlsServer(cert, key).start()
    yield srv
    srv.stop()
