"""One local stack for the e2e tests: moto, the gateway with the real handlers, the real agent and runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from local_stack.notifications import NotificationInbox
from local_stack.stack import LocalStack, StackOptions

ROOT = Path(__file__).resolve().parents[2]

E2E_CONFIG = {
    "stackName": "e2e",
    "modelBucketArn": "arn:aws:s3:::e2e-models",
    "modelsRuntime": [
        # The model the replaced sample's v1alpha1 payloads name: they are routed on it.
        {"name": "sdruntime", "type": "diffusers", "modelFilename": "sd_xl_turbo_1.0.safetensors"},
        # No local stand-in: the stack must skip it (its queue still exists) and say so.
        {"name": "comfy", "type": "comfyui"},
    ],
    "queue": {"visibilityTimeout": 60},
}

# Shared with `make demo`: the tiny model is built once per builder version (fingerprinted, atomic).
MODEL_CACHE = ROOT / ".local-stack" / "models"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("local-stack")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(E2E_CONFIG))
    # The agent checks for cancel requests more often than in production, so the cancel test is quick.
    extra_env = {"agent": {"CANCEL_POLL_SECONDS": "0.5"}}
    options = StackOptions(
        config_path=config, workdir=workdir, generated_model="tiny", model_cache=MODEL_CACHE, extra_env=extra_env
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="session")
def inbox(stack: LocalStack) -> NotificationInbox:
    """A client's own subscription to the results topic, like a real consumer of the service."""
    assert stack.resources is not None
    return NotificationInbox(stack.aws_endpoint, stack.resources.results_topic_arn, "e2e-client-results")


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30) as client:
        yield client
