"""AnimateDiff text-to-video through the A1111 extension's request shape: ``alwayson_scripts.AnimateDiff.args[0]``.

The argument: ``model`` (a diffusers ``MotionAdapter`` folder under ``<models>/AnimateDiff/``, matched like
A1111 titles: ``mm_sd15_v3.safetensors`` finds the folder ``mm_sd15_v3``), ``video_length`` (frames; 0 means
``batch_size``, the extension's context length), ``fps``, ``loop_number`` (GIF loops, 0 = forever),
``format`` (a list: ``GIF``, ``WEBP``, ``PNG``, ``Frame``, ``TXT``; ``MP4``/``WEBM`` need a video encoder this
runtime does not ship and are refused, naming the supported ones) and ``enable``. ``enable: false`` is a
plain txt2img.

The answer is the extension's: ``images`` holds each video base64-encoded (one per requested container
format, in the order asked), followed by the frames as PNGs when ``Frame`` is in ``format``. A request
makes ``n_iter`` videos (the request's ``batch_size`` becomes the frame count, as in the extension).
``PNG`` (frames saved on the server) and ``TXT`` (infotext file) have nothing to return through the API.
Only SD 1.x models take motion modules (as in the extension without its SDXL beta).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from contract import FieldIssue
from inference_api.networks import NetworkCatalog

SCRIPT = "animatediff"
VIDEO_FORMATS = ("GIF", "WEBP")  # containers encoded here (Pillow)
OTHER_FORMATS = ("PNG", "FRAME", "TXT")  # accepted: frames / nothing extra through the API
MAX_FRAMES = 64


@dataclass(frozen=True)
class MotionSpec:
    model: str
    path: Path
    frames: int
    fps: float
    loop: int
    formats: tuple[str, ...]  # upper-case, in the order asked
    closed_loop: str

    @property
    def key(self) -> tuple[Any, ...]:
        return (str(self.path), self.frames)

    @property
    def returns_frames(self) -> bool:
        return "FRAME" in self.formats

    @property
    def containers(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f in VIDEO_FORMATS)


def script_entry(scripts: dict[str, Any]) -> tuple[str, Any] | None:
    for name, value in scripts.items():
        if name.lower() == SCRIPT:
            return name, value
    return None


def parse(scripts: dict[str, Any], networks: NetworkCatalog | None) -> tuple[MotionSpec | None, list[FieldIssue]]:
    """The enabled AnimateDiff argument as a spec (None when absent or ``enable: false``), or the issues."""
    found = script_entry(scripts)
    if found is None or not isinstance(found[1], dict):
        return None, []
    name, entry = found
    args = entry.get("args") or []
    prefix = f"alwayson_scripts.{name}.args.0"
    if not args:
        return None, []
    arg = args[0]
    if arg is False:  # what client libraries send for "installed but off" (webuiapi: ``args: [False]``)
        return None, []
    if not isinstance(arg, dict):
        return None, [FieldIssue(prefix, "type", "the AnimateDiff argument must be an object")]
    if arg.get("enable", arg.get("enabled", True)) is False:
        return None, []
    issues: list[FieldIssue] = []
    model_name = str(arg.get("model") or "")
    motion = networks.find_motion_module(model_name) if networks is not None and model_name else None
    if motion is None:
        known = ", ".join(f.name for f in networks.motion_modules) if networks else ""
        message = f"motion module {model_name!r} not found in AnimateDiff/; available: {known or '(none)'}"
        issues.append(FieldIssue(f"{prefix}.model", "one_of", message))
    frames = _int(arg, "video_length", 16) or _int(arg, "batch_size", 16)
    if not 1 <= frames <= MAX_FRAMES:
        issues.append(FieldIssue(f"{prefix}.video_length", "range", f"video_length must be 1..{MAX_FRAMES}"))
    fps = arg.get("fps", 8)
    if not isinstance(fps, int | float) or isinstance(fps, bool) or not 0 < fps <= 120:
        issues.append(FieldIssue(f"{prefix}.fps", "range", "fps must be a number in (0, 120]"))
        fps = 8
    formats = arg.get("format", ["GIF", "PNG"])
    formats = [formats] if isinstance(formats, str) else formats
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        issues.append(FieldIssue(f"{prefix}.format", "type", "format must be a list of names such as ['GIF']"))
        formats = []
    upper = tuple(dict.fromkeys(f.strip().upper() for f in formats))
    unknown = [f for f in upper if f not in VIDEO_FORMATS + OTHER_FORMATS]
    if unknown:
        supported = ", ".join(("GIF", "WEBP", "PNG", "Frame", "TXT"))
        message = f"format {', '.join(unknown)} is not available here (no video encoder); supported: {supported}"
        issues.append(FieldIssue(f"{prefix}.format", "one_of", message))
    if issues or motion is None:
        return None, issues
    closed = str(arg.get("closed_loop", "N"))
    return MotionSpec(motion.name, motion.path, frames, float(fps), _int(arg, "loop_number", 0), upper, closed), []


def _int(arg: dict[str, Any], key: str, default: int) -> int:
    value = arg.get(key, default)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def notes(spec: MotionSpec) -> list[str]:
    said = []
    if spec.closed_loop not in ("N", ""):
        said.append(f"AnimateDiff closed_loop {spec.closed_loop!r} is not applied (no context windows here)")
    return said


def load_adapter(path: Path) -> Any:
    import diffusers

    return diffusers.MotionAdapter.from_pretrained(str(path), local_files_only=True)


def pipeline(base: Any, adapter: Any) -> Any:
    """An AnimateDiff pipeline from ``base``'s modules: its UNet (with any merged LoRA) plus the motion layers."""
    import diffusers

    if getattr(base, "text_encoder_2", None) is not None:
        raise ValueError("AnimateDiff motion modules need an SD 1.x model")
    unet = base.unet
    pipe = diffusers.AnimateDiffPipeline.from_pipe(base, motion_adapter=adapter.to(dtype=unet.dtype))
    pipe.unet.to(device=unet.device, dtype=unet.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encode(frames: list[Image.Image], fmt: str, fps: float, loop: int) -> str:
    """One video, base64: an animated GIF or WEBP (Pillow)."""
    buffer = io.BytesIO()
    duration = max(1, round(1000 / fps))
    first, rest = frames[0].convert("RGB"), [f.convert("RGB") for f in frames[1:]]
    if fmt == "GIF":
        first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=duration, loop=loop)
    else:
        options = {"duration": duration, "loop": loop, "lossless": True}
        first.save(buffer, format="WEBP", save_all=True, append_images=rest, **options)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def build_tiny_motion_module(model_dir: Path, out: Path, *, seed: int = 0) -> Path:
    """A random MotionAdapter matching a (tiny) SD 1.x diffusers folder's UNet, its output layers non-zero."""
    import diffusers
    import torch

    config = diffusers.UNet2DConditionModel.load_config(str(model_dir / "unet"))
    torch.manual_seed(seed)
    channels = tuple(config["block_out_channels"])
    groups = int(config.get("norm_num_groups") or 32)
    adapter: Any = diffusers.MotionAdapter(
        block_out_channels=channels,
        motion_layers_per_block=int(config.get("layers_per_block", 2)),
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=max(1, min(8, channels[0] // 8)),
        motion_norm_num_groups=groups,
        motion_max_seq_length=MAX_FRAMES,
        use_motion_mid_block=True,
    )
    with torch.no_grad():  # the published modules start with zeroed outputs; random ones should act
        for name, param in adapter.named_parameters():
            if "proj_out" in name and name.endswith("weight"):
                param.normal_(0, 0.3)
    adapter.save_pretrained(str(out), safe_serialization=True)
    return out
