"""Failure containment on a real (tiny) pipeline: what a failed call leaves changed is found and put back."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from inference_api.architectures import TINY_SD
from inference_api.builder import build_pipeline
from inference_api.containment import PipelineState, is_out_of_memory, is_sticky_device_error


def test_a_dtype_left_changed_is_found_and_put_back() -> None:
    pipe = build_pipeline(TINY_SD, dtype=torch.float16)
    state = PipelineState.capture(pipe.components)
    assert state.drift(pipe.components) == []
    pipe.vae.to(dtype=torch.float32)  # what a failed SDXL decode leaves behind
    pipe.unet.conv_in.weight.data = pipe.unet.conv_in.weight.data.float()  # one tensor, not a whole module
    drift = state.drift(pipe.components)
    assert any(line.startswith("vae:") for line in drift) and "unet: 1 tensors changed dtype or device" in drift
    state.restore(pipe.components)
    assert state.drift(pipe.components) == []
    assert pipe.vae.dtype == torch.float16 and pipe.unet.conv_in.weight.dtype == torch.float16


def test_attention_processors_left_changed_are_put_back() -> None:
    pipe = build_pipeline(TINY_SD)
    state = PipelineState.capture(pipe.components)
    before = pipe.unet.attn_processors
    pipe.unet.set_attn_processor(AttnProcessor())
    assert "unet: attention processors changed" in state.drift(pipe.components)
    state.restore(pipe.components)
    assert state.drift(pipe.components) == [] and pipe.unet.attn_processors == before


@pytest.mark.parametrize(
    ("error", "oom", "sticky"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, False),
        (RuntimeError("CUDA error: out of memory"), True, False),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), False, True),
        (RuntimeError("CUDA error: device-side assert triggered"), False, True),
        (RuntimeError("Input type (c10::Half) and bias type (float) should be the same"), False, False),
        (ValueError("out of memory"), False, False),
    ],
)
def test_failures_are_told_apart(error: BaseException, oom: bool, sticky: bool) -> None:
    assert (is_out_of_memory(error), is_sticky_device_error(error)) == (oom, sticky)
