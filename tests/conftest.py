"""Fixtures shared by every test layer.

AWS is a real moto server over HTTP; clients are real boto3/aioboto3 clients pointed at it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.moto_server import FAKE_AWS_ENV, MotoServer

# torch threads fight each other on a 2-core machine; one thread is faster and predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
TEST_FIXTURES = ROOT / "tests" / "fixtures"
# The replaced sample's real payloads and config, when the workspace provides them (SAMPLE_FIXTURES points
# elsewhere, e.g. from a git worktree).
SHARED_FIXTURES = Path(os.environ.get("SAMPLE_FIXTURES") or ROOT.parent / "shared" / "fixtures" / "aws-sample")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(log_path=log) as server:
        yield server


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean moto server and this process's AWS environment pointed at it."""
    moto_server.reset()
    for key, value in moto_server.client_env().items():
        monkeypatch.setenv(key, value)
    yield moto_server


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever a test forgets, it can never sign a request with real credentials.
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
