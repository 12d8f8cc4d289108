"""LoRA in the kohya / AUTOMATIC1111 key format, merged into the loaded weights and restored exactly.

A kohya LoRA names each adapted layer ``lora_unet_<path>`` / ``lora_te_<path>`` (SDXL: ``lora_te1_`` for
CLIP-L, ``lora_te2_`` for bigG) with ``<name>.lora_down.weight``, ``<name>.lora_up.weight`` and
``<name>.alpha``. The UNet path is either diffusers' module path (SD 1.x trainers) or the original LDM / SGM
one (``input_blocks_4_1_...``: A1111's own naming, and kohya's for SDXL); both are recognised. Linear and
convolution layers (LoCon) are adapted: ``W += multiplier * alpha / rank * up @ down``.

As A1111 does, the original weights of every touched layer are kept, and restored before another set of
LoRAs is applied, so "no LoRA" after a LoRA is exactly the base model again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference_api.networks import LoraUse

DOWN, UP, ALPHA = ".lora_down.weight", ".lora_up.weight", ".alpha"
FILES_KEPT = 8
_SGM_PREFIXES = ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")


@dataclass(frozen=True)
class ResolvedLora:
    """A LoRA a job applies: its file and multipliers (never 0 for both: that is the same as none)."""

    use: LoraUse
    path: Path
    short_hash: str = ""

    @property
    def key(self) -> tuple[str, float, float]:
        return (str(self.path), self.use.te, self.use.unet)


@dataclass
class LoraState:
    """What is merged into one loaded model now, the original weights it replaced, and recently read files."""

    applied: tuple[tuple[str, float, float], ...] = ()
    originals: dict[str, tuple[torch.nn.Module, torch.Tensor]] = field(default_factory=dict)
    files: OrderedDict[tuple[str, float], dict[str, torch.Tensor]] = field(default_factory=OrderedDict)
    index: dict[str, torch.nn.Module] | None = None


def module_index(pipe: Any) -> dict[str, torch.nn.Module]:
    """Every layer a kohya LoRA can name in this pipeline, under each of its kohya names."""
    index: dict[str, torch.nn.Module] = {}
    unet = getattr(pipe, "unet", None)
    if isinstance(unet, torch.nn.Module):
        layers = {name: m for name, m in unet.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)}
        for name, module in layers.items():
            index["lora_unet_" + name.replace(".", "_")] = module
        for ldm_name, name in _ldm_names(unet).items():
            if name in layers:
                index["lora_unet_" + ldm_name.replace(".", "_")] = layers[name]
    encoders = [("lora_te_", "text_encoder")]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders = [("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2")]
    for prefix, attribute in encoders:
        encoder = getattr(pipe, attribute, None)
        if not isinstance(encoder, torch.nn.Module):
            continue
        for name, module in encoder.named_modules():
            if isinstance(module, torch.nn.Linear):
                # kohya names CLIP layers from transformers' CLIPTextModel: text_model.encoder.layers...
                path = "text_model." + name.removeprefix("text_model.")
                index[prefix + path.replace(".", "_")] = module
    return index


def _ldm_names(unet: torch.nn.Module) -> dict[str, str]:
    """LDM/SGM module path -> diffusers module path, from the checkpoint converter's key mapping."""
    from inference_api.ldm import unet_to_ldm

    keys = {k: k for k in unet.state_dict()}
    try:
        mapping = unet_to_ldm(keys, unet.config)  # type: ignore[arg-type]
    except (ValueError, KeyError):
        return {}
    return {
        str(ldm).removesuffix(".weight"): str(name).removesuffix(".weight")
        for ldm, name in mapping.items()
        if str(ldm).endswith(".weight")
    }


def _weight(module: torch.nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _read(state: LoraState, path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    key = (str(path), os.stat(path).st_mtime)
    if key not in state.files:
        state.files[key] = load_file(str(path))
        while len(state.files) > FILES_KEPT:
            state.files.popitem(last=False)
    state.files.move_to_end(key)
    return state.files[key]


def _delta(down: torch.Tensor, up: torch.Tensor, alpha: float | None, weight: torch.Tensor) -> torch.Tensor:
    rank = down.shape[0]
    scale = (alpha / rank) if alpha is not None else 1.0
    if down.dim() == 4 and weight.dim() == 4 and down.shape[2:] != (1, 1):  # LoCon: k x k down, 1 x 1 up
        delta = torch.einsum("or,rihw->oihw", up.flatten(1), down)
    else:
        delta = up.flatten(1) @ down.flatten(1)
    return delta.reshape(weight.shape) * scale


def apply(pipe: Any, state: LoraState, loras: list[ResolvedLora]) -> list[str]:
    """Make the pipeline's weights base + ``loras``; a no-op when they already are. Notes on unmatched keys."""
    wanted = tuple(lora.key for lora in loras)
    if wanted == state.applied:
        return []
    with torch.no_grad():
        for module, original in state.originals.values():
            _weight(module).copy_(original)
        state.applied = ()
        if state.index is None:
            state.index = module_index(pipe)
        notes = []
        for lora in loras:
            unmatched = _merge(state, lora, _read(state, lora.path))
            if unmatched:
                notes.append(f"LoRA {lora.use.name}: {unmatched} layer(s) match nothing in this model; skipped")
    state.applied = wanted
    return notes


def _merge(state: LoraState, lora: ResolvedLora, tensors: dict[str, torch.Tensor]) -> int:
    assert state.index is not None
    unmatched = 0
    for key in tensors:
        if not key.endswith(DOWN):
            continue
        name = key[: -len(DOWN)]
        module = state.index.get(name)
        if module is None or name + UP not in tensors:
            unmatched += 1
            continue
        multiplier = lora.use.te if name.startswith("lora_te") else lora.use.unet
        if multiplier == 0:
            continue
        weight = _weight(module)
        alpha_tensor = tensors.get(name + ALPHA)
        alpha = float(alpha_tensor) if alpha_tensor is not None else None
        down = tensors[key].to(weight.device, torch.float32)
        up = tensors[name + UP].to(weight.device, torch.float32)
        if name not in state.originals:
            state.originals[name] = (module, weight.detach().clone())
        weight.add_((_delta(down, up, alpha, weight) * multiplier).to(weight.dtype))
    return unmatched


def build_tiny_lora(model_dir: Path, out: Path, *, rank: int = 4, seed: int = 0, scale: float = 0.5) -> Path:
    """A random LoRA in kohya format for a (tiny) diffusers model folder: attention and CLIP projections.

    SD 1.x UNet layers get diffusers-path names, SDXL ones the SGM names kohya writes for SDXL.
    """
    import diffusers
    from safetensors.torch import save_file

    pipe = diffusers.DiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    xl = getattr(pipe, "text_encoder_2", None) is not None
    index = module_index(pipe)
    by_module: dict[int, list[str]] = {}
    for name, module in index.items():
        by_module.setdefault(id(module), []).append(name)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for names in by_module.values():
        module = index[names[0]]
        unet_names = [n for n in names if n.startswith("lora_unet_")]
        if unet_names:
            if not any(p in names[0] for p in ("attn1_to_", "attn2_to_")):
                continue
            sgm = [n for n in unet_names if n.startswith(_SGM_PREFIXES)]
            plain = [n for n in unet_names if n not in sgm]
            name = sgm[0] if xl and sgm else plain[0]
        elif any(p in names[0] for p in ("q_proj", "k_proj", "v_proj", "out_proj")):
            name = names[0]
        else:
            continue
        weight = _weight(module)
        down = torch.randn((rank, weight.shape[1]), generator=generator) * scale
        up = torch.randn((weight.shape[0], rank), generator=generator) * scale
        tensors[name + DOWN] = down.contiguous()
        tensors[name + UP] = up.contiguous()
        tensors[name + ALPHA] = torch.tensor(float(rank))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"ss_network_module": "networks.lora", "ss_output_name": out.stem})
    return out
