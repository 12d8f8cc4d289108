"""Procedural toy-world scenes and their plain-English captions: what the toy model learns to draw.

One or two shapes (circle, square, triangle, star) in named colours on a plain or coloured background, at
named positions. Everything is drawn with torch on a pixel grid, so a seeded generator gives the same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 225),
    "yellow": (245, 220, 30),
    "orange": (245, 135, 20),
    "purple": (140, 40, 185),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
POSITIONS = ("left", "right", "top", "bottom", "centre")
# Where each position puts a shape's centre, as fractions of the side (x, y; y grows downwards).
_CENTRES = {"left": (0.28, 0.5), "right": (0.72, 0.5), "top": (0.5, 0.28), "bottom": (0.5, 0.72), "centre": (0.5, 0.5)}
_PAIRS = (("left", "right"), ("top", "bottom"))


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    position: str


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: str
    say_background: bool = True

    def caption(self) -> str:
        parts = [
            f"a {s.colour} {s.kind} " + ("in the centre" if s.position == "centre" else f"on the {s.position}")
            for s in self.shapes
        ]
        if self.say_background:
            parts.append(f"on a {self.background} background")
        return ", ".join(parts)


def _pick(options: tuple[str, ...] | list[str], generator: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


_SHAPE_COLOURS = [c for c in COLOURS if c != "white"]  # a shape on white is any other colour


def random_scene(generator: torch.Generator) -> Scene:
    colours = list(COLOURS)
    if float(torch.rand(1, generator=generator)) < 0.5:
        positions: tuple[str, ...] = (_pick(POSITIONS, generator),)
    else:
        pair = _PAIRS[int(torch.randint(2, (1,), generator=generator))]
        positions = pair if float(torch.rand(1, generator=generator)) < 0.5 else pair[::-1]
    shapes: list[Shape] = []
    for position in positions:
        colour = _pick([c for c in colours if c not in {s.colour for s in shapes}], generator)
        shapes.append(Shape(_pick(SHAPES, generator), colour, position))
    used = {s.colour for s in shapes}
    # Plain (white) backgrounds half the time, otherwise any colour no shape uses.
    background = (
        "white"
        if "white" not in used and float(torch.rand(1, generator=generator)) < 0.5
        else _pick([c for c in colours if c not in used], generator)
    )
    return Scene(tuple(shapes), background, say_background=float(torch.rand(1, generator=generator)) < 0.8)


def training_scene(generator: torch.Generator, single_share: float = 0.2) -> Scene:
    """What the toy model learns from: ``random_scene``, plus a ``single_share`` of one-shape scenes on white
    (any position), the plainest pictures, which teach colour and place most directly."""
    if float(torch.rand(1, generator=generator)) >= single_share:
        return random_scene(generator)
    colour, kind = _pick(_SHAPE_COLOURS, generator), _pick(SHAPES, generator)
    position = _pick(POSITIONS, generator)
    return Scene(
        (Shape(kind, colour, position),), "white", say_background=float(torch.rand(1, generator=generator)) < 0.8
    )


def _mask(kind: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Inside-test of a unit shape centred at the origin, on coordinates in shape radii."""
    if kind == "circle":
        return x * x + y * y <= 1.0
    if kind == "square":
        return torch.maximum(x.abs(), y.abs()) <= 0.82
    if kind == "triangle":  # apex up
        return (y <= 0.75) & (x.abs() <= 0.95 * (y + 1.0) / 1.75)
    if kind == "star":
        rho = torch.sqrt(x * x + y * y)
        theta = torch.atan2(x, -y)  # 0 points up
        wave = torch.remainder(theta * 5 / (2 * math.pi), 1.0)
        spike = (wave - 0.5).abs() * 2  # 1 at each of the five points, 0 between them
        return rho <= 0.42 + 0.63 * spike**2
    raise ValueError(f"unknown shape {kind!r}")


def render(scene: Scene, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The scene as a ``3 x size x size`` tensor in [0, 1], anti-aliased by 2x supersampling."""
    fine = size * 2
    coords = (torch.arange(fine, dtype=torch.float32) + 0.5) / fine
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    image = torch.tensor(COLOURS[scene.background], dtype=torch.float32).view(3, 1, 1).expand(3, fine, fine).clone()
    radius = 0.2 if len(scene.shapes) == 1 else 0.17
    for shape in scene.shapes:
        cx, cy = _CENTRES[shape.position]
        jitter = (torch.rand(3, generator=generator) - 0.5) if generator is not None else torch.zeros(3)
        r = radius * (1 + 0.2 * float(jitter[2]))
        cx, cy = cx + 0.06 * float(jitter[0]), cy + 0.06 * float(jitter[1])
        inside = _mask(shape.kind, (x - cx) / r, (y - cy) / r)
        image[:, inside] = torch.tensor(COLOURS[shape.colour], dtype=torch.float32).view(3, 1)
    image = torch.nn.functional.avg_pool2d(image.unsqueeze(0), 2).squeeze(0)
    return image / 255.0


def nearest_colour(rgb: tuple[float, float, float]) -> str:
    """The palette name closest to an RGB triple in 0..255."""
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb, strict=True)))


@dataclass(frozen=True)
class Reading:
    """What a picture shows, read back as the captions say it: the shapes' dominant colour and side."""

    colour: str | None
    side: str | None  # "left" or "right" of the centre line


_CLEAR_RATIO = 0.8


def read_picture(pixels: torch.Tensor, background: str) -> Reading:
    """``pixels``: ``H x W x 3`` in 0..255. The shape region is every pixel that is clearly one palette colour
    other than the background's: markedly nearer to it than to any other (``_CLEAR_RATIO``), so blended edge
    pixels (a blue shape's rim on white is a pale blue, about as near purple as blue) do not count. Its most
    frequent colour and the side of its centre of mass are the reading."""
    flat = pixels.reshape(-1, 3).float()
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    distances = torch.cdist(flat, palette)
    two = distances.topk(2, dim=1, largest=False)
    nearest, first, second = two.indices[:, 0], two.values[:, 0], two.values[:, 1]
    names = list(COLOURS)
    region = (nearest != names.index(background)) & (first < _CLEAR_RATIO * second)
    if int(region.sum()) == 0:
        return Reading(None, None)
    colour = names[int(torch.bincount(nearest[region], minlength=len(names)).argmax())]
    width = pixels.shape[1]
    xs = torch.arange(flat.shape[0]) % width
    centre = float(xs[region].float().mean()) + 0.5
    return Reading(colour, "left" if centre < width / 2 else "right")


def evaluation_scenes(count: int, seed: int = 1234) -> list[Scene]:
    """Seeded one-shape scenes on white, on the left or the right: the prompts the semantic checks use."""
    generator = torch.Generator().manual_seed(seed)
    scenes = []
    for n in range(count):
        colour, kind = _pick(_SHAPE_COLOURS, generator), _pick(SHAPES, generator)
        scenes.append(Scene((Shape(kind, colour, ("left", "right")[n % 2]),), "white"))
    return scenes
