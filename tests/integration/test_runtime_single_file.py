"""Single-file checkpoints (original layout, ``.safetensors`` and ``.ckpt``): detection and offline loading.

The round trips go through diffusers' real ``from_single_file`` conversion, so an exact match of every
weight checks our diffusers->LDM writer, the family detection and the loader's config lookup at once. The
tiny files carry a ``configs/`` folder (their dimensions are not the published ones); the published
configs themselves are checked against the released parameter counts in test_inference_single_file.py and
loaded with nothing beside the file in tests/e2e/test_full_size_single_file.py.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import httpx
import pytest
import torch

from inference_api.architectures import TINY_INPAINT, TINY_REFINER, TINY_SD, TINY_SD2, TINY_SDXL, Architecture
from inference_api.builder import build_pipeline
from inference_api.catalog import discover
from inference_api.checkpoints import UNKNOWN, classify_checkpoint, read_header
from inference_api.ldm import UNET_PREFIX, save_single_file
from inference_api.loading import DeviceSettings, config_folder_for, load_model
from inference_api.settings import ServerSettings
from inference_api.single_file import UnrecognisedCheckpoint, write_config_folder
from tests.runtime_helpers import serve_in_thread, wait_until

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


@pytest.mark.parametrize(
    ("arch", "suffix", "family"),
    [
        (TINY_SD, ".safetensors", "v1"),
        (TINY_SD2, ".safetensors", "v2"),
        (TINY_SDXL, ".safetensors", "xl_base"),
        (TINY_REFINER, ".safetensors", "xl_refiner"),
        (TINY_INPAINT, ".safetensors", "inpainting"),
        (TINY_SD, ".ckpt", "v1"),
    ],
    ids=["sd1", "sd2", "sdxl", "refiner", "inpainting", "ckpt"],
)
def test_each_family_is_detected_and_loads_with_the_same_weights(
    tmp_path: Path, arch: Architecture, suffix: str, family: str
) -> None:
    pipe = build_pipeline(arch, seed=7)
    checkpoint = save_single_file(pipe, tmp_path / f"model{suffix}", open_clip_text=arch.open_clip_text)
    write_config_folder(arch, tmp_path / "configs" / "model")

    header = read_header(checkpoint)
    assert all(
        k.split(".")[0] in {"model", "first_stage_model", "cond_stage_model", "conditioner"} for k in header.shapes
    )
    assert classify_checkpoint(header) == family

    (entry,) = discover(tmp_path).models
    assert (entry.kind, entry.family, entry.name) == ("single_file", family, f"model{suffix}")
    loaded = load_model(entry, tmp_path, CPU)
    assert type(loaded.text2img).__name__ == arch.pipeline_class
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            _assert_same_weights(getattr(pipe, name), getattr(loaded.text2img, name))
    if family == "v1":
        image = loaded.text2img("a cat", num_inference_steps=2, width=64, height=64).images[0]
        assert image.size == (64, 64)


def _sd2_file(
    folder: Path, name: str, *, metadata: dict[str, str] | None = None, output_bias: float | None = None
) -> Path:
    pipe = build_pipeline(TINY_SD2, seed=3)
    if output_bias is not None:
        # A UNet whose answer is a constant: far below the input reads as v, near or above as epsilon.
        with torch.no_grad():
            pipe.unet.conv_out.weight.zero_()
            pipe.unet.conv_out.bias.fill_(output_bias)
    return save_single_file(pipe, folder / name, open_clip_text=True, metadata=metadata)


@pytest.mark.parametrize(
    ("name", "metadata", "bias", "expected"),
    [
        ("spec-v.safetensors", {"modelspec.prediction_type": "v"}, None, "v_prediction"),
        ("spec-eps.safetensors", {"modelspec.prediction_type": "epsilon"}, None, "epsilon"),
        ("kohya-v.safetensors", {"ss_v_parameterization": "True"}, None, "v_prediction"),
        ("base.ckpt", {"global_step": "875000"}, None, "epsilon"),
        ("probe-v.safetensors", None, -10.0, "v_prediction"),
        ("probe-eps.safetensors", None, 10.0, "epsilon"),
    ],
)
def test_sd2_prediction_type_is_read_from_the_file(
    tmp_path: Path, name: str, metadata: dict[str, str] | None, bias: float | None, expected: str
) -> None:
    _sd2_file(tmp_path, name, metadata=metadata, output_bias=bias)
    # One family folder for every SD 2.x file (as the shipped configs are): the file decides the prediction.
    write_config_folder(
        TINY_SD2.with_prediction("epsilon" if expected == "v_prediction" else "v_prediction"),
        tmp_path / "configs" / "v2",
    )
    (entry,) = discover(tmp_path).models
    assert entry.family == "v2"
    loaded = load_model(entry, tmp_path, CPU)
    assert loaded.text2img.scheduler.config.prediction_type == expected
    assert loaded.base_scheduler_config["prediction_type"] == expected


def test_a_per_file_config_folder_overrides_the_file(tmp_path: Path) -> None:
    _sd2_file(tmp_path, "m.safetensors", metadata={"modelspec.prediction_type": "v"})
    write_config_folder(TINY_SD2.with_prediction("epsilon"), tmp_path / "configs" / "m")
    write_config_folder(TINY_SD2, tmp_path / "configs" / "v2")
    (entry,) = discover(tmp_path).models
    assert config_folder_for(entry, tmp_path) == tmp_path / "configs" / "m"
    assert load_model(entry, tmp_path, CPU).text2img.scheduler.config.prediction_type == "epsilon"


def test_family_config_folder_is_the_fallback(tmp_path: Path) -> None:
    pipe = build_pipeline(TINY_SD, seed=1)
    save_single_file(pipe, tmp_path / "checkpoints" / "a.safetensors")
    save_single_file(pipe, tmp_path / "checkpoints" / "b.safetensors")
    write_config_folder(TINY_SD, tmp_path / "configs" / "v1")  # one folder serves every SD 1.x checkpoint
    entries = discover(tmp_path).models
    assert [e.name for e in entries] == ["checkpoints/a.safetensors", "checkpoints/b.safetensors"]
    assert all(config_folder_for(e, tmp_path) == tmp_path / "configs" / "v1" for e in entries)
    loaded = load_model(entries[1], tmp_path, CPU)
    _assert_same_weights(pipe.unet, loaded.text2img.unet)


def test_a_file_that_does_not_fit_its_family_names_the_file_and_the_fix(tmp_path: Path) -> None:
    # A tiny SD 1.x file alone: the published SD 1.5 configs are used, and its tensors are far smaller.
    save_single_file(build_pipeline(TINY_SD, seed=1), tmp_path / "lonely.safetensors")
    (entry,) = discover(tmp_path).models
    assert config_folder_for(entry, tmp_path) is None
    with pytest.raises(UnrecognisedCheckpoint) as excinfo:
        load_model(entry, tmp_path, CPU)
    message = str(excinfo.value)
    assert message.startswith("lonely.safetensors: its tensors do not fit the published v1 architecture")
    assert "add configs/lonely/" in message


def _fake_safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    header = {}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * int(torch.tensor(shape).prod())
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def test_an_unrecognised_architecture_is_a_ready_error_naming_the_file(tmp_path: Path) -> None:
    # A Flux-like transformer in the original prefix: a diffusion model, but of no family we know.
    _fake_safetensors(tmp_path / "flux-dev.safetensors", {UNET_PREFIX + "double_blocks.0.img_attn.qkv.weight": [24, 8]})
    (entry,) = discover(tmp_path).models
    assert entry.family == UNKNOWN
    settings = ServerSettings(models_dir=tmp_path, default_model="flux-dev.safetensors")
    with serve_in_thread(settings, ready=False) as server:
        response = wait_until(
            lambda: (r := server.client.get("/ready")).status_code == 503 and "unrecognised" in r.text and r,
            what="the load error on /ready",
        )
    assert isinstance(response, httpx.Response)
    message = response.json()["error"]["message"]
    assert "flux-dev.safetensors: unrecognised checkpoint architecture" in message
    assert "add configs/flux-dev/" in message and "model_index.json" in message


def test_configs_folder_is_not_listed_as_a_model(tmp_path: Path) -> None:
    pipe = build_pipeline(TINY_SD, seed=1)
    write_config_folder(TINY_SD, tmp_path / "configs" / "v1")
    pipe.save_pretrained(tmp_path / "Stable-diffusion" / "folder-model")
    shutil.copytree(tmp_path / "configs" / "v1", tmp_path / "configs" / "v2")
    assert [e.name for e in discover(tmp_path).models] == ["Stable-diffusion/folder-model"]
