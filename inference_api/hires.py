"""Hires fix (``enable_hr``) as AUTOMATIC1111 does it: txt2img at the base size, upscale, then img2img at the
target size with ``denoising_strength``; the images returned are the upscaled ones.

Target: ``hr_resize_x``/``hr_resize_y`` when given (one of them 0: the other keeps the aspect ratio), else the
base size times ``hr_scale``; rounded down to a multiple of 8 as the pipelines need. Upscalers: ESRGAN models
of the model directory by name (then Lanczos to the exact size), ``Lanczos``, ``Nearest``, ``None``; the
``Latent*`` modes (A1111 resizes the latent) resize the image instead (bicubic, or nearest for the nearest
modes), said in ``info``. The second pass uses ``hr_second_pass_steps`` (0: the same steps),
``hr_prompt``/``hr_negative_prompt`` (empty: the same prompts), ``hr_sampler_name``/``hr_scheduler`` (empty:
the same sampler), and the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from contract import DEFAULT_LIMITS, FieldIssue
from inference_api.errors import invalid
from inference_api.http_schemas import Txt2ImgRequest
from inference_api.samplers import SamplerChoice, UnknownName, choose
from inference_api.upscale import resolve_name

DEFAULT_DENOISING = 0.75  # A1111's StableDiffusionProcessingTxt2Img default
MULTIPLE = 8


@dataclass(frozen=True)
class HiresPlan:
    width: int
    height: int
    upscaler: str
    steps: int
    denoising_strength: float
    prompt: str | None  # None: the first pass's
    negative_prompt: str | None
    sampler: SamplerChoice
    notes: list[str] = field(default_factory=list)

    def infotext(self, base_width: int, base_height: int) -> dict[str, object]:
        params: dict[str, object] = {}
        if self.width * base_height == self.height * base_width and base_width:
            params["Hires upscale"] = round(self.width / base_width, 4)
        else:
            params["Hires resize"] = f"{self.width}x{self.height}"
        params["Hires steps"] = self.steps
        params["Hires upscaler"] = self.upscaler
        if self.prompt is not None:
            params["Hires prompt"] = self.prompt
        return params


def plan(req: Txt2ImgRequest, base: SamplerChoice, steps: int, width: int, height: int) -> HiresPlan:
    """Validate the hires fields of a txt2img request (a 422 naming the field) and resolve them."""
    issues: list[FieldIssue] = []
    rx, ry, scale = req.hr_resize_x, req.hr_resize_y, req.hr_scale
    if rx or ry:
        tw = rx or round(width * ry / height)
        th = ry or round(height * rx / width)
        field_name = "hr_resize_x" if rx else "hr_resize_y"
    else:
        tw, th, field_name = round(width * scale), round(height * scale), "hr_scale"
    tw, th = tw // MULTIPLE * MULTIPLE, th // MULTIPLE * MULTIPLE
    limits = DEFAULT_LIMITS
    if not (limits.min_side <= tw <= limits.max_side and limits.min_side <= th <= limits.max_side):
        issues.append(
            FieldIssue(field_name, "range", f"the hires size {tw}x{th} is outside {limits.min_side}..{limits.max_side}")
        )
    sampler = base
    if req.hr_sampler_name or req.hr_scheduler:
        try:
            sampler = choose(req.hr_sampler_name or base.sampler.name, req.hr_scheduler or base.schedule.name)
        except UnknownName as exc:
            issues.append(FieldIssue("hr_" + exc.field, exc.rule, str(exc)))
    if issues:
        raise invalid(issues)
    notes = []
    upscaler = req.hr_upscaler or "Latent"
    if upscaler.lower().startswith("latent"):
        notes.append(f"hires upscaler {upscaler!r}: the image is resized, not the latent")
    strength = req.denoising_strength
    return HiresPlan(
        tw,
        th,
        upscaler,
        req.hr_second_pass_steps or steps,
        DEFAULT_DENOISING if strength is None else strength,
        req.hr_prompt or None,
        req.hr_negative_prompt or None,
        sampler,
        notes,
    )


def uses_model(plan: HiresPlan, available: set[str]) -> bool:
    return bool(resolve_name(plan.upscaler, available))


def upscale(
    image: Image.Image, plan: HiresPlan, available: set[str], run_model: Callable[[str, Image.Image], Image.Image]
) -> Image.Image:
    """The first pass's image at the hires size, by the requested upscaler."""
    size = (plan.width, plan.height)
    name = plan.upscaler.strip().lower()
    model = resolve_name(plan.upscaler, available)
    if model:
        image = run_model(model, image)
        return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
    if "nearest" in name:
        return image.resize(size, Image.Resampling.NEAREST)
    if name.startswith("latent"):
        return image.resize(size, Image.Resampling.BICUBIC)
    return image.resize(size, Image.Resampling.LANCZOS)  # Lanczos, None and names we do not have
