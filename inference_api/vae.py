"""``sd_vae`` (option or ``override_settings``): a VAE from ``<models>/VAE/`` in place of the model's own.

A1111's VAE files are ``.safetensors`` in the original layout (``encoder.down.0.block.0...``, attention as
1x1 convolutions, optionally under ``first_stage_model.``) or in diffusers' names; both are read. The weights
are loaded into the model's VAE in place (every pipeline derived from it shares that module) and the model's
own are kept, so "Automatic" / "None" after another VAE is exactly the model's VAE again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

AUTOMATIC = frozenset({"", "automatic", "none"})
LDM_PREFIX = "first_stage_model."


@dataclass
class VaeState:
    applied: str = ""  # the file loaded into the VAE now ("" = the model's own)
    original: dict[str, torch.Tensor] = field(default_factory=dict)


def wants_own(name: str | None) -> bool:
    return name is None or name.strip().lower() in AUTOMATIC


def _ldm_names(vae: Any) -> dict[str, str]:
    from inference_api.ldm import vae_to_ldm

    names = {}
    for key, value in vae.state_dict().items():
        try:
            (ldm,) = vae_to_ldm({key: value}, vae.config)
        except (ValueError, KeyError, IndexError):
            continue
        names[ldm] = key
    return names


def read(path: Path, vae: Any) -> dict[str, torch.Tensor]:
    """The file's weights under the VAE's own parameter names and shapes; ValueError when it is no VAE of it."""
    from safetensors.torch import load_file

    tensors = {k.removeprefix(LDM_PREFIX): v for k, v in load_file(str(path)).items()}
    target = vae.state_dict()
    if not set(target) <= set(tensors):
        names = _ldm_names(vae)
        tensors = {names[k]: v for k, v in tensors.items() if k in names}
    missing = set(target) - set(tensors)
    if missing:
        raise ValueError(f"{path.name} is not a VAE for this model ({len(missing)} weights missing)")
    out = {}
    for key, value in target.items():
        loaded = tensors[key]
        if loaded.numel() != value.numel():
            raise ValueError(f"{path.name} is not a VAE for this model ({key} has another shape)")
        out[key] = loaded.reshape(value.shape)
    return out


def apply(pipe: Any, state: VaeState, path: Path | None) -> None:
    """Make ``pipe.vae`` the model's own (``path`` None) or the file's weights; a no-op when it already is."""
    wanted = str(path) if path is not None else ""
    if wanted == state.applied:
        return
    vae = pipe.vae
    with torch.no_grad():
        if not state.original:
            state.original = {k: v.detach().clone() for k, v in vae.state_dict().items()}
        weights = state.original if path is None else read(path, vae)
        vae.load_state_dict({k: v.to(state.original[k].device, state.original[k].dtype) for k, v in weights.items()})
    state.applied = wanted


def build_tiny_vae(model_dir: Path, out: Path, *, seed: int = 0, noise: float = 0.05) -> Path:
    """The model folder's VAE with its weights perturbed, saved as A1111 keeps VAEs (original layout)."""
    import diffusers
    from safetensors.torch import save_file

    from inference_api.ldm import vae_to_ldm

    model = diffusers.AutoencoderKL.from_pretrained(str(model_dir / "vae"), local_files_only=True)
    generator = torch.Generator().manual_seed(seed)
    state = {k: v + noise * torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(state, model.config).items()}, str(out))
    return out
