"""What an original-layout checkpoint file is, read from its tensor names and shapes (never its weights).

``.safetensors``: the JSON header (plus the ``__metadata__`` strings). ``.ckpt``: a zip-format torch pickle,
opened with ``weights_only=True`` and ``mmap=True``, so only the pickle is parsed and no tensor data is read.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 64 * 1024 * 1024
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
UNET_PREFIX = "model.diffusion_model."
UNET_INPUT = UNET_PREFIX + "input_blocks.0.0.weight"
UNKNOWN = "unknown"  # a diffusion checkpoint of no family we know (SD3, Flux, ...): listed, loading explains
V_PREDICTION = "v_prediction"
EPSILON = "epsilon"


@dataclass(frozen=True)
class CheckpointHeader:
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)
    global_step: int | None = None  # .ckpt files from the original training code record it


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes) without reading any weights."""
    header = _raw_safetensors_header(path)
    header.pop("__metadata__", None)
    return header


def _raw_safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) != 8:
            raise ValueError("file too short")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise ValueError("header too large")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header


def read_header(path: Path) -> CheckpointHeader:
    """Tensor shapes and metadata of a ``.safetensors`` or ``.ckpt`` file; ValueError when it is neither."""
    if path.suffix == ".ckpt":
        return _ckpt_header(path)
    raw = _raw_safetensors_header(path)
    metadata = raw.pop("__metadata__", None) or {}
    shapes = {k: tuple(v.get("shape", ())) for k, v in raw.items() if isinstance(v, dict)}
    return CheckpointHeader(shapes, {str(k): str(v) for k, v in metadata.items()})


def _ckpt_header(path: Path) -> CheckpointHeader:
    import torch

    if not zipfile.is_zipfile(path):
        raise ValueError("not a zip-format torch checkpoint (convert it to .safetensors)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # an unpickling error: it holds more than tensors (or is not a checkpoint)
        raise ValueError(f"not loadable with weights_only: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a state dict")
    step = data.get("global_step")
    while isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    shapes = {k: tuple(v.shape) for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return CheckpointHeader(shapes, {}, int(step) if isinstance(step, int) else None)


def classify_checkpoint(header: dict[str, Any] | CheckpointHeader) -> str | None:
    """The SD family of an original-layout checkpoint, ``unknown`` for another diffusion model, or None when it
    is no model at all (LoRA, VAE, upscaler...)."""
    keys = header.shapes.keys() if isinstance(header, CheckpointHeader) else header.keys()
    if not any(k.startswith(UNET_PREFIX) for k in keys):
        return None
    if UNET_INPUT not in keys:
        return UNKNOWN
    first = _shape(header, UNET_INPUT)
    inpainting = len(first) == 4 and first[1] == 9
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        family = "xl_base"
    elif any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        family = "xl_refiner"
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        family = "v2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in keys) or not any(
        k.startswith(("cond_stage_model.", "conditioner.")) for k in keys
    ):
        family = "v1"
    else:
        return UNKNOWN
    if inpainting:
        return {"v1": "inpainting", "v2": "inpainting_v2", "xl_base": "xl_inpaint"}.get(family, UNKNOWN)
    return family


def _shape(header: dict[str, Any] | CheckpointHeader, key: str) -> tuple[int, ...]:
    if isinstance(header, CheckpointHeader):
        return header.shapes.get(key, ())
    value = header.get(key, {})
    return tuple(value.get("shape", ())) if isinstance(value, dict) else ()


def declared_prediction(header: CheckpointHeader) -> str | None:
    """The prediction type a file declares, or None when it says nothing.

    In order: the Stability AI model spec metadata (``modelspec.prediction_type``), the trainers' flag
    (kohya's ``ss_v_parameterization``), the ``v_pred`` marker tensor of v-prediction fine-tunes, and the
    training step the original SD 2.x ``.ckpt`` files record (875000: the 512 base model, epsilon).
    """
    spec = header.metadata.get("modelspec.prediction_type", "").strip().lower()
    if spec in {"v", "v_prediction", "v-prediction"}:
        return V_PREDICTION
    if spec in {"epsilon", "eps"}:
        return EPSILON
    flag = header.metadata.get("ss_v_parameterization", "").strip().lower()
    if flag in {"true", "1"}:
        return V_PREDICTION
    if "v_pred" in header.shapes:
        return V_PREDICTION
    if header.global_step == 875000:
        return EPSILON
    return None
