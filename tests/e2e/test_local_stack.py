"""The whole local stack through its public HTTP API: submit, generate, store, notify, read status."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
from PIL import Image

from contract import image_key, output_key, s3_uri, split_s3_uri
from local_stack.demo import input_image_png
from local_stack.notifications import NotificationInbox
from local_stack.resources import client
from local_stack.stack import LocalStack
from sdq.cli import EXIT_API, EXIT_OK, EXIT_TASK_FAILED
from sdq.cli import main as sdq_main

SIDE = 64
STEPS = 2


def _task(task_id: str, tasktype: str, content: dict) -> dict:
    metadata = {"id": task_id, "runtime": "sdruntime", "tasktype": tasktype, "context": {"case": task_id}}
    return {"task": {"metadata": metadata, "content": content}}


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()  # decodes every pixel: a truncated or corrupt file fails here
    return image


def test_five_tasks_complete_end_to_end(stack: LocalStack, inbox: NotificationInbox, api: httpx.Client):
    assert stack.resources is not None
    bucket = stack.resources.bucket
    staging = stack.resources.input_buckets[0]  # where clients stage inputs (config.yaml's inputBuckets)
    s3 = client("s3", stack.aws_endpoint)
    s3.put_object(Bucket=staging, Key="inputs/e2e.png", Body=input_image_png(SIDE))
    source = f"s3://{staging}/inputs/e2e.png"
    gen = {"prompt": "a lighthouse at dusk", "steps": STEPS, "width": SIDE, "height": SIDE}
    # (route, body, number of images, side of each image)
    cases = {
        "t2i-a": ("/tasks", _task("t2i-a", "text-to-image", {**gen, "seed": 1}), 1, SIDE),
        "t2i-b": ("/tasks", _task("t2i-b", "text-to-image", {**gen, "seed": 2}), 1, SIDE),
        # The replaced sample's route, with a batch: two images under one task.
        "t2i-batch": ("/v1alpha2", _task("t2i-batch", "text-to-image", {**gen, "seed": 5, "batch_size": 2}), 2, SIDE),
        "i2i": (
            "/tasks",
            _task("i2i", "image-to-image", {**gen, "seed": 3, "init_images": [source], "denoising_strength": 0.5}),
            1,
            SIDE,
        ),
        "upscale": (
            "/tasks",
            _task("upscale", "extra-single-image", {"image": source, "upscaling_resize": 2, "upscaler_1": "Lanczos"}),
            1,
            2 * SIDE,
        ),
    }
    for task_id, (route, body, _, _) in cases.items():
        response = api.post(route, json=body)
        assert response.status_code in (200, 202), response.text
        assert response.json()["id"] == task_id
        if route == "/tasks":
            assert response.headers["location"].endswith(f"/tasks/{task_id}")

    received = inbox.wait_for(cases, timeout=180)

    pixels: dict[str, bytes] = {}
    for task_id, (_, _, count, side) in cases.items():
        got = received[task_id]
        note = got.notification
        assert (note.status, note.result, note.error) == ("completed", True, None), note
        assert got.attributes == {"runtime": "sdruntime", "status": "completed"}
        assert note.runtime == "sdruntime" and note.context == {"case": task_id}
        assert note.image_url == [s3_uri(bucket, image_key("output", task_id, n)) for n in range(1, count + 1)]
        assert note.output_url == s3_uri(bucket, output_key("output", task_id))
        stored = [s3.get_object(Bucket=b, Key=k)["Body"].read() for b, k in map(split_s3_uri, note.image_url)]
        for data in stored:
            assert _png(data).size == (side, side)
        pixels[task_id] = _png(stored[0]).tobytes()

        record = api.get(f"/tasks/{task_id}").json()
        assert record["status"] == "completed"
        assert record["image_url"] == note.image_url
        # The status API hands out presigned URLs a browser can fetch without credentials.
        fetched = [httpx.get(link["url"], timeout=10).content for link in record["images"]]
        assert fetched == stored
    assert pixels["t2i-a"] != pixels["t2i-b"], "different seeds must give different images"


def test_unknown_runtime_is_refused_naming_the_local_ones(stack: LocalStack, api: httpx.Client):
    # The comfyui runtime of the config has no local stand-in: the API must not accept work nobody will do.
    assert stack.skipped == ["comfy"] and stack.runtime_names == ["sdruntime"]
    bad = _task("bad", "text-to-image", {"prompt": "x"})
    bad["task"]["metadata"]["runtime"] = "comfy"
    response = api.post("/tasks", json=bad)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields[0]["field"] == "task.metadata.runtime" and "sdruntime" in fields[0]["message"]


def test_sdq_drives_the_local_stack(stack: LocalStack, tmp_path: Path):
    conn = ["--endpoint", stack.api_url, "--api-key", stack.api_key]
    out, err = io.StringIO(), io.StringIO()
    args = ["submit", "a red fox", "--runtime", "sdruntime", "--size", f"{SIDE}x{SIDE}", "--steps", str(STEPS)]
    code = sdq_main([*args, "--seed", "9", "--wait", "--download", str(tmp_path), *conn], out=out, err=err)
    assert code == EXIT_OK, err.getvalue()
    task_id, downloaded = out.getvalue().splitlines()
    assert Path(downloaded) == tmp_path / f"{task_id}-1.png"
    assert _png(Path(downloaded).read_bytes()).size == (SIDE, SIDE)

    out = io.StringIO()
    assert sdq_main(["status", task_id, *conn], out=out, err=io.StringIO()) == EXIT_OK
    assert "status       completed" in out.getvalue()

    err = io.StringIO()
    code = sdq_main(["submit", "x", "--runtime", "nope", *conn], out=io.StringIO(), err=err)
    assert code == EXIT_API
    assert "task.metadata.runtime" in err.getvalue() and "sdruntime" in err.getvalue()
    assert stack.api_key not in err.getvalue()


def test_sdq_cancels_a_running_task(stack: LocalStack, inbox: NotificationInbox, api: httpx.Client):
    conn = ["--endpoint", stack.api_url, "--api-key", stack.api_key]
    out = io.StringIO()
    # Long enough on the tiny model to be caught running.
    args = [
        "submit",
        "a long one",
        "--runtime",
        "sdruntime",
        "--size",
        "256x256",
        "--steps",
        "150",
        "--id",
        "to-cancel",
    ]
    assert sdq_main([*args, *conn], out=out, err=io.StringIO()) == EXIT_OK
    deadline = time.monotonic() + 60
    while api.get("/tasks/to-cancel").json()["status"] != "running":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.2)
    out = io.StringIO()
    assert sdq_main(["cancel", "to-cancel", *conn], out=out, err=io.StringIO()) == EXIT_OK
    assert out.getvalue().startswith("to-cancel: cancel")
    err = io.StringIO()
    code = sdq_main(["wait", "to-cancel", "--timeout", "60", "--interval", "0.2", *conn], out=io.StringIO(), err=err)
    assert code == EXIT_TASK_FAILED and "task to-cancel cancelled" in err.getvalue()
    note = inbox.wait_for(["to-cancel"], timeout=30)["to-cancel"]
    assert (note.notification.status, note.notification.result) == ("cancelled", False)
    assert note.attributes["status"] == "cancelled"
