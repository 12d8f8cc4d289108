"""ESRGAN / Real-ESRGAN (RRDBNet) upscalers in plain torch: no basicsr or spandrel dependency.

Loads the usual checkpoints (``RealESRGAN_x4plus``, ``RealESRGAN_x4plus_anime_6B``, ``ESRGAN_4x``...) from
``.safetensors``, or ``.pth`` with ``torch.load(weights_only=True)`` (no pickled code runs). Both the
Real-ESRGAN key layout (``conv_first``, ``body.N.rdbK``) and the original ESRGAN one (``model.0``,
``model.1.sub.N.RDBK``) are accepted; sizes and scale are read from the weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing every earlier feature map; scaled residual."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            maps.append(F.leaky_relu(conv(torch.cat(maps, 1)), 0.2))
        return self.conv5(torch.cat(maps, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(features, growth)
        self.rdb2 = DenseBlock(features, growth)
        self.rdb3 = DenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """Residual-in-residual dense network; x2 and x1 variants pixel-unshuffle the input first."""

    def __init__(self, scale: int = 4, features: int = 64, blocks: int = 23, growth: int = 32, channels: int = 3):
        super().__init__()
        self.scale = scale
        unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.unshuffle = unshuffle
        self.conv_first = nn.Conv2d(channels * unshuffle * unshuffle, features, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(features, growth) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


_OLD_TOP = {
    "model.0": "conv_first",
    "model.3": "conv_up1",
    "model.6": "conv_up2",
    "model.8": "conv_hr",
    "model.10": "conv_last",
}
_OLD_BODY = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")


def normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original ESRGAN key names -> Real-ESRGAN names (the latter pass through unchanged)."""
    for wrapper in ("params_ema", "params"):  # Real-ESRGAN .pth files nest the weights
        nested = state.get(wrapper)
        if isinstance(nested, dict):
            state = nested
    if "conv_first.weight" in state:
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        top = key.rsplit(".", 1)
        if top[0] in _OLD_TOP:
            out[f"{_OLD_TOP[top[0]]}.{top[1]}"] = value
        elif m := _OLD_BODY.match(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := _OLD_TRUNK.match(key):
            out[f"conv_body.{m[2]}"] = value
    return out


def from_state_dict(state: dict[str, torch.Tensor]) -> RRDBNet:
    state = normalise_keys(state)
    first = state["conv_first.weight"]
    features, in_channels = int(first.shape[0]), int(first.shape[1])
    scale = {3: 4, 12: 2, 48: 1}.get(in_channels)
    if scale is None:
        raise ValueError(f"unsupported ESRGAN input width {in_channels}")
    blocks = len({k.split(".")[1] for k in state if k.startswith("body.")})
    growth = int(state["body.0.rdb1.conv1.weight"].shape[0])
    model = RRDBNet(scale=scale, features=features, blocks=blocks, growth=growth)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load(path: Path) -> RRDBNet:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return from_state_dict(state)


@dataclass
class EsrganUpscaler:
    model: RRDBNet
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    tile: int = 256
    overlap: int = 16

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device, self.dtype)

    @property
    def scale(self) -> int:
        return self.model.scale

    @torch.inference_mode()
    def upscale(self, image: Image.Image) -> Image.Image:
        """One pass of the network, in tiles so that memory stays bounded whatever the image size."""
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
        orig_h, orig_w = x.shape[2], x.shape[3]
        m = self.model.unshuffle
        if m > 1 and (orig_h % m or orig_w % m):  # pixel-unshuffle needs sides divisible by its factor
            x = F.pad(x, (0, -orig_w % m, 0, -orig_h % m), mode="replicate")
        _, _, h, w = x.shape
        s = self.scale
        out = torch.zeros(1, 3, h * s, w * s)
        step = self.tile
        for top in range(0, h, step):
            for left in range(0, w, step):
                # Each tile is run with `overlap` pixels of context so that seams do not show.
                t0, l0 = max(top - self.overlap, 0), max(left - self.overlap, 0)
                t1, l1 = min(top + step + self.overlap, h), min(left + step + self.overlap, w)
                patch = x[:, :, t0:t1, l0:l1].to(self.device, self.dtype)
                result = self.model(patch).float().cpu()
                bottom, right = min(top + step, h), min(left + step, w)
                out[:, :, top * s : bottom * s, left * s : right * s] = result[
                    :, :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
        out = out[:, :, : orig_h * s, : orig_w * s]
        pixels = (out.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(pixels)
