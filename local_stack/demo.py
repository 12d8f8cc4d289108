"""``make demo``: bring the local stack up, run a few tasks through the public API, show the results."""

from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import torch

from inference_api.toy_scenes import Scene, Shape, render
from local_stack.notifications import NotificationInbox, Received
from local_stack.resources import client
from local_stack.stack import LocalStack
from sdq.client import ApiClient, Endpoint, build_request
from sdq.results import result_urls

INPUT_KEY = "inputs/demo-input.png"


@dataclass(frozen=True)
class DemoTask:
    label: str
    body: dict[str, Any]


# Prompts in the toy-world model's vocabulary (the default model); real checkpoints draw them too.
TXT2IMG_PROMPT = "a red circle on the left, a blue square on the right, on a white background"
INPUT_SCENE = Scene((Shape("circle", "red", "left"),), "white")
IMG2IMG_PROMPT = "a blue circle on the left, on a white background"


def input_image_png(side: int = 32, scene: Scene = INPUT_SCENE) -> bytes:
    """A toy-world scene (a red circle on the left): the image-to-image and upscale input."""
    from PIL import Image

    pixels = (render(scene, side) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def upload_input(stack: LocalStack) -> str:
    assert stack.resources is not None
    s3 = client("s3", stack.aws_endpoint)
    bucket = stack.resources.input_buckets[0]  # where clients stage inputs (config.yaml's inputBuckets)
    s3.put_object(Bucket=bucket, Key=INPUT_KEY, Body=input_image_png(), ContentType="image/png")
    return f"s3://{bucket}/{INPUT_KEY}"


def demo_tasks(runtime: str, input_uri: str, *, side: int | None, steps: int | None, run: str) -> list[DemoTask]:
    """Text-to-image twice (two seeds), image-to-image from an s3:// input, and an upscale of it.

    Without ``side``/``steps`` the requests leave them out: the served model's own defaults apply."""
    size = (side, side) if side else None
    common: dict[str, Any] = {"runtime": runtime, "steps": steps, "size": size, "context": {"demo": run}}
    t2i_a = build_request(TXT2IMG_PROMPT, seed=1, task_id=f"t2i-seed1-{run}", **common)
    t2i_b = build_request(TXT2IMG_PROMPT, seed=2, task_id=f"t2i-seed2-{run}", **common)
    i2i = build_request(
        IMG2IMG_PROMPT,
        tasktype="image-to-image",
        init_image=input_uri,
        seed=3,
        task_id=f"i2i-{run}",
        **common,
    )
    i2i["task"]["content"]["denoising_strength"] = 0.6
    upscale = {
        "task": {
            "metadata": {"id": f"upscale-{run}", "runtime": runtime, "tasktype": "extra-single-image"},
            "content": {"image": input_uri, "upscaling_resize": 2, "upscaler_1": "Lanczos"},
        }
    }
    return [
        DemoTask("text-to-image, seed 1", t2i_a),
        DemoTask("text-to-image, seed 2", t2i_b),
        DemoTask("image-to-image (s3:// input)", i2i),
        DemoTask("extra-single-image (2x)", upscale),
    ]


@dataclass
class Outcome:
    task: DemoTask
    task_id: str
    status: str
    seconds: float
    run_seconds: float | None
    files: list[Path]
    error: str | None


def _run_seconds(record: dict[str, Any]) -> float | None:
    try:
        started = datetime.fromisoformat(str(record["started_at"]))
        finished = datetime.fromisoformat(str(record["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return (finished - started).total_seconds()


def run_tasks(
    stack: LocalStack, outputs: Path, *, side: int | None = None, steps: int | None = None, timeout: float = 300.0
) -> list[Outcome]:
    """Submit the demo tasks through the HTTP API, wait for their notifications, download the images."""
    assert stack.resources is not None
    # Readable, and unique per run so that a second demo adds images instead of overwriting.
    run = f"{time.strftime('%H%M%S')}-{secrets.token_hex(2)}"
    inbox = NotificationInbox(stack.aws_endpoint, stack.resources.results_topic_arn, f"demo-results-{run}")
    tasks = demo_tasks(stack.runtime_names[0], upload_input(stack), side=side, steps=steps, run=run)
    submitted: dict[str, tuple[DemoTask, float]] = {}
    with ApiClient(Endpoint(stack.api_url, stack.api_key)) as api:
        for task in tasks:
            accepted = api.submit(task.body)
            submitted[str(accepted["id"])] = (task, time.monotonic())
        notes: dict[str, Received] = inbox.wait_for(submitted, timeout)
        outcomes = []
        for task_id, (task, sent_at) in submitted.items():
            note = notes[task_id]
            record = api.status(task_id)
            files = [api.download(url, outputs) for url in result_urls(record)] if note.notification.result else []
            error = note.notification.error
            outcomes.append(
                Outcome(
                    task,
                    task_id,
                    note.notification.status,
                    note.received_at - sent_at,
                    _run_seconds(record),
                    files,
                    f"{error.code}: {error.message}" if error else None,
                )
            )
    return outcomes


def print_table(outcomes: list[Outcome], out: TextIO) -> None:
    rows = [("task", "status", "total", "generate", "images")]
    for o in outcomes:
        run = f"{o.run_seconds:.1f}s" if o.run_seconds is not None else "-"
        images = ", ".join(str(f) for f in o.files) or (o.error or "-")
        rows.append((o.task.label, o.status, f"{o.seconds:.1f}s", run, images))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "  " + "-" * 6 + "\n")
