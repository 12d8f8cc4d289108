"""Load a model entry into a ready-to-run pipeline on the configured device.

Diffusers folders go through ``AutoPipelineForText2Image`` (SD 1.x/2.x, SDXL, SD3, Flux, ...).
Single-file checkpoints go through ``from_single_file`` with ``config=`` a local, weightless diffusers
folder, which keeps diffusers 0.42 off the hub. The folder is looked up in the model directory, in order:

1. ``configs/<file stem>/`` (written by ``build-tiny-model --single-file``, or by hand for one checkpoint);
2. ``configs/<family>/`` where family is what the checkpoint's keys say: v1, v2, xl_base, xl_refiner,
   inpainting, inpainting_v2, xl_inpaint (e.g. a copy of the SD 1.5 repo without its weights);
3. otherwise diffusers' own resolution (hub repo per family, or the local HF cache when
   ``HF_HUB_OFFLINE=1``), which needs network access or a pre-filled cache.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference_api.catalog import CONFIGS_DIR, ModelEntry
from inference_api.tasks import TaskKind

log = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# Pipeline class per family when no local config folder says otherwise.
FAMILY_PIPELINES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "inpainting": "StableDiffusionInpaintPipeline",
    "inpainting_v2": "StableDiffusionInpaintPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "xl_refiner": "StableDiffusionXLImg2ImgPipeline",
    "xl_inpaint": "StableDiffusionXLInpaintPipeline",
}


@dataclass(frozen=True)
class DeviceSettings:
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None

    @classmethod
    def create(
        cls, device: str | None, dtype: str | None, *, channels_last: bool | None = None, compile: bool = False
    ) -> DeviceSettings:
        resolved = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if resolved.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
        # Half precision is the GPU default; on CPU fp16 kernels are slow or missing, so fp32 unless asked.
        chosen = dtype or ("fp16" if resolved.startswith("cuda") else "fp32")
        if chosen not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}")
        cl = resolved.startswith("cuda") if channels_last is None else channels_last
        return cls(resolved, DTYPES[chosen], cl, compile)


@dataclass
class LoadedModel:
    """A loaded checkpoint: the text-to-image pipeline plus task pipelines sharing its components."""

    entry: ModelEntry
    text2img: Any
    base_scheduler_config: dict[str, Any]
    _derived: dict[TaskKind, Any] = field(default_factory=dict)

    def pipeline(self, task: TaskKind) -> Any:
        """``txt2img`` / ``img2img`` / ``inpaint``; derived pipelines reuse the loaded modules (no reload)."""
        if task is TaskKind.TXT2IMG:
            return self.text2img
        if task not in self._derived:
            import diffusers

            auto = {
                TaskKind.IMG2IMG: diffusers.AutoPipelineForImage2Image,
                TaskKind.INPAINT: diffusers.AutoPipelineForInpainting,
            }
            pipe = auto[task].from_pipe(self.text2img)
            pipe.set_progress_bar_config(disable=True)
            self._derived[task] = pipe
        return self._derived[task]

    def release(self) -> None:
        self._derived.clear()
        self.text2img = None


def load_model(entry: ModelEntry, root: Path, settings: DeviceSettings) -> LoadedModel:
    pipe = _load_folder(entry, settings) if entry.kind == "diffusers" else _load_single_file(entry, root, settings)
    pipe = optimise(pipe, settings)
    return LoadedModel(entry, pipe, dict(pipe.scheduler.config))


def _load_folder(entry: ModelEntry, settings: DeviceSettings) -> Any:
    import diffusers

    kwargs: dict[str, Any] = {"dtype": settings.dtype, "local_files_only": True}
    if _lists_component(entry.path, "safety_checker"):
        # AUTOMATIC1111 has no safety checker; loading one costs a CLIP vision model and blacks out images.
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return diffusers.AutoPipelineForText2Image.from_pretrained(entry.path, **kwargs)
    except ValueError:
        # Pipelines without a registered auto mapping (custom or image-to-image only): their own class.
        return diffusers.DiffusionPipeline.from_pretrained(entry.path, **kwargs)


def config_folder_for(entry: ModelEntry, root: Path) -> Path | None:
    stem = Path(entry.name).stem
    for candidate in (root / CONFIGS_DIR / stem, root / CONFIGS_DIR / entry.family, entry.path.with_suffix("")):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def _load_single_file(entry: ModelEntry, root: Path, settings: DeviceSettings) -> Any:
    import diffusers

    config = config_folder_for(entry, root)
    kwargs: dict[str, Any] = {"dtype": settings.dtype}
    if config is not None:
        class_name = json.loads((config / "model_index.json").read_text()).get("_class_name")
        pipeline_class = getattr(diffusers, class_name or FAMILY_PIPELINES.get(entry.family, ""), None)
        kwargs.update(config=str(config), local_files_only=True)
    else:
        pipeline_class = getattr(diffusers, FAMILY_PIPELINES.get(entry.family, ""), None)
        kwargs["local_files_only"] = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        log.warning("no local config folder for %s; diffusers will resolve %s configs itself", entry.name, entry.family)
    if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
        raise ValueError(f"cannot load single-file checkpoint {entry.name} (family {entry.family!r})")
    return pipeline_class.from_single_file(str(entry.path), **kwargs)


def _lists_component(folder: Path, component: str) -> bool:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    value = index.get(component)
    return isinstance(value, list) and value[0] is not None


def optimise(pipe: Any, settings: DeviceSettings) -> Any:
    """Device placement and the GPU speed-ups. SDPA attention is diffusers' default on torch 2."""
    pipe = pipe.to(settings.device)
    pipe.set_progress_bar_config(disable=True)
    if settings.channels_last:
        for name in ("unet", "vae", "transformer"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if settings.compile:
        for name in ("unet", "transformer"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                # fullgraph keeps graph breaks from silently eating the gain; dynamic=False: one graph per shape.
                setattr(pipe, name, torch.compile(module, mode=settings.compile_mode, fullgraph=True, dynamic=False))
    return pipe


def free(loaded: LoadedModel) -> None:
    """Drop a model's tensors now, not at the next garbage collection (GPU memory is the scarce thing)."""
    loaded.release()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
