"""extra-single-image / extra-batch-images: resize by a factor or to a size, with a model or a resampler.

AUTOMATIC1111 semantics: an upscaler model runs (up to 3 passes) until the image reaches the target, then
Lanczos brings it to the exact size; "None" and "Lanczos" are a plain Lanczos resize. An upscaler name we
do not have (e.g. "R-ESRGAN 4x+" when its weights are not in the model directory) falls back to Lanczos
with a note in ``html_info`` instead of failing the job.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from contract import DEFAULT_LIMITS, extras_size_issues
from inference_api.errors import invalid
from inference_api.http_schemas import ExtrasRequest

LANCZOS = Image.Resampling.LANCZOS
RESAMPLERS = {
    "none": LANCZOS,
    "lanczos": LANCZOS,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
}
# AUTOMATIC1111's display names for the usual ESRGAN-family files.
A1111_ALIASES = {
    "r-esrgan 4x+": "RealESRGAN_x4plus",
    "r-esrgan 4x+ anime6b": "RealESRGAN_x4plus_anime_6B",
    "r-esrgan 2x+": "RealESRGAN_x2plus",
    "esrgan_4x": "ESRGAN_4x",
}
MAX_MODEL_PASSES = 3
# The largest scale an upscaler model applies in one pass (ESRGAN-family models are 1x, 2x or 4x).
MAX_MODEL_SCALE = 4
LIMITS = DEFAULT_LIMITS

ModelRunner = Callable[[str, Image.Image], Image.Image]


@dataclass
class UpscaleOutcome:
    image: Image.Image
    notes: list[str] = field(default_factory=list)


def target_size(width: int, height: int, req: ExtrasRequest) -> tuple[int, int]:
    if req.resize_mode == 1:
        return req.upscaling_resize_w, req.upscaling_resize_h
    return max(1, round(width * req.upscaling_resize)), max(1, round(height * req.upscaling_resize))


def check_target(width: int, height: int, req: ExtrasRequest, field_prefix: str = "") -> None:
    """Refuse (422, never retried) an input whose output or crop-to-fit cover box would pass the budget.

    The cover box is what crop-to-fit allocates before it cuts: a 1x4000 input cropped to fit 2048x2048 would
    be scaled to 2048x8192000 first. The same rule (``contract.extras_size_issues``) runs at submit and in
    the agent; this is the last line, for callers that reach the runtime some other way.
    """
    issues = extras_size_issues(width, height, req.model_dump(), LIMITS, field_prefix.rstrip("."))
    if issues:
        raise invalid(issues)


def resolve_name(name: str, available: set[str]) -> str:
    """The model name an A1111 upscaler name refers to, if we have it (case-insensitive)."""
    lowered = {a.lower(): a for a in available}
    key = name.strip().lower()
    if key in lowered:
        return lowered[key]
    alias = A1111_ALIASES.get(key)
    if alias and alias.lower() in lowered:
        return lowered[alias.lower()]
    return ""


def upscale_one(image: Image.Image, req: ExtrasRequest, available: set[str], run_model: ModelRunner) -> UpscaleOutcome:
    width, height = target_size(image.width, image.height, req)
    crop = req.resize_mode == 1 and req.upscaling_crop
    notes: list[str] = []
    first = _apply(image, req.upscaler_1, width, height, crop, available, run_model, notes)
    if req.upscaler_2.strip().lower() != "none" and req.extras_upscaler_2_visibility > 0:
        second = _apply(image, req.upscaler_2, width, height, crop, available, run_model, notes)
        first = Image.blend(first, second, req.extras_upscaler_2_visibility)
    if req.gfpgan_visibility > 0 or req.codeformer_visibility > 0:
        notes.append("face restoration (GFPGAN/CodeFormer) is not available in this runtime; skipped")
    return UpscaleOutcome(first, notes)


def _apply(
    image: Image.Image,
    name: str,
    width: int,
    height: int,
    crop: bool,
    available: set[str],
    run_model: ModelRunner,
    notes: list[str],
) -> Image.Image:
    # With crop, scale to cover the target box first, then cut the centre (A1111's "crop to fit").
    cover_w, cover_h = width, height
    if crop:
        scale = max(width / image.width, height / image.height)
        cover_w, cover_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    key = name.strip().lower()
    model = resolve_name(name, available)
    if model:
        current = image
        for _ in range(MAX_MODEL_PASSES):
            if current.width >= cover_w and current.height >= cover_h:
                break
            if _pass_too_large(current):
                notes.append(f"upscaler {name!r} stopped early to stay within memory bounds; Lanczos did the rest")
                break
            current = run_model(model, current)
        result = current.resize((cover_w, cover_h), LANCZOS) if current.size != (cover_w, cover_h) else current
    else:
        if key not in RESAMPLERS:
            notes.append(f"upscaler {name!r} is not available here; used Lanczos")
        result = image.resize((cover_w, cover_h), RESAMPLERS.get(key, LANCZOS))
    if crop and result.size != (width, height):
        left, top = (result.width - width) // 2, (result.height - height) // 2
        result = result.crop((left, top, left + width, top + height))
    return result


def _pass_too_large(image: Image.Image) -> bool:
    """Whether one more model pass could produce an image past the work bound."""
    w, h = image.width * MAX_MODEL_SCALE, image.height * MAX_MODEL_SCALE
    return max(w, h) > LIMITS.max_work_side or w * h > LIMITS.max_work_pixels


def html_info(req: ExtrasRequest, notes: list[str]) -> str:
    how = (
        f"Resize to: {req.upscaling_resize_w}x{req.upscaling_resize_h}"
        if req.resize_mode == 1
        else f"Upscale: {req.upscaling_resize:g}"
    )
    parts = [how, f"Upscaler 1: {req.upscaler_1}"]
    if req.upscaler_2.strip().lower() != "none" and req.extras_upscaler_2_visibility > 0:
        parts.append(f"Upscaler 2: {req.upscaler_2} ({req.extras_upscaler_2_visibility:g})")
    text = ", ".join(parts)
    unique_notes = list(dict.fromkeys(notes))
    # Names come from the request: escape them, html_info is rendered as HTML by A1111 clients.
    return f"<p>{html.escape(text)}</p>" + "".join(f"<p>Note: {html.escape(n)}</p>" for n in unique_notes)
