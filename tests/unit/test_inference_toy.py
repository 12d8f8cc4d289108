"""The toy-world model: its scenes and captions, a deterministic build, and the defaults its folder carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from inference_api.catalog import discover
from inference_api.http_schemas import Txt2ImgRequest
from inference_api.model_defaults import DEFAULTS_FILE, apply_defaults, read_defaults
from inference_api.toy import ToyRecipe, build_toy_model
from inference_api.toy_scenes import COLOURS, Scene, Shape, nearest_colour, random_scene, render, training_scene

QUICK = ToyRecipe(scenes=16, vae_steps=2, vae_batch=4, unet_steps=2, batch=4)


def _pixel(image: torch.Tensor, x: int, y: int) -> str:
    return nearest_colour(tuple(float(v) * 255 for v in image[:, y, x]))  # type: ignore[arg-type]


def test_scene_is_drawn_where_its_caption_says():
    scene = Scene((Shape("circle", "red", "left"), Shape("square", "blue", "right")), "yellow")
    assert scene.caption() == "a red circle on the left, a blue square on the right, on a yellow background"
    image = render(scene, 32)
    assert image.shape == (3, 32, 32)
    assert _pixel(image, 9, 16) == "red" and _pixel(image, 23, 16) == "blue"
    assert _pixel(image, 16, 2) == "yellow" and _pixel(image, 16, 29) == "yellow"


def test_random_scenes_use_the_vocabulary_and_distinct_colours():
    generator = torch.Generator().manual_seed(0)
    scenes = [random_scene(generator) for _ in range(200)]
    for scene in scenes:
        colours = [s.colour for s in scene.shapes]
        assert len(set(colours)) == len(colours) and scene.background not in colours
        assert set(colours) <= set(COLOURS)
    assert {len(s.shapes) for s in scenes} == {1, 2}
    assert any("in the centre" in s.caption() for s in scenes)


def test_training_scenes_add_plain_one_shape_scenes_to_the_random_ones():
    generator = torch.Generator().manual_seed(0)
    scenes = [training_scene(generator, single_share=0.5) for _ in range(400)]
    plain = [s for s in scenes if len(s.shapes) == 1 and s.background == "white"]
    assert 0.5 < len(plain) / len(scenes) < 0.75  # half of them, plus random_scene's own share
    assert {s.shapes[0].position for s in plain} == {"left", "right", "top", "bottom", "centre"}


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def test_same_seed_same_model_and_the_folder_carries_its_defaults(tmp_path: Path):
    a = build_toy_model(tmp_path / "a", QUICK)
    b = build_toy_model(tmp_path / "b", QUICK)
    assert _digest(a) == _digest(b)
    index = json.loads((a / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert json.loads((a / DEFAULTS_FILE).read_text())["width"] == 32
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(a)  # the runtime's loader for a diffusers folder
    image = pipe("a red circle on the left", num_inference_steps=2, output_type="pil").images[0]
    assert image.size == (32, 32)  # the pipeline's own default: the model's native size
    (entry,) = discover(tmp_path / "a").models
    assert entry.defaults is not None and (entry.defaults.width, entry.defaults.steps) == (32, QUICK.steps)
    # Image-to-image encodes a picture to its latents' mean: the posterior's variance is pinned near zero.
    with torch.no_grad():
        posterior = pipe.vae.encode(render(Scene((Shape("star", "blue", "left"),), "white"), 32)[None] * 2 - 1)
    assert float(posterior.latent_dist.std.max()) < 1e-5


def test_model_defaults_fill_only_what_the_request_left_out(tmp_path: Path):
    (tmp_path / DEFAULTS_FILE).write_text(json.dumps({"width": 32, "height": 40, "steps": 12, "cfg_scale": 4.0}))
    defaults = read_defaults(tmp_path)
    bare = apply_defaults(Txt2ImgRequest(prompt="x"), defaults)
    assert (bare.width, bare.height, bare.steps, bare.cfg_scale) == (32, 40, 12, 4.0)
    explicit = apply_defaults(Txt2ImgRequest(prompt="x", width=64, steps=3), defaults)
    assert (explicit.width, explicit.height, explicit.steps) == (64, 40, 3)
    assert apply_defaults(Txt2ImgRequest(prompt="x"), None).width == 512


def test_unreadable_defaults_are_ignored(tmp_path: Path):
    (tmp_path / DEFAULTS_FILE).write_text(json.dumps({"width": 33, "height": 40, "steps": 12, "cfg_scale": 4.0}))
    assert read_defaults(tmp_path) is None
    assert read_defaults(tmp_path / "missing") is None


def test_reading_a_rendered_scene_gives_back_its_colour_and_side():
    from inference_api.toy_scenes import evaluation_scenes, read_picture

    scenes = evaluation_scenes(20)
    assert {s.shapes[0].position for s in scenes} == {"left", "right"}
    for scene in scenes:
        pixels = render(scene, 32).permute(1, 2, 0) * 255
        reading = read_picture(pixels, scene.background)
        assert (reading.colour, reading.side) == (scene.shapes[0].colour, scene.shapes[0].position)
    assert read_picture(torch.full((8, 8, 3), 245.0), "white").colour is None


def test_blended_rim_pixels_do_not_decide_the_colour():
    from inference_api.toy_scenes import read_picture

    pixels = torch.full((32, 32, 3), 245.0)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    distance = ((xs - 8) ** 2 + (ys - 16) ** 2).sqrt()
    pixels[distance < 6] = torch.tensor([137.0, 157.0, 235.0])  # blue half-blended with white: nearest is purple
    pixels[distance < 3] = torch.tensor([30.0, 70.0, 225.0])  # the blue core, smaller than its rim
    reading = read_picture(pixels, "white")
    assert (reading.colour, reading.side) == ("blue", "left")
