"""What AUTOMATIC1111 users write does what it does there: black-box tests through the HTTP API, tiny models,
fixed seeds, comparing images."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime_helpers import TINY, TINY_XL, RunningServer, decode_png, serve_subprocess

XL_REFINER = "tiny-xl-refiner"
SMALL = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64, "seed": 11}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from inference_api.animatediff import build_tiny_motion_module
    from inference_api.controlnet import build_tiny_controlnet
    from inference_api.embeddings import build_tiny_embedding
    from inference_api.lora import build_tiny_lora
    from inference_api.tiny import build_tiny_model
    from inference_api.vae import build_tiny_vae

    root = tmp_path_factory.mktemp("a1111")
    models = root / "models"
    build_tiny_model(models, name=TINY, seed=0)
    build_tiny_model(models, xl=True, name=TINY_XL, seed=3)
    build_tiny_model(models, xl=True, name=XL_REFINER, seed=7)
    build_tiny_lora(models / TINY, models / "Lora" / "tiny-lora.safetensors", seed=1)
    build_tiny_lora(models / TINY, models / "Lora" / "other-lora.safetensors", seed=2)
    build_tiny_lora(models / TINY_XL, models / "Lora" / "xl" / "tiny-xl-lora.safetensors", seed=3)
    for name in ("emb-a", "emb-b"):  # the same vectors under two names
        build_tiny_embedding(models / TINY, models / "embeddings" / f"{name}.safetensors", seed=5)
    build_tiny_embedding(models / TINY_XL, models / "embeddings" / "xl-emb.safetensors", seed=6)
    build_tiny_controlnet(models / TINY, models / "ControlNet" / "tiny-cn", seed=1)
    build_tiny_vae(models / TINY, models / "VAE" / "tiny-vae.safetensors", seed=4)
    build_tiny_controlnet(models / TINY, models / "ControlNet" / "tiny-cn-b", seed=2)
    build_tiny_controlnet(models / TINY_XL, models / "ControlNet" / "tiny-xl-cn", seed=3)
    build_tiny_motion_module(models / TINY, models / "AnimateDiff" / "tiny-mm", seed=1)
    with serve_subprocess(models, root / "server.log", "--default-model", TINY, "--cache-size", "2") as running:
        yield running


def generate(server: RunningServer, **overrides: Any) -> dict[str, Any]:
    return server.generate("txt2img", {**SMALL, **overrides})


def image(server: RunningServer, **overrides: Any) -> np.ndarray:
    return np.asarray(decode_png(generate(server, **overrides)["images"][0]).convert("RGB"), dtype=np.int16)


def xl(**fields: Any) -> dict[str, Any]:
    return {"override_settings": {"sd_model_checkpoint": TINY_XL}, **fields}


@pytest.mark.parametrize("model", [{}, xl()], ids=["sd", "sdxl"])
def test_attention_weight_one_is_the_plain_prompt(server: RunningServer, model: dict[str, Any]) -> None:
    plain = image(server, prompt="a photo of a cat", **model)
    assert np.array_equal(image(server, prompt="a photo of a (cat:1.0)", **model), plain)
    assert not np.array_equal(image(server, prompt="a photo of a (cat:1.5)", **model), plain)
    assert not np.array_equal(image(server, prompt="a photo of a ((cat))", **model), plain)
    assert not np.array_equal(image(server, prompt="a photo of a [cat]", **model), plain)
    escaped = image(server, prompt=r"a photo of a \(cat\)", **model)  # literal brackets, no weight
    assert not np.array_equal(escaped, image(server, prompt="a photo of a (cat)", **model))


def test_break_starts_a_new_chunk(server: RunningServer) -> None:
    assert not np.array_equal(image(server, prompt="a photo BREAK of a cat"), image(server, prompt="a photo of a cat"))


def test_dpmpp_2m_automatic_is_karras(server: RunningServer) -> None:
    automatic = generate(server, sampler_name="DPM++ 2M", scheduler="Automatic")
    karras = generate(server, sampler_name="DPM++ 2M", scheduler="Karras")
    assert json.loads(automatic["info"])["scheduler"] == "Karras"
    assert automatic["images"][0] == karras["images"][0]
    uniform = generate(server, sampler_name="DPM++ 2M", scheduler="Uniform")
    assert uniform["images"][0] != karras["images"][0]


def test_the_tail_of_a_150_token_sdxl_prompt_changes_the_image(server: RunningServer) -> None:
    head = " ".join(["cat"] * 75)
    one = image(server, **xl(prompt=head + " " + " ".join(["dog"] * 75)))
    other = image(server, **xl(prompt=head + " " + " ".join(["sky"] * 75)))
    assert not np.array_equal(one, other)


def test_sdxl_clip_skip_needs_sdxl_clip_l_skip(server: RunningServer) -> None:
    base = image(server, **xl())
    assert np.array_equal(image(server, **xl(clip_skip=3)), base)
    settings = {"sd_model_checkpoint": TINY_XL, "sdxl_clip_l_skip": True}
    assert not np.array_equal(image(server, clip_skip=3, override_settings=settings), base)


def notes(body: dict[str, Any]) -> list[str]:
    return list(json.loads(body["info"])["extra_generation_params"].get("notes", []))


def test_lora_weight_zero_is_none_and_one_changes_the_image(server: RunningServer) -> None:
    plain = image(server)
    assert np.array_equal(image(server, prompt="a photo of a cat <lora:tiny-lora:0>"), plain)
    with_lora = image(server, prompt="a photo of a cat <lora:tiny-lora:1>")
    infotext = json.loads(generate(server, prompt="a photo of a cat <lora:tiny-lora:1>")["info"])["infotexts"][0]
    assert re.search(r'Lora hashes: "tiny-lora: [0-9a-f]{12}"', infotext)
    assert not np.array_equal(with_lora, plain)
    assert not np.array_equal(image(server, prompt="a photo of a cat <lora:tiny-lora:0.5>"), with_lora)
    assert np.array_equal(image(server), plain)  # the base weights are back exactly
    # Several at once, and in the negative prompt too (A1111 applies both).
    both = image(server, prompt="a photo of a cat <lora:tiny-lora:1> <lora:other-lora:1>")
    assert not np.array_equal(both, with_lora)
    assert not np.array_equal(image(server, negative_prompt="<lora:tiny-lora:1>"), plain)


def test_unknown_lora_is_ignored_with_a_note(server: RunningServer) -> None:
    body = generate(server, prompt="a photo of a cat <lora:nope:1>")
    assert "Networks not found: nope" in notes(body)
    assert np.array_equal(np.asarray(decode_png(body["images"][0]).convert("RGB"), dtype=np.int16), image(server))


def test_sdxl_lora_in_kohya_sgm_names(server: RunningServer) -> None:
    plain = image(server, **xl())
    body = generate(server, **xl(prompt="a photo of a cat <lora:tiny-xl-lora:1>"))
    assert not notes(body)
    assert not np.array_equal(np.asarray(decode_png(body["images"][0]).convert("RGB"), dtype=np.int16), plain)


def test_lora_list_and_refresh(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    listed = server.client.get("/sdapi/v1/loras").json()
    assert {item["name"] for item in listed} >= {"tiny-lora", "other-lora", "tiny-xl-lora"}
    assert all(set(item) >= {"name", "alias", "path", "metadata"} for item in listed)
    first = next(item for item in listed if item["name"] == "tiny-lora")
    models = Path(first["path"]).parent
    (models / "copy-lora.safetensors").write_bytes(Path(first["path"]).read_bytes())
    assert "copy-lora" not in {item["name"] for item in listed}
    assert server.client.post("/sdapi/v1/refresh-loras").status_code == 200
    assert "copy-lora" in {item["name"] for item in server.client.get("/sdapi/v1/loras").json()}


def test_textual_inversion_replaces_the_name_by_its_vectors(server: RunningServer) -> None:
    # Two names, the same vectors: the prompts encode identically only if the names are replaced.
    assert not notes(generate(server, prompt="a photo of emb-a"))
    a = image(server, prompt="a photo of emb-a")
    assert np.array_equal(a, image(server, prompt="a photo of emb-b"))
    assert not np.array_equal(a, image(server, prompt="a photo of emb-c"))
    xl_body = generate(server, **xl(prompt="a photo of xl-emb"))
    assert not notes(xl_body)
    assert "does not fit" in " ".join(notes(generate(server, **xl(prompt="a photo of emb-a"))))
    listed = server.client.get("/sdapi/v1/embeddings").json()
    assert set(listed) == {"loaded", "skipped"}
    assert listed["loaded"]["emb-a"]["vectors"] == 2 and listed["loaded"]["emb-a"]["shape"] == 32


def _b64(img: Any) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _inpaint(server: RunningServer, **fields: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    body = {**SMALL, "init_images": [_b64(init)], "mask": _b64(mask), "denoising_strength": 0.9, **fields}
    response = server.client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    out = np.asarray(decode_png(response.json()["images"][0]).convert("RGB"), dtype=np.int16)
    overlay = mask.filter(ImageFilter.GaussianBlur(fields.get("mask_blur", 4)))
    return out, np.asarray(init, dtype=np.int16), np.asarray(overlay)


@pytest.mark.parametrize("full_res", [False, True], ids=["whole", "only_masked"])
def test_inpainting_keeps_every_pixel_outside_the_blurred_mask(server: RunningServer, full_res: bool) -> None:
    out, init, overlay = _inpaint(server, mask_blur=4, inpaint_full_res=full_res, inpaint_full_res_padding=8)
    outside = overlay == 0
    assert outside.sum() > 2000 and np.array_equal(out[outside], init[outside])
    assert not np.array_equal(out[overlay > 200], init[overlay > 200])
    # Inverted: the square keeps the input, the rest is repainted.
    inverted, _, _ = _inpaint(server, mask_blur=0, inpainting_mask_invert=1)
    assert np.array_equal(inverted[24:40, 24:40], init[24:40, 24:40])
    assert not np.array_equal(inverted[:20], init[:20])


def test_mask_blur_softens_the_seam(server: RunningServer) -> None:
    sharp, init, _ = _inpaint(server, mask_blur=0)
    soft, _, overlay = _inpaint(server, mask_blur=8)
    seam = (overlay > 0) & (overlay < 255)
    assert not np.array_equal(sharp[seam], soft[seam])
    assert np.array_equal(soft[overlay == 0], init[overlay == 0])


def test_hires_fix_returns_the_upscaled_size(server: RunningServer) -> None:
    body = generate(server, enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.6)
    assert decode_png(body["images"][0]).size == (128, 128)
    info = json.loads(body["info"])
    assert "Hires upscale: 2" in info["infotexts"][0] and "Denoising strength: 0.6" in info["infotexts"][0]
    assert "Size: 64x64" in info["infotexts"][0]
    lanczos = generate(server, enable_hr=True, hr_scale=2, hr_upscaler="Lanczos", denoising_strength=0.6)
    assert lanczos["images"][0] != body["images"][0]
    sized = generate(server, enable_hr=True, hr_resize_x=96, hr_upscaler="Lanczos", hr_second_pass_steps=2)
    assert decode_png(sized["images"][0]).size == (96, 96)
    # The second pass repaints: not just the first pass resized.
    from PIL import Image

    first = decode_png(generate(server)["images"][0]).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
    assert not np.array_equal(np.asarray(first), np.asarray(decode_png(lanczos["images"][0]).convert("RGB")))


def test_hires_target_out_of_range_is_422(server: RunningServer) -> None:
    response = server.client.post(
        "/sdapi/v1/txt2img", json={**SMALL, "enable_hr": True, "hr_resize_x": 2048, "hr_resize_y": 8}
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "hr_resize_x"


def _control_map(seed: int = 1) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return _b64(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))


def _unit(model: str, **fields: Any) -> dict[str, Any]:
    return {"enabled": True, "image": _control_map(), "module": "none", "model": model, "weight": 1.0, **fields}


def test_controlnet_units_change_the_image(server: RunningServer) -> None:
    plain = image(server)
    one = image(server, alwayson_scripts={"controlnet": {"args": [_unit("tiny-cn [0123abcd]")]}})
    assert not np.array_equal(one, plain)
    other_map = image(server, alwayson_scripts={"ControlNet": {"args": [_unit("tiny-cn", image=_control_map(2))]}})
    assert not np.array_equal(other_map, one)
    two = generate(
        server, alwayson_scripts={"ControlNet": {"args": [_unit("tiny-cn"), _unit("tiny-cn-b", weight=0.5)]}}
    )
    assert "ControlNet 1:" in json.loads(two["info"])["infotexts"][0]
    half = image(server, alwayson_scripts={"controlnet": {"args": [_unit("tiny-cn", guidance_end=0.5)]}})
    assert not np.array_equal(half, one)
    init = {"init_images": [_control_map(3)], "denoising_strength": 0.8}
    response = server.client.post(
        "/sdapi/v1/img2img", json={**SMALL, **init, "alwayson_scripts": {"controlnet": {"args": [_unit("tiny-cn")]}}}
    )
    assert response.status_code == 200, response.text
    assert not np.array_equal(
        image(server, **xl(alwayson_scripts={"controlnet": {"args": [_unit("tiny-xl-cn")]}})), image(server, **xl())
    )


def test_controlnet_refuses_preprocessors_and_unknown_models(server: RunningServer) -> None:
    body = {**SMALL, "alwayson_scripts": {"controlnet": {"args": [_unit("tiny-cn", module="canny"), _unit("nope")]}}}
    response = server.client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 422
    fields = {f["field"]: f["message"] for f in response.json()["error"]["fields"]}
    assert "none" in fields["alwayson_scripts.controlnet.args.0.module"]
    assert "tiny-cn" in fields["alwayson_scripts.controlnet.args.1.model"]
    assert [m for m in server.client.get("/controlnet/model_list").json()["model_list"]] == [
        "tiny-cn",
        "tiny-cn-b",
        "tiny-xl-cn",
    ]


def test_sd_vae_swaps_the_vae_and_automatic_restores_it(server: RunningServer) -> None:
    plain = image(server)
    body = generate(server, override_settings={"sd_vae": "tiny-vae.safetensors"})
    swapped = np.asarray(decode_png(body["images"][0]).convert("RGB"), dtype=np.int16)
    assert not np.array_equal(swapped, plain)
    info = json.loads(body["info"])
    assert info["sd_vae_name"] == "tiny-vae.safetensors" and "VAE: tiny-vae.safetensors" in info["infotexts"][0]
    assert np.array_equal(image(server, override_settings={"sd_vae": "Automatic"}), plain)
    assert np.array_equal(image(server), plain)
    # The server option works as the override does; an unknown name keeps the model's VAE, with a note.
    assert server.client.post("/sdapi/v1/options", json={"sd_vae": "tiny-vae"}).status_code == 200
    try:
        assert np.array_equal(image(server), swapped)
    finally:
        server.client.post("/sdapi/v1/options", json={"sd_vae": "Automatic"})
    unknown = generate(server, override_settings={"sd_vae": "nope.safetensors"})
    assert "not found" in " ".join(notes(unknown))
    assert [v["model_name"] for v in server.client.get("/sdapi/v1/sd-vae").json()] == ["tiny-vae.safetensors"]


def _animatediff(**fields: Any) -> dict[str, Any]:
    arg = {"enable": True, "model": "tiny-mm.safetensors", "video_length": 3, "fps": 8, "format": ["GIF"]}
    return {"AnimateDiff": {"args": [{**arg, **fields}]}}


def test_animatediff_returns_a_gif_of_the_asked_frames(server: RunningServer) -> None:
    import base64
    import io

    from PIL import Image, ImageSequence

    before = image(server, steps=2)
    body = generate(server, steps=2, batch_size=3, alwayson_scripts=_animatediff(format=["GIF", "WEBP", "Frame"]))
    gif, webp, *frames = (base64.b64decode(data) for data in body["images"])
    assert gif.startswith(b"GIF89a") and webp[8:12] == b"WEBP"
    decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(io.BytesIO(gif)))]
    assert len(decoded) == 3 and len(frames) == 3
    assert Image.open(io.BytesIO(webp)).n_frames == 3
    assert any(not np.array_equal(decoded[0], other) for other in decoded[1:])  # it moves
    assert "AnimateDiff: " in json.loads(body["info"])["infotexts"][0]
    hires = generate(server, steps=2, enable_hr=True, hr_scale=2, alwayson_scripts=_animatediff())
    assert len(hires["images"]) == 1 and any("enable_hr" in n for n in notes(hires))
    still = generate(server, steps=2, alwayson_scripts=_animatediff(enable=False))
    assert decode_png(still["images"][0]).size == (64, 64)  # enable false: plain txt2img
    # The model's own pipeline is untouched by the motion one built from it.
    assert np.array_equal(np.asarray(decode_png(still["images"][0]).convert("RGB"), dtype=np.int16), before)


def test_animatediff_refuses_video_encoders_it_lacks_and_unknown_modules(server: RunningServer) -> None:
    response = server.client.post("/sdapi/v1/txt2img", json={**SMALL, "alwayson_scripts": _animatediff(format=["MP4"])})
    assert response.status_code == 422
    assert "GIF" in response.text and "MP4" in response.text
    response = server.client.post("/sdapi/v1/txt2img", json={**SMALL, "alwayson_scripts": _animatediff(model="nope")})
    assert response.status_code == 422 and "tiny-mm" in response.text
    response = server.client.post("/sdapi/v1/txt2img", json={**SMALL, **xl(alwayson_scripts=_animatediff())})
    assert response.status_code == 422 and "SD 1.x" in response.text


def test_the_refiner_takes_the_latents_over_at_the_switch_point(server: RunningServer) -> None:
    plain = image(server, **xl(steps=4))
    # The model refining itself from the switch point walks the same schedule: the plain image again.
    itself = image(server, **xl(steps=4, refiner_checkpoint=TINY_XL, refiner_switch_at=0.5))
    assert np.abs(itself - plain).max() <= 2
    body = generate(server, **xl(steps=4, refiner_checkpoint=XL_REFINER, refiner_switch_at=0.5))
    refined = np.asarray(decode_png(body["images"][0]).convert("RGB"), dtype=np.int16)
    assert np.abs(refined - plain).max() > 10
    later = image(server, **xl(steps=4, refiner_checkpoint=XL_REFINER, refiner_switch_at=0.75))
    assert np.abs(later - refined).max() > 0
    assert f"Refiner: {XL_REFINER}" in json.loads(body["info"])["infotexts"][0]
    assert "Refiner switch at: 0.5" in json.loads(body["info"])["infotexts"][0]
    hires = generate(
        server, **xl(steps=4, refiner_checkpoint=XL_REFINER, refiner_switch_at=0.5, enable_hr=True, hr_scale=2)
    )
    assert decode_png(hires["images"][0]).size == (128, 128)  # refined first pass, then the hires pass
    sd = generate(server, refiner_checkpoint=XL_REFINER)  # SD 1.x base: said, not applied
    assert any("refiner_checkpoint" in n for n in notes(sd))
    response = server.client.post("/sdapi/v1/txt2img", json={**SMALL, "refiner_checkpoint": "nope"})
    assert response.status_code == 422 and "refiner_checkpoint" in response.text
