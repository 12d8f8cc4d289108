"""The plain-torch RRDBNet: checkpoint layouts, scale inference, tiled inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from inference_api import esrgan
from tests.runtime_helpers import write_tiny_esrgan


@pytest.mark.parametrize("scale", [4, 2])
def test_loads_sizes_from_the_weights_and_upscales_by_its_scale(tmp_path: Path, scale: int) -> None:
    path = write_tiny_esrgan(tmp_path / f"x{scale}.safetensors", scale=scale)
    model = esrgan.load(path)
    assert model.scale == scale and len(model.body) == 1
    out = esrgan.EsrganUpscaler(model).upscale(Image.new("RGB", (13, 7), (40, 80, 120)))
    assert out.size == (13 * scale, 7 * scale)


def test_original_esrgan_key_layout_and_pth_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = esrgan.RRDBNet(scale=4, features=8, blocks=2, growth=4)
    renamed = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "body":
            renamed[f"model.1.sub.{parts[1]}.RDB{parts[2][-1]}.{parts[3]}.0.{parts[4]}"] = value
        else:
            old = {"conv_first": "model.0", "conv_body": "model.1.sub.2", "conv_up1": "model.3"}
            old |= {"conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
            renamed[f"{old[parts[0]]}.{parts[1]}"] = value
    path = tmp_path / "ESRGAN_4x.pth"
    torch.save(renamed, path)  # loaded back with weights_only=True: no pickled code can run
    loaded = esrgan.load(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_real_esrgan_params_ema_wrapper(tmp_path: Path) -> None:
    model = esrgan.RRDBNet(scale=4, features=8, blocks=1, growth=4)
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    assert esrgan.load(path).scale == 4


def test_tiling_matches_a_single_pass_away_from_tile_seams() -> None:
    torch.manual_seed(1)
    model = esrgan.RRDBNet(scale=4, features=8, blocks=1, growth=4).eval()
    image = Image.effect_noise((40, 24), 50).convert("RGB")
    whole = torch.tensor(list(esrgan.EsrganUpscaler(model, tile=64).upscale(image).getdata()), dtype=torch.int16)
    tiled = torch.tensor(
        list(esrgan.EsrganUpscaler(model, tile=16, overlap=16).upscale(image).getdata()), dtype=torch.int16
    )
    # With context as wide as the tile, tiles only differ where the receptive field is cut: a few levels.
    assert (whole - tiled).abs().float().mean() < 2.0


def test_unknown_input_width_is_refused() -> None:
    with pytest.raises(ValueError):
        esrgan.from_state_dict({"conv_first.weight": torch.zeros(8, 5, 3, 3)})
