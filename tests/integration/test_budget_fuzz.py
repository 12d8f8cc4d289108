"""Hostile content through submit and then the agent: no 5xx, no unvetted fetch, no address left for a runtime.

Hypothesis builds task content with addresses (every scheme, public, private, metadata, loopback and numeric
hosts, names that resolve privately) and image references hidden at random depths and shapes (ControlNet
unit dicts, positional script arguments, unknown fields, workflow inputs), plus sizes around every bound.
Each body goes through the local gateway to the real submit handler on moto; what it accepts is taken off
the runtime's queue and resolved by the agent's real InputResolver. Its DNS and connections are recorded
instead of made: the test asserts every connection would go to a public address over https, every S3 read
to an input bucket, and that the body the runtime would receive holds no address at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from task_api import app

from contract import (
    QueueMessage,
    TaskType,
    is_public_address,
    iter_image_fields,
    parse_queue_body,
)
from contract.images import looks_like_url
from local_stack.gateway import LocalGateway
from queue_agent.errors import JobError
from queue_agent.fetch import HttpsFetcher
from queue_agent.inputs import InputResolver
from queue_agent.runtimes.a1111 import inline_body
from tests.agent_fakes.images import png
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack

api_stack = support.api_stack

KEY = "budget-fuzz-key"
INPUT_BUCKET = "example-input-bucket"
# Names and what the test's DNS answers for them: some public, some resolving inside the network.
DNS = {
    "images.example.com": ["93.184.216.34"],
    "cdn.example.org": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example.com": ["10.0.0.7"],
    "rebind.example.com": ["93.184.216.34", "169.254.169.254"],
    "v6local.example.com": ["::ffff:127.0.0.1"],
}
HOSTS = [*DNS, "127.0.0.1", "169.254.169.254", "[::1]", "0x7f.1", "2130706433", "localhost", "metadata.google.internal"]
SCHEMES = ["https", "http", "HTTPS", "file", "ftp", "gopher"]


def url() -> st.SearchStrategy[str]:
    def build(scheme: str, host: str, path: str, port: int | None) -> str:
        where = host if port is None else f"{host}:{port}"
        return f"{scheme}://{where}/{path}"

    return st.builds(
        build,
        st.sampled_from(SCHEMES),
        st.sampled_from(HOSTS),
        st.from_regex(r"[a-z0-9]{1,8}\.png", fullmatch=True),
        st.none() | st.sampled_from([443, 8443, 80]),
    )


s3_ref = st.builds(
    lambda b, k: f"s3://{b}/{k}",
    st.sampled_from([INPUT_BUCKET, "other-bucket"]),
    st.sampled_from(["a.png", "in/b.png"]),
)
inline = st.just(base64.b64encode(png(1)).decode())
reference = url() | s3_ref | inline
leaf = reference | st.integers(-5, 5000) | st.text(max_size=6) | st.booleans() | st.none()
nested = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["image", "mask", "input_image", "module", "x", "url", "args"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
size = st.sampled_from([64, 512, 1024, 2048, 4096, 8192, 0, -1])


def content_for(tasktype: str) -> st.SearchStrategy[dict[str, Any]]:
    generation = st.fixed_dictionaries(
        {"prompt": st.text(max_size=10) | url()},
        optional={
            "width": size,
            "height": size,
            "batch_size": st.integers(1, 8),
            "n_iter": st.integers(1, 8),
            "enable_hr": st.booleans(),
            "hr_scale": st.sampled_from([1, 2, 4, 8, 0.5]),
            "hr_resize_x": size,
            "alwayson_scripts": st.dictionaries(
                st.sampled_from(["controlnet", "x"]),
                st.fixed_dictionaries({"args": st.lists(nested, max_size=3)}),
                max_size=2,
            ),
            "script_args": st.lists(nested, max_size=4),
            "extension_field": nested,
        },
    )
    if tasktype == "image-to-image":
        return generation.flatmap(
            lambda g: st.lists(reference, min_size=1, max_size=20).map(lambda refs: {**g, "init_images": refs})
        )
    if tasktype == "extra-single-image":
        return st.fixed_dictionaries(
            {"image": reference},
            optional={
                "resize_mode": st.sampled_from([0, 1]),
                "upscaling_resize": st.sampled_from([1, 2, 4, 8]),
                "upscaling_resize_w": size,
                "upscaling_resize_h": size,
                "upscaling_crop": st.booleans(),
            },
        )
    if tasktype == "pipeline":
        node = st.fixed_dictionaries(
            {
                "class_type": st.sampled_from(["LoadImage", "KSampler", "SomeUrlLoader"]),
                "inputs": st.dictionaries(
                    st.sampled_from(["image", "url", "text", "seed", "extra"]), nested, max_size=3
                ),
            }
        )
        return st.dictionaries(st.sampled_from([str(i) for i in range(20)]), node, min_size=1, max_size=20)
    return generation


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    tasktype = draw(st.sampled_from(["text-to-image", "image-to-image", "extra-single-image", "pipeline"]))
    runtime = "comfyruntime" if tasktype == "pipeline" else "sdruntime"
    metadata: dict[str, Any] = {"runtime": runtime, "tasktype": tasktype}
    if draw(st.booleans()):
        metadata["context"] = {"c": "x" * draw(st.sampled_from([10, 4000, 9000]))}
    return {"task": {"metadata": metadata, "content": draw(content_for(tasktype))}}


class RecordingFetcher(HttpsFetcher):
    """The agent's fetcher with its vetting intact; the hop is recorded instead of connected."""

    def __init__(self) -> None:
        async def dns(host: str, port: int) -> list[str]:
            if host not in DNS:
                raise OSError("NXDOMAIN")
            return DNS[host]

        super().__init__(max_bytes=1 << 20, timeout=5.0, resolve=dns)
        self.connections: list[tuple[str, str]] = []

    async def _follow(self, url: str, budget: Any) -> bytes:
        _, ip, _ = await self._vet(url)
        self.connections.append((url, ip))
        return png(2)


class RecordingS3:
    def __init__(self) -> None:
        self.reads: list[str] = []

    async def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.reads.append(Bucket)
        data = png(3)

        class Body:
            def __init__(self) -> None:
                self.left = data

            async def __aenter__(self) -> Body:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            async def read(self, n: int) -> bytes:
                chunk, self.left = self.left[:n], self.left[n:]
                return chunk

        return {"ContentLength": len(data), "Body": Body()}


@pytest.fixture
def client(api_stack: ApiStack) -> Iterator[httpx.Client]:
    with (
        LocalGateway(KEY, app.handler) as gw,
        httpx.Client(base_url=gw.url, headers={"x-api-key": KEY}, timeout=30) as c,
    ):
        yield c


def _accepted(api_stack: ApiStack) -> list[QueueMessage]:
    messages = []
    for runtime in api_stack.queues:
        for raw in api_stack.drain(runtime):
            messages.append(parse_queue_body(json.dumps(raw["body"])))
    return messages


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=bodies())
def test_hostile_content_is_refused_or_resolved_without_an_unvetted_fetch(
    client: httpx.Client, api_stack: ApiStack, body: dict[str, Any]
) -> None:
    response = client.post("/tasks", content=json.dumps(body).encode())
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500, response.text
    assert response.status_code in (202, 400, 413), response.text
    if response.status_code != 202:
        assert response.json()["error"]["fields"], "a refusal names the field"
        return
    for message in _accepted(api_stack):
        fetcher, s3 = RecordingFetcher(), RecordingS3()
        resolver = InputResolver(s3=s3, allowed_buckets=frozenset({INPUT_BUCKET}), fetcher=fetcher)
        try:
            inputs = asyncio.run(resolver.resolve(message))
        except JobError:
            inputs = None  # refused in the agent (a name resolving inside the network): a failed task
        event("agent refused" if inputs is None else f"agent resolved {min(len(inputs), 3)}+ inputs")
        for fetched, ip in fetcher.connections:
            # URL schemes are case-insensitive (RFC 3986): HTTPS:// is https.
            assert fetched.lower().startswith("https://") and is_public_address(ip), (fetched, ip)
        assert set(s3.reads) <= {INPUT_BUCKET}
        if inputs is None or message.tasktype is TaskType.PIPELINE:
            continue
        runtime_body = json.loads(inline_body(message.content, inputs))
        left = [v for _, v in iter_image_fields(message.tasktype, runtime_body) if looks_like_url(v)]
        assert left == [], "the runtime would receive an address"
