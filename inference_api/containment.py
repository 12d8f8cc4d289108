"""Failure containment: telling accelerator failures apart, and putting pipelines back as they were."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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


TensorPlaces = dict[str, tuple[torch.dtype, torch.device]]


@dataclass(frozen=True)
class PipelineState:
    """What a generation must leave as it found it: every weight's dtype and device, attention processors.

    diffusers changes these during a call and changes them back only when the call succeeds (the SDXL VAE
    is upcast to fp32 for decoding and cast back after); after a failure the runtime puts them back.
    """

    tensors: dict[str, TensorPlaces]
    processors: dict[str, dict[str, Any]]

    @classmethod
    def capture(cls, components: Mapping[str, Any]) -> PipelineState:
        tensors: dict[str, TensorPlaces] = {}
        processors: dict[str, dict[str, Any]] = {}
        for name, module in _modules(components):
            tensors[name] = {key: (t.dtype, t.device) for key, t in _named_tensors(module)}
            if hasattr(module, "attn_processors"):
                processors[name] = _processors(module)
        return cls(tensors, processors)

    def drift(self, components: Mapping[str, Any]) -> list[str]:
        """What differs from the captured state, one line per component (empty: nothing)."""
        found: list[str] = []
        for name, module in _modules(components):
            places = self.tensors.get(name)
            if places is None:
                continue
            moved = sum(1 for key, t in _named_tensors(module) if places.get(key) != (t.dtype, t.device))
            if moved:
                found.append(f"{name}: {moved} tensors changed dtype or device")
            saved = self.processors.get(name)
            if saved is not None and _processors(module) != saved:
                found.append(f"{name}: attention processors changed")
        return found

    def restore(self, components: Mapping[str, Any]) -> None:
        for name, module in _modules(components):
            places = self.tensors.get(name, {})
            for key, tensor in _named_tensors(module):
                want = places.get(key)
                if want is not None and (tensor.dtype, tensor.device) != want:
                    tensor.data = tensor.data.to(device=want[1], dtype=want[0])
            saved = self.processors.get(name)
            if saved is not None and _processors(module) != saved:
                getattr(module, "set_attn_processor")(dict(saved))  # noqa: B009 (diffusers models only)


def _modules(components: Mapping[str, Any]) -> Iterator[tuple[str, torch.nn.Module]]:
    for name, module in components.items():
        if isinstance(module, torch.nn.Module):
            yield name, module


def _processors(module: torch.nn.Module) -> dict[str, Any]:
    return dict(getattr(module, "attn_processors"))  # noqa: B009 (diffusers models only)


def _named_tensors(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters(remove_duplicate=False)
    yield from module.named_buffers(remove_duplicate=False)
