"""The agent's half of the per-task budget: inputs resolved with bounded concurrency, streamed under a per-input
and a per-task byte cap (raw bytes, never decompressed), pixel sizes read from headers, the content re-checked.
Real TLS against a local server whose name the test resolves, as in test_agent_fetch."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from contract import DEFAULT_LIMITS, QueueMessage, TaskType
from queue_agent.fetch import InputRefused
from queue_agent.inputs import InputResolver
from queue_agent.runtimes.a1111 import A1111Runtime
from tests.agent_fakes.fixtures import tls_certs_fixture, tls_server_fixture  # noqa: F401
from tests.agent_fakes.images import png
from tests.agent_fakes.tls import IMAGE_HOST as HOST
from tests.agent_fakes.tls import Reply, Resolver, local_fetcher, tls_server_process

MiB = 1024 * 1024


def resolver(certs: tuple[Path, Path, Path], **kw: Any) -> InputResolver:
    max_bytes = kw.pop("max_bytes", DEFAULT_LIMITS.max_input_bytes)
    fetcher = local_fetcher(certs, Resolver({HOST: ["127.0.0.1"]}), max_bytes=max_bytes, timeout=30.0)
    return InputResolver(s3=None, allowed_buckets=frozenset(), fetcher=fetcher, **kw)


def message(tasktype: TaskType, content: dict[str, Any]) -> QueueMessage:
    return QueueMessage(id="t1", runtime="sdruntime", tasktype=tasktype, content=content)


def png_header(width: int, height: int, size: int) -> bytes:
    """``size`` bytes that start like a ``width`` x ``height`` PNG (the agent reads only the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return head + b"\x00" * (size - len(head))


def url(port: int, path: str) -> str:
    return f"https://{HOST}:{port}{path}"


async def test_identity_is_asked_for_and_a_compressed_body_is_refused_before_decoding(certs, server) -> None:
    # 40 KiB of gzip that would inflate to 64 MiB, far past the 1 MiB cap.
    bomb = gzip.compress(b"\x00" * (64 * MiB), compresslevel=9)
    server.routes["/bomb.png"] = Reply(body=bomb, headers={"Content-Encoding": "gzip"})
    content = {"prompt": "x", "init_images": [url(server.port, "/bomb.png")]}
    with pytest.raises(InputRefused, match="Content-Encoding 'gzip'"):
        await resolver(certs, max_bytes=MiB).resolve(message(TaskType.IMAGE_TO_IMAGE, content))
    assert server.headers[0]["accept-encoding"] == "identity"


async def test_the_task_total_is_capped_across_inputs(certs, server) -> None:
    limits = replace(DEFAULT_LIMITS, max_total_input_bytes=2 * MiB)
    for i in range(3):
        server.routes[f"/{i}.png"] = Reply(body=png_header(64, 64, MiB - 1000 + i))
    content = {"prompt": "x", "init_images": [url(server.port, f"/{i}.png") for i in range(3)]}
    with pytest.raises(InputRefused, match="2097152-byte total limit") as caught:
        await resolver(certs, limits=limits).resolve(message(TaskType.IMAGE_TO_IMAGE, content))
    assert "task.content.init_images." in str(caught.value)


async def test_downloads_run_with_bounded_concurrency(certs, server) -> None:
    for i in range(8):
        server.routes[f"/{i}.png"] = Reply(body=png(i), delay=0.2)
    content = {"prompt": "x", "init_images": [url(server.port, f"/{i}.png") for i in range(8)]}
    got = await resolver(certs, fetch_concurrency=2).resolve(message(TaskType.IMAGE_TO_IMAGE, content))
    assert [got[("init_images", i)] for i in range(8)] == [png(i) for i in range(8)]
    assert server.max_in_flight <= 2


async def test_an_extreme_aspect_ratio_fetched_for_crop_to_fit_is_refused(certs, server) -> None:
    server.routes["/thin.png"] = Reply(body=png_header(1, 4000, 2000))
    content = {
        "image": url(server.port, "/thin.png"),
        "resize_mode": 1,
        "upscaling_resize_w": 2048,
        "upscaling_resize_h": 2048,
    }
    with pytest.raises(InputRefused, match=r"upscaling_crop.*2048x8192000"):
        await resolver(certs).resolve(message(TaskType.EXTRA_SINGLE_IMAGE, content))


async def test_nested_controlnet_references_are_resolved(certs, server) -> None:
    server.routes["/pose.png"] = Reply(body=png(3))
    unit = {"image": {"image": url(server.port, "/pose.png")}, "module": "openpose"}
    content = {"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [unit]}}}
    got = await resolver(certs).resolve(message(TaskType.TEXT_TO_IMAGE, content))
    assert got == {("alwayson_scripts", "controlnet", "args", 0, "image", "image"): png(3)}


@pytest.mark.parametrize(
    "content",
    [
        {"prompt": "x", "script_args": [1, "http://169.254.169.254/latest/meta-data/"]},
        {"prompt": "x", "alwayson_scripts": {"cn": {"args": [{"image": {"image": "http://10.0.0.1/a.png"}}]}}},
        {"prompt": "x", "init_images": ["https://images.example.com/a.png"] * (DEFAULT_LIMITS.max_image_inputs + 1)},
    ],
)
async def test_the_agent_rechecks_the_content_before_fetching_anything(certs, server, content) -> None:
    with pytest.raises(InputRefused):
        await resolver(certs).resolve(message(TaskType.TEXT_TO_IMAGE, content))
    assert server.requests == []


def _largest_request(port: int, count: int) -> dict[str, Any]:
    return {"prompt": "x", "init_images": [url(port, f"/{i}.png") for i in range(count)]}


async def _peak_while_preparing(certs, port: int, count: int) -> tuple[int, bytes | None]:
    runtime = A1111Runtime("http://127.0.0.1:9", dynamic_model=False, ours=True)
    msg = message(TaskType.IMAGE_TO_IMAGE, _largest_request(port, count))
    tracemalloc.start()
    tracemalloc.reset_peak()
    body: bytes | None = None
    try:
        inputs = await resolver(certs).resolve(msg)
        body = (await runtime.prepare(msg, inputs)).body
        del inputs
    except InputRefused:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        await runtime.aclose()
    return peak, body


async def test_agent_peak_memory_is_bounded_by_the_budget_not_by_the_request(certs) -> None:
    """The largest request the budget allows (16 inputs, 32 MiB together), fetched and turned into the runtime's
    JSON body, peaks at a small multiple of the budget; a request asking for twice as much is refused while
    streaming and peaks lower still. The image host runs in another process, so only the agent side counts."""
    _, cert, key = certs
    limits = DEFAULT_LIMITS
    each = limits.max_total_input_bytes // limits.max_image_inputs
    fits = {f"/{i}.png": Reply(body=png_header(512, 512, each)) for i in range(limits.max_image_inputs)}
    with tls_server_process(cert, key, fits) as port:
        peak, body = await _peak_while_preparing(certs, port, limits.max_image_inputs)
    assert body is not None and len(body) > limits.max_total_input_bytes * 4 // 3  # all of it, base64
    budget = limits.max_total_input_bytes
    # Inputs (1x) + their base64 (4/3x) + the body (4/3x) + stream buffers: measured 3.7x, bound 4.25x.
    assert peak < 4.25 * budget, f"peak {peak / MiB:.0f} MiB for a {budget / MiB:.0f} MiB budget"

    too_much = {f"/{i}.png": Reply(body=png_header(512, 512, 2 * each)) for i in range(limits.max_image_inputs)}
    with tls_server_process(cert, key, too_much) as port:
        refused_peak, refused_body = await _peak_while_preparing(certs, port, limits.max_image_inputs)
    assert refused_body is None
    assert refused_peak < 2 * budget, f"peak {refused_peak / MiB:.0f} MiB for a refused request"
    print(f"agent peak: {peak / MiB:.1f} MiB (largest request), {refused_peak / MiB:.1f} MiB (refused, 2x budget)")
