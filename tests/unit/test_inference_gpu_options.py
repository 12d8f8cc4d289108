"""The opt-in GPU options of the runtime: refused clearly where they cannot work, harmless where they can."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference_api.architectures import TINY_SD
from inference_api.builder import build_pipeline
from inference_api.loading import DeviceSettings, optimise


def test_float8_is_refused_without_a_capable_gpu() -> None:
    with pytest.raises(ValueError, match="float8"):
        DeviceSettings.create("cpu", None, float8=True)


def test_an_sdxl_vae_that_is_not_a_vae_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--sdxl-vae"):
        DeviceSettings.create("cpu", None, sdxl_vae=tmp_path)


def test_the_options_stay_off_by_default() -> None:
    settings = DeviceSettings.create("cpu", None)
    assert (settings.fuse_qkv, settings.float8, settings.sdxl_vae, settings.compile_mode) == (False, False, None, None)


def test_fused_qkv_projections_give_the_same_image() -> None:
    torch.set_num_threads(1)
    kwargs = {"num_inference_steps": 2, "width": 64, "height": 64, "output_type": "np"}
    images = []
    for fuse in (False, True):
        pipe = optimise(build_pipeline(TINY_SD, dtype=torch.float32, device="cpu"), DeviceSettings(fuse_qkv=fuse))
        images.append(pipe("a lighthouse", generator=torch.Generator("cpu").manual_seed(3), **kwargs).images[0])
    assert abs(images[0] - images[1]).max() < 1e-3
