"""The rendered pod against the real components: the agent accepts the chart's environment, and the runtime,
started with the chart's own command and environment, answers the chart's own probes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference_api.cli import parser as runtime_parser
from local_stack.ports import free_port
from queue_agent.settings import load_settings
from tests.chart.harness import ROOT, Helm, Rendered, ValueSet

# Paths the pod gets from emptyDirs; a test process writes them under its own temp dir instead.
POD_ONLY_PATHS = ("HOME", "XDG_CACHE_HOME", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def _port(container: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


def test_agent_accepts_the_rendered_environment(rendered: Rendered) -> None:
    env = rendered.env("queue-agent")
    settings = load_settings(env)
    assert settings.runtime_type.value == env["RUNTIME_TYPE"]
    assert settings.runtime_name == env["RUNTIME_NAME"]
    assert settings.api_base_url == env["API_BASE_URL"]
    assert settings.job_timeout == float(env["JOB_TIMEOUT_SECONDS"])
    assert settings.metrics_port == _port(rendered.container("queue-agent"), "metrics")
    assert settings.prefetch == int(env["PREFETCH"])
    assert settings.runtime_inflight == int(env["RUNTIME_INFLIGHT"])
    assert settings.dynamic_sd_model is (env["DYNAMIC_SD_MODEL"] == "true")
    assert settings.disable_xray is (env["DISABLE_XRAY"] == "true")
    for scaled in rendered.of_kind("ScaledObject"):
        assert scaled["spec"]["triggers"][0]["metadata"]["queueURL"] == settings.queue_url


def test_rendered_runtime_command_is_the_runtime_cli(rendered: Rendered) -> None:
    runtime = rendered.container("runtime")
    if rendered.env("queue-agent")["RUNTIME_TYPE"] != "diffusers":
        # User images keep their own entrypoint unless the values name one.
        assert "command" not in runtime
        return
    command = runtime["command"]
    assert command[:3] == ["python", "-m", "inference_api"]
    args = runtime_parser().parse_args(command[3:])
    assert args.command == "serve"
    models = next(m for m in runtime["volumeMounts"] if m["name"] == "models")
    assert args.models == models["mountPath"]
    assert args.port == _port(runtime, "http")
    # Loopback: only the agent in the same pod reaches it; the kubelet probes it from inside the container.
    assert args.host == "127.0.0.1"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, "-m", "inference_api", "build-tiny-model", str(models), "--name", "tiny-sd"],
        check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=240,
    )  # fmt: skip
    return models


@pytest.fixture
def started_runtime(
    helm: Helm, value_sets: dict[str, ValueSet], tiny_models: Path, tmp_path: Path
) -> Iterator[tuple[dict[str, Any], str, Path]]:
    """The diffusers runtime run from the rendered container spec, on a free loopback port."""
    port = free_port()
    out = helm.render(
        value_sets["required"],
        "--set", f"runtime.inferenceApi.modelMountPath={tiny_models}",
        "--set", f"runtime.inferenceApi.port={port}",
        "--set", "runtime.inferenceApi.modelFilename=tiny-sd",
    )  # fmt: skip
    runtime = out.container("runtime")
    env = out.env("runtime")
    for key in POD_ONLY_PATHS:
        env[key] = str(tmp_path / key.lower())
    env |= {"PATH": os.environ["PATH"], "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "runtime.log"
    # The rendered command verbatim, but with this venv's interpreter for `python`.
    command = [sys.executable, *runtime["command"][1:]]
    with log.open("w") as sink:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield runtime, f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
def test_runtime_started_as_rendered_answers_its_probes(started_runtime: tuple[dict[str, Any], str, Path]) -> None:
    runtime, base, log = started_runtime
    startup = runtime["startupProbe"]
    # The chart allows startupTimeoutSeconds; a tiny model on a shared CPU needs far less.
    deadline = time.monotonic() + min(startup["periodSeconds"] * startup["failureThreshold"], 180)

    def probe(name: str) -> int:
        # The rendered exec probe verbatim, with this venv's interpreter for `python`.
        command = [sys.executable, *runtime[name]["exec"]["command"][1:]]
        return subprocess.run(command, capture_output=True, timeout=30).returncode

    passed = False
    while time.monotonic() < deadline and not (passed := probe("startupProbe") == 0):
        time.sleep(0.2)
    assert passed, f"the startup probe never passed:\n{log.read_text()[-3000:]}"
    for name in ("readinessProbe", "livenessProbe"):
        assert probe(name) == 0, name
    with httpx.Client(base_url=base, timeout=5) as client:
        assert client.get("/ready").json()["model"] == "tiny-sd"
