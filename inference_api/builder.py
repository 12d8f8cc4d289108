"""Instantiate a pipeline of the real diffusers/transformers classes with random weights (no downloads)."""

from __future__ import annotations

from typing import Any

import torch

from inference_api.architectures import Architecture
from inference_api.tokenizer import build_tokenizer


def build_pipeline(
    arch: Architecture, *, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Any:
    """A randomly initialised pipeline; the same seed gives the same weights."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tokenizer()
    components: dict[str, Any] = {}
    with torch.device(device):
        torch.manual_seed(seed)
        components["unet"] = diffusers.UNet2DConditionModel(**arch.unet)
        torch.manual_seed(seed + 1)
        components["vae"] = diffusers.AutoencoderKL(**arch.vae)
        for index, spec in enumerate(arch.text_encoders):
            suffix = "" if index == 0 else f"_{index + 1}"
            torch.manual_seed(seed + 2 + index)
            config = CLIPTextConfig(**spec.config(len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id))
            model_class = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
            encoder = model_class(config)
            _learned_norm_bias(encoder)
            components[f"text_encoder{suffix}"] = encoder
            components[f"tokenizer{suffix}"] = tokenizer if index == 0 else build_tokenizer()
    components["scheduler"] = getattr(diffusers, arch.scheduler_class).from_config(arch.scheduler)
    pipeline_class = getattr(diffusers, arch.pipeline_class)
    if not arch.is_xl:
        components.update(safety_checker=None, feature_extractor=None)
    pipe = pipeline_class(**components, **arch.extra_config)
    if dtype != torch.float32:
        pipe = pipe.to(dtype=dtype)
    return pipe


def _learned_norm_bias(encoder: Any) -> None:
    """A trained CLIP's final layer norm has a bias, so its outputs have a non-zero mean; a fresh one has none.

    A1111's emphasis rescales every chunk back to its mean, which needs that mean to be away from zero.
    """
    norm = getattr(encoder, "text_model", encoder).final_layer_norm
    with torch.no_grad():
        norm.bias.copy_(0.5 + 0.5 * torch.randn(norm.bias.shape))
