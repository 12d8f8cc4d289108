"""Generated requests through the local gateway to the real handlers on moto: never a 5xx, always JSON.

Hypothesis drives near-valid v1alpha2 bodies (each field either plausible or arbitrary JSON), arbitrary JSON
and bytes, and arbitrary task ids: 560 requests. Schemathesis adds requests generated from the exported
OpenAPI document and checks the answers against it (status codes, content types, response schemas).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from task_api import app
from task_api.openapi import build

from local_stack.gateway import LocalGateway
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack

api_stack = support.api_stack  # the fixture, shared by the API test modules

KEY = "fuzz-key"
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

json_leaf = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


GOOD_REFS = [
    "s3://input-bucket/in/a.png",
    "https://example.com/cat.png",
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==",
    "data:image/png;base64,iVBORw0KGgo=",
]
BAD_REFS = [
    "http://example.com/cat.png",
    "https://127.0.0.1/x.png",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/x",
    "file:///etc/passwd",
    "s3://B/k",
    "not base64 !!",
    "",
]


def requests(noisy: bool) -> st.SearchStrategy[Any]:
    """v1alpha2 bodies. Clean: every field inside the contract's bounds, for the task type it goes with.
    Noisy: each field is sometimes just outside its bounds and sometimes any JSON at all."""

    def pick(valid: st.SearchStrategy[Any], edge: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
        if not noisy:
            return valid
        return st.one_of(valid, valid, valid, *([edge] if edge is not None else []), json_value)

    image_ref = pick(st.sampled_from(GOOD_REFS), st.sampled_from(BAD_REFS))
    side = pick(st.sampled_from([64, 256, 512, 768, 1024]), st.integers(min_value=-8, max_value=4200))
    count = pick(st.integers(min_value=1, max_value=2), st.integers(min_value=-1, max_value=20))
    generation = st.fixed_dictionaries(
        {},
        optional={
            "prompt": pick(st.text(max_size=40)),
            "negative_prompt": pick(st.text(max_size=10)),
            "steps": pick(st.integers(min_value=1, max_value=150), st.integers(min_value=-3, max_value=300)),
            "width": side,
            "height": side,
            "batch_size": count,
            "n_iter": count,
            "cfg_scale": pick(st.floats(min_value=0, max_value=50), st.floats()),
            "seed": pick(st.integers(min_value=-1, max_value=2**32), st.integers(min_value=-(2**64), max_value=2**64)),
            "sampler_name": pick(st.sampled_from(["Euler a", "DPM++ 2M Karras"])),
            "denoising_strength": pick(st.floats(min_value=0, max_value=1), st.floats(min_value=-1, max_value=2)),
            "override_settings": pick(st.fixed_dictionaries({"sd_model_checkpoint": pick(st.text(max_size=20))})),
            "alwayson_scripts": pick(
                st.dictionaries(
                    st.sampled_from(["controlnet", "x"]),
                    st.fixed_dictionaries({"args": st.lists(st.fixed_dictionaries({"image": image_ref}), max_size=2)}),
                    max_size=2,
                )
            ),
        },
    )
    img2img = generation.flatmap(
        lambda g: st.fixed_dictionaries({"init_images": pick(st.lists(image_ref, min_size=1, max_size=3))}).map(
            lambda i: {**g, **i}
        )
    )
    single = st.fixed_dictionaries(
        {"image": image_ref},
        optional={
            "upscaling_resize": pick(st.floats(min_value=1, max_value=8), st.floats(min_value=-1, max_value=20)),
            "upscaling_resize_w": pick(st.integers(min_value=1, max_value=8192), st.integers(min_value=-1)),
            "resize_mode": pick(st.integers(min_value=0, max_value=1), st.integers(min_value=-1, max_value=3)),
        },
    )
    batch = st.fixed_dictionaries(
        {
            "imageList": pick(
                st.lists(
                    st.fixed_dictionaries({"data": image_ref}, optional={"name": st.text(max_size=8)}),
                    min_size=1,
                    max_size=4,
                ),
                st.lists(st.fixed_dictionaries({"data": image_ref}), max_size=18),
            )
        }
    )
    node = st.fixed_dictionaries(
        {
            "class_type": pick(st.sampled_from(["KSampler", "LoadImage", "SaveImage", "EmptyLatentImage"])),
            "inputs": pick(
                st.dictionaries(
                    st.sampled_from(["steps", "width", "height", "batch_size", "seed"]),
                    pick(st.integers(min_value=1, max_value=8), st.integers(min_value=-5, max_value=5000)),
                    max_size=4,
                )
                | st.fixed_dictionaries({"image": image_ref})
            ),
        }
    )
    workflow = st.dictionaries(st.text(min_size=1, max_size=4), pick(node), min_size=1, max_size=5)
    content_for = {
        "text-to-image": generation,
        "image-to-image": img2img,
        "extra-single-image": single,
        "extra-batch-image": batch,
        "pipeline": workflow,
    }

    @st.composite
    def body(draw: st.DrawFn) -> Any:
        tasktype = draw(pick(st.sampled_from(list(content_for)), st.just("txt2img")))
        metadata = draw(
            st.fixed_dictionaries(
                {
                    "runtime": pick(st.sampled_from(["sdruntime", "comfyruntime"]), st.sampled_from(["nope", ""])),
                    "tasktype": st.just(tasktype),
                },
                optional={
                    "id": pick(
                        st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), st.from_regex(r".{0,70}", fullmatch=True)
                    ),
                    "prefix": pick(
                        st.sampled_from(["output", "a/b", "ok_1/2.3"]), st.sampled_from(["a//b", "../x", "/abs"])
                    ),
                    "context": json_value
                    if noisy
                    else st.none() | st.text(max_size=10) | st.dictionaries(st.text(max_size=5), st.integers()),
                },
            )
        )
        content = draw(pick(content_for.get(tasktype, generation) if isinstance(tasktype, str) else generation))
        return draw(pick(st.just({"task": {"metadata": draw(pick(st.just(metadata))), "content": content}})))

    return body()


@pytest.fixture
def gateway(api_stack: ApiStack) -> Iterator[LocalGateway]:
    with LocalGateway(KEY, app.handler) as gw:
        yield gw


@pytest.fixture
def client(gateway: LocalGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": KEY}, timeout=30) as c:
        yield c


def check_answer(response: httpx.Response, allowed: set[int]) -> Any:
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics: how often each answer came
    assert response.status_code < 500, response.text
    assert response.status_code in allowed, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if response.status_code >= 400:
        assert set(body["error"]) == {"code", "message", "fields"}
        assert "Traceback" not in body["error"]["message"]
    return body


@settings(FUZZ, max_examples=300)
@given(body=st.one_of(requests(noisy=False), requests(noisy=True)), path=st.sampled_from(["/tasks", "/v1alpha2"]))
def test_near_valid_requests_are_accepted_or_refused_field_by_field(
    client: httpx.Client, api_stack: ApiStack, body: dict[str, Any], path: str
) -> None:
    response = client.post(path, content=json.dumps(body).encode())
    answer = check_answer(response, {200, 202, 400, 409, 413})
    if response.status_code in (200, 202):
        assert answer["status"] in {"queued", "cancelled"}  # an earlier example may have had the same id
        assert api_stack.item(answer["id"]) is not None, "an accepted task always has a status record"
    elif response.status_code == 400:
        assert answer["error"]["fields"], "a refused request names the offending fields"


@settings(FUZZ, max_examples=160)
@given(raw=st.one_of(json_value.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)))
def test_arbitrary_json_and_bytes_are_refused_cleanly(client: httpx.Client, raw: bytes) -> None:
    check_answer(client.post("/tasks", content=raw), {200, 202, 400, 409, 413})


@settings(FUZZ, max_examples=100)
@given(task_id=st.text(min_size=1, max_size=80), method=st.sampled_from(["GET", "DELETE"]))
def test_arbitrary_ids_are_404_or_a_task(client: httpx.Client, task_id: str, method: str) -> None:
    response = client.request(method, "/tasks/" + quote(task_id, safe=""))
    check_answer(response, {200, 202, 404, 409})


openapi = schemathesis.openapi.from_dict(build())


@openapi.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_conforms_to_its_openapi_document(case: Any, gateway: LocalGateway) -> None:
    case.call_and_validate(
        base_url=gateway.url,
        headers={"x-api-key": KEY},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ],
    )
