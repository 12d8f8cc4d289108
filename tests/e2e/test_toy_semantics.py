"""The toy-world model through the whole local stack: its pictures answer their prompts.

The stack serves the toy-world model (trained on first use, then cached in ``.local-stack/toy-model`` as
``make demo`` caches it). Clients send only a prompt and a seed: size, steps and guidance are the model's own
defaults. Each picture comes back from S3 and is read with ``inference_api.toy_scenes.read_picture``: the
dominant colour of the non-background region, and on which side of the centre line it lies.

- 24 seeded one-shape prompts: the colour matches in at least 90 % of the pictures, the side in at least 80 %.
- Image-to-image with a colour change in the prompt: a drawn scene is redrawn in the prompt's colour, on
  the same side.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from contract import split_s3_uri
from inference_api.toy import ToyRecipe
from inference_api.toy_scenes import Scene, Shape, evaluation_scenes, read_picture, render
from local_stack.notifications import NotificationInbox
from local_stack.resources import client
from local_stack.stack import LocalStack, StackOptions
from tests.e2e.conftest import ROOT

PROMPTS = 24
RECOLOURS = (("red", "blue", "left"), ("yellow", "purple", "right"), ("green", "orange", "left"))
SIDE = ToyRecipe().size
TOY_CACHE = ROOT / ".local-stack" / "toy-model"  # the cache `make demo` fills and reuses


@pytest.fixture(scope="module")
def toy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("toy-stack")
    config = workdir / "config.yaml"
    runtime = {"name": "sdruntime", "type": "diffusers", "modelFilename": "toy-world"}
    document = {"stackName": "toy", "modelBucketArn": "arn:aws:s3:::toy-models", "modelsRuntime": [runtime]}
    config.write_text(yaml.safe_dump(document))
    options = StackOptions(config_path=config, workdir=workdir, generated_model="toy", toy_cache=TOY_CACHE)
    with LocalStack(options) as running:
        yield running


def _run(stack: LocalStack, tasks: dict[str, dict], timeout: float = 600) -> dict[str, torch.Tensor]:
    """Submit each task through the API; return each one's picture (``H x W x 3``, 0..255) as S3 holds it."""
    assert stack.resources is not None
    inbox = NotificationInbox(stack.aws_endpoint, stack.resources.results_topic_arn, f"toy-{next(iter(tasks))}")
    with httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30) as api:
        for task_id, (tasktype, content) in tasks.items():
            metadata = {"id": task_id, "runtime": "sdruntime", "tasktype": tasktype}
            response = api.post("/tasks", json={"task": {"metadata": metadata, "content": content}})
            assert response.status_code in (200, 202), response.text
    received = inbox.wait_for(tasks, timeout=timeout)
    s3 = client("s3", stack.aws_endpoint)
    pictures = {}
    for task_id, got in received.items():
        note = got.notification
        assert note.status == "completed", note
        bucket, key = split_s3_uri(note.image_url[0])
        image = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).convert("RGB")
        pictures[task_id] = torch.from_numpy(np.asarray(image).copy())
    return pictures


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first use trains the model (about 8 minutes on 2 cores), then 24 pictures
def test_pictures_show_the_prompts_colour_and_side(toy_stack: LocalStack) -> None:
    scenes = {f"toy-t2i-{n}": scene for n, scene in enumerate(evaluation_scenes(PROMPTS))}
    tasks = {
        task_id: ("text-to-image", {"prompt": scene.caption(), "seed": n})
        for n, (task_id, scene) in enumerate(scenes.items())
    }
    pictures = _run(toy_stack, tasks)
    readings = {task_id: read_picture(pictures[task_id], scene.background) for task_id, scene in scenes.items()}
    colour = sum(readings[t].colour == s.shapes[0].colour for t, s in scenes.items()) / PROMPTS
    side = sum(readings[t].side == s.shapes[0].position for t, s in scenes.items()) / PROMPTS
    wrong = {s.caption(): readings[t] for t, s in scenes.items() if readings[t].colour != s.shapes[0].colour}
    assert colour >= 0.9, wrong
    assert side >= 0.8, readings
    assert {tuple(p.shape) for p in pictures.values()} == {(SIDE, SIDE, 3)}  # the model's own default size


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_image_to_image_moves_the_colour_the_prompt_changes(toy_stack: LocalStack) -> None:
    assert toy_stack.resources is not None
    staging = toy_stack.resources.input_buckets[0]
    s3 = client("s3", toy_stack.aws_endpoint)
    tasks = {}
    for n, (before, after, side) in enumerate(RECOLOURS):
        source = Scene((Shape("circle", before, side),), "white")
        png = io.BytesIO()
        Image.fromarray((render(source, SIDE) * 255).round().byte().permute(1, 2, 0).numpy()).save(png, "PNG")
        s3.put_object(Bucket=staging, Key=f"inputs/recolour-{n}.png", Body=png.getvalue())
        target = Scene((Shape("circle", after, side),), "white")
        content = {
            "prompt": target.caption(),
            "seed": n,
            "init_images": [f"s3://{staging}/inputs/recolour-{n}.png"],
            "denoising_strength": 0.75,
        }
        tasks[f"toy-i2i-{n}"] = ("image-to-image", content)
    pictures = _run(toy_stack, tasks)
    for n, (before, after, side) in enumerate(RECOLOURS):
        reading = read_picture(pictures[f"toy-i2i-{n}"], "white")
        assert (reading.colour, reading.side) == (after, side), (before, after, side)
