"""Single-file (.safetensors, original layout) checkpoints: our writer and the runtime's offline loader agree.

The round trip goes through diffusers' real ``from_single_file`` conversion, so an exact match of every
weight checks our diffusers->LDM writer and the loader's config lookup at once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from inference_api.architectures import TINY_SD, TINY_SDXL, Architecture
from inference_api.builder import build_pipeline
from inference_api.ldm import save_single_file
from inference_api.loading import DeviceSettings, config_folder_for, load_model
from inference_api.catalog import classify_checkpoint, discover, safetensors_header
from inference_api.tiny import write_config_folder

CPU = DeviceSettings()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Any attempt to reach the hub fails fast instead of hanging; the cache is empty.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    torch.set_num_threads(1)


def _assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert set(want) == set(got)
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


@pytest.mark.parametrize(("arch", "family"), [(TINY_SD, "v1"), (TINY_SDXL, "xl_base")])
def test_single_file_round_trip(tmp_path: Path, arch: Architecture, family: str) -> None:
    pipe = build_pipeline(arch, seed=7)
    checkpoint = save_single_file(pipe, tmp_path / "model.safetensors")
    write_config_folder(pipe, tmp_path / "configs" / "model")

    header = safetensors_header(checkpoint)
    assert all(k.split(".")[0] in {"model", "first_stage_model", "cond_stage_model", "conditioner"} for k in header)
    assert classify_checkpoint(header) == family

    (entry,) = discover(tmp_path).models
    assert (entry.kind, entry.family, entry.name) == ("single_file", family, "model.safetensors")
    loaded = load_model(entry, tmp_path, CPU)
    assert type(loaded.text2img).__name__ == arch.pipeline_class
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            _assert_same_weights(getattr(pipe, name), getattr(loaded.text2img, name))
    image = loaded.text2img("a cat", num_inference_steps=2, width=64, height=64).images[0]
    assert image.size == (64, 64)


def test_family_config_folder_is_the_fallback(tmp_path: Path) -> None:
    pipe = build_pipeline(TINY_SD, seed=1)
    save_single_file(pipe, tmp_path / "checkpoints" / "a.safetensors")
    save_single_file(pipe, tmp_path / "checkpoints" / "b.safetensors")
    write_config_folder(pipe, tmp_path / "configs" / "v1")  # one folder serves every SD 1.x checkpoint
    entries = discover(tmp_path).models
    assert [e.name for e in entries] == ["checkpoints/a.safetensors", "checkpoints/b.safetensors"]
    assert all(config_folder_for(e, tmp_path) == tmp_path / "configs" / "v1" for e in entries)
    loaded = load_model(entries[1], tmp_path, CPU)
    _assert_same_weights(pipe.unet, loaded.text2img.unet)


def test_without_any_local_config_offline_loading_fails_clearly(tmp_path: Path) -> None:
    pipe = build_pipeline(TINY_SD, seed=1)
    save_single_file(pipe, tmp_path / "lonely.safetensors")
    (entry,) = discover(tmp_path).models
    assert config_folder_for(entry, tmp_path) is None
    with pytest.raises(Exception) as excinfo:
        load_model(entry, tmp_path, CPU)
    assert not isinstance(excinfo.value, AssertionError)


def test_configs_folder_is_not_listed_as_a_model(tmp_path: Path) -> None:
    pipe = build_pipeline(TINY_SD, seed=1)
    write_config_folder(pipe, tmp_path / "configs" / "v1")
    pipe.save_pretrained(tmp_path / "Stable-diffusion" / "folder-model")
    shutil.copytree(tmp_path / "configs" / "v1", tmp_path / "configs" / "v2")
    assert [e.name for e in discover(tmp_path).models] == ["Stable-diffusion/folder-model"]
