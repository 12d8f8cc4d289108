"""Load a model entry into a ready-to-run pipeline on the configured device.

Diffusers folders go through ``AutoPipelineForText2Image`` (SD 1.x/2.x, SDXL, SD3, Flux, ...).
Single-file checkpoints (``.safetensors`` or ``.ckpt``, original CompVis/AUTOMATIC1111 layout) go through
``from_single_file`` with ``config=`` a local, weightless diffusers folder, so nothing reaches the hub. The
folder is, in order:

1. ``configs/<file stem>/`` in the model directory (written by ``build-tiny-model --single-file``, or by
   hand for one checkpoint of an unusual architecture);
2. ``configs/<family>/`` where family is what the checkpoint's keys say: v1, v2, xl_base, xl_refiner,
   inpainting, inpainting_v2, xl_inpaint;
3. otherwise the published architecture of that family, written by ``inference_api.single_file`` from the
   configs shipped in this package. Nothing beside the file is needed.

A checkpoint of no known family, or whose tensors do not fit its family, fails with an error naming the
file and the config folder to add (``/ready`` reports it).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference_api.architectures import SD2
from inference_api.catalog import CONFIGS_DIR, ModelEntry
from inference_api.checkpoints import EPSILON, read_header
from inference_api.lora import LoraState
from inference_api.single_file import (
    UnrecognisedCheckpoint,
    how_to_configure,
    published_architecture,
    resolve_prediction,
)
from inference_api.single_file import write_config_folder as write_family_config
from inference_api.tasks import TaskKind
from inference_api.vae import VaeState

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
    # GPU options that stay off until a benchmark on the target GPU shows their gain
    # (``python -m benchmarks.gpu_runtime``): fused QKV projections, torchao float8 dynamic
    # quantisation of the denoiser (Hopper and later), and an fp16-safe VAE for SDXL in fp16
    # (a diffusers folder such as madebyollin's sdxl-vae-fp16-fix) instead of diffusers' fp32 upcast.
    fuse_qkv: bool = False
    float8: bool = False
    sdxl_vae: Path | None = None

    @classmethod
    def create(
        cls,
        device: str | None,
        dtype: str | None,
        *,
        channels_last: bool | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        fuse_qkv: bool = False,
        float8: bool = False,
        sdxl_vae: Path | None = None,
    ) -> DeviceSettings:
        resolved = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if resolved.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
        # Half precision is the GPU default; on CPU fp16 kernels are slow or missing, so fp32 unless asked.
        chosen = dtype or ("fp16" if resolved.startswith("cuda") else "fp32")
        if chosen not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}")
        cl = resolved.startswith("cuda") if channels_last is None else channels_last
        if float8 and not _float8_capable(resolved):
            raise ValueError("--float8 needs a CUDA GPU of compute capability 8.9 or later (Ada, Hopper) and torchao")
        if sdxl_vae is not None and not (sdxl_vae / "config.json").is_file():
            raise ValueError(f"--sdxl-vae {sdxl_vae}: not a diffusers VAE folder (no config.json)")
        return cls(resolved, DTYPES[chosen], cl, compile, compile_mode, fuse_qkv, float8, sdxl_vae)


def _float8_capable(device: str) -> bool:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    if importlib.util.find_spec("torchao") is None:
        return False
    return torch.cuda.get_device_capability() >= (8, 9)


@dataclass
class LoadedModel:
    """A loaded checkpoint: the text-to-image pipeline plus task pipelines sharing its components."""

    entry: ModelEntry
    text2img: Any
    base_scheduler_config: dict[str, Any]
    lora_state: LoraState = field(default_factory=LoraState)  # LoRAs merged into the weights now
    controlnets: dict[str, Any] = field(default_factory=dict)  # ControlNet models loaded for it, by path
    vae_state: VaeState = field(default_factory=VaeState)  # which VAE weights are loaded (sd_vae)
    motion_adapters: dict[str, Any] = field(default_factory=dict)  # AnimateDiff motion modules, by path
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
        self.lora_state = LoraState()
        self.controlnets.clear()
        self.motion_adapters.clear()
        self.vae_state = VaeState()
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
    header = read_header(entry.path)
    config = config_folder_for(entry, root)
    if config == root / CONFIGS_DIR / Path(entry.name).stem:  # written for this one file: taken as it is
        return _from_single_file(entry, _class_name(config, entry.family), config, settings)
    if config is not None:
        pipe = _from_single_file(entry, _class_name(config, entry.family), config, settings)
    else:
        arch = published_architecture(entry.name, entry.family, header)
        with tempfile.TemporaryDirectory(prefix="sd-config-") as folder:
            write_family_config(arch, Path(folder))
            try:
                pipe = _from_single_file(entry, arch.pipeline_class, Path(folder), settings)
            except (ValueError, RuntimeError, KeyError) as exc:
                raise UnrecognisedCheckpoint(
                    f"{entry.name}: its tensors do not fit the published {entry.family} architecture "
                    f"({type(exc).__name__}: {str(exc)[:300]}); {how_to_configure(entry.name)}"
                ) from exc
    prediction = resolve_prediction(pipe, entry.family, header)
    if config is None and entry.family == "v2" and prediction == EPSILON:
        pipe.unet.register_to_config(sample_size=SD2.unet["sample_size"])  # the 512 base models
    log.info("%s: %s checkpoint, %s", entry.name, entry.family, pipe.scheduler.config.get("prediction_type"))
    return pipe


def _class_name(config: Path, family: str) -> str:
    name = json.loads((config / "model_index.json").read_text()).get("_class_name")
    return name if isinstance(name, str) else FAMILY_PIPELINES.get(family, "")


def _from_single_file(entry: ModelEntry, class_name: str, config: Path, settings: DeviceSettings) -> Any:
    import diffusers

    pipeline_class = getattr(diffusers, class_name, None)
    if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
        raise UnrecognisedCheckpoint(
            f"{entry.name}: {class_name!r} cannot load single files; {how_to_configure(entry.name)}"
        )
    return pipeline_class.from_single_file(
        str(entry.path), config=str(config), local_files_only=True, dtype=settings.dtype
    )


def _lists_component(folder: Path, component: str) -> bool:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    value = index.get(component)
    return isinstance(value, list) and value[0] is not None


def optimise(pipe: Any, settings: DeviceSettings) -> Any:
    """Device placement and the GPU speed-ups. SDPA attention is diffusers' default on torch 2."""
    if settings.sdxl_vae is not None and hasattr(pipe, "text_encoder_2") and settings.dtype == torch.float16:
        from diffusers import AutoencoderKL

        pipe.vae = AutoencoderKL.from_pretrained(settings.sdxl_vae, torch_dtype=settings.dtype)
    pipe = pipe.to(settings.device)
    pipe.set_progress_bar_config(disable=True)
    if settings.fuse_qkv and hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
    if settings.float8:
        from torchao.quantization import float8_dynamic_activation_float8_weight, quantize_

        for name in ("unet", "transformer"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                quantize_(module, float8_dynamic_activation_float8_weight())
    if settings.channels_last:
        for name in ("unet", "vae", "transformer"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if settings.compile:
        for name in ("unet", "transformer"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                # fullgraph keeps graph breaks from silently eating the gain; dynamic shapes: one graph serves
                # every size, batch and CFG combination instead of a recompile (minutes) for each.
                setattr(pipe, name, torch.compile(module, mode=settings.compile_mode, fullgraph=True, dynamic=True))
    return pipe


def free(loaded: LoadedModel) -> None:
    """Drop a model's tensors now, not at the next garbage collection (GPU memory is the scarce thing)."""
    loaded.release()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
