"""Write a diffusers pipeline as one original-layout (LDM / AUTOMATIC1111) ``.safetensors`` checkpoint.

This is the inverse of diffusers' single-file loader: tests and benchmarks use it to produce real
single-file checkpoints (SD 1.x, SD 2.x text layout, SDXL) from randomly initialised pipelines, and the
round trip through ``from_single_file`` checks both directions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

Tensors = dict[str, torch.Tensor]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer.text_model."
SD2_TEXT_PREFIX = "cond_stage_model.model."
XL_TEXT_PREFIX = "conditioner.embedders.0.transformer.text_model."
XL_TEXT2_PREFIX = "conditioner.embedders.1.model."
XL_REFINER_TEXT_PREFIX = "conditioner.embedders.0.model."

_RESNET_RENAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION_RENAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return dict(_RESNET_RENAMES).get(head, head) + "." + tail


def _layer_key(blocks: str, slot: int, kind: str, rest: str) -> str:
    """An input or output block's key: its resnet is layer 0 of the slot, its attention (transformer) layer 1."""
    return f"{blocks}.{slot}.0.{_resnet(rest)}" if kind == "resnets" else f"{blocks}.{slot}.1.{rest}"


def unet_to_ldm(state: Tensors, config: Any) -> Tensors:
    """UNet2DConditionModel keys -> ``input_blocks / middle_block / output_blocks`` keys."""
    per_block = int(config.layers_per_block)
    out: Tensors = {}
    for key, value in state.items():
        parts = key.split(".")
        top = ".".join(parts[:2])
        if top in _UNET_TOP_LEVEL:
            out[_UNET_TOP_LEVEL[top] + "." + ".".join(parts[2:])] = value
            continue
        if parts[0] == "conv_in" or parts[0] in ("conv_norm_out", "conv_out"):
            out[_UNET_TOP_LEVEL[parts[0]] + "." + ".".join(parts[1:])] = value
            continue
        if parts[0] == "down_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "downsamplers":  # downsamplers.0.conv.* -> input_blocks.N.0.op.*
                slot = 1 + block * (per_block + 1) + per_block
                out[f"input_blocks.{slot}.0.op.{rest.removeprefix('conv.')}"] = value
                continue
            out[_layer_key("input_blocks", 1 + block * (per_block + 1) + index, kind, rest)] = value
            continue
        if parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                out[f"middle_block.{2 * index}.{_resnet(rest)}"] = value
            else:
                out[f"middle_block.1.{rest}"] = value
            continue
        if parts[0] == "up_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "upsamplers":
                slot = block * (per_block + 1) + per_block
                has_attention = f"up_blocks.{block}.attentions.0.norm.weight" in state
                out[f"output_blocks.{slot}.{2 if has_attention else 1}.{rest}"] = value
                continue
            out[_layer_key("output_blocks", block * (per_block + 1) + index, kind, rest)] = value
            continue
        raise ValueError(f"unexpected UNet key {key!r}")
    return out


def vae_to_ldm(state: Tensors, config: Any) -> Tensors:
    """AutoencoderKL keys -> ``encoder.down.N.block.M`` style keys (attention projections as 1x1 convs)."""
    up_count = len(config.up_block_types)
    out: Tensors = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv"):
            out[key] = value
            continue
        rest = parts[1:]
        if rest[0] == "conv_norm_out":
            out[f"{side}.norm_out.{rest[1]}"] = value
        elif rest[0] in ("conv_in", "conv_out"):
            out[key] = value
        elif rest[0] in ("down_blocks", "up_blocks"):
            block = int(rest[1])
            level = block if rest[0] == "down_blocks" else up_count - 1 - block
            name = "down" if rest[0] == "down_blocks" else "up"
            if rest[2] == "resnets":
                tail = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
                out[f"{side}.{name}.{level}.block.{rest[3]}.{tail}"] = value
            else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                sampler = "downsample" if name == "down" else "upsample"
                out[f"{side}.{name}.{level}.{sampler}.{'.'.join(rest[4:])}"] = value
        elif rest[0] == "mid_block":
            if rest[1] == "resnets":
                tail = ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
                out[f"{side}.mid.block_{int(rest[2]) + 1}.{tail}"] = value
            else:
                inner = ".".join(rest[3:-1])
                param = rest[-1]
                mapped = _VAE_ATTENTION_RENAMES.get(inner, inner)
                if value.ndim == 2:  # the original stores the attention projections as 1x1 convolutions
                    value = value[:, :, None, None]
                out[f"{side}.mid.attn_1.{mapped}.{param}"] = value
        else:
            raise ValueError(f"unexpected VAE key {key!r}")
    return out


def clip_to_ldm(state: Tensors, prefix: str) -> Tensors:
    """transformers CLIP text model keys under the original ``...text_model.`` prefix."""
    return {prefix + key.removeprefix("text_model."): value for key, value in state.items()}


def clip_to_open_clip(state: Tensors, prefix: str) -> Tensors:
    """transformers CLIP text model keys -> OpenCLIP layout (fused q/k/v, ``resblocks``, transposed projection)."""
    plain = {key.removeprefix("text_model."): value for key, value in state.items()}
    out: Tensors = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in plain.items():
        if key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            parts = key.split(".")
            layer, module, rest = parts[2], parts[3], parts[4:]
            base = f"{prefix}transformer.resblocks.{layer}."
            if module == "self_attn" and rest[0] in ("q_proj", "k_proj", "v_proj"):
                fused.setdefault(f"{base}attn.in_proj_{rest[1]}", {})[rest[0]] = value
            elif module == "self_attn":
                out[f"{base}attn.out_proj.{rest[1]}"] = value
            elif module in ("layer_norm1", "layer_norm2"):
                out[f"{base}ln_{module[-1]}.{rest[0]}"] = value
            else:  # mlp.fc1 / mlp.fc2
                out[f"{base}mlp.{'c_fc' if rest[0] == 'fc1' else 'c_proj'}.{rest[1]}"] = value
        else:
            raise ValueError(f"unexpected text encoder key {key!r}")
    for key, qkv in fused.items():
        out[key] = torch.cat([qkv["q_proj"], qkv["k_proj"], qkv["v_proj"]], dim=0)
    if prefix + "text_projection" not in out:
        # The loader reads the attention width from the projection; an SD 2 text model has none, so use identity.
        width = out[prefix + "positional_embedding"].shape[-1]
        out[prefix + "text_projection"] = torch.eye(width, dtype=out[prefix + "positional_embedding"].dtype)
    return out


def pipeline_to_ldm(pipe: Any, *, open_clip_text: bool = False) -> Tensors:
    """The whole pipeline as one original-layout state dict (SD 1.x, SD 2.x with ``open_clip_text``, SDXL base
    and refiner)."""
    state = {UNET_PREFIX + k: v for k, v in unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config).items()}
    state.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config).items()})
    first: Any = getattr(pipe, "text_encoder", None)
    second: Any = getattr(pipe, "text_encoder_2", None)
    if first is not None and second is not None:
        state.update(clip_to_ldm(first.state_dict(), XL_TEXT_PREFIX))
        state.update(clip_to_open_clip(second.state_dict(), XL_TEXT2_PREFIX))
    elif second is not None:  # the SDXL refiner: OpenCLIP-bigG alone, as the first embedder
        state.update(clip_to_open_clip(second.state_dict(), XL_REFINER_TEXT_PREFIX))
    elif open_clip_text:
        state.update(clip_to_open_clip(first.state_dict(), SD2_TEXT_PREFIX))
    else:
        state.update(clip_to_ldm(first.state_dict(), SD1_TEXT_PREFIX))
    return state


def ddpm_schedule_buffers(scheduler_config: Any) -> Tensors:
    """The noise-schedule buffers the original SD 1.x/2.x training code stores in every checkpoint (unused by
    the loader; present in files as downloaded), from the scaled-linear schedule of ``scheduler_config``."""
    steps = int(scheduler_config["num_train_timesteps"])
    start, end = float(scheduler_config["beta_start"]), float(scheduler_config["beta_end"])
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, dim=0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    variance = betas * (1.0 - previous) / (1.0 - cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": cumprod,
        "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1.0).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * previous.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - previous) * alphas.sqrt() / (1.0 - cumprod),
    }
    return {name: value.float() for name, value in buffers.items()}


def save_single_file(
    pipe: Any,
    path: Path,
    *,
    open_clip_text: bool = False,
    metadata: dict[str, str] | None = None,
    as_downloaded: bool = False,
) -> Path:
    """Write ``path`` (``.safetensors``, or a ``.ckpt`` as the original training code saved them).

    ``as_downloaded`` adds what released SD 1.x/2.x files carry besides the modules' weights: the DDPM schedule
    buffers and the CLIP position ids.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in pipeline_to_ldm(pipe, open_clip_text=open_clip_text).items()}
    if as_downloaded and getattr(pipe, "text_encoder_2", None) is None:
        state.update(ddpm_schedule_buffers(pipe.scheduler.config))
        if not open_clip_text:
            positions = pipe.text_encoder.config.max_position_embeddings
            state[SD1_TEXT_PREFIX + "embeddings.position_ids"] = torch.arange(positions)[None, :]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".ckpt":
        torch.save({"state_dict": state, "global_step": int((metadata or {}).get("global_step", 0))}, path)
        return path
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"format": "pt", **(metadata or {})})
    return path
