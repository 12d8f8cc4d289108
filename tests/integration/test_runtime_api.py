"""The runtime's AUTOMATIC1111 API end to end: the real CLI server, real diffusers, tiny models on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference_api.samplers import sampler_names
from tests.runtime_helpers import (
    TINY,
    TINY_B,
    TINY_ESRGAN,
    TINY_SINGLE,
    TINY_XL,
    RunningServer,
    build_model_dir,
    decode_png,
    png_b64,
    serve_subprocess,
    wait_until,
)

SMALL = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("runtime")
    models = build_model_dir(root / "models")
    with serve_subprocess(models, root / "server.log", "--default-model", TINY, "--cache-size", "2") as running:
        yield running


def txt2img(server: RunningServer, **overrides: Any) -> dict[str, Any]:
    return server.generate("txt2img", {**SMALL, **overrides})


def pixels(data: str) -> np.ndarray:
    return np.asarray(decode_png(data).convert("RGB"), dtype=np.int16)


def error_fields(response: Any) -> list[str]:
    body = response.json()
    assert set(body) >= {"error", "detail"}
    assert set(body["error"]) == {"code", "message", "fields"}
    return [f["field"] for f in body["error"]["fields"]]


def test_health_ready_and_model_list(server: RunningServer) -> None:
    assert server.client.get("/health").json() == {"status": "ok"}
    ready = server.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model"] == TINY and ready.json()["loaded"] is True
    titles = {m["title"] for m in server.client.get("/sdapi/v1/sd-models").json()}
    assert titles == {TINY, TINY_B, TINY_SINGLE, TINY_XL}
    upscalers = {u["name"] for u in server.client.get("/sdapi/v1/upscalers").json()}
    assert TINY_ESRGAN in upscalers and "Lanczos" in upscalers


def test_txt2img_returns_pngs_seeds_and_info(server: RunningServer) -> None:
    body = txt2img(server, seed=1234, batch_size=2, n_iter=2, negative_prompt="blurry")
    assert len(body["images"]) == 4
    for data in body["images"]:
        image = decode_png(data)
        assert image.size == (64, 64) and image.format == "PNG"
        assert "Seed: " in image.info["parameters"]  # A1111 keeps the infotext in the PNG
    info = json.loads(body["info"])
    assert info["all_seeds"] == [1234, 1235, 1236, 1237] and info["seed"] == 1234
    assert info["all_prompts"] == [SMALL["prompt"]] * 4 and info["all_negative_prompts"] == ["blurry"] * 4
    assert info["sd_model_name"] == TINY and info["sampler_name"] == "Euler"
    assert len(info["infotexts"]) == 4 and "Seed: 1237" in info["infotexts"][3]
    assert info["timings"]["pipeline_seconds"] > 0
    assert body["parameters"]["prompt"] == SMALL["prompt"] and body["parameters"]["batch_size"] == 2


def test_same_seed_same_image_and_per_image_seeds(server: RunningServer) -> None:
    first = txt2img(server, seed=77)["images"][0]
    again = txt2img(server, seed=77)["images"][0]
    other = txt2img(server, seed=78)["images"][0]
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))
    # The second image of a batch seeded 77 has seed 78 and is the image a lone seed-78 request gets.
    batch = txt2img(server, seed=77, batch_size=2)["images"]
    assert np.abs(pixels(batch[1]) - pixels(other)).max() <= 2


def test_random_seed_is_reported_and_reproducible(server: RunningServer) -> None:
    body = txt2img(server, seed=-1)
    seed = json.loads(body["info"])["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert np.array_equal(pixels(body["images"][0]), pixels(txt2img(server, seed=seed)["images"][0]))


@pytest.mark.parametrize("name", sampler_names())
def test_every_sampler_is_reproducible_from_its_seed(server: RunningServer, name: str) -> None:
    body = txt2img(server, sampler_name=name, seed=5, batch_size=2)
    info = json.loads(body["info"])
    assert decode_png(body["images"][0]).size == (64, 64)
    assert name.startswith(info["sampler_name"])
    if name.endswith((" Karras", " Exponential")):
        assert info["scheduler"] == name.rsplit(" ", 1)[1]
    # The same request again: the same PNGs, byte for byte (SDE samplers included: their noise is seeded
    # per image). The second image of the batch has its own seed, so it differs from the first.
    again = txt2img(server, sampler_name=name, seed=5, batch_size=2)
    assert again["images"] == body["images"]
    assert not np.array_equal(pixels(body["images"][0]), pixels(body["images"][1]))


@pytest.mark.parametrize(
    ("a", "b", "apart"),
    [("Euler", "Euler a", 8), ("DPM++ 2M", "DPM++ 2M SDE", 8), ("DPM++ SDE", "DPM++ 2M SDE", 8), ("Euler", "DDIM", 0)],
)
def test_samplers_give_different_images(server: RunningServer, a: str, b: str, apart: int) -> None:
    # Same seed, another sampler: another image (stochastic samplers far apart; deterministic ones converge
    # close on the tiny random model, but not to the same pixels).
    first = txt2img(server, sampler_name=a, seed=6)["images"][0]
    second = txt2img(server, sampler_name=b, seed=6)["images"][0]
    assert np.abs(pixels(first) - pixels(second)).max() > apart


def test_scheduler_field_and_alias(server: RunningServer) -> None:
    info = json.loads(txt2img(server, sampler_name="DPM++ 2M", scheduler="Karras")["info"])
    assert (info["sampler_name"], info["scheduler"]) == ("DPM++ 2M", "Karras")
    info = json.loads(txt2img(server, sampler_index="k_euler_a")["info"])
    assert info["sampler_name"] == "Euler a"
    # A schedule diffusers can only approximate for a sampler is reported, not fatal (A1111 accepts the pair).
    info = json.loads(txt2img(server, sampler_name="Heun", scheduler="KL Optimal")["info"])
    assert "approximated" in " ".join(info["extra_generation_params"]["notes"])


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"sampler_name": "Nope"}, "sampler_name", "one_of"),
        ({"sampler_name": "DPM fast"}, "sampler_name", "unsupported"),
        ({"scheduler": "Wobbly"}, "scheduler", "one_of"),
        (
            {"override_settings": {"sd_model_checkpoint": "missing.safetensors"}},
            "override_settings.sd_model_checkpoint",
            "one_of",
        ),
    ],
)
def test_unknown_names_are_422_naming_the_field(server: RunningServer, body: dict, field: str, rule: str) -> None:
    response = server.client.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 422
    issue = response.json()["error"]["fields"][0]
    assert (issue["field"], issue["rule"]) == (field, rule)
    if field == "sampler_name":
        assert "Euler a" in issue["message"] and "DPM++ 2M" in issue["message"]
    if field.startswith("override"):
        assert TINY in issue["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("txt2img", {**SMALL, "width": 65}, "width"),
        ("txt2img", {**SMALL, "height": 4096}, "height"),
        ("txt2img", {**SMALL, "steps": 0}, "steps"),
        ("txt2img", {**SMALL, "steps": 151}, "steps"),
        ("txt2img", {**SMALL, "batch_size": 64}, "batch_size"),
        ("txt2img", {**SMALL, "cfg_scale": "loud"}, "cfg_scale"),
        ("txt2img", {**SMALL, "seed": -5}, "seed"),
        ("txt2img", {**SMALL, "prompt": ["not", "a", "string"]}, "prompt"),
        ("img2img", {**SMALL}, "init_images"),
        ("img2img", {**SMALL, "init_images": ["%%%not base64%%%"]}, "init_images.0"),
        ("img2img", {**SMALL, "init_images": ["aGVsbG8="]}, "init_images.0"),
        ("img2img", {**SMALL, "init_images": [png_b64()], "denoising_strength": 2}, "denoising_strength"),
        ("extra-single-image", {"image": "aGVsbG8="}, "image"),
        ("extra-single-image", {"image": png_b64(), "upscaling_resize": 100}, "upscaling_resize"),
        ("extra-batch-images", {"imageList": []}, "imageList"),
        ("extra-batch-images", {"imageList": [{"data": png_b64()}, {"data": "@@"}]}, "imageList.1.data"),
    ],
)
def test_bad_payloads_are_422_naming_the_field(server: RunningServer, path: str, body: dict, field: str) -> None:
    response = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert response.status_code == 422, response.text
    assert field in error_fields(response)
    locs = [".".join(str(p) for p in d["loc"][1:]) for d in response.json()["detail"]]
    assert field in locs  # the A1111/FastAPI shape carries the same field
    assert server.client.get("/health").status_code == 200


def test_non_json_body_is_a_clean_422(server: RunningServer) -> None:
    response = server.client.post(
        "/sdapi/v1/txt2img", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_img2img_with_base64_input(server: RunningServer) -> None:
    init = png_b64((80, 72), (10, 200, 10))
    response = server.client.post(
        "/sdapi/v1/img2img",
        json={**SMALL, "init_images": [f"data:image/png;base64,{init}"], "denoising_strength": 0.6, "seed": 9},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert decode_png(body["images"][0]).size == (64, 64)
    assert body["parameters"]["init_images"] is None  # input is not echoed back
    info = json.loads(body["info"])
    assert info["denoising_strength"] == 0.6 and info["all_seeds"] == [9]
    # The init image matters: another input with the same seed gives another output.
    other = server.client.post(
        "/sdapi/v1/img2img", json={**SMALL, "init_images": [png_b64((80, 72), (250, 250, 250))], "seed": 9}
    )
    assert not np.array_equal(pixels(body["images"][0]), pixels(other.json()["images"][0]))


def test_img2img_with_mask_repaints_only_the_masked_side(server: RunningServer) -> None:
    init = _b64(Image.effect_noise((64, 64), 80).convert("RGB"))
    mask = Image.new("RGB", (64, 64), (0, 0, 0))
    mask.paste((255, 255, 255), (32, 0, 64, 64))  # white: repaint the right half
    body = {**SMALL, "init_images": [init], "denoising_strength": 1.0, "mask": _b64(mask), "mask_blur": 0}
    images = []
    for seed in (12, 13):
        response = server.client.post("/sdapi/v1/img2img", json={**body, "seed": seed})
        assert response.status_code == 200, response.text
        assert json.loads(response.json()["info"])["is_using_inpainting_conditioning"] is True
        images.append(pixels(response.json()["images"][0]))
    # Another seed repaints the masked (right) side differently; the kept side stays the init image's.
    change = np.abs(images[0] - images[1]).mean(axis=(0, 2))
    left, right = change[:24].mean(), change[40:].mean()  # away from the seam the VAE blurs
    assert right > 3 * left, (left, right)
    # Without the mask, the seed changes the left side as much.
    unmasked = [
        pixels(server.client.post("/sdapi/v1/img2img", json={**body, "mask": None, "seed": s}).json()["images"][0])
        for s in (12, 13)
    ]
    assert np.abs(unmasked[0] - unmasked[1])[:, :24].mean() > 3 * left


@pytest.mark.parametrize("strength", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_img2img_answers_any_strength(server: RunningServer, strength: float) -> None:
    # 4 steps at 0.05 is int(4 * 0.05) == 0 steps in diffusers: A1111 runs at least one (or none at 0).
    init = png_b64((64, 64), (30, 160, 60))
    body = {**SMALL, "steps": 4, "init_images": [init], "denoising_strength": strength, "seed": 3}
    response = server.client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["info"])["denoising_strength"] == strength
    assert server.client.post("/sdapi/v1/img2img", json=body).json()["images"] == response.json()["images"]


def test_extra_single_image_unknown_upscaler_falls_back_to_lanczos(server: RunningServer) -> None:
    source = Image.effect_noise((40, 30), 60).convert("RGB")
    buffer_b64 = _b64(source)
    response = server.client.post(
        "/sdapi/v1/extra-single-image",
        json={"image": buffer_b64, "upscaling_resize": 4, "upscaler_1": "R-ESRGAN 4x+", "resize_mode": 0},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "R-ESRGAN 4x+" in body["html_info"] and "Lanczos" in body["html_info"]
    result = decode_png(body["image"])
    assert result.size == (160, 120)
    expected = source.resize((160, 120), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(expected))


def test_extra_single_image_with_an_esrgan_model(server: RunningServer) -> None:
    source = Image.effect_noise((24, 20), 60).convert("RGB")
    response = server.client.post(
        "/sdapi/v1/extra-single-image", json={"image": _b64(source), "upscaling_resize": 2, "upscaler_1": TINY_ESRGAN}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "Note" not in body["html_info"]
    result = decode_png(body["image"])
    assert result.size == (48, 40)
    lanczos = source.resize((48, 40), Image.Resampling.LANCZOS)
    assert not np.array_equal(np.asarray(result.convert("RGB")), np.asarray(lanczos))


def test_extra_batch_images_resize_to_size(server: RunningServer) -> None:
    response = server.client.post(
        "/sdapi/v1/extra-batch-images",
        json={
            "imageList": [{"data": png_b64((32, 32)), "name": "a.png"}, {"data": png_b64((50, 20)), "name": "b.png"}],
            "resize_mode": 1,
            "upscaling_resize_w": 96,
            "upscaling_resize_h": 64,
            "upscaler_1": "Lanczos",
        },
    )
    assert response.status_code == 200, response.text
    assert [decode_png(d).size for d in response.json()["images"]] == [(96, 64), (96, 64)]


def test_model_switch_via_options_and_override(server: RunningServer) -> None:
    client = server.client
    base = txt2img(server, seed=3)["images"][0]
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": TINY_B}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == TINY_B
    switched = txt2img(server, seed=3)
    assert json.loads(switched["info"])["sd_model_name"] == TINY_B
    assert not np.array_equal(pixels(base), pixels(switched["images"][0]))
    # Per-request override (the queue agent's DYNAMIC_SD_MODEL path) leaves the selected model alone.
    for name, model_name in ((TINY_SINGLE, "tiny-sd-single"), (TINY_XL, TINY_XL)):
        body = txt2img(server, override_settings={"sd_model_checkpoint": name})
        assert json.loads(body["info"])["sd_model_name"] == model_name
        assert decode_png(body["images"][0]).size == (64, 64)
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == TINY_B
    # A1111 titles carry a hash suffix; they still resolve.
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": f"{TINY} [0123abcd]"}).status_code == 200
    again = txt2img(server, seed=3)["images"][0]
    assert np.array_equal(pixels(base), pixels(again))
    bad = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert bad.status_code == 422 and error_fields(bad) == ["sd_model_checkpoint"]
    stats = client.get("/stats").json()
    assert len(stats["loaded_models"]) <= 2 and stats["cache"]["evictions"] >= 1  # bounded LRU


def test_interrupt_answers_200_with_the_images_so_far(server: RunningServer) -> None:
    result: dict[str, Any] = {}
    steps_before = server.client.get("/stats").json()["sampling_steps"]

    def long_job() -> None:
        result["response"] = server.client.post(
            "/sdapi/v1/txt2img", json={**SMALL, "steps": 150, "width": 256, "height": 256}
        )

    worker = threading.Thread(target=long_job)
    worker.start()
    # /progress answers while the worker thread is busy, and shows the job stepping.
    progress = wait_until(
        lambda: (p := server.client.get("/sdapi/v1/progress").json())["state"]["sampling_step"] > 0 and p,
        what="the long job to start sampling",
    )
    assert progress["state"]["job"] == "txt2img" and progress["state"]["sampling_steps"] == 150
    assert server.client.post("/sdapi/v1/interrupt").status_code == 200
    worker.join(timeout=120)
    response = result["response"]
    assert response.status_code == 200, response.text  # as A1111: what was generated so far
    assert decode_png(response.json()["images"][0]).size == (256, 256)
    notes = json.loads(response.json()["info"])["extra_generation_params"]["notes"]
    assert any("interrupted" in n for n in notes)
    stats = server.client.get("/stats").json()
    assert stats["interrupted"] >= 1
    assert stats["sampling_steps"] - steps_before < 150  # it stopped early
    # The server goes on: progress is idle again and the next job runs normally.
    assert server.client.get("/sdapi/v1/progress").json()["state"]["job"] == ""
    assert txt2img(server)["images"]


def test_metrics_and_stats(server: RunningServer) -> None:
    txt2img(server)
    text = server.client.get("/metrics").text
    assert "inference_api_requests_total" in text and "inference_api_batcher_batches_total" in text
    assert "inference_api_ready 1.0" in text and "inference_api_healthy 1.0" in text
    assert "inference_api_consecutive_failures 0.0" in text and "inference_api_abandoned_total" in text
    stats = server.client.get("/stats").json()
    assert stats["requests"] >= 1 and stats["images"] >= 1 and stats["device"] == "cpu"


def _b64(image: Image.Image) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_helpers_write_models_where_expected(tmp_path: Path) -> None:
    models = build_model_dir(tmp_path, xl=False, esrgan=False)
    assert (models / TINY / "model_index.json").is_file()
    assert (models / TINY_SINGLE).is_file() and (models / "configs" / "tiny-sd-single" / "model_index.json").is_file()


def test_unsupported_a1111_features_are_noted_not_fatal(server: RunningServer) -> None:
    body = txt2img(
        server, alwayson_scripts={"ADetailer": {"args": []}}, styles=["cinematic"], refiner_checkpoint=TINY_B
    )
    notes = " ".join(json.loads(body["info"])["extra_generation_params"]["notes"])
    assert "ADetailer" in notes and "styles" in notes and "refiner_checkpoint" in notes


def test_a_script_the_runtime_does_not_run_is_refused_not_ignored(server: RunningServer) -> None:
    # A face detailer answered without its pass would be a wrong success.
    adetailer = {"args": [{"ad_model": "face_yolov8n.pt"}]}
    for img2img in (False, True):
        extra = {"init_images": [png_b64()]} if img2img else {}
        endpoint = "img2img" if img2img else "txt2img"
        response = server.client.post(
            f"/sdapi/v1/{endpoint}", json={**SMALL, **extra, "alwayson_scripts": {"ADetailer": adetailer}}
        )
        assert response.status_code == 422, response.text
        (issue,) = response.json()["error"]["fields"]
        assert issue["field"] == "alwayson_scripts" and issue["rule"] == "unsupported"
        assert "ADetailer" in issue["message"]
    # Entries that ask for nothing (switched off, no args) are accepted, as webui clients send them.
    idle = {"ADetailer": {"args": [{"enable": False}]}, "ControlNet": {"args": [{"enabled": False}] * 2}}
    body = txt2img(server, alwayson_scripts=idle)
    assert "ADetailer" in " ".join(json.loads(body["info"])["extra_generation_params"]["notes"])


def test_sampler_and_scheduler_lists(server: RunningServer) -> None:
    samplers = {s["name"]: s for s in server.client.get("/sdapi/v1/samplers").json()}
    assert set(samplers) == set(sampler_names()) and "k_euler_a" in samplers["Euler a"]["aliases"]
    labels = {s["label"] for s in server.client.get("/sdapi/v1/schedulers").json()}
    assert {"Automatic", "Karras", "Exponential"} <= labels


def test_nulls_mean_defaults_and_sdxl_img2img(server: RunningServer) -> None:
    body = txt2img(server, seed=None, styles=None, sampler_name=None, override_settings=None)
    assert json.loads(body["info"])["sampler_name"] == "Euler"
    response = server.client.post(
        "/sdapi/v1/img2img",
        json={**SMALL, "init_images": [png_b64()], "override_settings": {"sd_model_checkpoint": TINY_XL}},
    )
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["info"])["sd_model_name"] == TINY_XL


def test_long_prompts_are_not_truncated(server: RunningServer) -> None:
    words = "a photo of a cat in a detailed fantasy landscape".split()
    long_prompt = " ".join(words * 12)  # ~108 tokens: two CLIP chunks
    head = " ".join((words * 12)[:75])  # what truncation would have kept
    full = txt2img(server, prompt=long_prompt, seed=4)
    cut = txt2img(server, prompt=head, seed=4)
    assert not np.array_equal(pixels(full["images"][0]), pixels(cut["images"][0]))
    assert json.loads(full["info"])["prompt"] == long_prompt


def test_clip_skip_changes_the_image(server: RunningServer) -> None:
    base = txt2img(server, seed=8)["images"][0]
    skipped = txt2img(server, seed=8, clip_skip=2)
    assert json.loads(skipped["info"])["clip_skip"] == 2
    assert not np.array_equal(pixels(base), pixels(skipped["images"][0]))
    via_override = txt2img(server, seed=8, override_settings={"CLIP_stop_at_last_layers": 2})
    assert np.array_equal(pixels(skipped["images"][0]), pixels(via_override["images"][0]))


def test_extreme_aspect_ratio_crop_to_fit_is_refused_not_allocated(server: RunningServer) -> None:
    """The review's runtime memory bomb: a valid 1x4000 PNG (a few hundred bytes) cropped to fit 2048x2048
    would be scaled to cover 2048x8192000 first. It is a 422 naming the field (the agent never retries a
    4xx), and the runtime stays up and serves the next request."""
    thin = png_b64((1, 4000))
    body = {"image": thin, "resize_mode": 1, "upscaling_resize_w": 2048, "upscaling_resize_h": 2048}
    response = server.client.post("/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == 422, response.text
    assert error_fields(response) == ["upscaling_crop"]
    assert "2048x8192000" in response.json()["error"]["message"]
    batch = {"imageList": [{"data": thin, "name": "thin.png"}], **{k: v for k, v in body.items() if k != "image"}}
    response = server.client.post("/sdapi/v1/extra-batch-images", json=batch)
    assert response.status_code == 422 and error_fields(response) == ["upscaling_crop"]
    # img2img's crop-and-resize samples the centre of the same input straight into the target size.
    response = server.client.post(
        "/sdapi/v1/img2img", json={**SMALL, "init_images": [thin], "resize_mode": 1, "denoising_strength": 0.5}
    )
    assert response.status_code == 200, response.text
    assert server.client.get("/health").json() == {"status": "ok"}


def test_single_file_models_get_a1111_short_hashes_once_loaded(server: RunningServer) -> None:
    import hashlib

    body = txt2img(server, override_settings={"sd_model_checkpoint": TINY_SINGLE})
    path = next(m["filename"] for m in server.client.get("/sdapi/v1/sd-models").json() if m["title"] == TINY_SINGLE)
    expected = hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def listed() -> dict[str, Any] | None:
        items = server.client.get("/sdapi/v1/sd-models").json()
        item = next(m for m in items if m["title"] == TINY_SINGLE)
        return item if item["sha256"] else None

    item = wait_until(listed, what="the single file's hash")
    assert item["sha256"] == expected and item["hash"] == expected[:10]
    body = txt2img(server, override_settings={"sd_model_checkpoint": TINY_SINGLE})
    info = json.loads(body["info"])
    assert info["sd_model_hash"] == expected[:10] and f"Model hash: {expected[:10]}" in info["infotexts"][0]
