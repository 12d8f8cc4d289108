"""Instantiate a pipeline of the real diffusers/transformers classes with random weights (no downloads)."""

from __future__ import annotations

from typing import Any

import torch

from inference_api.architectures import Architecture, TextEncoderSpec
from inference_api.tokenizer import build_clip_tokenizer, build_tokenizer

# Random weights of full-size models: small normal noise keeps activations finite through dozens of layers.
RANDOM_STD = 0.02


def tokenizer_for(spec: TextEncoderSpec) -> Any:
    return build_clip_tokenizer(spec.pad_token) if spec.vocabulary == "clip" else build_tokenizer()


def build_pipeline(
    arch: Architecture,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    fast_init: bool = False,
) -> Any:
    """A randomly initialised pipeline; the same seed gives the same weights.

    ``fast_init`` skips the modules' own initialisation schemes (Kaiming and friends cost minutes for the
    billions of parameters of the published sizes): the modules are created without storage and filled once,
    directly in ``dtype``, with normal noise (norm layers with ones and zeros).
    """
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    components: dict[str, Any] = {}

    def make(build: Any, offset: int) -> Any:
        torch.manual_seed(seed + offset)
        if not fast_init:
            with torch.device(device):
                return build()
        with torch.device("meta"):
            module = build()
        return _fill_random(module.to_empty(device=device).to(dtype), seed + offset)

    components["unet"] = make(lambda: diffusers.UNet2DConditionModel(**arch.unet), 0)
    components["vae"] = make(lambda: diffusers.AutoencoderKL(**arch.vae), 1)
    for index, (slot, tokenizer_slot, spec) in enumerate(arch.slots()):
        tokenizer = tokenizer_for(spec)
        config = CLIPTextConfig(**spec.config(len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id))
        model_class = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
        encoder = make(lambda c=config, m=model_class: m(c), 2 + index)
        _learned_norm_bias(encoder)
        components[slot] = encoder
        components[tokenizer_slot] = tokenizer
    if arch.is_xl:
        for slot in ("text_encoder", "text_encoder_2"):
            components.setdefault(slot, None)
            components.setdefault(slot.replace("text_encoder", "tokenizer"), None)
    components["scheduler"] = getattr(diffusers, arch.scheduler_class).from_config(arch.scheduler)
    pipeline_class = getattr(diffusers, arch.pipeline_class)
    if not arch.is_xl:
        components.update(safety_checker=None, feature_extractor=None)
    pipe = pipeline_class(**components, **arch.extra_config)
    if dtype != torch.float32 and not fast_init:
        pipe = pipe.to(dtype=dtype)
    return pipe


def _learned_norm_bias(encoder: Any) -> None:
    """A trained CLIP's final layer norm has a bias, so its outputs have a non-zero mean; a fresh one has none.

    A1111's emphasis rescales every chunk back to its mean, which needs that mean to be away from zero.
    """
    norm = getattr(encoder, "text_model", encoder).final_layer_norm
    with torch.no_grad():
        norm.bias.copy_(0.5 + 0.5 * torch.randn(norm.bias.shape))


def _fill_random(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name and leaf == "weight":
                tensor.fill_(1.0)
            elif "norm" in name and leaf == "bias":
                tensor.zero_()
            elif tensor.is_floating_point():
                tensor.normal_(0.0, RANDOM_STD, generator=generator)
            else:  # integer buffers (CLIP's position ids): what the module's own constructor computes
                tensor.copy_(torch.arange(tensor.shape[-1]).expand(tensor.shape))
    return module
