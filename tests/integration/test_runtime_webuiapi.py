"""A real AUTOMATIC1111 client library (``webuiapi`` from PyPI) against the runtime: every method it offers for
the core API and the ControlNet extension answers, in the shape the library reads, never a 404."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import webuiapi
from PIL import Image

from tests.runtime_helpers import TINY, TINY_ESRGAN, RunningServer, serve_subprocess, write_tiny_esrgan

# Methods not driven here, each with the reason; every other public method of WebUIApi is called below.
NOT_CORE = {
    "list_prompt_gen_models": "the prompt-gen extension, not A1111",
    "prompt_gen": "the prompt-gen extension, not A1111",
    "get_artist_categories": "removed from A1111 itself (404 there too)",
    "get_artists": "removed from A1111 itself (404 there too)",
    "custom_get": "generic helper, used by the controlnet_* methods",
    "custom_post": "generic helper, used by controlnet_detect",
    "get_endpoint": "URL helper",
    "post_and_get_api_result": "transport helper of txt2img/img2img",
    "async_post": "transport helper",
    "set_auth": "HTTP basic auth: the runtime sits behind the queue agent",
    "check_extensions": "called by the constructor",
    "util_wait_for_ready": "polls /progress like get_progress (called)",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from inference_api.animatediff import build_tiny_motion_module
    from inference_api.controlnet import build_tiny_controlnet
    from inference_api.embeddings import build_tiny_embedding
    from inference_api.lora import build_tiny_lora
    from inference_api.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("webuiapi")
    models = root / "models"
    build_tiny_model(models, name=TINY, seed=0)
    build_tiny_lora(models / TINY, models / "Lora" / "tiny-lora.safetensors")
    build_tiny_embedding(models / TINY, models / "embeddings" / "tiny-emb.safetensors")
    write_tiny_esrgan(models / "ESRGAN" / f"{TINY_ESRGAN}.safetensors")
    build_tiny_controlnet(models / TINY, models / "ControlNet" / "tiny-cn")
    build_tiny_motion_module(models / TINY, models / "AnimateDiff" / "tiny-mm")
    with serve_subprocess(models, root / "server.log", "--default-model", TINY) as running:
        yield running


@pytest.fixture(scope="module")
def api(server: RunningServer) -> webuiapi.WebUIApi:
    host, port = server.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=2)


def picture() -> Image.Image:
    return Image.new("RGB", (64, 64), (120, 30, 200))


SMALL: dict[str, Any] = {"prompt": "a photo of a cat", "width": 64, "height": 64, "seed": 3}


def test_every_public_method_is_driven_or_excused() -> None:
    public = {n for n, _ in inspect.getmembers(webuiapi.WebUIApi, inspect.isfunction) if not n.startswith("_")}
    driven = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    missing = public - driven - set(NOT_CORE)
    assert not missing, f"webuiapi methods without a test: {sorted(missing)}"


def test_txt2img(api: webuiapi.WebUIApi) -> None:
    result = api.txt2img(**SMALL, negative_prompt="blurry <lora:tiny-lora:0.5>")
    assert result.image.size == (64, 64)
    assert result.info["all_seeds"] == [3] and result.parameters["prompt"] == SMALL["prompt"]


def test_img2img(api: webuiapi.WebUIApi) -> None:
    result = api.img2img(images=[picture()], denoising_strength=0.5, **SMALL)
    assert result.image.size == (64, 64) and result.info["seed"] == 3
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    assert api.img2img(images=[picture()], mask_image=mask, **SMALL).image.size == (64, 64)


def test_extra_single_image(api: webuiapi.WebUIApi) -> None:
    result = api.extra_single_image(picture(), upscaler_1=TINY_ESRGAN, upscaling_resize=2)
    assert result.image.size == (128, 128) and isinstance(result.info, str)


def test_extra_batch_images(api: webuiapi.WebUIApi) -> None:
    result = api.extra_batch_images([picture(), picture()], upscaler_1="Lanczos", upscaling_resize=2)
    assert [im.size for im in result.images] == [(128, 128)] * 2


def test_png_info(api: webuiapi.WebUIApi) -> None:
    generated = api.txt2img(**SMALL, negative_prompt="ugly").image
    info = api.png_info(generated)
    assert info.info.startswith("a photo of a cat\nNegative prompt: ugly\n")
    assert info.parameters["Prompt"] == "a photo of a cat" and info.parameters["Negative prompt"] == "ugly"
    assert info.parameters["Seed"] == "3" and info.parameters["Size-1"] == "64"


def test_interrogate(api: webuiapi.WebUIApi) -> None:
    # No interrogator models here: a clear 422 naming the field, not a 404.
    with pytest.raises(RuntimeError) as excinfo:
        api.interrogate(picture())
    status, text = excinfo.value.args
    assert status == 422 and json.loads(text)["error"]["fields"][0]["field"] == "model"


def test_interrupt(api: webuiapi.WebUIApi) -> None:
    assert api.interrupt() == {}


def test_skip(api: webuiapi.WebUIApi) -> None:
    assert api.skip() is None


def test_get_options(api: webuiapi.WebUIApi) -> None:
    assert api.get_options()["sd_model_checkpoint"] == TINY


def test_set_options(api: webuiapi.WebUIApi) -> None:
    assert api.set_options({"CLIP_stop_at_last_layers": 1}) is None


def test_get_cmd_flags(api: webuiapi.WebUIApi) -> None:
    flags = api.get_cmd_flags()
    assert isinstance(flags, dict) and flags["api"] is True


def test_get_progress(api: webuiapi.WebUIApi) -> None:
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0


def test_get_samplers(api: webuiapi.WebUIApi) -> None:
    assert all(set(s) >= {"name", "aliases", "options"} for s in api.get_samplers())


def test_get_sd_vae(api: webuiapi.WebUIApi) -> None:
    assert api.get_sd_vae() == []


def test_get_upscalers(api: webuiapi.WebUIApi) -> None:
    assert TINY_ESRGAN in {u["name"] for u in api.get_upscalers()}


def test_get_latent_upscale_modes(api: webuiapi.WebUIApi) -> None:
    assert {"name": "Latent"} in api.get_latent_upscale_modes()


def test_get_loras(api: webuiapi.WebUIApi) -> None:
    assert [lora["name"] for lora in api.get_loras()] == ["tiny-lora"]


def test_get_sd_models(api: webuiapi.WebUIApi) -> None:
    assert all(set(m) >= {"title", "model_name", "hash", "sha256", "filename"} for m in api.get_sd_models())


def test_get_hypernetworks(api: webuiapi.WebUIApi) -> None:
    assert api.get_hypernetworks() == []


def test_get_face_restorers(api: webuiapi.WebUIApi) -> None:
    assert api.get_face_restorers() == []


def test_get_realesrgan_models(api: webuiapi.WebUIApi) -> None:
    assert [m["name"] for m in api.get_realesrgan_models()] == [TINY_ESRGAN]


def test_get_prompt_styles(api: webuiapi.WebUIApi) -> None:
    assert api.get_prompt_styles() == []


def test_refresh_checkpoints(api: webuiapi.WebUIApi) -> None:
    assert api.refresh_checkpoints() is None


def test_get_scripts(api: webuiapi.WebUIApi) -> None:
    scripts = api.get_scripts()
    assert set(scripts) == {"txt2img", "img2img"} and all(isinstance(v, list) for v in scripts.values())


def test_get_embeddings(api: webuiapi.WebUIApi) -> None:
    assert api.get_embeddings()["loaded"]["tiny-emb"]["vectors"] == 2


def test_get_memory(api: webuiapi.WebUIApi) -> None:
    memory = api.get_memory()
    assert memory["ram"]["total"] >= memory["ram"]["used"] > 0 and "cuda" in memory


def test_get_schedulers(api: webuiapi.WebUIApi) -> None:
    assert {"Karras", "Align Your Steps"} <= {s["label"] for s in api.get_schedulers()}


def test_controlnet_version(api: webuiapi.WebUIApi) -> None:
    assert api.controlnet_version() == 2


def test_controlnet_model_list(api: webuiapi.WebUIApi) -> None:
    assert api.controlnet_model_list() == ["tiny-cn"]


def test_controlnet_module_list(api: webuiapi.WebUIApi) -> None:
    assert api.controlnet_module_list() == ["none"]


def test_controlnet_units_in_txt2img_and_img2img(api: webuiapi.WebUIApi) -> None:
    unit = webuiapi.ControlNetUnit(image=picture(), module="none", model="tiny-cn", weight=0.8)
    plain = api.txt2img(**SMALL).image
    controlled = api.txt2img(**SMALL, controlnet_units=[unit])
    assert controlled.image.size == (64, 64) and controlled.image.tobytes() != plain.tobytes()
    assert "ControlNet 0:" in controlled.info["infotexts"][0]
    assert api.img2img(images=[picture()], controlnet_units=[unit], **SMALL).image.size == (64, 64)


def test_animatediff_through_the_client(api: webuiapi.WebUIApi) -> None:
    # The client sends "args": [False] for every call once /scripts lists animatediff: those are plain images.
    assert api.txt2img(**SMALL).image.format == "PNG"
    motion = webuiapi.AnimateDiff(model="tiny-mm.safetensors", video_length=3, format=["GIF"], closed_loop="N")
    video = api.txt2img(**{**SMALL, "steps": 2}, animatediff=motion).image
    assert video.format == "GIF" and video.n_frames == 3


def test_controlnet_detect(api: webuiapi.WebUIApi) -> None:
    result = api.controlnet_detect([picture()], module="none")
    assert [im.size for im in result.images] == [(64, 64)]
    with pytest.raises(RuntimeError) as excinfo:
        api.controlnet_detect([picture()], module="canny")
    assert excinfo.value.args[0] == 422 and "none" in excinfo.value.args[1]


def test_util_get_model_names(api: webuiapi.WebUIApi) -> None:
    assert api.util_get_model_names() == [TINY]


def test_util_get_sampler_names(api: webuiapi.WebUIApi) -> None:
    assert "DPM++ 2M" in api.util_get_sampler_names()


def test_util_get_scheduler_names(api: webuiapi.WebUIApi) -> None:
    assert "karras" in api.util_get_scheduler_names()


def test_util_set_model(api: webuiapi.WebUIApi) -> None:
    api.util_set_model(TINY)


def test_util_get_current_model(api: webuiapi.WebUIApi) -> None:
    assert api.util_get_current_model() == TINY


def test_no_route_the_library_knows_is_missing(server: RunningServer) -> None:
    # Every GET the library issues, straight: none is a 404.
    source = Path(inspect.getfile(webuiapi.WebUIApi)).read_text()
    for path in sorted(set(__import__("re").findall(r'self\.baseurl\}/([\w\-]+)"\)', source))):
        if path in {"artist-categories", "artists"}:
            continue
        assert requests.get(f"{server.url}/sdapi/v1/{path}", timeout=60).status_code != 404, path
