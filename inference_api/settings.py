"""Server settings (the ``serve`` command line), in one frozen value passed to the app factory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    models_dir: Path
    default_model: str | None = None
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str | None = None  # None: fp16 on cuda, fp32 on cpu
    compile: bool = False
    compile_mode: str | None = None  # e.g. "max-autotune" (with --warmup: one graph per batch size)
    # Off until measured on the target GPU (python -m benchmarks.gpu_runtime).
    fuse_qkv: bool = False
    float8: bool = False
    sdxl_vae: Path | None = None
    channels_last: bool | None = None  # None: on for cuda
    max_batch: int = 4
    # 0: an idle GPU starts at once; batches form from requests that queue while one runs.
    batch_window_ms: float = 0.0
    cache_size: int = 2
    preload: bool = True
    warmup: bool = False  # run one short generation per batch size and warm-up size before /ready
    warmup_sizes: tuple[tuple[int, int], ...] = ()  # (width, height) buckets; empty: the model's native size
    max_body_bytes: int = 64 * 1024 * 1024
    max_queue: int = 32  # requests waiting for the worker; past it, 503 with Retry-After
    retry_after_s: int = 5
    unhealthy_after_failures: int = 5  # consecutive failed generations before /health fails
    png_compress_level: int = 1  # zlib level of response PNGs: 1 is fast, 9 is small
