"""Runtime adapters against the fake runtimes over real HTTP: endpoints, inputs, errors, readiness."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contract import QueueMessage, TaskType
from local_stack.ports import free_port
from queue_agent.errors import JobError, PermanentError, TransientError
from queue_agent.job import RuntimeResult
from queue_agent.runtimes import A1111Runtime, ComfyUIRuntime, Runtime, build_runtime
from queue_agent.runtimes.base import artifact_from_bytes
from queue_agent.settings import load_settings
from tests.agent_fakes.a1111 import Behavior, FakeA1111
from tests.agent_fakes.fixtures import a1111_fixture  # noqa: F401
from tests.agent_fakes.images import gif, mp4, png


def message(tasktype: str, content: dict[str, Any], task_id: str = "t1") -> QueueMessage:
    return QueueMessage(id=task_id, runtime="sdruntime", tasktype=TaskType(tasktype), content=content)


async def execute(
    runtime: Runtime, msg: QueueMessage, inputs: dict[tuple, bytes], on_dispatch: Callable[[], None] | None = None
) -> RuntimeResult:
    """What the agent does across its stages: prepare (while the previous job runs), run, then decode
    (in the finisher, while the next job runs)."""
    output = await runtime.run(await runtime.prepare(msg, inputs), on_dispatch)
    return await output.decode()


@pytest.fixture
def ours() -> Iterator[FakeA1111]:
    with FakeA1111(ours=True) as fake:
        yield fake


async def test_txt2img_returns_every_image_and_a_lean_document(a1111: FakeA1111) -> None:
    runtime = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    dispatched: list[bool] = []
    try:
        result = await execute(
            runtime,
            message("text-to-image", {"prompt": "p", "batch_size": 2, "n_iter": 2}),
            {},
            lambda: dispatched.append(True),
        )
    finally:
        await runtime.aclose()
    assert [a.ext for a in result.artifacts] == ["png"] * 4
    assert result.artifacts[1].data == png(1) and result.artifacts[0].content_type == "image/png"
    assert result.document["info"]["all_seeds"] == [42, 43, 44, 45]  # parsed from the webui's JSON string
    assert result.document["parameters"]["prompt"] == "p" and "init_images" not in result.document["parameters"]
    assert dispatched  # the runner learns when the runtime has its work


@pytest.mark.parametrize(
    ("tasktype", "content", "path", "endpoint"),
    [
        ("image-to-image", {"prompt": "p", "init_images": ["s3://b/k.png"]}, ("init_images", 0), "img2img"),
        ("extra-single-image", {"image": "s3://b/k.png"}, ("image",), "extra-single-image"),
        (
            "extra-batch-image",
            {"imageList": [{"data": "s3://b/k.png", "name": "a"}]},
            ("imageList", 0, "data"),
            "extra-batch-images",
        ),
    ],
)
async def test_resolved_inputs_are_inlined_as_base64(
    a1111: FakeA1111, tasktype: str, content: dict[str, Any], path: tuple, endpoint: str
) -> None:
    runtime = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    msg = message(tasktype, content)
    try:
        result = await execute(runtime, msg, {path: png(11)})
    finally:
        await runtime.aclose()
    (call,) = a1111.finished_calls(200)
    assert call.endpoint == endpoint
    sent: Any = call.payload
    for step in path:
        sent = sent[step]
    assert base64.b64decode(sent) == png(11)
    assert len(result.artifacts) == 1
    assert msg.content == content  # the message itself is left as received


@pytest.mark.parametrize(
    ("behavior", "error", "code"),
    [
        (Behavior(reject=True), PermanentError, "runtime_rejected"),
        (Behavior(transient_rate=1.0), TransientError, "runtime_unavailable"),
    ],
)
async def test_http_errors_are_classified(a1111: FakeA1111, behavior: Behavior, error: type, code: str) -> None:
    a1111.behavior = behavior
    runtime = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    try:
        with pytest.raises(error) as info:
            await execute(runtime, message("text-to-image", {"prompt": "p"}), {})
    finally:
        await runtime.aclose()
    assert isinstance(info.value, JobError) and info.value.code == code
    assert "txt2img" in str(info.value)


async def test_an_unreachable_runtime_is_transient_and_never_ready() -> None:
    runtime = A1111Runtime(f"http://127.0.0.1:{free_port()}/sdapi/v1/", dynamic_model=False, ours=False)
    try:
        with pytest.raises(TransientError, match="unreachable"):
            await execute(runtime, message("text-to-image", {"prompt": "p"}), {})
        assert await runtime.healthy() is False
        with pytest.raises(TimeoutError):
            await runtime.wait_ready(0.3)
    finally:
        await runtime.aclose()


async def test_our_runtime_is_probed_on_ready_and_health(ours: FakeA1111, a1111: FakeA1111) -> None:
    mine = A1111Runtime(ours.base_url, dynamic_model=False, ours=True)
    webui_as_ours = A1111Runtime(a1111.base_url, dynamic_model=False, ours=True)
    try:
        await mine.wait_ready(5)
        assert await mine.healthy() is True
        assert await webui_as_ours.healthy() is False  # the webui has no /health: probes differ for real
    finally:
        await mine.aclose()
        await webui_as_ours.aclose()


async def test_dynamic_model_switch_only_when_needed(a1111: FakeA1111) -> None:
    runtime = A1111Runtime(a1111.base_url, dynamic_model=True, ours=False)
    wants = {"prompt": "p", "override_settings": {"sd_model_checkpoint": "model-b.safetensors [0123456789]"}}
    try:
        await execute(runtime, message("text-to-image", wants), {})
        await execute(runtime, message("text-to-image", wants), {})
        await execute(runtime, message("text-to-image", {"prompt": "no preference"}), {})
        with pytest.raises(PermanentError, match="not found"):
            await execute(
                runtime,
                message("text-to-image", {"prompt": "p", "override_settings": {"sd_model_checkpoint": "nope"}}),
                {},
            )
    finally:
        await runtime.aclose()
    assert a1111.model_switches == ["model-b.safetensors [0123456789]"]


async def test_without_dynamic_models_options_are_never_touched(a1111: FakeA1111) -> None:
    runtime = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    try:
        await execute(
            runtime,
            message("text-to-image", {"prompt": "p", "override_settings": {"sd_model_checkpoint": "model-b"}}),
            {},
        )
    finally:
        await runtime.aclose()
    assert a1111.model_switches == []


async def test_interrupt_reaches_the_runtime(a1111: FakeA1111) -> None:
    runtime = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    try:
        await runtime.interrupt()
    finally:
        await runtime.aclose()
    assert a1111.interrupts == 1


async def test_tasktypes_go_to_the_runtime_that_can_run_them(a1111: FakeA1111) -> None:
    webui = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    comfy = ComfyUIRuntime("http://127.0.0.1:1/")
    try:
        with pytest.raises(PermanentError, match="comfyui"):
            await execute(webui, message("pipeline", {"1": {"class_type": "SaveImage", "inputs": {}}}), {})
        with pytest.raises(PermanentError, match="pipeline"):
            await execute(comfy, message("text-to-image", {"prompt": "p"}), {})
    finally:
        await webui.aclose()
        await comfy.aclose()
    assert a1111.calls == []


def test_the_runtime_type_setting_picks_the_adapter() -> None:
    base = {"SQS_QUEUE_URL": "http://q", "SNS_TOPIC_ARN": "arn:x", "S3_BUCKET": "bkt", "RUNTIME_NAME": "r"}
    assert isinstance(build_runtime(load_settings(base | {"RUNTIME_TYPE": "comfyui"})), ComfyUIRuntime)
    ours = build_runtime(load_settings(base | {"RUNTIME_TYPE": "diffusers"}))
    assert isinstance(ours, A1111Runtime) and ours.base_url == "http://localhost:8080/sdapi/v1/"


@pytest.mark.parametrize(
    ("data", "name", "ext", "content_type"),
    [
        (png(), None, "png", "image/png"),
        (b"\xff\xd8\xff\xe0rest", None, "jpg", "image/jpeg"),
        (gif(), None, "gif", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "webp", "image/webp"),
        (mp4(), None, "mp4", "video/mp4"),
        (b"whatever", "clip.webm", "webm", "video/webm"),
        (png(), "ComfyUI_0001_.PNG", "png", "image/png"),
    ],
)
def test_artifact_types_come_from_the_name_or_the_bytes(data: bytes, name: str | None, ext: str, content_type: str):
    artifact = artifact_from_bytes(data, name)
    assert (artifact.ext, artifact.content_type) == (ext, content_type)


async def test_the_webui_is_told_not_to_fetch_urls_itself(a1111: FakeA1111) -> None:
    runtime = A1111Runtime(a1111.base_url, dynamic_model=False, ours=False)
    try:
        await runtime.wait_ready(10)
    finally:
        await runtime.aclose()
    assert a1111.options["api_enable_requests"] is False
    assert a1111.options["api_forbid_local_requests"] is True
