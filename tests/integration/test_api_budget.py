"""The review's attacks on the per-task budget, as a key holder would send them: through the local gateway to
the real submit handler on moto. Each is a 400 naming the field and the limit, and nothing reaches a queue."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from task_api import app

from contract import DEFAULT_LIMITS
from local_stack.gateway import LocalGateway
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack

api_stack = support.api_stack
KEY = "budget-key"
REF = "https://images.example.com/in.png"


@pytest.fixture
def client(api_stack: ApiStack) -> Iterator[httpx.Client]:
    with LocalGateway(KEY, app.handler) as gw, httpx.Client(base_url=gw.url, headers={"x-api-key": KEY}) as c:
        yield c


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _body(tasktype: str, content: dict[str, Any], **metadata: Any) -> bytes:
    task = {"metadata": {"runtime": "sdruntime", "tasktype": tasktype, **metadata}, "content": content}
    return json.dumps({"task": task}).encode()


ATTACKS = {
    # 500 https inputs of 20 MB each: the agent would have fetched 10 GB.
    "500 init_images": (
        _body("image-to-image", {"prompt": "x", "init_images": [REF] * 500}),
        "task.content",
        "max_image_inputs",
    ),
    # Inputs the contract did not count: ControlNet units in alwayson_scripts.
    "ControlNet units": (
        _body("text-to-image", {"prompt": "x", "alwayson_scripts": {"cn": {"args": [{"image": REF}] * 17}}}),
        "task.content",
        "max_image_inputs",
    ),
    # A dict-valued ControlNet image holding a URL for the webui to fetch itself.
    "dict-valued ControlNet image": (
        _body(
            "text-to-image",
            {"prompt": "x", "alwayson_scripts": {"cn": {"args": [{"image": {"image": "http://10.0.0.1/a.png"}}]}}},
        ),
        "task.content.alwayson_scripts.cn.args.0.image.image",
        "scheme",
    ),
    # A positional script argument holding a URL to the metadata service.
    "positional script arg": (
        _body("text-to-image", {"prompt": "x", "script_args": [0, "http://169.254.169.254/latest/meta-data/"]}),
        "task.content.script_args.1",
        "scheme",
    ),
    # The runtime memory bomb: a tiny valid PNG, crop-to-fit to a large box.
    "crop-to-fit cover box": (
        _body(
            "extra-single-image",
            {"image": _png(1, 4000), "resize_mode": 1, "upscaling_resize_w": 2048, "upscaling_resize_h": 2048},
        ),
        "task.content.upscaling_crop",
        "max_work_pixels",
    ),
    # Hires fix doubling an already large image.
    "hires size": (
        _body("text-to-image", {"prompt": "x", "width": 2048, "height": 2048, "enable_hr": True, "hr_scale": 2}),
        "task.content.hr_scale",
        "max_side",
    ),
    # A context near the body limit, echoed in every notification.
    "large context": (
        _body("text-to-image", {"prompt": "x"}, context={"blob": "x" * 200_000}),
        "task.metadata.context",
        "max_bytes",
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_budget_attack_is_a_400_naming_the_field_and_limit(
    client: httpx.Client, api_stack: ApiStack, name: str
) -> None:
    body, field, rule = ATTACKS[name]
    response = client.post("/tasks", content=body)
    assert response.status_code == 400, response.text
    issues = {f["field"]: f for f in response.json()["error"]["fields"]}
    assert issues[field]["rule"] == rule
    assert all(api_stack.drain(runtime) == [] for runtime in api_stack.queues)


def test_the_largest_request_the_budget_allows_is_accepted(client: httpx.Client, api_stack: ApiStack) -> None:
    content = {"prompt": "x", "init_images": [REF] * DEFAULT_LIMITS.max_image_inputs, "width": 1024, "height": 1024}
    body = _body("image-to-image", content, context={"c": "x" * (DEFAULT_LIMITS.max_context_bytes - 100)})
    response = client.post("/tasks", content=body)
    assert response.status_code == 202, response.text
    (queued,) = api_stack.drain("sdruntime")
    assert len(queued["body"]["content"]["init_images"]) == DEFAULT_LIMITS.max_image_inputs
