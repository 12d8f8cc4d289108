"""Generation jobs and running a micro-batch of them through one pipeline call.

A job is one HTTP request. Compatible jobs (same model, task, size, steps, sampler, guidance...) share a
pipeline call: prompts and per-image ``torch.Generator`` s are concatenated, so each image keeps its own
prompt and seed, and the same seed gives the same image whether it ran alone or in a batch.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from inference_api import animatediff, controlnet, embeddings, inpaint, lora, prompt_weights, vae
from inference_api.catalog import ModelEntry
from inference_api.loading import LoadedModel
from inference_api.networks import NetworkFile, strip_tags
from inference_api.progress import Progress
from inference_api.samplers import SamplerChoice, build_scheduler, is_replaceable
from inference_api.tasks import TaskKind


class JobControl:
    """Stop signals for one request, set from the event loop, read by the worker at every step."""

    def __init__(self) -> None:
        self._interrupted = threading.Event()
        self._abandoned = threading.Event()

    def interrupt(self) -> None:
        self._interrupted.set()

    def abandon(self) -> None:
        self._abandoned.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    @property
    def stopped(self) -> bool:
        return self.interrupted or self.abandoned


@dataclass
class GenerationJob:
    task: TaskKind
    model: ModelEntry
    prompts: list[str]  # one per image
    negative_prompts: list[str]
    seeds: list[int]
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: SamplerChoice
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int = 1
    sdxl_clip_l_skip: bool = False  # A1111's option: SDXL's clip skip applies to CLIP-L, and only when on
    denoising_strength: float | None = None
    init_images: list[Image.Image] = field(default_factory=list)  # one per image (already resized)
    mask: Image.Image | None = None  # what the pipeline sees (sharp; it binarizes, as A1111's latent mask)
    inpaint_plans: list[inpaint.InpaintPlan] = field(default_factory=list)  # one per image
    eta: float | None = None
    loras: tuple[lora.ResolvedLora, ...] = ()  # the whole batch runs with one set, as in A1111
    embeddings: tuple[NetworkFile, ...] = ()  # textual inversions its prompts name
    notes: list[str] = field(default_factory=list)  # said in this job's info (e.g. an unknown LoRA)
    prompt_chunks: int = 1  # CLIP chunks the prompts encode to (SD 1.x/2.x): companions must agree
    infotext_extra: dict[str, Any] = field(default_factory=dict)  # more A1111 infotext items (hires...)
    control_units: list[controlnet.ControlUnit] = field(default_factory=list)
    vae: NetworkFile | None = None  # sd_vae: None is the model's own
    refiner: ModelEntry | None = None  # refiner_checkpoint: takes the latents over at refiner_switch_at
    refiner_switch_at: float = 0.8
    motion: animatediff.MotionSpec | None = None  # AnimateDiff: each "image" is a video of motion.frames
    submitted: float = field(default_factory=time.monotonic)
    control: JobControl = field(default_factory=JobControl, compare=False)

    @property
    def image_count(self) -> int:
        return len(self.prompts)

    @property
    def mergeable(self) -> bool:
        # Inpainting masks and multi-iteration jobs keep A1111's one-call-per-iteration behaviour.
        return (
            self.task is not TaskKind.INPAINT
            and self.n_iter == 1
            and not self.control_units
            and self.motion is None
            and self.refiner is None
        )

    def batch_key(self) -> tuple[Any, ...]:
        strength = self.denoising_strength if self.task.uses_init_image else None
        return (
            self.model.name,
            self.task,
            self.width,
            self.height,
            self.steps,
            float(self.cfg_scale),
            self.sampler.key,
            strength,
            self.clip_skip,
            self.sdxl_clip_l_skip,
            self.eta,
            tuple(item.key for item in self.loras),
            tuple(file.name for file in self.embeddings),
            self.prompt_chunks,
        )


@dataclass
class BatchInfo:
    batch_id: int
    requests: int
    images: int


@dataclass
class GenerationResult:
    images: list[Image.Image]
    pipeline_seconds: float
    queue_seconds: float
    batch: BatchInfo
    notes: list[str]
    interrupted: bool = False
    videos: list[list[Image.Image]] = field(default_factory=list)  # AnimateDiff: the frames of each video


def plan_calls(jobs: list[GenerationJob]) -> list[list[tuple[int, int]]]:
    """Pipeline calls as lists of (job index, image index). Merged jobs: one call; a lone job: n_iter calls."""
    if len(jobs) == 1:
        job = jobs[0]
        indices = list(range(job.image_count))
        return [[(0, i) for i in indices[s : s + job.batch_size]] for s in range(0, len(indices), job.batch_size)]
    return [[(j, i) for j, job in enumerate(jobs) for i in range(job.image_count)]]


def effective_strength(job: GenerationJob) -> float:
    """img2img strength the pipeline can run: at least one denoising step (A1111 answers any 0 < s <= 1)."""
    strength = float(job.denoising_strength if job.denoising_strength is not None else 0.75)
    # diffusers runs int(steps * strength) steps; the epsilon keeps float rounding from making that 0.
    return min(1.0, max(strength, (1.0 + 1e-6) / job.steps)) if strength > 0 else 0.0


RefinerLoader = Callable[[ModelEntry], LoadedModel]


def run_batch(
    loaded: LoadedModel,
    jobs: list[GenerationJob],
    progress: Progress,
    batch_id: int,
    device: str,
    load_refiner: RefinerLoader | None = None,
) -> list[GenerationResult]:
    """Run compatible jobs (all sharing ``jobs[0]``'s batch key) and split the images back per job.

    A call stops at the next step once every request in it was interrupted or abandoned; its images are
    decoded from where sampling stopped (A1111's "images so far"). Later calls of a stopped request are
    skipped. A request that is stopped while merged with others runs on with them (they are unaffected).
    """
    lead = jobs[0]
    pipe = _pipeline(loaded, lead)
    notes = _set_scheduler(pipe, loaded, lead.sampler)
    notes += lora.apply(pipe, loaded.lora_state, list(lead.loras))
    notes += _apply_vae(pipe, loaded, lead)
    if lead.motion is not None:  # built after LoRA/VAE so the motion UNet carries them
        pipe = _motion_pipeline(loaded, pipe, lead.motion)
    lookups: list[prompt_weights.EmbeddingLookup | None] = []
    if lead.embeddings and prompt_weights.supports(pipe, set(inspect.signature(pipe.__call__).parameters)):
        lookups, skipped = embeddings.lookups(pipe, lead.embeddings)
        notes += skipped
    notes += _truncation_notes(pipe, jobs, set(inspect.signature(pipe.__call__).parameters))
    accepted = set(inspect.signature(pipe.__call__).parameters)
    calls = plan_calls(jobs)
    outputs: list[list[Image.Image | None]] = [[None] * job.image_count for job in jobs]
    videos: list[list[list[Image.Image]]] = [[] for _ in jobs]
    started = time.monotonic()
    for call_no, call in enumerate(calls):
        members = [jobs[j] for j in dict.fromkeys(j for j, _ in call)]
        if all(job.control.stopped for job in members):
            break
        progress.next_call(call_no, lead.steps)
        if lead.task.uses_init_image and effective_strength(lead) == 0:
            images = vae_round_trip(pipe, [jobs[j].init_images[i] for j, i in call])
        else:
            _seed_noise_sampler(pipe, [jobs[j].seeds[i] for j, i in call])
            kwargs = _call_kwargs(pipe, jobs, call, accepted, progress, device, lookups, members)
            refining = lead.refiner is not None and load_refiner is not None and lead.task is TaskKind.TXT2IMG
            if refining:  # the base stops at the switch point and hands its latents over
                kwargs.update(denoising_end=lead.refiner_switch_at, output_type="latent")
            with torch.inference_mode():
                output = pipe(**kwargs)
            if refining:
                assert load_refiner is not None
                output.images = _refine(load_refiner, jobs, call, output.images, progress, device, members)
            if lead.motion is not None:
                for (j, _), frames in zip(call, output.frames, strict=True):
                    videos[j].append(list(frames))
                images = [frames[0] for frames in output.frames]
            else:
                images = output.images
        for (j, i), image in zip(call, images, strict=True):
            plans = jobs[j].inpaint_plans
            outputs[j][i] = inpaint.finish(image, plans[i]) if plans else image
    elapsed = time.monotonic() - started
    info = BatchInfo(batch_id, len(jobs), sum(job.image_count for job in jobs))
    return [
        GenerationResult(
            images=[img for img in imgs if img is not None],
            pipeline_seconds=elapsed,
            queue_seconds=max(0.0, started - job.submitted),
            batch=info,
            notes=[*job.notes, *notes],
            interrupted=job.control.interrupted,
            videos=clips,
        )
        for job, imgs, clips in zip(jobs, outputs, videos, strict=True)
    ]


def _seed_noise_sampler(pipe: Any, seeds: list[int]) -> None:
    # DPM++ SDE draws its noise from a Brownian tree; unseeded it uses the global RNG. One tree per image,
    # seeded from the image's seed, keeps the image reproducible and independent of its companions.
    if hasattr(pipe.scheduler, "noise_sampler_seed"):
        pipe.scheduler.noise_sampler_seed = [s % 2**63 for s in seeds]


def vae_round_trip(pipe: Any, images: list[Image.Image]) -> list[Image.Image]:
    """img2img at strength 0, as A1111 answers it: the input through the VAE, no denoising."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    dtype = torch.float32 if upcast else vae.dtype
    original = vae.dtype
    try:
        if upcast:
            vae.to(dtype=torch.float32)
        with torch.inference_mode():
            pixels = pipe.image_processor.preprocess(images).to(device=vae.device, dtype=dtype)
            latents = vae.encode(pixels).latent_dist.mode()
            decoded = vae.decode(latents).sample
        return list(pipe.image_processor.postprocess(decoded, output_type="pil"))
    finally:
        if upcast:
            vae.to(dtype=original)


def prompt_chunks(pipe: Any, texts: list[str]) -> int:
    """CLIP chunks the longest text needs: what :func:`prompt_weights.condition` pads every text of a call to.

    1 for pipelines that encode (and truncate) prompts themselves.
    """
    accepted = set(inspect.signature(pipe.__call__).parameters)
    if not prompt_weights.supports(pipe, accepted):
        return 1
    return max(1, *(prompt_weights.chunks_needed(pipe.tokenizer, strip_tags(t)) for t in texts))


def _truncation_notes(pipe: Any, jobs: list[GenerationJob], accepted: set[str]) -> list[str]:
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None or prompt_weights.supports(pipe, accepted):
        return []
    texts = {t for job in jobs for t in (*job.prompts, *job.negative_prompts)}
    if any(len(tokenizer(t, truncation=False).input_ids) > prompt_weights.CHUNK + 2 for t in texts):
        return [f"prompt longer than {prompt_weights.CHUNK} tokens truncated (this model's pipeline is not CLIP-based)"]
    return []


def _pipeline(loaded: LoadedModel, lead: GenerationJob) -> Any:
    if not lead.control_units:
        return loaded.pipeline(lead.task)
    base = loaded.text2img
    models = []
    for unit in lead.control_units:
        key = str(unit.path)
        if key not in loaded.controlnets:
            loaded.controlnets[key] = controlnet.load_model(unit.path, base.unet)
        models.append(loaded.controlnets[key])
    return controlnet.pipeline(base, lead.task, models)


def _refine(
    load_refiner: RefinerLoader,
    jobs: list[GenerationJob],
    call: list[tuple[int, int]],
    latents: Any,
    progress: Progress,
    device: str,
    members: list[GenerationJob],
) -> list[Image.Image]:
    """A1111's refiner: the refiner model denoises the base's latents from ``refiner_switch_at`` to the end."""
    lead = jobs[0]
    assert lead.refiner is not None
    refiner = load_refiner(lead.refiner)
    pipe = refiner.pipeline(TaskKind.IMG2IMG)
    _set_scheduler(pipe, refiner, lead.sampler)
    accepted = set(inspect.signature(pipe.__call__).parameters)
    kwargs = _call_kwargs(pipe, jobs, call, accepted, progress, device, [], members)
    kwargs.pop("strength", None)
    kwargs.update(image=latents, denoising_start=lead.refiner_switch_at)
    with torch.inference_mode():
        return list(pipe(**kwargs).images)


def _motion_pipeline(loaded: LoadedModel, base: Any, motion: animatediff.MotionSpec) -> Any:
    key = str(motion.path)
    if key not in loaded.motion_adapters:
        loaded.motion_adapters[key] = animatediff.load_adapter(motion.path)
    return animatediff.pipeline(base, loaded.motion_adapters[key])


def _apply_vae(pipe: Any, loaded: LoadedModel, lead: GenerationJob) -> list[str]:
    if getattr(pipe, "vae", None) is None:
        return []
    try:
        vae.apply(pipe, loaded.vae_state, lead.vae.path if lead.vae else None)
    except ValueError as exc:
        vae.apply(pipe, loaded.vae_state, None)
        return [f"sd_vae: {exc}; the model's own VAE used"]
    return []


def _set_scheduler(pipe: Any, loaded: LoadedModel, choice: SamplerChoice) -> list[str]:
    if not is_replaceable(loaded.base_scheduler_config):
        return [f"sampler {choice.label!r} ignored: this model uses {type(pipe.scheduler).__name__}"]
    built = build_scheduler(choice, loaded.base_scheduler_config, xl=prompt_weights.is_xl(pipe))
    pipe.scheduler = built.scheduler
    return built.notes


def _call_kwargs(
    pipe: Any,
    jobs: list[GenerationJob],
    call: list[tuple[int, int]],
    accepted: set[str],
    progress: Progress,
    device: str,
    lookups: list[prompt_weights.EmbeddingLookup | None],
    members: list[GenerationJob],
) -> dict[str, Any]:
    lead = jobs[0]
    generator_device = "cpu" if device == "mps" else device
    kwargs: dict[str, Any] = {
        "prompt": [strip_tags(jobs[j].prompts[i]) for j, i in call],
        "negative_prompt": [strip_tags(jobs[j].negative_prompts[i]) for j, i in call],
        "num_inference_steps": lead.steps,
        "guidance_scale": lead.cfg_scale,
        "width": lead.width,
        "height": lead.height,
        "generator": [torch.Generator(generator_device).manual_seed(jobs[j].seeds[i]) for j, i in call],
        "num_images_per_prompt": 1,
        "output_type": "pil",
    }
    if prompt_weights.supports(pipe, accepted):
        kwargs.update(_conditioning(pipe, lead, kwargs.pop("prompt"), kwargs.pop("negative_prompt"), lookups))
    elif lead.clip_skip > 1:
        kwargs["clip_skip"] = lead.clip_skip - 1  # A1111 counts the last layer as 1; diffusers counts skipped ones
    if lead.eta is not None:
        kwargs["eta"] = lead.eta
    if lead.task.uses_init_image:
        kwargs["image"] = [jobs[j].init_images[i] for j, i in call]
        kwargs["strength"] = effective_strength(lead)
    if lead.task is TaskKind.INPAINT and lead.mask is not None:
        kwargs["mask_image"] = [lead.mask] * len(call)
    if lead.motion is not None:
        kwargs["num_frames"] = lead.motion.frames
    if lead.control_units:
        kwargs.update(controlnet.call_kwargs(lead.control_units, lead.task, len(call)))

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        progress.step(step + 1, getattr(pipeline, "num_timesteps", None))
        if all(job.control.stopped for job in members):
            pipeline._interrupt = True  # diffusers skips the remaining steps and decodes what it has
        return tensors

    kwargs["callback_on_step_end"] = on_step_end
    return {k: v for k, v in kwargs.items() if k in accepted}


def _conditioning(
    pipe: Any,
    lead: GenerationJob,
    prompts: list[str],
    negatives: list[str],
    lookups: list[prompt_weights.EmbeddingLookup | None],
) -> dict[str, Any]:
    """A1111's prompt syntax and chunking, encoded here and handed to the pipeline as embeddings."""
    specs = prompt_weights.encoder_specs(pipe, lead.clip_skip, lead.sdxl_clip_l_skip, lookups)
    xl = prompt_weights.is_xl(pipe)
    zero_negative = xl and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    texts = [*prompts, *negatives]
    zero_empty = [False] * len(prompts) + [zero_negative] * len(negatives)
    cond = prompt_weights.condition(specs, texts, zero_empty)
    n = len(prompts)
    out: dict[str, Any] = {"prompt_embeds": cond.hidden[:n], "negative_prompt_embeds": cond.hidden[n:]}
    if cond.pooled is not None:
        out.update(pooled_prompt_embeds=cond.pooled[:n], negative_pooled_prompt_embeds=cond.pooled[n:])
    return out
