"""Acceptance: a full-size SD 1.5 checkpoint alone in the model folder, as users download it, serves offline.

``build-tiny-model --full-size --single-file --no-configs`` writes the published SD 1.5 dimensions (random
fp16 weights, 2 GB) in the original layout and nothing else. The runtime must find everything else in the
package: the configs of the family and the CLIP vocabulary, with the hub unreachable and an empty HF cache.
Then the whole local stack runs on that folder and a task completes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from inference_api.checkpoints import read_header
from local_stack.notifications import NotificationInbox
from local_stack.stack import LocalStack, StackOptions
from tests.runtime_helpers import ROOT, decode_png, serve_subprocess

SIDE = 64
LOAD_TIMEOUT = 900.0  # loading 1B parameters on a shared 2-core machine; events are awaited, never slept on
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def lone_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    models = tmp_path_factory.mktemp("full-size-models")
    argv = [sys.executable, "-m", "inference_api", "build-tiny-model", str(models)]
    argv += ["--full-size", "--single-file", "--no-configs"]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home"), "OMP_NUM_THREADS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_the_checkpoint_is_alone_and_in_the_original_layout(lone_checkpoint: Path) -> None:
    assert [p.name for p in lone_checkpoint.parent.iterdir()] == [lone_checkpoint.name]
    shapes = read_header(lone_checkpoint).shapes
    assert shapes["model.diffusion_model.input_blocks.0.0.weight"] == (320, 4, 3, 3)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)
    assert shapes["first_stage_model.decoder.conv_out.weight"] == (3, 128, 3, 3)
    # What released SD 1.x files carry besides the weights, which the loader must pass over.
    assert shapes["alphas_cumprod"] == (1000,)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.position_ids"] == (1, 77)


def test_serves_offline_and_a_task_completes_on_the_local_stack(
    lone_checkpoint: Path, offline: dict[str, str], tmp_path: Path
) -> None:
    models = lone_checkpoint.parent
    with serve_subprocess(models, tmp_path / "runtime.log", ready_timeout=LOAD_TIMEOUT) as server:
        ready = server.client.get("/ready")
        assert ready.status_code == 200 and ready.json()["model"] == lone_checkpoint.name
        body = {"prompt": "a lighthouse at dusk", "steps": 1, "width": SIDE, "height": SIDE, "seed": 3}
        response = server.client.post("/sdapi/v1/txt2img", json=body, timeout=600)
        assert response.status_code == 200, response.text
        assert decode_png(response.json()["images"][0]).size == (SIDE, SIDE)
    assert not list(Path(offline["HF_HOME"]).rglob("*.json")), "nothing may be fetched into the HF cache"

    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "stackName": "fullsize",
                "modelBucketArn": "arn:aws:s3:::fullsize-models",
                "modelsRuntime": [{"name": "sdruntime", "type": "diffusers", "modelFilename": lone_checkpoint.name}],
            }
        )
    )
    options = StackOptions(
        config_path=config,
        model_dir=models,
        workdir=tmp_path / "stack",
        start_timeout=LOAD_TIMEOUT,
        extra_env={"runtime": offline},
    )
    with LocalStack(options) as stack:
        assert stack.resources is not None
        inbox = NotificationInbox(stack.aws_endpoint, stack.resources.results_topic_arn, "fullsize-results")
        metadata = {"id": "full-size", "runtime": "sdruntime", "tasktype": "text-to-image"}
        content = {"prompt": "a lighthouse at dusk", "steps": 1, "width": SIDE, "height": SIDE, "seed": 1}
        with httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30) as api:
            response = api.post("/tasks", json={"task": {"metadata": metadata, "content": content}})
            assert response.status_code == 202, response.text
            note = inbox.wait_for(["full-size"], timeout=600)["full-size"].notification
            assert (note.status, note.result, note.error) == ("completed", True, None), note
            assert api.get("/tasks/full-size").json()["status"] == "completed"
