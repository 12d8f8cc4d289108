"""``build-toy-model``: a small Stable Diffusion pipeline trained here on toy-world scenes (inference_api.toy_scenes).

The real classes of SD 1.x (CLIPTextModel with CLIP's vocabulary, UNet2DConditionModel, AutoencoderKL, a DDIM
scheduler with SD's noise schedule, v-prediction), only small: 32x32 pictures, a VAE with two down-samplings
to 8x8 latents of 8 channels, the first three of which are taught to follow the picture's colours. Built in
numbered steps:

1. render the training scenes and their captions;
2. train the VAE to reconstruct them (latents slightly noised, so the decoder tolerates a sampler's errors);
3. encode every scene to its latents;
4. train the text encoder and the UNet to denoise those latents given the caption (10 % empty captions, for
   classifier-free guidance), shape pixels weighted over the background's;
5. save a diffusers folder, so the runtime serves it as it serves SD 1.5, with ``generation_defaults.json``
   beside ``model_index.json`` (its native size, steps, guidance and example prompts).

Deterministic from the seed: a fixed thread count and seeded generators.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from inference_api.architectures import SD_NOISE_SCHEDULE
from inference_api.model_defaults import DEFAULTS_FILE, ModelDefaults, read_defaults
from inference_api.tokenizer import build_clip_tokenizer, write_clip_tokenizer
from inference_api.toy_scenes import COLOURS, Scene, render, training_scene

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
    threads: int = 2  # fixed, whatever the machine: the same thread count gives the same weights
    scenes: int = 3000
    single_share: float = 0.35  # extra one-shape scenes on white (inference_api.toy_scenes.training_scene)
    vae_steps: int = 400
    vae_batch: int = 32
    latent_noise: float = 0.1  # added to the VAE's latents while it learns to decode them
    colour_weight: float = 0.5  # how strongly latent channels 0-2 follow the picture's pooled colours
    unet_steps: int = 1200
    batch: int = 64
    lr: float = 2e-3
    shape_weight: float = 4.0
    high_noise_bias: float = 2.0  # > 1 draws more training timesteps at high noise, where layout is decided
    steps: int = 20  # sampling steps the runtime defaults to for this model
    cfg_scale: float = 5.0


def architecture(recipe: ToyRecipe) -> dict[str, Any]:
    return {
        "vae": {
            "block_out_channels": [16, 32, 32],
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "latent_channels": LATENT_CHANNELS,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": recipe.size,
            "mid_block_add_attention": False,
        },
        "unet": {
            "sample_size": recipe.size // VAE_FACTOR,
            "in_channels": LATENT_CHANNELS,
            "out_channels": LATENT_CHANNELS,
            "block_out_channels": [64, 64, 64],
            # Cross-attention at 4x4 and 2x2 (and the middle): where a pixel knows which side it is on.
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
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


LATENT_CHANNELS = 8
VAE_FACTOR = 4  # two down-samplings


def build_toy_model(dest: Path, recipe: ToyRecipe = ToyRecipe(), name: str = NAME) -> Path:
    """Train the toy model and write it to ``dest/name``; return the folder."""
    import diffusers
    from diffusers.models.attention_processor import AttnProcessor
    from transformers import CLIPTextConfig, CLIPTextModel

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        arch = architecture(recipe)
        torch.manual_seed(recipe.seed)
        tokenizer = build_clip_tokenizer()
        vae: Any = diffusers.AutoencoderKL(**arch["vae"])
        unet: Any = diffusers.UNet2DConditionModel(**arch["unet"])
        unet.set_attn_processor(AttnProcessor())  # on CPU, with heads this small, faster than SDPA
        text_config = CLIPTextConfig(
            **arch["text"],
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
        text_config._attn_implementation = "eager"  # for training: faster than SDPA at this size; not saved
        text_encoder = CLIPTextModel(text_config)
        scheduler_config = {**SD_NOISE_SCHEDULE, "prediction_type": "v_prediction"}
        scheduler = diffusers.DDIMScheduler.from_config(scheduler_config)
        generator = torch.Generator().manual_seed(recipe.seed)
        started = time.monotonic()

        # 1. Scenes and captions.
        scenes = [training_scene(generator, recipe.single_share) for _ in range(recipe.scenes)]
        images = torch.stack([render(scene, recipe.size, generator) for scene in scenes]) * 2 - 1
        LOG.info("rendered %d scenes in %.1fs", len(scenes), time.monotonic() - started)
        # 2. The VAE.
        _train_vae(vae, images, recipe, generator)
        LOG.info("trained the VAE in %.1fs", time.monotonic() - started)
        # 3. Latents.
        with torch.no_grad():
            latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in images.split(256)])
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        latents = latents * scaling
        # 4. Text encoder and UNet.
        weights = _shape_weights(images, scenes, recipe)
        _train_unet(unet, text_encoder, tokenizer, scheduler, latents, weights, scenes, recipe, generator)
        LOG.info("trained in %.1fs", time.monotonic() - started)

        # 5. The folder.
        unet.set_default_attn_processor()
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


@dataclass(frozen=True)
class ToySampler:
    """A built model as the runtime samples it by default (A1111's "Euler" over the model's scheduler config,
    the size, steps and guidance its folder carries): what the benchmark and the README's picture draw with."""

    pipe: Any
    defaults: ModelDefaults

    @classmethod
    def load(cls, folder: Path) -> ToySampler:
        from diffusers import StableDiffusionPipeline

        from inference_api.samplers import build_scheduler, choose

        defaults = read_defaults(folder)
        if defaults is None:
            raise ValueError(f"{folder} has no {DEFAULTS_FILE}: not a toy-world model folder")
        pipe: Any = StableDiffusionPipeline.from_pretrained(folder)
        pipe.scheduler = build_scheduler(choose(None), pipe.scheduler.config).scheduler
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, defaults)

    def draw(self, prompt: str, seed: int) -> Any:
        """One PIL picture of ``prompt`` from ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        steps, cfg = self.defaults.steps, self.defaults.cfg_scale
        return self.pipe(prompt, num_inference_steps=steps, guidance_scale=cfg, generator=generator).images[0]


def write_defaults(folder: Path, recipe: ToyRecipe) -> None:
    defaults = ModelDefaults(recipe.size, recipe.size, recipe.steps, recipe.cfg_scale, EXAMPLE_PROMPTS)
    (folder / DEFAULTS_FILE).write_text(json.dumps(asdict(defaults), indent=2) + "\n")


def _batches(count: int, batch: int, generator: torch.Generator, steps: int):  # type: ignore[no-untyped-def]
    for _ in range(steps):
        yield torch.randint(count, (batch,), generator=generator)


def _optimizer(params: Any, recipe: ToyRecipe, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW, a short warm-up, then a cosine decay to zero."""
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0, foreach=True)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
    )
    return optimizer, schedule


def _shape_weights(images: torch.Tensor, scenes: list[Scene], recipe: ToyRecipe) -> torch.Tensor:
    """Per-latent-pixel loss weights: the shapes cover a small part of each picture, so their latents count
    ``1 + shape_weight`` times as much as the background's (else the background's colour is learnt first)."""
    background = torch.stack([torch.tensor(COLOURS[s.background], dtype=torch.float32) for s in scenes]) / 127.5 - 1
    shape = ((images - background.view(-1, 3, 1, 1)).abs().sum(dim=1, keepdim=True) > 0.1).float()
    return 1 + recipe.shape_weight * torch.nn.functional.adaptive_avg_pool2d(shape, recipe.size // VAE_FACTOR)


def _train_vae(vae: Any, images: torch.Tensor, recipe: ToyRecipe, generator: torch.Generator) -> None:
    """Reconstruction from the posterior's mean plus a little fixed noise; channels 0-2 of the latents also
    follow the picture's colours pooled to the latent grid, so the UNet's targets are nearly colours. The
    posterior's variance is pinned near zero: image-to-image encodes a picture to exactly its mean."""
    with torch.no_grad():  # quant_conv's second half is the log-variance: a constant -30 (the clamp's floor)
        vae.quant_conv.weight[LATENT_CHANNELS:] = 0
        vae.quant_conv.bias[LATENT_CHANNELS:] = -30
    optimizer, schedule = _optimizer(vae.parameters(), recipe, recipe.vae_steps)
    vae.train()
    for step, index in enumerate(_batches(len(images), recipe.vae_batch, generator, recipe.vae_steps)):
        batch = images[index]
        mean = vae.encode(batch).latent_dist.mean
        z = mean + recipe.latent_noise * torch.randn(mean.shape, generator=generator)
        recon = vae.decode(z).sample
        colours = torch.nn.functional.avg_pool2d(batch, VAE_FACTOR)
        loss = torch.nn.functional.mse_loss(recon, batch)
        loss = loss + recipe.colour_weight * torch.nn.functional.mse_loss(mean[:, :3], colours)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        vae.quant_conv.weight.grad[LATENT_CHANNELS:] = 0  # zero gradients: AdamW leaves the pinned rows as set
        vae.quant_conv.bias.grad[LATENT_CHANNELS:] = 0
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
    # The captions use a few dozen of CLIP's 49408 tokens: train a table of just those rows (the others would
    # get zero gradients, which AdamW leaves unchanged) and write it back afterwards. Same weights, less work.
    full = text_encoder.get_input_embeddings()
    used, tokens = torch.unique(torch.cat([tokens, empty.input_ids]), return_inverse=True)
    tokens, empty_tokens = tokens[:-1], tokens[-1]
    table = torch.nn.Embedding.from_pretrained(full.weight[used].clone(), freeze=False)
    text_encoder.set_input_embeddings(table)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer, schedule = _optimizer(params, recipe, recipe.unet_steps)
    alphas = scheduler.alphas_cumprod
    timesteps = scheduler.config.num_train_timesteps
    unet.train()
    text_encoder.train()
    for step, index in enumerate(_batches(len(latents), recipe.batch, generator, recipe.unet_steps)):
        x0 = latents[index]
        batch_tokens = tokens[index].clone()
        drop = torch.rand(len(index), generator=generator) < 0.1
        batch_tokens[drop] = empty_tokens
        uniform = torch.rand(len(index), generator=generator)
        t = ((1 - (1 - uniform) ** recipe.high_noise_bias) * timesteps).long().clamp(0, timesteps - 1)
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
    with torch.no_grad():
        full.weight[used] = table.weight
    text_encoder.set_input_embeddings(full)
    unet.eval()
    text_encoder.eval()
