"""The per-task budget at submit: image inputs wherever they hide, addresses at any depth, derived pixel sizes,
context and the worst-case notification. Each refusal names the field and the limit."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image

from contract import DEFAULT_LIMITS, ContractError, TaskType, iter_image_fields, parse_request
from contract.budget import extras_work_sizes, notification_bound
from contract.image_header import image_size
from contract.request import content_issues

L = DEFAULT_LIMITS


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _request(tasktype: str, content: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"task": {"metadata": {"runtime": "sdruntime", "tasktype": tasktype, **metadata}, "content": content}}


def _refusal(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    with pytest.raises(ContractError) as caught:
        parse_request(body)
    assert caught.value.status == 400
    return {i.field: (i.rule, i.message) for i in caught.value.issues}


def test_image_inputs_are_counted_wherever_they_are() -> None:
    ref = "https://images.example.com/a.png"
    unit = {"image": {"image": ref, "mask": ref}, "module": "canny"}
    content = {
        "prompt": "x",
        "init_images": [ref] * 10,
        "mask": ref,
        "alwayson_scripts": {"controlnet": {"args": [unit, unit, unit]}},
    }
    assert sum(1 for _ in iter_image_fields(TaskType.IMAGE_TO_IMAGE, content)) == 17
    rule, message = _refusal(_request("image-to-image", content))["task.content"]
    assert rule == "max_image_inputs" and "17 image inputs" in message and f"at most {L.max_image_inputs}" in message


def test_comfyui_load_image_nodes_count_even_when_they_name_a_file() -> None:
    workflow = {
        str(i): {"class_type": "LoadImage", "inputs": {"image": f"in{i}.png"}} for i in range(L.max_image_inputs + 1)
    }
    rule, _ = _refusal(_request("pipeline", workflow))["task.content"]
    assert rule == "max_image_inputs"


@pytest.mark.parametrize(
    ("content", "field", "rule"),
    [
        # A dict-valued ControlNet image, holding a plain http:// URL to the metadata service.
        (
            {"alwayson_scripts": {"controlnet": {"args": [{"image": {"image": "http://169.254.169.254/x"}}]}}},
            "task.content.alwayson_scripts.controlnet.args.0.image.image",
            "scheme",
        ),
        # A positional script argument that is a URL, under no image key at all.
        ({"script_args": [0, "http://10.0.0.1/secret.png", True]}, "task.content.script_args.1", "scheme"),
        # An https URL to a private literal address, nested deep in an unknown extension's arguments.
        (
            {"alwayson_scripts": {"x": {"args": [{"a": [{"b": {"c": "https://127.0.0.1/a.png"}}]}]}}},
            "task.content.alwayson_scripts.x.args.0.a.0.b.c",
            "public_address",
        ),
        # A URL in a field we do not model at all.
        ({"some_extension_field": "file:///etc/passwd"}, "task.content.some_extension_field", "scheme"),
    ],
)
def test_every_address_in_the_content_is_vetted(content: dict[str, Any], field: str, rule: str) -> None:
    issues = _refusal(_request("text-to-image", {"prompt": "x", **content}))
    assert issues[field][0] == rule


def test_addresses_in_workflow_inputs_are_vetted_too() -> None:
    workflow = {"1": {"class_type": "SomeUrlLoader", "inputs": {"url": "http://localhost:8188/view?filename=x"}}}
    assert _refusal(_request("pipeline", workflow))["task.content.1.inputs.url"][0] == "scheme"


def test_a_prompt_that_is_a_url_stays_a_prompt() -> None:
    content = {"prompt": "https://example.com/not-fetched", "negative_prompt": "http://x"}
    assert list(iter_image_fields(TaskType.TEXT_TO_IMAGE, content)) == []
    parse_request(_request("text-to-image", content))


def test_public_https_references_at_depth_are_accepted_and_listed() -> None:
    ref = "https://images.example.com/pose.png"
    content = {"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{"image": {"image": ref}}]}}}
    parse_request(_request("text-to-image", content))
    assert [p for p, _ in iter_image_fields(TaskType.TEXT_TO_IMAGE, content)] == [
        ("alwayson_scripts", "controlnet", "args", 0, "image", "image")
    ]


@pytest.mark.parametrize(
    ("extra", "field", "rule"),
    [
        ({"hr_scale": 4}, "task.content.hr_scale", "max_side"),  # 1024 * 4 = 4096 a side
        ({"hr_scale": 40}, "task.content.hr_scale", "range"),
        ({"hr_resize_x": 4096}, "task.content.hr_resize_x", "range"),
        ({"hr_scale": 2, "batch_size": 8, "n_iter": 8}, "task.content.hr_scale", "max_total_pixels"),
    ],
)
def test_the_hires_size_is_bounded(extra: dict[str, Any], field: str, rule: str) -> None:
    content = {"prompt": "x", "width": 1024, "height": 1024, "enable_hr": True, **extra}
    if "batch_size" in extra:
        content.update(width=512, height=512)
    assert _refusal(_request("text-to-image", content))[field][0] == rule


def test_hires_within_bounds_passes() -> None:
    parse_request(
        _request("text-to-image", {"prompt": "x", "width": 512, "height": 512, "enable_hr": True, "hr_scale": 2})
    )


def test_extras_resize_box_is_bounded() -> None:
    content = {"image": _png(8, 8), "resize_mode": 1, "upscaling_resize_w": 8192, "upscaling_resize_h": 8192}
    assert (
        _refusal(_request("extra-single-image", content))["task.content.upscaling_resize_w"][0] == "max_output_pixels"
    )


def test_extreme_aspect_ratio_with_crop_to_fit_is_refused_at_submit() -> None:
    # The review's memory bomb: a valid 1x4000 PNG, cropped to fit 2048x2048, covers 2048x8192000 first.
    content = {"image": _png(1, 4000), "resize_mode": 1, "upscaling_resize_w": 2048, "upscaling_resize_h": 2048}
    assert extras_work_sizes(1, 4000, content)[1] == (2048, 8192000)
    rule, message = _refusal(_request("extra-single-image", content))["task.content.upscaling_crop"]
    assert rule == "max_work_pixels" and "2048x8192000" in message
    # Without crop-to-fit the same input is harmless (a stretched 2048x2048).
    parse_request(_request("extra-single-image", {**content, "upscaling_crop": False}))


def test_extras_factor_output_is_bounded_by_the_input_size() -> None:
    content = {"image": _png(2048, 1024), "upscaling_resize": 8}
    assert _refusal(_request("extra-single-image", content))["task.content.upscaling_resize"][0] == "max_output_pixels"
    parse_request(_request("extra-single-image", {"image": _png(512, 512), "upscaling_resize": 4}))


def test_inline_input_pixel_size_is_bounded() -> None:
    content = {"prompt": "x", "init_images": [_png(1, L.max_input_side + 1)]}
    assert _refusal(_request("image-to-image", content))["task.content.init_images.0"][0] == "max_input_pixels"


def test_context_is_a_few_kib() -> None:
    body = _request("text-to-image", {"prompt": "x"}, context={"blob": "x" * L.max_context_bytes})
    rule, message = _refusal(body)["task.metadata.context"]
    assert rule == "max_bytes" and str(L.max_context_bytes) in message
    parse_request(_request("text-to-image", {"prompt": "x"}, context={"blob": "x" * (L.max_context_bytes - 100)}))


def test_the_notification_size_is_computed_at_submit() -> None:
    # A deployment that allows big contexts still cannot produce a notification SNS refuses.
    roomy = replace(L, max_context_bytes=1024 * 1024, max_request_bytes=1024 * 1024)
    body = _request("text-to-image", {"prompt": "x", "batch_size": 8, "n_iter": 8}, context={"c": "x" * 250_000})
    with pytest.raises(ContractError) as caught:
        parse_request(body, limits=roomy)
    assert [i.rule for i in caught.value.issues] == ["max_notification_bytes"]
    # With the default context bound, the largest request's notification fits with room to spare.
    worst = notification_bound(
        "x" * 64,
        "r" * 63,
        TaskType.TEXT_TO_IMAGE,
        "p" * 256,
        {"c": "x" * (L.max_context_bytes - 12)},
        {"batch_size": 8, "n_iter": 8},
        L,
    )
    assert worst < 64 * 1024


def test_budget_issues_name_fields_under_the_callers_base() -> None:
    issues = content_issues(TaskType.IMAGE_TO_IMAGE, {"init_images": ["http://x/y"]}, L, base="")
    assert [i.field for i in issues] == ["init_images.0"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
@pytest.mark.parametrize("size", [(1, 1), (3, 4000), (513, 77)])
def test_image_size_reads_headers(fmt: str, size: tuple[int, int]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format=fmt)
    assert image_size(buffer.getvalue()) == size
    assert image_size(buffer.getvalue()[:40] if fmt != "JPEG" else b"\xff\xd8\xff") in (size, None)


def test_image_size_of_lossless_webp_and_garbage() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (37, 5)).save(buffer, format="WEBP", lossless=True)
    assert image_size(buffer.getvalue()) == (37, 5)
    assert image_size(b"not an image") is None
    assert image_size(b"") is None
