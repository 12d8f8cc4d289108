"""``build-toy-model``: a small Stable Diffusion pipeline trained here on toy-world scenes (inference_api.toy_scenes).

The real classes of SD 1.x (CLIPTextModel with CLIP's vocabulary, UNet2DConditionModel, AutoencoderKL, a DDIM
scheduler with SD's noise schedule, v-prediction), only small: 32x32 pictures, a VAE with two down-samplings
(8x8 latents). First the VAE learns to reconstruct scenes, then the text encoder and UNet learn to denoise
their latents given the caption (10 % empty captions, for classifier-free guidance). Deterministic from the
seed: one CPU thread, seeded generators. Saved as a diffusers folder, so the runtime serves it as it serves
SD 1.5; ``generation_defaults.json`` beside ``model_index.json`` carries its native size and steps.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from inference_api.architectures import SD_NOISE_SCHEDULE
from inference_api.model_defaults import DEFAULTS_FILE, ModelDefaults
from inference_api.tokenizer import build_clip_tokenizer, write_clip_tokenizer
from inference_api.toy_scenes import COLOURS, Scene, random_scene, render

LOG = logging.getLogger(__name__)
NAME = "toy-world"
EXAMPLE_PROMPTS = (
    "a red circle on the left, a blue square on the right, on a white background",
    "a yellow star in the centre, on a black background",
    "a green triangle on the top, an orange circle on the bottom",
    "a purple square on the right, on a yellow background",
    "a white star on the left, a red triangle on the right, on a blue background",
)


@dataclass(frozen=True)
class ToyRecipe:
    """Everything the weights depend on (besides the code): part of the cache fingerprint."""

    size: int = 32
    seed: int = 0
    scenes: int = 3000
    vae_steps: int = 200
    unet_steps: int = 500
    shape_weight: float = 4.0
    batch: int = 32
    lr: float = 2e-3
    steps: int = 20  # sampling steps the runtime defaults to for this model
    cfg_scale: float = 5.0


def architecture(recipe: ToyRecipe) -> dict[str, Any]:
    return {
        "vae": {
            "block_out_channels": [16, 32, 32],
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": recipe.size,
            "mid_block_add_attention": False,
        },
        "unet": {
            "sample_size": recipe.size // 4,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [48, 96],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "norm_num_groups": 16,
            "cross_attention_dim": 64,
            "attention_head_dim": 8,
        },
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "projection_dim": 64,
            "max_position_embeddings": 77,
        },
    }


def build_toy_model(dest: Path, recipe: ToyRecipe = ToyRecipe(), name: str = NAME) -> Path:
    """Train the toy model and write it to ``dest/name``; return the folder."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine
    try:
        arch = architecture(recipe)
        torch.manual_seed(recipe.seed)
        tokenizer = build_clip_tokenizer()
        vae: Any = diffusers.AutoencoderKL(**arch["vae"])
        unet = diffusers.UNet2DConditionModel(**arch["unet"])
        text_config = CLIPTextConfig(
            **arch["text"],
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
        text_encoder = CLIPTextModel(text_config)
        scheduler_config = {**SD_NOISE_SCHEDULE, "prediction_type": "v_prediction"}
        scheduler = diffusers.DDIMScheduler.from_config(scheduler_config)

        generator = torch.Generator().manual_seed(recipe.seed)
        started = time.monotonic()
        scenes = [random_scene(generator) for _ in range(recipe.scenes)]
        images = torch.stack([render(scene, recipe.size, generator) for scene in scenes]) * 2 - 1
        LOG.info("rendered %d scenes in %.1fs", len(scenes), time.monotonic() - started)
        _train_vae(vae, images, recipe, generator)
        with torch.no_grad():
            latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in images.split(256)])
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        latents = latents * scaling
        weights = _shape_weights(images, scenes, recipe)
        _train_unet(unet, text_encoder, tokenizer, scheduler, latents, weights, scenes, recipe, generator)
        LOG.info("trained in %.1fs", time.monotonic() - started)

        pipe: Any = diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        folder = dest / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        pipe.save_pretrained(folder, safe_serialization=True)
        write_clip_tokenizer(folder / "tokenizer")
        write_defaults(folder, recipe)
        return folder
    finally:
        torch.set_num_threads(threads)


def write_defaults(folder: Path, recipe: ToyRecipe) -> None:
    defaults = ModelDefaults(recipe.size, recipe.size, recipe.steps, recipe.cfg_scale, EXAMPLE_PROMPTS)
    (folder / DEFAULTS_FILE).write_text(json.dumps(asdict(defaults), indent=2) + "\n")


def _batches(count: int, recipe: ToyRecipe, generator: torch.Generator, steps: int):  # type: ignore[no-untyped-def]
    for _ in range(steps):
        yield torch.randint(count, (recipe.batch,), generator=generator)


def _optimizer(params: Any, recipe: ToyRecipe, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math_cos(step / steps))
    )
    return optimizer, schedule


def math_cos(fraction: float) -> float:
    import math

    return math.cos(math.pi * min(1.0, fraction))


def _shape_weights(images: torch.Tensor, scenes: list[Scene], recipe: ToyRecipe) -> torch.Tensor:
    """Per-latent-pixel loss weights: the shapes cover a small part of each picture, so their latents count
    ``1 + shape_weight`` times as much as the background's (else the background's colour is learnt first)."""
    background = torch.stack([torch.tensor(COLOURS[s.background], dtype=torch.float32) for s in scenes]) / 127.5 - 1
    shape = ((images - background.view(-1, 3, 1, 1)).abs().sum(dim=1, keepdim=True) > 0.1).float()
    return 1 + recipe.shape_weight * torch.nn.functional.adaptive_avg_pool2d(shape, recipe.size // 4)


def _train_vae(vae: Any, images: torch.Tensor, recipe: ToyRecipe, generator: torch.Generator) -> None:
    optimizer, schedule = _optimizer(vae.parameters(), recipe, recipe.vae_steps)
    vae.train()
    for step, index in enumerate(_batches(len(images), recipe, generator, recipe.vae_steps)):
        batch = images[index]
        posterior = vae.encode(batch).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator)
        z = posterior.mean + posterior.std * noise
        recon = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(recon, batch) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == recipe.vae_steps - 1:
            LOG.info("vae step %d loss %.4f", step, loss.item())
    vae.eval()


def _train_unet(
    unet: Any,
    text_encoder: Any,
    tokenizer: Any,
    scheduler: Any,
    latents: torch.Tensor,
    weights: torch.Tensor,
    scenes: list[Scene],
    recipe: ToyRecipe,
    generator: torch.Generator,
) -> None:
    captions = [scene.caption() for scene in scenes]
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    tokens = ids.input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer, schedule = _optimizer(params, recipe, recipe.unet_steps)
    alphas = scheduler.alphas_cumprod
    unet.train()
    text_encoder.train()
    for step, index in enumerate(_batches(len(latents), recipe, generator, recipe.unet_steps)):
        x0 = latents[index]
        batch_tokens = tokens[index].clone()
        drop = torch.rand(len(index), generator=generator) < 0.1
        batch_tokens[drop] = empty.input_ids[0]
        t = torch.randint(scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = alphas[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
        noisy = a * x0 + s * noise
        target = a * noise - s * x0  # v-prediction
        states = text_encoder(batch_tokens)[0]
        prediction = unet(noisy, t, encoder_hidden_states=states).sample
        loss = (weights[index] * (prediction - target) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == recipe.unet_steps - 1:
            LOG.info("unet step %d loss %.4f", step, loss.item())
    unet.eval()
    text_encoder.eval()
