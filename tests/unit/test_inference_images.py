"""Image decoding guards, img2img resize modes, and the extras upscaling rules (resamplers, names, notes)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from inference_api import images
from inference_api.errors import InvalidRequest
from inference_api.http_schemas import ExtraSingleImageRequest
from inference_api.upscale import check_target, html_info, resolve_name, target_size, upscale_one
from tests.runtime_helpers import png_b64


def test_decode_accepts_plain_and_data_url_base64_and_flattens_alpha() -> None:
    plain = images.decode_image(png_b64((10, 6)), "image")
    assert plain.size == (10, 6) and plain.mode == "RGB"
    transparent = images.decode_image("data:image/png;base64," + png_b64((4, 4), (0, 0, 0), mode="RGBA"), "x")
    assert transparent.mode == "RGB"
    # Half-transparent black over white: A1111 flattens onto white, so the result is mid-grey.
    red = np.asarray(transparent)[0, 0, 0]
    assert 120 <= red <= 135


@pytest.mark.parametrize(
    ("data", "rule"),
    [("", "image"), ("not base64 at all!", "base64"), (base64.b64encode(b"hello").decode(), "image")],
)
def test_decode_errors_name_the_field(data: str, rule: str) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        images.decode_image(data, "init_images.3")
    assert excinfo.value.code == "invalid_request"
    assert [(f.field, f.rule) for f in excinfo.value.fields] == [("init_images.3", rule)]


def test_decompression_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_INPUT_PIXELS", 100)
    with pytest.raises(InvalidRequest) as excinfo:
        images.decode_image(png_b64((20, 20)), "image")
    assert excinfo.value.fields[0].rule == "max_pixels"


def test_png_carries_the_infotext() -> None:
    encoded = images.encode_png(Image.new("RGB", (8, 8)), "a cat\nSteps: 3")
    assert Image.open(io.BytesIO(base64.b64decode(encoded))).info["parameters"] == "a cat\nSteps: 3"


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_img2img_resize_modes_hit_the_target_size(mode: int) -> None:
    source = Image.new("RGB", (100, 50), (255, 0, 0))
    assert images.resize_for_img2img(source, 64, 64, mode).size == (64, 64)


def test_crop_and_resize_keeps_the_centre() -> None:
    source = Image.new("RGB", (90, 30), (0, 0, 255))
    source.paste((255, 0, 0), (30, 0, 60, 30))  # red centre square, blue sides
    out = images.resize_for_img2img(source, 32, 32, 1)
    assert np.asarray(out)[16, 16].tolist() == [255, 0, 0]
    assert np.asarray(out)[16, 1].tolist()[0] > 200


def _req(**kw: object) -> ExtraSingleImageRequest:
    return ExtraSingleImageRequest(image="x", **kw)


def test_target_size_by_factor_or_box() -> None:
    assert target_size(30, 20, _req(upscaling_resize=2.5)) == (75, 50)
    assert target_size(30, 20, _req(resize_mode=1, upscaling_resize_w=64, upscaling_resize_h=48)) == (64, 48)


def test_output_bound_is_a_field_error() -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        check_target(4000, 4000, _req(upscaling_resize=4))
    assert excinfo.value.fields[0].field == "upscaling_resize"


def test_names_resolve_to_files_and_a1111_aliases() -> None:
    available = {"RealESRGAN_x4plus", "custom"}
    assert resolve_name("R-ESRGAN 4x+", available) == "RealESRGAN_x4plus"
    assert resolve_name("CUSTOM", available) == "custom"
    assert resolve_name("SwinIR_4x", available) == ""


def test_model_upscaler_runs_until_big_enough_then_lanczos_to_exact_size() -> None:
    calls: list[tuple[int, int]] = []

    def doubler(name: str, image: Image.Image) -> Image.Image:
        calls.append(image.size)
        return image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST)

    outcome = upscale_one(Image.new("RGB", (10, 10)), _req(upscaling_resize=3, upscaler_1="m"), {"m"}, doubler)
    assert calls == [(10, 10), (20, 20)] and outcome.image.size == (30, 30) and outcome.notes == []


def test_crop_mode_fills_the_box_and_unknown_names_note_the_fallback() -> None:
    req = _req(
        resize_mode=1, upscaling_resize_w=40, upscaling_resize_h=10, upscaler_1="R-ESRGAN 4x+", gfpgan_visibility=1
    )
    outcome = upscale_one(Image.new("RGB", (20, 20)), req, set(), lambda n, i: i)
    assert outcome.image.size == (40, 10)
    assert any("R-ESRGAN 4x+" in n for n in outcome.notes) and any("face restoration" in n for n in outcome.notes)


def test_second_upscaler_is_blended_by_visibility() -> None:
    source = Image.effect_noise((16, 16), 80).convert("RGB")
    req = _req(upscaling_resize=2, upscaler_1="Nearest", upscaler_2="Lanczos", extras_upscaler_2_visibility=0.5)
    out = np.asarray(upscale_one(source, req, set(), lambda n, i: i).image, dtype=np.int16)
    nearest = np.asarray(source.resize((32, 32), Image.Resampling.NEAREST), dtype=np.int16)
    lanczos = np.asarray(source.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(out - (nearest + lanczos) / 2).max() <= 1


def test_html_info_escapes_request_text() -> None:
    text = html_info(_req(upscaler_1="<script>"), ["upscaler '<script>' is not available here; used Lanczos"])
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_crop_to_fit_cover_box_is_refused_before_any_allocation() -> None:
    # A 1x4000 input cropped to fit 2048x2048 would be scaled to 2048x8192000 (16.7 gigapixels) first.
    with pytest.raises(InvalidRequest) as excinfo:
        check_target(1, 4000, _req(resize_mode=1, upscaling_resize_w=2048, upscaling_resize_h=2048))
    (issue,) = excinfo.value.fields
    assert issue.field == "upscaling_crop" and issue.rule == "max_work_pixels" and "2048x8192000" in issue.message
    # The same input stretched (no crop) or cropped to a small box is harmless.
    check_target(1, 4000, _req(resize_mode=1, upscaling_resize_w=2048, upscaling_resize_h=2048, upscaling_crop=False))
    check_target(1, 4000, _req(resize_mode=1, upscaling_resize_w=4, upscaling_resize_h=4))


def test_model_passes_stop_before_an_intermediate_passes_the_work_bound() -> None:
    calls: list[tuple[int, int]] = []

    def quadrupler(name: str, image: Image.Image) -> Image.Image:
        calls.append(image.size)
        return Image.new("RGB", (image.width * 4, image.height * 4))

    # 2 x 3000 to 2048 x 3072, no crop: passes would go 8x12000, 32x48000 (side over 16384): stopped after one.
    req = _req(resize_mode=1, upscaling_resize_w=2048, upscaling_resize_h=3072, upscaling_crop=False, upscaler_1="m")
    outcome = upscale_one(Image.new("RGB", (2, 3000)), req, {"m"}, quadrupler)
    assert calls == [(2, 3000)] and outcome.image.size == (2048, 3072)
    assert any("stopped early" in n for n in outcome.notes)


def test_img2img_crop_resize_never_builds_the_cover_box() -> None:
    import tracemalloc

    thin = Image.new("RGB", (1, 4000), (9, 9, 9))
    tracemalloc.start()
    out = images.resize_for_img2img(thin, 2048, 2048, 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.size == (2048, 2048)
    assert peak < 64 * 1024 * 1024  # the cover box alone would be 2048x8192000x3 bytes = 47 GiB
