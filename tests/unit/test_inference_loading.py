"""Device settings and the GPU-path optimisations, checked structurally on the CPU."""

from __future__ import annotations

import pytest
import torch

from inference_api.architectures import TINY_SD
from inference_api.builder import build_pipeline
from inference_api.loading import DeviceSettings, optimise


def test_cpu_defaults_are_fp32_without_channels_last() -> None:
    settings = DeviceSettings.create("cpu", None)
    assert (settings.device, settings.dtype, settings.channels_last, settings.compile) == (
        "cpu",
        torch.float32,
        False,
        False,
    )
    assert DeviceSettings.create("cpu", "bf16", channels_last=True).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        DeviceSettings.create("cuda", None)


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype"):
        DeviceSettings.create("cpu", "fp8")


def test_channels_last_and_compile_are_applied_to_the_denoiser() -> None:
    pipe = build_pipeline(TINY_SD)
    pipe = optimise(pipe, DeviceSettings("cpu", torch.float32, channels_last=True, compile=True))
    assert isinstance(pipe.unet, torch._dynamo.eval_frame.OptimizedModule)
    conv = pipe.vae.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    plain = optimise(build_pipeline(TINY_SD), DeviceSettings())
    assert not isinstance(plain.unet, torch._dynamo.eval_frame.OptimizedModule)
