"""Component configs of the pipeline families: the published ones and tiny ones for tests.

These are plain data. The published architectures (SD 1.x, SD 2.x, SDXL base and refiner, the inpainting
variants) are written from their public hyper-parameters: the runtime turns them into the diffusers config
folder that loads an original-layout single file offline (``inference_api.single_file``), and tests and
benchmarks build pipelines of the real classes from them with random weights and no hub access.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from inference_api.tokenizer import EOS, OPEN_CLIP_PAD

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
    vocabulary: Literal["tiny", "clip"] = "tiny"  # the test vocabulary, or CLIP's real 49408 tokens
    pad_token: str = EOS
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
    # Pipeline attributes of the text encoders, in order; a refiner has only the second one.
    text_slots: tuple[str, ...] = ("text_encoder", "text_encoder_2")
    # SD 2.x: the one text encoder is OpenCLIP, stored in OpenCLIP's own layout in an original checkpoint.
    open_clip_text: bool = False

    @property
    def is_xl(self) -> bool:
        return self.pipeline_class.startswith("StableDiffusionXL")

    def slots(self) -> list[tuple[str, str, TextEncoderSpec]]:
        """(text encoder attribute, tokenizer attribute, spec) per text encoder."""
        return [
            (slot, slot.replace("text_encoder", "tokenizer"), spec)
            for slot, spec in zip(self.text_slots, self.text_encoders, strict=False)
        ]

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.get("prediction_type", "epsilon"))

    def with_prediction(self, prediction_type: str) -> Architecture:
        return replace(self, scheduler={**self.scheduler, "prediction_type": prediction_type})


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
# SDXL's two text encoders must differ in width (as the real 768 / 1280 do): single-file loading tells
# them apart by the width of their position embeddings.
_TINY_BIGG = TextEncoderSpec(
    hidden_size=48, layers=2, heads=4, intermediate_size=96, projection_dim=32, hidden_act="gelu", with_projection=True
)

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
    text_encoders=(_TINY_CLIP, _TINY_BIGG),
    scheduler_class="EulerDiscreteScheduler",
    scheduler={**SD_NOISE_SCHEDULE, "interpolation_type": "linear", "timestep_spacing": "leading"},
    extra_config={"force_zeros_for_empty_prompt": True},
)
# The other families in miniature, for the single-file tests: SD 2.x (OpenCLIP text), the refiner, inpainting.
TINY_SD2 = Architecture(
    name="tiny-sd2",
    pipeline_class="StableDiffusionPipeline",
    unet={**TINY_SD.unet, "cross_attention_dim": 48, "attention_head_dim": [2, 4], "use_linear_projection": True},
    vae=_TINY_VAE,
    text_encoders=(replace(_TINY_BIGG, with_projection=False, pad_token=OPEN_CLIP_PAD),),
    scheduler_class="DDIMScheduler",
    extra_config={"requires_safety_checker": False},
    open_clip_text=True,
)
TINY_REFINER = Architecture(
    name="tiny-sdxl-refiner",
    pipeline_class="StableDiffusionXLImg2ImgPipeline",
    unet={**TINY_SDXL.unet, "cross_attention_dim": 48, "projection_class_embeddings_input_dim": 32 + 5 * 8},
    vae=TINY_SDXL.vae,
    text_encoders=(_TINY_BIGG,),
    text_slots=("text_encoder_2",),
    scheduler_class="EulerDiscreteScheduler",
    scheduler=TINY_SDXL.scheduler,
    extra_config={"requires_aesthetics_score": True, "force_zeros_for_empty_prompt": False},
)
TINY_INPAINT = replace(
    TINY_SD,
    name="tiny-sd-inpainting",
    pipeline_class="StableDiffusionInpaintPipeline",
    unet={**TINY_SD.unet, "in_channels": 9},
)

# --- Published architectures (the hyper-parameters of the released checkpoints) ---------------------------

CLIP_L = TextEncoderSpec(  # OpenAI CLIP ViT-L/14: SD 1.x and SDXL's first text encoder
    hidden_size=768, layers=12, heads=12, intermediate_size=3072, projection_dim=768, vocabulary="clip"
)
OPEN_CLIP_H = TextEncoderSpec(  # OpenCLIP ViT-H/14, used up to its penultimate layer (23 of 24) by SD 2.x
    hidden_size=1024,
    layers=23,
    heads=16,
    intermediate_size=4096,
    projection_dim=512,
    hidden_act="gelu",
    vocabulary="clip",
    pad_token=OPEN_CLIP_PAD,
)
OPEN_CLIP_BIGG = TextEncoderSpec(  # OpenCLIP ViT-bigG/14: SDXL's second text encoder, the refiner's only one
    hidden_size=1280,
    layers=32,
    heads=20,
    intermediate_size=5120,
    projection_dim=1280,
    hidden_act="gelu",
    with_projection=True,
    vocabulary="clip",
    pad_token=OPEN_CLIP_PAD,
)

_SD_VAE: dict[str, Any] = {  # the same 84M-parameter KL autoencoder in SD 1.x, 2.x and (rescaled) SDXL
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
}
_SDXL_VAE: dict[str, Any] = {**_SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
_SD_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 32,
}
_SDXL_SCHEDULER = {**SD_NOISE_SCHEDULE, "interpolation_type": "linear", "timestep_spacing": "leading"}

# Stable Diffusion 1.5 (stable-diffusion-v1-5): 860M-parameter UNet with 8 attention heads, CLIP ViT-L/14 text.
SD15 = Architecture(
    name="sd15",
    pipeline_class="StableDiffusionPipeline",
    unet={**_SD_UNET, "cross_attention_dim": 768, "attention_head_dim": 8},
    vae=_SD_VAE,
    text_encoders=(CLIP_L,),
    scheduler_class="PNDMScheduler",
    extra_config={"requires_safety_checker": False},
)
# Stable Diffusion 2.x: 64-wide attention heads, linear projections, OpenCLIP-H text. The 768 models (2.0-v,
# 2.1) predict v and upcast attention; the 512 base models predict the noise.
SD2 = Architecture(
    name="sd2",
    pipeline_class="StableDiffusionPipeline",
    unet={
        **_SD_UNET,
        "cross_attention_dim": 1024,
        "attention_head_dim": [5, 10, 20, 20],
        "use_linear_projection": True,
    },
    vae=_SD_VAE,
    text_encoders=(OPEN_CLIP_H,),
    scheduler_class="DDIMScheduler",
    extra_config={"requires_safety_checker": False},
    open_clip_text=True,
)
SD2_V = replace(
    SD2.with_prediction("v_prediction"),
    name="sd2-v",
    unet={**SD2.unet, "sample_size": 96, "upcast_attention": True},
)
# SDXL 1.0 base: 2.6B-parameter UNet (no attention at the highest resolution), CLIP-L plus OpenCLIP-bigG text,
# micro-conditioning on size and crop (6 time ids of 256 channels next to the 1280 pooled text embedding).
SDXL = Architecture(
    name="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    unet={
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [320, 640, 1280],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": [1, 2, 10],
        "attention_head_dim": [5, 10, 20],
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
        "norm_num_groups": 32,
    },
    vae=_SDXL_VAE,
    text_encoders=(CLIP_L, OPEN_CLIP_BIGG),
    scheduler_class="EulerDiscreteScheduler",
    scheduler=_SDXL_SCHEDULER,
    extra_config={"force_zeros_for_empty_prompt": True},
)
# SDXL 1.0 refiner: image-to-image only, OpenCLIP-bigG text alone, aesthetic-score conditioning (5 time ids).
SDXL_REFINER = Architecture(
    name="sdxl-refiner",
    pipeline_class="StableDiffusionXLImg2ImgPipeline",
    unet={
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [384, 768, 1536, 1536],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": 4,
        "attention_head_dim": [6, 12, 24, 24],
        "cross_attention_dim": 1280,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2560,
        "norm_num_groups": 32,
    },
    vae=_SDXL_VAE,
    text_encoders=(OPEN_CLIP_BIGG,),
    text_slots=("text_encoder_2",),
    scheduler_class="EulerDiscreteScheduler",
    scheduler=_SDXL_SCHEDULER,
    extra_config={"requires_aesthetics_score": True, "force_zeros_for_empty_prompt": False},
)


def _inpainting(arch: Architecture, pipeline_class: str) -> Architecture:
    # The inpainting UNets take the noisy latents, the mask and the masked image's latents: 4 + 1 + 4 channels.
    return replace(
        arch, name=f"{arch.name}-inpainting", pipeline_class=pipeline_class, unet={**arch.unet, "in_channels": 9}
    )


# The family names are those the single-file classifier gives (and diffusers uses for its own lookup).
PUBLISHED: dict[str, Architecture] = {
    "v1": SD15,
    "v2": SD2_V,  # the prediction type is then read from the file (inference_api.single_file)
    "xl_base": SDXL,  # also SDXL Turbo and Lightning: the same network, other sampling settings
    "xl_refiner": SDXL_REFINER,
    "inpainting": _inpainting(SD15, "StableDiffusionInpaintPipeline"),
    "inpainting_v2": _inpainting(SD2, "StableDiffusionInpaintPipeline"),
    "xl_inpaint": _inpainting(SDXL, "StableDiffusionXLInpaintPipeline"),
}

ARCHITECTURES = {
    a.name: a for a in (TINY_SD, TINY_SDXL, TINY_SD2, TINY_REFINER, TINY_INPAINT, SD15, SD2, SD2_V, SDXL, SDXL_REFINER)
}
