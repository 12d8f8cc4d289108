"""Component configs for the architectures we build locally: tiny ones for tests, full SD 1.5 for benchmarks.

These are plain data (the public architecture hyper-parameters), so that tests and benchmarks can build
a pipeline of the real classes with random weights and no hub access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Stable Diffusion's noise schedule (scaled linear betas), shared by every SD 1.x / 2.x / XL scheduler config.
SD_NOISE_SCHEDULE: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class TextEncoderSpec:
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    projection_dim: int
    hidden_act: str = "quick_gelu"
    with_projection: bool = False
    vocab_size: int | None = None  # None: the tokenizer's size

    def config(self, vocab_size: int, eos_token_id: int, bos_token_id: int) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "projection_dim": self.projection_dim,
            "hidden_act": self.hidden_act,
            "vocab_size": self.vocab_size or vocab_size,
            "max_position_embeddings": 77,
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "pad_token_id": eos_token_id,
        }


@dataclass(frozen=True)
class Architecture:
    """Everything needed to instantiate one pipeline family with random weights."""

    name: str
    pipeline_class: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: tuple[TextEncoderSpec, ...]
    scheduler_class: str
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD_NOISE_SCHEDULE))
    extra_config: dict[str, Any] = field(default_factory=dict)

    @property
    def is_xl(self) -> bool:
        return len(self.text_encoders) == 2


_TINY_VAE: dict[str, Any] = {
    # Four blocks keep SD's 8x latent downsampling, so a 64x64 image is an 8x8 latent: tiny and fast.
    "block_out_channels": [8, 8, 16, 16],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}

# What the tiny SD 1.x and SDXL UNets share: the smallest shapes that still run every block type.
_TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 16,
}
_TINY_CLIP = TextEncoderSpec(hidden_size=32, layers=2, heads=4, intermediate_size=64, projection_dim=32)

TINY_SD = Architecture(
    name="tiny-sd",
    pipeline_class="StableDiffusionPipeline",
    unet={
        **_TINY_UNET,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
    },
    vae=_TINY_VAE,
    text_encoders=(_TINY_CLIP,),
    scheduler_class="PNDMScheduler",
    extra_config={"requires_safety_checker": False},
)

# SDXL's two text encoders must differ in width (as the real 768 / 1280 do): single-file loading tells
# them apart by the width of their position embeddings.
TINY_SDXL = Architecture(
    name="tiny-sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    unet={
        **_TINY_UNET,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 32 + 48,
        "attention_head_dim": [2, 4],
        "transformer_layers_per_block": [1, 1],
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 32 + 6 * 8,
    },
    vae={**_TINY_VAE, "force_upcast": True, "scaling_factor": 0.13025},
    text_encoders=(
        _TINY_CLIP,
        TextEncoderSpec(
            hidden_size=48,
            layers=2,
            heads=4,
            intermediate_size=96,
            projection_dim=32,
            hidden_act="gelu",
            with_projection=True,
        ),
    ),
    scheduler_class="EulerDiscreteScheduler",
    scheduler={**SD_NOISE_SCHEDULE, "interpolation_type": "linear", "timestep_spacing": "leading"},
    extra_config={"force_zeros_for_empty_prompt": True},
)

# Stable Diffusion 1.5 (runwayml / stable-diffusion-v1-5): 860M-parameter UNet, 84M VAE, CLIP ViT-L/14 text.
SD15 = Architecture(
    name="sd15-random",
    pipeline_class="StableDiffusionPipeline",
    unet={
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    },
    vae={
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 512,
    },
    text_encoders=(
        TextEncoderSpec(
            hidden_size=768, layers=12, heads=12, intermediate_size=3072, projection_dim=768, vocab_size=49408
        ),
    ),
    scheduler_class="PNDMScheduler",
    extra_config={"requires_safety_checker": False},
)

ARCHITECTURES = {a.name: a for a in (TINY_SD, TINY_SDXL, SD15)}
