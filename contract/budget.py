"""One budget per task: what a single request may make the agent fetch and hold, and the runtime allocate.

The submit Lambda checks everything it can see (image count, inline images' sizes, every pixel size the
runtime will derive, ``context``, the worst-case notification); the agent checks it again on the message it
receives and on every input it fetches (bytes while streaming, pixel size from the header). The numbers
live in :class:`contract.limits.Limits`; every refusal names the field and the limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from contract.errors import ErrorCode, FieldIssue
from contract.image_header import HEADER_BYTES, image_size
from contract.images import Path, count_image_inputs, iter_image_fields
from contract.limits import SNS_MAX_MESSAGE_BYTES, Limits
from contract.scripts import batch_size_limit
from contract.tasks import TaskType

# The longest error message a notification carries (the agent cuts longer ones).
MAX_ERROR_MESSAGE_CHARS = 2_000
_MAX_BUCKET_CHARS = 63


def _join(base: str, *parts: str | int) -> str:
    return ".".join(str(p) for p in (base, *parts) if p != "")


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


def budget_issues(tasktype: TaskType, content: dict[str, Any], limits: Limits, base: str) -> list[FieldIssue]:
    """Image count, inline images' pixel sizes and every size the runtime derives from the request."""
    issues: list[FieldIssue] = []
    count = count_image_inputs(tasktype, content)
    if count > limits.max_image_inputs:
        issues.append(
            FieldIssue(
                base or "(body)",
                "max_image_inputs",
                f"{count} image inputs (init_images, mask, image, imageList, script arguments, LoadImage nodes); "
                f"at most {limits.max_image_inputs} per task",
            )
        )
    if tasktype in (TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE):
        issues += hires_issues(content, limits, base)
    if tasktype in (TaskType.EXTRA_SINGLE_IMAGE, TaskType.EXTRA_BATCH_IMAGE):
        issues += extras_target_issues(content, limits, base)
    for path, value in iter_image_fields(tasktype, content):
        size = inline_image_size(value)
        if size is not None:
            issues += input_image_issues(tasktype, content, path, size, limits, base)
    return issues


def hires_issues(content: dict[str, Any], limits: Limits, base: str) -> list[FieldIssue]:
    """Hires fix: the second pass's size (``hr_scale`` or ``hr_resize_x/y``) is bounded like width/height."""
    if content.get("enable_hr") is not True:
        return []
    width = int(_number(content.get("width"), 512))
    height = int(_number(content.get("height"), 512))
    scale = _number(content.get("hr_scale"), 2.0)
    rx = int(_number(content.get("hr_resize_x"), 0))
    ry = int(_number(content.get("hr_resize_y"), 0))
    if not 1 <= scale <= limits.max_hr_scale:
        return [FieldIssue(_join(base, "hr_scale"), "range", f"must be between 1 and {limits.max_hr_scale:g}")]
    for name, value in (("hr_resize_x", rx), ("hr_resize_y", ry)):
        if not 0 <= value <= limits.max_side:
            return [FieldIssue(_join(base, name), "range", f"must be between 0 and {limits.max_side}")]
    hw, hh = hires_size(width, height, scale, rx, ry)
    field = _join(base, "hr_resize_x" if rx or ry else "hr_scale")
    if max(hw, hh) > limits.max_side:
        return [FieldIssue(field, "max_side", f"the hires pass would be {hw}x{hh}; at most {limits.max_side} a side")]
    batch = int(_number(content.get("batch_size"), 1)) * int(_number(content.get("n_iter"), 1))
    if hw * hh * batch > limits.max_total_pixels:
        return [
            FieldIssue(
                field,
                "max_total_pixels",
                f"hires width*height*batch_size*n_iter is {hw * hh * batch}, over {limits.max_total_pixels}",
            )
        ]
    return []


def hires_size(width: int, height: int, scale: float, rx: int, ry: int) -> tuple[int, int]:
    """AUTOMATIC1111's hires target: the resize box when given (one side alone keeps the aspect), else scaled."""
    if rx and ry:
        return rx, ry
    if rx:
        return rx, max(1, round(height * rx / max(width, 1)))
    if ry:
        return max(1, round(width * ry / max(height, 1))), ry
    return max(1, round(width * scale)), max(1, round(height * scale))


def extras_target_issues(content: dict[str, Any], limits: Limits, base: str) -> list[FieldIssue]:
    """A resize to a fixed box must fit the output bound whatever the input."""
    if content.get("resize_mode") != 1:
        return []
    w = int(_number(content.get("upscaling_resize_w"), 512))
    h = int(_number(content.get("upscaling_resize_h"), 512))
    if w * h > limits.max_output_pixels:
        return [
            FieldIssue(
                _join(base, "upscaling_resize_w"),
                "max_output_pixels",
                f"output would be {w}x{h} ({w * h} pixels); at most {limits.max_output_pixels}",
            )
        ]
    return []


def extras_work_sizes(src_w: int, src_h: int, content: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(output size, largest intermediate size) of an extras resize of a ``src_w`` x ``src_h`` input.

    With resize-to-box and crop-to-fit (the default), the image is first scaled to *cover* the box and then
    cut: a 1x4000 input to 2048x2048 would cover 2048x8192000 before the cut. That cover box is what the
    runtime allocates, so it is what is bounded.
    """
    if content.get("resize_mode") == 1:
        tw = max(1, int(_number(content.get("upscaling_resize_w"), 512)))
        th = max(1, int(_number(content.get("upscaling_resize_h"), 512)))
        if content.get("upscaling_crop", True) is False:
            return (tw, th), (tw, th)
        scale = max(tw / max(src_w, 1), th / max(src_h, 1))
        cover = (max(tw, round(src_w * scale)), max(th, round(src_h * scale)))
        return (tw, th), cover
    factor = _number(content.get("upscaling_resize"), 2.0)
    out = (max(1, round(src_w * factor)), max(1, round(src_h * factor)))
    return out, out


def input_image_issues(
    tasktype: TaskType,
    content: dict[str, Any],
    path: Path,
    size: tuple[int, int],
    limits: Limits,
    base: str = "task.content",
) -> list[FieldIssue]:
    """Bounds on one input image of known pixel size: its own size, and what the runtime derives from it."""
    w, h = size
    field = _join(base, *path)
    if w * h > limits.max_input_pixels or max(w, h) > limits.max_input_side:
        return [
            FieldIssue(
                field,
                "max_input_pixels",
                f"image is {w}x{h}; at most {limits.max_input_side} a side and {limits.max_input_pixels} pixels",
            )
        ]
    if tasktype in (TaskType.EXTRA_SINGLE_IMAGE, TaskType.EXTRA_BATCH_IMAGE) and path[:1] in (
        ("image",),
        ("imageList",),
    ):
        return extras_size_issues(w, h, content, limits, base)
    return []


def extras_size_issues(w: int, h: int, content: dict[str, Any], limits: Limits, base: str) -> list[FieldIssue]:
    """An extras resize of a ``w`` x ``h`` input: its output and its crop-to-fit cover box, both bounded."""
    (ow, oh), (cw, ch) = extras_work_sizes(w, h, content)
    name = "upscaling_resize_w" if content.get("resize_mode") == 1 else "upscaling_resize"
    if max(ow, oh) > limits.max_output_side or ow * oh > limits.max_output_pixels:
        return [
            FieldIssue(
                _join(base, name),
                "max_output_pixels",
                f"a {w}x{h} input would become {ow}x{oh}; at most {limits.max_output_side} a side "
                f"and {limits.max_output_pixels} pixels",
            )
        ]
    if max(cw, ch) > limits.max_work_side or cw * ch > limits.max_work_pixels:
        return [
            FieldIssue(
                _join(base, "upscaling_crop"),
                "max_work_pixels",
                f"cropping a {w}x{h} input to fit {ow}x{oh} would first scale it to {cw}x{ch}; at most "
                f"{limits.max_work_side} a side and {limits.max_work_pixels} pixels (use an input closer to "
                "the output's aspect ratio, or upscaling_crop: false)",
            )
        ]
    return []


def inline_image_size(value: Any) -> tuple[int, int] | None:
    """Pixel size of an inline base64 image from its first bytes; None for references or unknown formats."""
    if not isinstance(value, str) or "://" in value[:32]:
        return None
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value[:100] else value
    head = data[: (HEADER_BYTES * 4 // 3) // 4 * 4]
    try:
        return image_size(base64.b64decode(head, validate=True))
    except (binascii.Error, ValueError):
        return None


def context_issues(context: Any, limits: Limits) -> list[FieldIssue]:
    size = len(json.dumps(context, separators=(",", ":"), default=str).encode())
    if size > limits.max_context_bytes:
        return [
            FieldIssue(
                "task.metadata.context",
                "max_bytes",
                f"context is {size} bytes as JSON; at most {limits.max_context_bytes} (it is echoed in every "
                "status answer and notification)",
            )
        ]
    return []


def max_outputs(tasktype: TaskType, content: dict[str, Any], limits: Limits) -> int:
    """The most images one task can produce (what its notification lists)."""
    if tasktype is TaskType.EXTRA_SINGLE_IMAGE:
        return 1
    if tasktype is TaskType.EXTRA_BATCH_IMAGE:
        images = content.get("imageList")
        return len(images) if isinstance(images, list) else limits.max_batch_images
    if tasktype is TaskType.PIPELINE:
        return limits.max_batch_size * limits.max_n_iter
    batch = int(_number(content.get("batch_size"), 1))
    n_iter = int(_number(content.get("n_iter"), 1))
    most = batch_size_limit(content.get("alwayson_scripts"), limits)
    return max(1, min(batch, most) * min(n_iter, limits.max_n_iter))


def notification_bound(
    task_id: str, runtime: str, tasktype: TaskType, prefix: str, context: Any, content: dict[str, Any], limits: Limits
) -> int:
    """Bytes of the largest completion notification this task can produce (worst-case URLs and error)."""
    folder = f"s3://{'b' * _MAX_BUCKET_CHARS}/{prefix}/{task_id}/{task_id}"
    outputs = max_outputs(tasktype, content, limits)
    worst = {
        "id": task_id,
        "runtime": runtime,
        "status": "cancelled",
        "result": False,
        "image_url": [f"{folder}-{n}.webm" for n in range(outputs)],
        "output_url": f"{folder}.out",
        "context": context,
        "tasktype": str(tasktype),
        "attempts": 99,
        "error": {"code": max(ErrorCode, key=len).value, "message": "x" * MAX_ERROR_MESSAGE_CHARS},
        "timings": {k: 1e9 for k in ("queued", "prepare", "runtime", "upload", "total", "wait", "fetch")},
        "truncated": False,
    }
    body = len(json.dumps(worst, separators=(",", ":"), default=str).encode())
    attributes = len("runtime") + len("status") + 2 * len("String") + len(runtime) + len("completed")
    return body + attributes


def notification_issues(
    task_id: str, runtime: str, tasktype: TaskType, prefix: str, context: Any, content: dict[str, Any], limits: Limits
) -> list[FieldIssue]:
    size = notification_bound(task_id, runtime, tasktype, prefix, context, content, limits)
    if size > SNS_MAX_MESSAGE_BYTES:
        return [
            FieldIssue(
                "task.metadata.context",
                "max_notification_bytes",
                f"the completion notification could reach {size} bytes, over SNS's {SNS_MAX_MESSAGE_BYTES}; "
                "make context smaller",
            )
        ]
    return []
