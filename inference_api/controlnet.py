"""ControlNet through the A1111 extension's request shape: ``alwayson_scripts.controlnet.args`` units.

A unit: ``image`` (base64, or ``{"image": ...}``; the agent resolves references before the runtime sees
them), ``model`` (a diffusers ControlNet folder under ``<models>/ControlNet/``, matched like A1111 titles,
`` [hash]`` ignored), ``weight``, ``guidance_start``/``guidance_end``, ``control_mode``, ``resize_mode``,
``module`` (the preprocessor: only ``none`` here, the image is the control map) and ``enabled``. Several
units at once, SD 1.x and SDXL; the control map is resized to the output size as the unit's ``resize_mode``
says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from contract import FieldIssue
from inference_api.errors import InvalidRequest
from inference_api.images import decode_image, resize_for_img2img
from inference_api.networks import NetworkCatalog
from inference_api.tasks import TaskKind

SCRIPT = "controlnet"
PREPROCESSORS = ("none",)
RESIZE_MODES = {"just resize": 0, "crop and resize": 1, "resize and fill": 2, "inner fit (scale to fit)": 1}
CONTROL_MODES = {"balanced": 0, "my prompt is more important": 1, "controlnet is more important": 2}


@dataclass(frozen=True)
class ControlUnit:
    model: str
    path: Path
    image: Image.Image
    weight: float
    start: float
    end: float
    control_mode: int

    @property
    def key(self) -> tuple[Any, ...]:
        return (str(self.path), self.weight, self.start, self.end, self.control_mode)


def script_entry(scripts: dict[str, Any]) -> Any:
    for name, value in scripts.items():
        if name.lower() == SCRIPT:
            return value
    return None


def parse_units(
    scripts: dict[str, Any], networks: NetworkCatalog | None, width: int, height: int
) -> tuple[list[ControlUnit], list[FieldIssue], list[str]]:
    """The enabled units, the issues (each naming its field) and notes."""
    entry = script_entry(scripts)
    if not isinstance(entry, dict):
        return [], [], []
    name = next(n for n in scripts if n.lower() == SCRIPT)
    args = entry.get("args") or []
    units: list[ControlUnit] = []
    issues: list[FieldIssue] = []
    notes: list[str] = []
    for i, unit in enumerate(args):
        prefix = f"alwayson_scripts.{name}.args.{i}"
        if not isinstance(unit, dict):
            issues.append(FieldIssue(prefix, "type", "a ControlNet unit must be an object"))
            continue
        if unit.get("enabled", unit.get("enable", True)) is False:
            continue
        module = str(unit.get("module") or "none")
        if module.lower() not in PREPROCESSORS:
            message = f"preprocessor {module!r} is not available; supported: {', '.join(PREPROCESSORS)}"
            issues.append(FieldIssue(f"{prefix}.module", "one_of", message))
        model_name = str(unit.get("model") or "")
        found = networks.find_controlnet(model_name) if networks and model_name.lower() != "none" else None
        if found is None:
            known = ", ".join(f.name for f in networks.controlnets) if networks else ""
            message = f"ControlNet model {model_name!r} not found; available: {known or '(none)'}"
            issues.append(FieldIssue(f"{prefix}.model", "one_of", message))
        image = unit.get("image") or unit.get("input_image")
        if isinstance(image, dict):
            image = image.get("image")
        if not isinstance(image, str) or not image:
            issues.append(
                FieldIssue(f"{prefix}.image", "required", "a ControlNet unit needs an image (the control map)")
            )
            continue
        try:
            control = decode_image(image, f"{prefix}.image")
        except InvalidRequest as exc:
            issues += exc.fields
            continue
        weight, start, end = (
            _number(unit, "weight", 1.0),
            _number(unit, "guidance_start", 0.0),
            _number(unit, "guidance_end", 1.0),
        )
        if not (0 <= start < end <= 1):
            issues.append(
                FieldIssue(f"{prefix}.guidance_start", "range", "need 0 <= guidance_start < guidance_end <= 1")
            )
        mode = _mode(unit.get("control_mode", 0), CONTROL_MODES)
        if mode:
            notes.append("ControlNet control_mode other than Balanced is applied as Balanced")
        resize = _mode(unit.get("resize_mode", 1), RESIZE_MODES)
        if found is not None:
            resized = resize_for_img2img(control, width, height, resize)
            units.append(ControlUnit(found.name, found.path, resized, weight, start, end, mode))
    return units, issues, notes


def _number(unit: dict[str, Any], key: str, default: float) -> float:
    value = unit.get(key, default)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _mode(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return names.get(str(value).strip().lower(), 0)


PIPELINES = {
    (False, TaskKind.TXT2IMG): "StableDiffusionControlNetPipeline",
    (False, TaskKind.IMG2IMG): "StableDiffusionControlNetImg2ImgPipeline",
    (False, TaskKind.INPAINT): "StableDiffusionControlNetInpaintPipeline",
    (True, TaskKind.TXT2IMG): "StableDiffusionXLControlNetPipeline",
    (True, TaskKind.IMG2IMG): "StableDiffusionXLControlNetImg2ImgPipeline",
    (True, TaskKind.INPAINT): "StableDiffusionXLControlNetInpaintPipeline",
}


def pipeline(base: Any, task: TaskKind, models: list[Any]) -> Any:
    """A ControlNet pipeline sharing ``base``'s modules (no reload)."""
    import diffusers

    xl = getattr(base, "text_encoder_2", None) is not None
    cls = getattr(diffusers, PIPELINES[(xl, task)])
    pipe = cls.from_pipe(base, controlnet=models[0] if len(models) == 1 else models)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_model(path: Path, like: Any) -> Any:
    import diffusers

    model = diffusers.ControlNetModel.from_pretrained(str(path), local_files_only=True)
    return model.to(device=like.device, dtype=like.dtype)


def call_kwargs(units: list[ControlUnit], task: TaskKind, count: int) -> dict[str, Any]:
    maps = [unit.image for unit in units]
    single = len(units) == 1
    image_key = "image" if task is TaskKind.TXT2IMG else "control_image"
    return {
        image_key: maps[0] if single else maps,  # one map per ControlNet, repeated over the batch by diffusers
        "controlnet_conditioning_scale": units[0].weight if single else [u.weight for u in units],
        "control_guidance_start": units[0].start if single else [u.start for u in units],
        "control_guidance_end": units[0].end if single else [u.end for u in units],
    }


def build_tiny_controlnet(model_dir: Path, out: Path, *, seed: int = 0) -> Path:
    """A random ControlNet for a (tiny) diffusers model folder, its zero convolutions made non-zero so it acts."""
    import diffusers
    import torch

    unet = diffusers.UNet2DConditionModel.from_pretrained(str(model_dir / "unet"), local_files_only=True)
    torch.manual_seed(seed)
    controlnet = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.normal_(0, 0.3)
        controlnet.controlnet_cond_embedding.conv_out.weight.normal_(0, 0.3)
    controlnet.save_pretrained(str(out), safe_serialization=True)
    return out
