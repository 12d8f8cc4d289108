"""The replaced sample's clients against our API: its routes (v1alpha1 too), its URLs (trailing and doubled
slashes), its payloads. The real handlers behind the local gateway over HTTP, moto behind them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from task_api import app

from contract import parse_queue_body
from contract.legacy import ROUTING_KEYS
from local_stack.gateway import LocalGateway
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack, call

api_stack = support.api_stack

KEY = "sample-client-key"
MODEL = "sd_xl_turbo_1.0.safetensors"
CATALOG = {
    "sdruntime": {"type": "sdwebui", "modelFilename": MODEL, "dynamicModel": False},
    "comfyruntime": {"type": "comfyui"},
}


@pytest.fixture
def typed(api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch) -> ApiStack:
    """The API stack with the runtimes' types and models known, as the deployed functions get them."""
    monkeypatch.setenv("RUNTIME_CATALOG", json.dumps(CATALOG))
    return api_stack


@pytest.fixture
def client(typed: ApiStack) -> Iterator[httpx.Client]:
    with LocalGateway(KEY, app.handler) as gw, httpx.Client(base_url=gw.url, headers={"x-api-key": KEY}) as c:
        yield c


@dataclass(frozen=True)
class Raw:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _raw(client: httpx.Client, method: str, target: str, body: Any = None) -> Raw:
    """Send ``target`` verbatim on the request line (httpx folds ``//`` into ``/``; the sample's scripts don't)."""
    url = client.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        content = json.dumps(body).encode() if body is not None else None
        conn.request(method, target, body=content, headers={"x-api-key": KEY, "content-type": "application/json"})
        response = conn.getresponse()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode())
    finally:
        conn.close()


def t2i(task_id: str, runtime: str = "sdruntime") -> dict[str, Any]:
    meta = {"id": task_id, "runtime": runtime, "tasktype": "text-to-image"}
    return {"task": {"metadata": meta, "content": {"prompt": "p"}}}


def v1(task_id: str, **scripts: Any) -> dict[str, Any]:
    routing = {"task": "text-to-image", "sd_model_checkpoint": MODEL, "id_task": task_id, "save_dir": "outputs"}
    return {"prompt": "a dog", "steps": 4, "alwayson_scripts": {**routing, **scripts}}


@pytest.mark.parametrize("form", ["{}", "{}/", "/{}/", "/{}", "{}//"])
def test_every_route_answers_with_and_without_slashes(client: httpx.Client, typed: ApiStack, form: str) -> None:
    n = form.replace("/", "s").replace("{}", "x")
    ok = _raw(client, "POST", form.format("/v1alpha2"), t2i(f"a{n}"))
    assert ok.status_code == 200, ok.text
    assert _raw(client, "POST", form.format("/v1alpha1"), v1(f"b{n}")).status_code == 200
    created = _raw(client, "POST", form.format("/tasks"), t2i(f"c{n}"))
    assert created.status_code == 202 and created.headers["location"] == f"/tasks/c{n}"
    for task_id in (f"a{n}", f"b{n}", f"c{n}"):
        status = _raw(client, "GET", form.format(f"/tasks/{task_id}"))
        assert status.status_code == 200 and status.json()["status"] == "queued", status.text
    assert _raw(client, "DELETE", form.format(f"/tasks/a{n}")).json()["status"] == "cancelled"
    ids = [m["body"]["id"] for m in typed.drain("sdruntime")]
    assert sorted(ids) == sorted([f"a{n}", f"b{n}", f"c{n}"])


def test_unknown_paths_stay_404(client: httpx.Client) -> None:
    for target in ("/v1alpha3/", "//", "/tasks/a/b", "/v1alpha2x"):
        assert _raw(client, "POST", target, {}).status_code in {404, 405}, target


def test_v1alpha1_answers_like_the_sample_and_queues_an_ordinary_task(client: httpx.Client, typed: ApiStack) -> None:
    body = v1("legacy-1", uid="u-1", override_settings={"CLIP_stop_at_last_layers": 2}, AnimateDiff={"args": []})
    answer = client.post("/v1alpha1/", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["id_task"] == got["id"] == "legacy-1"
    assert got["sd_model_checkpoint"] == MODEL
    assert got["output_location"] == f"s3://{typed.bucket}/outputs/legacy-1"
    assert got["runtime"] == "sdruntime" and got["status"] == "queued"
    (queued,) = typed.drain("sdruntime")
    assert queued["attributes"]["runtime"]["StringValue"] == "sdruntime"
    assert queued["attributes"]["sd_model_checkpoint"]["StringValue"] == MODEL
    message = parse_queue_body(json.dumps(queued["body"]))
    assert message.checkpoint == MODEL and message.prefix == "outputs"
    assert message.content["alwayson_scripts"] == {"AnimateDiff": {"args": []}}
    assert message.content["override_settings"] == {"CLIP_stop_at_last_layers": 2}
    status = client.get("/tasks/legacy-1")
    assert status.status_code == 200 and status.json()["tasktype"] == "text-to-image"
    # A resubmit with the same id and body is the same task.
    again = client.post("/v1alpha1", json=body)
    assert again.status_code == 200 and again.json()["sd_model_checkpoint"] == MODEL
    assert typed.drain("sdruntime") == []


def test_v1alpha1_field_errors(client: httpx.Client, typed: ApiStack) -> None:
    body = v1("bad id", task="pipeline")
    body["steps"] = 0
    answer = client.post("/v1alpha1/", json=body)
    assert answer.status_code == 400
    fields = {f["field"] for f in answer.json()["error"]["fields"]}
    assert fields == {"alwayson_scripts.task", "alwayson_scripts.id_task"}
    answer = client.post("/v1alpha1/", json={**v1("ok"), "steps": 0, "width": 13})
    assert {f["field"] for f in answer.json()["error"]["fields"]} == {"steps", "width"}
    assert typed.drain("sdruntime") == []


def test_v1alpha1_checks_of_the_queued_task_name_the_fields_as_written(client: httpx.Client, typed: ApiStack) -> None:
    body = v1("s3-1", task="image-to-image", image_link="s3://someone-elses-bucket/cat.png")
    answer = client.post("/v1alpha1", json=body)
    assert answer.status_code == 400, answer.text
    (issue,) = answer.json()["error"]["fields"]
    assert issue["field"] == "alwayson_scripts.image_link" and issue["rule"] == "s3_input"
    assert typed.item("s3-1") is None


def test_v1alpha1_model_no_runtime_serves_is_refused(client: httpx.Client, typed: ApiStack) -> None:
    answer = client.post("/v1alpha1", json=v1("m-1", sd_model_checkpoint="other.safetensors"))
    assert answer.status_code == 400
    (issue,) = answer.json()["error"]["fields"]
    assert issue["field"] == "alwayson_scripts.sd_model_checkpoint" and MODEL in issue["message"]


def test_v1alpha1_model_goes_to_a_dynamic_runtime(api_stack: ApiStack, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = {**CATALOG, "sdruntime": {"type": "diffusers", "dynamicModel": True}}
    monkeypatch.setenv("RUNTIME_CATALOG", json.dumps(catalog))
    answer = call(app.handler, "POST", "/v1alpha1", v1("d-1", sd_model_checkpoint="other.safetensors [abc]"))
    assert answer.status == 200 and answer.json["runtime"] == "sdruntime", answer.text


@pytest.mark.parametrize(
    ("runtime", "tasktype", "kind"),
    [("sdruntime", "pipeline", "sdwebui"), ("comfyruntime", "text-to-image", "comfyui")],
)
def test_a_tasktype_the_runtime_cannot_run_is_refused(
    client: httpx.Client, typed: ApiStack, runtime: str, tasktype: str, kind: str
) -> None:
    content = {"1": {"class_type": "KSampler", "inputs": {}}} if tasktype == "pipeline" else {"prompt": "p"}
    body = {"task": {"metadata": {"id": "r-1", "runtime": runtime, "tasktype": tasktype}, "content": content}}
    answer = client.post("/v1alpha2/", json=body)
    assert answer.status_code == 400
    (issue,) = answer.json()["error"]["fields"]
    assert issue["field"] == "task.metadata.tasktype" and issue["rule"] == "runtime_type"
    assert kind in issue["message"] and runtime in issue["message"]
    assert typed.item("r-1") is None


def _files(folder: str) -> list[Path]:
    own = sorted((TEST_FIXTURES / folder).glob("*.json"))
    return own + (sorted((SHARED_FIXTURES / folder).glob("*.json")) if SHARED_FIXTURES.exists() else [])


@pytest.mark.parametrize("slash", ["/", ""])
@pytest.mark.parametrize(
    "path",
    [("v1alpha2", p) for p in _files("requests-v1alpha2")] + [("v1alpha1", p) for p in _files("requests-v1alpha1")],
    ids=lambda v: f"{v[0]}/{'own' if TEST_FIXTURES in v[1].parents else 'sample'}/{v[1].name}",
)
def test_sample_payloads_replay(client: httpx.Client, typed: ApiStack, path: tuple[str, Path], slash: str) -> None:
    version, file = path
    body = json.loads(file.read_text())
    answer = client.post(f"/{version}{slash}", content=file.read_bytes(), headers={"content-type": "application/json"})
    tasktype = body["task"]["metadata"]["tasktype"] if version == "v1alpha2" else body["alwayson_scripts"]["task"]
    if tasktype == "pipeline":
        # The sample's pipeline payload names its sdwebui runtime: refused, naming the runtime's type.
        assert answer.status_code == 400 and "sdwebui" in answer.text
        return
    # The sample's AnimateDiff payload asks for 32 frames in one batch: a video's frame count, accepted.
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["id"]
    assert client.get(f"/tasks/{task_id}/").json()["status"] == "queued"
    (queued,) = typed.drain("sdruntime")
    message = parse_queue_body(json.dumps(queued["body"]))
    if version == "v1alpha1":
        assert answer.json()["id_task"] == task_id == body["alwayson_scripts"]["id_task"]
        assert not set(ROUTING_KEYS) & message.content["alwayson_scripts"].keys()


_leaf = st.none() | st.booleans() | st.integers(min_value=-(2**40), max_value=2**40) | st.text(max_size=12)
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, good, _value)


_scripts = st.fixed_dictionaries(
    {
        "task": _maybe(st.sampled_from(["text-to-image", "image-to-image", "extra-single-image", "pipeline"])),
        "sd_model_checkpoint": _maybe(st.sampled_from([MODEL, f"{MODEL} [abc]", "other.safetensors", ""])),
    },
    optional={
        "id_task": _maybe(st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)),
        "save_dir": _maybe(st.sampled_from(["outputs", "a/b", "../x", "/abs"])),
        "image_link": _maybe(st.sampled_from(["s3://b/k.png", "https://example.com/a.png", "ftp://x"])),
        "override_settings": _maybe(st.just({"CLIP_stop_at_last_layers": 2})),
        "AnimateDiff": _value,
    },
)
_v1_bodies = st.fixed_dictionaries(
    {"alwayson_scripts": _maybe(_scripts)},
    optional={
        "prompt": _maybe(st.text(max_size=30)),
        "steps": _maybe(st.integers(min_value=-2, max_value=200)),
        "width": _maybe(st.sampled_from([64, 512, 513, 4096])),
        "batch_size": _maybe(st.integers(min_value=0, max_value=40)),
        "override_settings": _value,
    },
)


@settings(
    deadline=None,
    max_examples=150,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_v1_bodies, slash=st.sampled_from(["/v1alpha1", "/v1alpha1/"]))
def test_near_valid_v1alpha1_bodies_are_queued_or_refused_field_by_field(
    client: httpx.Client, typed: ApiStack, body: dict[str, Any], slash: str
) -> None:
    answer = client.post(slash, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert answer.status_code in {200, 400, 409}, answer.text
    got = answer.json()
    if answer.status_code == 200:
        assert got["id_task"] == got["id"] and typed.item(got["id"]) is not None
    else:
        assert set(got["error"]) == {"code", "message", "fields"}
        assert answer.status_code == 409 or got["error"]["fields"]
