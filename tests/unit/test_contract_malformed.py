"""Malformed requests: each is refused with a ContractError naming the offending field, nothing else."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from contract import ContractError, parse_request

RUNTIMES = {"sdruntime", "comfy"}


def _t2i(**content: Any) -> dict[str, Any]:
    body = {
        "task": {
            "metadata": {"id": "t-1", "runtime": "sdruntime", "tasktype": "text-to-image", "prefix": "output"},
            "content": {"prompt": "a cat", "steps": 20, "width": 512, "height": 512},
        }
    }
    body["task"]["content"].update(content)
    return body


def _meta(**metadata: Any) -> dict[str, Any]:
    body = _t2i()
    for key, value in metadata.items():
        if value is _DROP:
            body["task"]["metadata"].pop(key)
        else:
            body["task"]["metadata"][key] = value
    return body


def _typed(tasktype: str, content: Any) -> dict[str, Any]:
    body = _t2i()
    body["task"]["metadata"]["tasktype"] = tasktype
    body["task"]["content"] = content
    return body


_DROP = object()
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="

# (case name, body, the field the error must name)
CASES: list[tuple[str, Any, str]] = [
    ("missing runtime", _meta(runtime=_DROP), "task.metadata.runtime"),
    ("unknown runtime", _meta(runtime="other"), "task.metadata.runtime"),
    ("runtime wrong type", _meta(runtime=3), "task.metadata.runtime"),
    ("bad id characters", _meta(id="a b/c"), "task.metadata.id"),
    ("id too long", _meta(id="x" * 65), "task.metadata.id"),
    ("empty id", _meta(id=""), "task.metadata.id"),
    ("id wrong type", _meta(id=12), "task.metadata.id"),
    ("path traversal in prefix", _meta(prefix="../../etc"), "task.metadata.prefix"),
    ("absolute prefix", _meta(prefix="/root"), "task.metadata.prefix"),
    ("prefix with empty segment", _meta(prefix="a//b"), "task.metadata.prefix"),
    ("prefix with dot-dot segment", _meta(prefix="a/../b"), "task.metadata.prefix"),
    ("prefix with backslash", _meta(prefix="a\\b"), "task.metadata.prefix"),
    ("unknown tasktype", _meta(tasktype="video-magic"), "task.metadata.tasktype"),
    ("missing tasktype", _meta(tasktype=_DROP), "task.metadata.tasktype"),
    ("steps 10000", _t2i(steps=10000), "task.content.steps"),
    ("steps zero", _t2i(steps=0), "task.content.steps"),
    ("steps as string", _t2i(steps="20"), "task.content.steps"),
    ("steps as float", _t2i(steps=20.5), "task.content.steps"),
    ("width 513", _t2i(width=513), "task.content.width"),
    ("height 4096", _t2i(height=4096), "task.content.height"),
    ("width too small", _t2i(width=8), "task.content.width"),
    ("batch size 100", _t2i(batch_size=100), "task.content.batch_size"),
    ("n_iter 50", _t2i(n_iter=50), "task.content.n_iter"),
    ("too many pixels", _t2i(width=2048, height=2048, batch_size=8), "task.content.batch_size"),
    ("cfg scale negative", _t2i(cfg_scale=-1), "task.content.cfg_scale"),
    ("denoising over 1", _t2i(denoising_strength=1.5), "task.content.denoising_strength"),
    ("seed below -1", _t2i(seed=-5), "task.content.seed"),
    ("prompt wrong type", _t2i(prompt=["a", "b"]), "task.content.prompt"),
    ("prompt too long", _t2i(prompt="x" * 30_000), "task.content.prompt"),
    ("5 MB prompt", _t2i(prompt="x" * 5_000_000), "(body)"),
    (
        "override settings wrong type",
        _t2i(override_settings={"sd_model_checkpoint": 5}),
        "task.content.override_settings.sd_model_checkpoint",
    ),
    ("non-object content", _typed("text-to-image", ["prompt"]), "task.content"),
    ("content null", _typed("text-to-image", None), "task.content"),
    ("img2img without init image", _typed("image-to-image", {"prompt": "x"}), "task.content.init_images"),
    (
        "img2img with http url",
        _typed("image-to-image", {"init_images": ["http://example.com/a.png"]}),
        "task.content.init_images.0",
    ),
    (
        "img2img with file url",
        _typed("image-to-image", {"init_images": ["file:///etc/passwd"]}),
        "task.content.init_images.0",
    ),
    (
        "img2img loopback url",
        _typed("image-to-image", {"init_images": ["https://127.0.0.1/a.png"]}),
        "task.content.init_images.0",
    ),
    (
        "img2img metadata url",
        _typed("image-to-image", {"init_images": ["https://169.254.169.254/latest"]}),
        "task.content.init_images.0",
    ),
    (
        "img2img private url",
        _typed("image-to-image", {"init_images": [PNG_B64, "https://10.1.2.3/a.png"]}),
        "task.content.init_images.1",
    ),
    (
        "img2img localhost name",
        _typed("image-to-image", {"init_images": ["https://localhost/a.png"]}),
        "task.content.init_images.0",
    ),
    (
        "img2img ipv6 loopback",
        _typed("image-to-image", {"init_images": ["https://[::1]/a.png"]}),
        "task.content.init_images.0",
    ),
    (
        "img2img decimal loopback",
        _typed("image-to-image", {"init_images": ["https://2130706433/a.png"]}),
        "task.content.init_images.0",
    ),
    ("img2img not base64", _typed("image-to-image", {"init_images": ["not an image!"]}), "task.content.init_images.0"),
    ("img2img bad s3 uri", _typed("image-to-image", {"init_images": ["s3://B/"]}), "task.content.init_images.0"),
    (
        "mask with credentials",
        _typed("image-to-image", {"init_images": [PNG_B64], "mask": "https://u:p@a.com/m"}),
        "task.content.mask",
    ),
    ("extra image missing", _typed("extra-single-image", {"upscaling_resize": 2}), "task.content.image"),
    (
        "upscale factor 100",
        _typed("extra-single-image", {"image": PNG_B64, "upscaling_resize": 100}),
        "task.content.upscaling_resize",
    ),
    ("extra batch empty", _typed("extra-batch-image", {"imageList": []}), "task.content.imageList"),
    (
        "extra batch item without data",
        _typed("extra-batch-image", {"imageList": [{"name": "a"}]}),
        "task.content.imageList.0.data",
    ),
    ("pipeline empty", _typed("pipeline", {}), "task.content"),
    ("pipeline node without class", _typed("pipeline", {"1": {"inputs": {}}}), "task.content.1.class_type"),
    ("pipeline node not object", _typed("pipeline", {"1": "KSampler"}), "task.content.1"),
    (
        "pipeline steps 10000",
        _typed("pipeline", {"3": {"class_type": "KSampler", "inputs": {"steps": 10000}}}),
        "task.content.3.inputs.steps",
    ),
    (
        "pipeline width 513",
        _typed("pipeline", {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 513}}}),
        "task.content.5.inputs.width",
    ),
    ("missing task", {"job": {}}, "task"),
    ("task not object", {"task": "text-to-image"}, "task"),
    ("missing metadata", {"task": {"content": {}}}, "task.metadata"),
    ("missing content", {"task": {"metadata": _t2i()["task"]["metadata"]}}, "task.content"),
    ("body is a list", [1, 2, 3], "(body)"),
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_names_the_field(body: Any, field: str) -> None:
    raw = json.dumps(body)
    with pytest.raises(ContractError) as info:
        parse_request(raw, runtimes=RUNTIMES)
    fields = [issue.field for issue in info.value.issues]
    assert field in fields, f"expected {field!r} among {fields}"
    payload = info.value.to_dict()["error"]
    assert payload["code"] in {"invalid_request", "request_too_large"}
    assert all(f["rule"] and f["message"] for f in payload["fields"])
    json.dumps(payload)  # the API returns it as is


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b"null", b"42", b'"text"', b'{"task": NaN}', b'{"task": {"metadata": Infinity}}']
)
def test_non_json_or_non_object_bodies(raw: bytes) -> None:
    with pytest.raises(ContractError) as info:
        parse_request(raw)
    assert info.value.issues[0].field in {"(body)", "task"}


def test_every_offending_field_is_listed_at_once() -> None:
    body = _t2i(steps=10000, width=513)
    body["task"]["metadata"]["id"] = "bad id"
    with pytest.raises(ContractError) as info:
        parse_request(json.dumps(body), runtimes=RUNTIMES)
    fields = {i.field for i in info.value.issues}
    assert {"task.metadata.id", "task.content.steps", "task.content.width"} <= fields


def test_type_errors_do_not_hide_bound_errors() -> None:
    with pytest.raises(ContractError) as info:
        parse_request(json.dumps(_t2i(prompt=3, steps=10000, width=513)), runtimes=RUNTIMES)
    fields = [i.field for i in info.value.issues]
    assert sorted(fields) == ["task.content.prompt", "task.content.steps", "task.content.width"]


def test_oversized_body_is_a_413_that_points_to_references() -> None:
    with pytest.raises(ContractError) as info:
        parse_request(json.dumps(_t2i(prompt="x" * 5_000_000)))
    assert info.value.status == 413
    assert "s3://" in info.value.issues[0].message


def test_unknown_runtime_error_lists_the_configured_ones() -> None:
    with pytest.raises(ContractError) as info:
        parse_request(json.dumps(_meta(runtime="nope")), runtimes=RUNTIMES)
    assert "comfy, sdruntime" in info.value.issues[0].message


def test_missing_id_is_generated_and_input_untouched() -> None:
    body = _t2i()
    del body["task"]["metadata"]["id"]
    before = copy.deepcopy(body)
    request = parse_request(body)
    assert request.task.metadata.id
    assert body == before
