"""Bounds that protect the GPUs and the queue. One instance is the default; deployments may tighten it."""

from __future__ import annotations

from dataclasses import dataclass

# SNS refuses messages over 256 KiB (body plus attributes); keep headroom for the envelope we add.
SNS_MAX_MESSAGE_BYTES = 262_144
MAX_REQUEST_BYTES = 240 * 1024


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_prompt_chars: int = 20_000
    max_steps: int = 150
    min_side: int = 64
    max_side: int = 2048
    side_multiple: int = 8
    max_batch_size: int = 8
    # An AnimateDiff text-to-video request sets batch_size to its frame count (the replaced sample's t2v: 32).
    max_video_frames: int = 64
    max_n_iter: int = 8
    # width * height * batch_size * n_iter: four 2048x2048 images, or sixty-four 512x512.
    max_total_pixels: int = 4 * 2048 * 2048
    max_upscale_factor: float = 8.0
    max_batch_images: int = 16
    max_workflow_nodes: int = 500
    max_id_chars: int = 64
    # The per-task input budget (see contract.budget): what the agent fetches and holds for one task.
    max_image_inputs: int = 16
    max_input_bytes: int = 20 * 1024 * 1024  # one input, as fetched (never decompressed by the fetcher)
    max_total_input_bytes: int = 32 * 1024 * 1024  # all inputs of one task together
    max_input_side: int = 8192
    max_input_pixels: int = 4096 * 4096
    # Sizes the runtime derives: the extras output, the crop-to-fit cover box and model passes, hires fix.
    max_output_side: int = 8192
    max_output_pixels: int = 8192 * 8192 // 4
    max_work_side: int = 16384
    max_work_pixels: int = 8192 * 8192
    max_hr_scale: float = 4.0
    # Echoed in every status answer and notification.
    max_context_bytes: int = 8 * 1024


DEFAULT_LIMITS = Limits()
