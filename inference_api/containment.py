"""Telling accelerator failures apart: out of memory (recoverable), sticky device errors (not)."""

from __future__ import annotations

import torch

# CUDA errors after which the context is unusable for the life of the process: only a restart helps.
STICKY_DEVICE_ERRORS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc error",
    "cuda error: unknown error",
)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def is_sticky_device_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in STICKY_DEVICE_ERRORS)


def release_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
