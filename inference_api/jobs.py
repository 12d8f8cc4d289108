"""From an A1111 request to a generation job, and from its result to the A1111 response body."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

from PIL import Image

from contract import FieldIssue
from inference_api import animatediff, controlnet, inpaint, vae
from inference_api.catalog import ModelEntry
from inference_api.embeddings import mentioned
from inference_api.errors import InvalidRequest, NotReady, invalid
from inference_api.generation import GenerationJob, GenerationResult
from inference_api.http_schemas import GenerationRequest, Img2ImgRequest
from inference_api.images import FAST_PNG, decode_image, encode_png, resize_for_img2img
from inference_api.lora import ResolvedLora
from inference_api.model_defaults import apply_defaults
from inference_api.networks import NetworkCatalog, lora_uses
from inference_api.samplers import UnknownName, choose
from inference_api.scripts import SUPPORTED_SCRIPTS
from inference_api.tasks import TaskKind

VERSION = "inference_api"
SEED_SPACE = 2**32  # random seeds are drawn as A1111 draws them


def build_job(
    req: GenerationRequest,
    task: TaskKind,
    model: ModelEntry | None,
    issues: list[FieldIssue],
    options: Mapping[str, Any],
    networks: NetworkCatalog | None = None,
) -> GenerationJob:
    """Validate what pydantic cannot (names, images) and expand the request into per-image prompts and seeds.

    ``issues`` already found by the caller (an unknown model) are reported together with ours. ``options``:
    the server's A1111 options, which the request's ``override_settings`` override.
    """
    issues = list(issues)
    if model is not None:
        req = apply_defaults(req, model.defaults)
    sampler = None
    try:
        sampler = choose(req.sampler_name or req.sampler_index, req.scheduler)
    except UnknownName as exc:
        issues.append(FieldIssue(exc.field, exc.rule, str(exc)))
    init_images: list[Image.Image] = []
    mask = None
    if isinstance(req, Img2ImgRequest):
        for i, data in enumerate(req.init_images):
            try:
                init_images.append(decode_image(data, f"init_images.{i}"))
            except InvalidRequest as exc:
                issues += exc.fields
        if req.mask:
            try:
                mask = decode_image(req.mask, "mask")
            except InvalidRequest as exc:
                issues += exc.fields
    control_units, control_issues, control_notes = controlnet.parse_units(
        req.alwayson_scripts, networks, req.width, req.height
    )
    issues += control_issues
    motion, motion_issues = animatediff.parse(req.alwayson_scripts, networks)
    issues += motion_issues
    if motion is not None and task is not TaskKind.TXT2IMG:
        issues.append(FieldIssue("alwayson_scripts.AnimateDiff", "unsupported", "AnimateDiff runs on txt2img only"))
    if motion is not None and model is not None and "xl" in model.family.lower():
        message = f"the motion module {motion.model!r} needs an SD 1.x model; {model.title} is SDXL"
        issues.append(FieldIssue("alwayson_scripts.AnimateDiff.args.0.model", "unsupported", message))
    if issues:
        raise invalid(issues)
    if model is None or sampler is None:
        raise NotReady("no model is available in the model directory")
    count = req.n_iter if motion is not None else req.image_count  # AnimateDiff: one video per iteration
    seed = req.seed if req.seed >= 0 else random.randrange(SEED_SPACE)
    settings = {**options, **(req.override_settings or {})}
    clip_skip = req.clip_skip or _int_option(settings, "CLIP_stop_at_last_layers") or 1
    job = GenerationJob(
        task=task,
        model=model,
        prompts=[req.prompt] * count,
        negative_prompts=[req.negative_prompt] * count,
        seeds=[(seed + i) % 2**63 for i in range(count)],  # image i gets seed + i, as in A1111
        width=req.width,
        height=req.height,
        steps=req.steps,
        cfg_scale=req.cfg_scale,
        sampler=sampler,
        batch_size=1 if motion is not None else req.batch_size,
        n_iter=req.n_iter,
        clip_skip=clip_skip,
        sdxl_clip_l_skip=settings.get("sdxl_clip_l_skip") is True,
        eta=req.eta,
    )
    job.loras, job.notes = resolve_loras([req.prompt, req.negative_prompt], networks)
    job.control_units, job.notes = control_units, [*job.notes, *control_notes]
    if motion is not None:
        job.motion = motion
        job.notes += animatediff.notes(motion)
        described = f"model: {motion.model}, video_length: {motion.frames}, fps: {motion.fps:g}"
        job.infotext_extra["AnimateDiff"] = f'"{described}"'
    vae_name = settings.get("sd_vae")
    if isinstance(vae_name, str) and not vae.wants_own(vae_name):
        job.vae = networks.find_vae(vae_name) if networks is not None else None
        if job.vae is None:
            job.notes.append(f"sd_vae {vae_name!r} not found in VAE/; the model's own VAE used")
        else:
            job.infotext_extra["VAE"] = job.vae.path.name
    for i, unit in enumerate(control_units):  # as the extension writes it
        described = f"Module: none, Model: {unit.model}, Weight: {unit.weight}, "
        described += f"Guidance Start: {unit.start}, Guidance End: {unit.end}"
        job.infotext_extra[f"ControlNet {i}"] = f'"{described}"'
    if job.loras:  # as A1111 writes it
        hashes = ", ".join(f"{lora.use.name}: {lora.short_hash}" for lora in job.loras)
        job.infotext_extra["Lora hashes"] = f'"{hashes}"'
    if networks is not None:
        job.embeddings = mentioned(networks.embeddings, [req.prompt, req.negative_prompt])
    if isinstance(req, Img2ImgRequest):
        job.denoising_strength = req.denoising_strength
        resized = [resize_for_img2img(img, req.width, req.height, req.resize_mode) for img in init_images]
        job.init_images = [resized[i % len(resized)] for i in range(count)]
        if mask is not None:
            _plan_inpainting(job, req, mask)
    return job


def _plan_inpainting(job: GenerationJob, req: Img2ImgRequest, mask: Image.Image) -> None:
    sharp = inpaint.prepare_mask(mask, (req.width, req.height), bool(req.inpainting_mask_invert))
    images = []
    for init in job.init_images:
        plan, image, job.mask = inpaint.plan(
            init, sharp, blur_radius=req.mask_blur, full_res=req.inpaint_full_res, padding=req.inpaint_full_res_padding
        )
        job.inpaint_plans.append(plan)
        images.append(inpaint.prefill(image, job.mask, req.inpainting_fill))
    job.init_images = images
    if req.inpainting_fill in (inpaint.LATENT_NOISE, inpaint.LATENT_NOTHING):
        job.notes.append("inpainting_fill latent noise / latent nothing are done as 'fill' here")


def resolve_loras(texts: list[str], networks: NetworkCatalog | None) -> tuple[tuple[ResolvedLora, ...], list[str]]:
    """The LoRAs the prompts name, as files; weight 0 is none, an unknown name is skipped with a note (A1111)."""
    uses, notes = lora_uses(texts)
    resolved = []
    for use in uses:
        if use.te == 0 and use.unet == 0:
            continue
        found = networks.find_lora(use.name) if networks is not None else None
        if found is None:
            notes.append(f"Networks not found: {use.name}")
            continue
        resolved.append(ResolvedLora(use, found.path, networks.short_hash(found) if networks else ""))
    return tuple(resolved), notes


def response_body(
    req: GenerationRequest, job: GenerationJob, result: GenerationResult, compress_level: int = FAST_PNG
) -> dict[str, Any]:
    """``{"images", "parameters", "info"}`` as AUTOMATIC1111 answers txt2img and img2img (CPU work: PNGs)."""
    images: list[str] = []
    if req.send_images and job.motion is not None:
        images = _animation_images(job, result, compress_level)
    elif req.send_images:
        schedule = job.sampler.schedule.name
        images = [
            encode_png(img, infotext(job, i, job.model.title, schedule), compress_level)
            for i, img in enumerate(result.images)
        ]
        if isinstance(req, Img2ImgRequest) and req.include_init_images:
            images += req.init_images
    parameters = req.model_dump(mode="json")
    if isinstance(req, Img2ImgRequest):
        parameters.update(init_images=None, mask=None)  # as A1111: do not echo megabytes of input back
    info = info_json(job, result, job.model.title, req.styles, req.subseed)
    return {"images": images, "parameters": parameters, "info": info}


def _animation_images(job: GenerationJob, result: GenerationResult, compress_level: int) -> list[str]:
    """As the AnimateDiff extension answers: each video per asked container, then the frames if ``Frame``."""
    motion = job.motion
    assert motion is not None
    images = [
        animatediff.encode(frames, fmt, motion.fps, motion.loop)
        for frames in result.videos
        for fmt in motion.containers
    ]
    if motion.returns_frames:
        schedule = job.sampler.schedule.name
        for i, frames in enumerate(result.videos):
            text = infotext(job, i, job.model.title, schedule)
            images += [encode_png(frame, text, compress_level) for frame in frames]
    return images


def refiner_request(req: GenerationRequest) -> tuple[str, float] | None:
    """``refiner_checkpoint`` and ``refiner_switch_at`` when the request asks for a refiner, else None."""
    extra = req.model_extra or {}
    name = extra.get("refiner_checkpoint")
    if not isinstance(name, str) or not name or name.lower() == "none":
        return None
    switch = extra.get("refiner_switch_at")
    if switch is None:
        switch = 0.8
    if not isinstance(switch, int | float) or isinstance(switch, bool) or not 0 < switch < 1:
        raise invalid([FieldIssue("refiner_switch_at", "range", "refiner_switch_at must be a number in (0, 1)")])
    return name, float(switch)


def set_refiner(job: GenerationJob, refiner: ModelEntry, switch_at: float, short_hash: str | None) -> None:
    """Hand the latents over to ``refiner`` at ``switch_at`` (SDXL txt2img), or say why not."""
    if job.task is not TaskKind.TXT2IMG or not (_is_xl(job.model) and _is_xl(refiner)):
        job.notes.append("refiner_checkpoint is applied to SDXL txt2img only here; the whole generation used one model")
        return
    job.refiner, job.refiner_switch_at = refiner, switch_at
    job.infotext_extra["Refiner"] = f"{refiner.title} [{short_hash}]" if short_hash else refiner.title
    job.infotext_extra["Refiner switch at"] = switch_at


def _is_xl(entry: ModelEntry) -> bool:
    return "xl" in entry.family.lower()


def unsupported_notes(req: GenerationRequest) -> list[str]:
    """A1111 features this runtime accepts but does not apply: said in ``info`` rather than failing the job."""
    notes = []
    idle = sorted(name for name in req.alwayson_scripts if name.lower() not in {s.lower() for s in SUPPORTED_SCRIPTS})
    if idle:
        notes.append(f"alwayson_scripts ignored: {', '.join(idle)}")
    if req.styles:
        notes.append("styles are not supported; prompts used as given")
    if req.subseed_strength > 0:
        notes.append("variation seeds (subseed_strength) are not supported")
    if req.restore_faces or req.tiling:
        notes.append("restore_faces and tiling are not supported")
    extra = req.model_extra or {}
    for name in ("hr_checkpoint_name",):
        value = extra.get(name)
        if isinstance(value, str) and value and value.lower() != "none":
            notes.append(f"{name} is not supported; the whole generation used one model")
    return notes


def _int_option(settings: Mapping[str, Any] | None, key: str) -> int | None:
    value = (settings or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12 else None


def infotext(job: GenerationJob, index: int, model_title: str, schedule: str) -> str:
    """AUTOMATIC1111's human-readable generation parameters for one image (also stored in the PNG)."""
    params: dict[str, Any] = {
        "Steps": job.steps,
        "Sampler": job.sampler.label,
        "Schedule type": schedule,
        "CFG scale": job.cfg_scale,
        "Seed": job.seeds[index],
        "Size": f"{job.width}x{job.height}",
        "Model": model_title,
    }
    if job.task.uses_init_image or job.denoising_strength is not None:  # img2img, or txt2img with hires fix
        params["Denoising strength"] = job.denoising_strength
    if job.clip_skip > 1:
        params["Clip skip"] = job.clip_skip
    params.update(job.infotext_extra)
    params["Version"] = VERSION
    text = job.prompts[index]
    if job.negative_prompts[index]:
        text += f"\nNegative prompt: {job.negative_prompts[index]}"
    return text + "\n" + ", ".join(f"{k}: {v}" for k, v in params.items())


def info_json(
    job: GenerationJob, result: GenerationResult, model_title: str, styles: list[str] | None, subseed: int
) -> str:
    """The ``info`` string of a txt2img/img2img response (JSON, A1111 field names) plus our timings."""
    schedule = job.sampler.schedule.name
    infotexts = [infotext(job, i, model_title, schedule) for i in range(job.image_count)]
    data = {
        "prompt": job.prompts[0],
        "all_prompts": job.prompts,
        "negative_prompt": job.negative_prompts[0],
        "all_negative_prompts": job.negative_prompts,
        "seed": job.seeds[0],
        "all_seeds": job.seeds,
        "subseed": subseed,
        "all_subseeds": [subseed] * job.image_count,
        "subseed_strength": 0,
        "width": job.width,
        "height": job.height,
        "sampler_name": job.sampler.label,
        "scheduler": schedule,
        "cfg_scale": job.cfg_scale,
        "steps": job.steps,
        "batch_size": job.batch_size,
        "n_iter": job.n_iter,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": job.model.model_name,
        "sd_model_hash": job.infotext_extra.get("Model hash"),
        "sd_vae_name": job.vae.path.name if job.vae else None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": job.denoising_strength,
        "extra_generation_params": {"notes": result.notes} if result.notes else {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": styles or [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": job.clip_skip,
        "is_using_inpainting_conditioning": job.task is TaskKind.INPAINT,
        "version": VERSION,
        "timings": {
            "pipeline_seconds": round(result.pipeline_seconds, 6),
            "queue_seconds": round(result.queue_seconds, 6),
        },
        "batch": {"id": result.batch.batch_id, "requests": result.batch.requests, "images": result.batch.images},
    }
    return json.dumps(data)
