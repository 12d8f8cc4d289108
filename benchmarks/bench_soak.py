"""Soak: many mixed requests at a fixed concurrency against the real server; nothing may poison it.

500 requests (``--requests``) at a concurrency of 8 against ``python -m inference_api serve`` with the
tiny SD 1.x and SDXL models: txt2img (short and long prompts, every sampler, batches), img2img at any
strength (0 and 0.05 included), SDXL through ``override_settings``, bad inputs (422 expected), clients
that give up mid-request (closed sockets) and ``/interrupt`` calls. Counted: every answer by kind and
status; 5xx on valid requests (must be 0); the server's resident memory after a warm-up and at the end
(must stay within 10 %); images/s; how long ``/sdapi/v1/progress`` takes meanwhile (the event loop stays
free). ``/health`` and ``/ready`` must answer 200 at the end.

``--gpu --models DIR --model NAME``: the same mix on a CUDA machine with a real model (e.g. SD 1.5) at
512x512, 20 steps, fp16; also records the peak GPU memory the server allocated.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUESTS = 500
CONCURRENCY = 8
WARMUP = 24
RSS_TOLERANCE = 0.10
LONG_PROMPT = " ".join("a photo of a cat in a detailed fantasy landscape".split() * 12)


@dataclass(frozen=True)
class Profile:
    side: int
    steps: int
    xl_model: str | None
    extra_args: tuple[str, ...] = ()


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors_on_valid: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    progress_latencies: list[float] = field(default_factory=list)  # GET /progress while the soak runs
    images: int = 0


def _png(side: int, seed: int) -> str:
    from PIL import Image

    image = Image.effect_noise((side, side), 40 + seed % 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _plan(count: int, profile: Profile, rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, path, body) per request; kinds: txt2img, img2img, sdxl, bad, abandon, interrupt."""
    from inference_api.samplers import sampler_names

    samplers = sampler_names()
    base = {"width": profile.side, "height": profile.side, "steps": profile.steps}
    init = _png(profile.side, 1)
    kinds = ["txt2img"] * 40 + ["img2img"] * 20 + ["sdxl"] * 14 + ["bad"] * 10 + ["abandon"] * 8 + ["interrupt"] * 8
    plan = []
    for i in range(count):
        kind = rng.choice(kinds)
        seed = rng.randrange(2**31)
        prompt = LONG_PROMPT if rng.random() < 0.2 else f"a photo of a cat, {i}"
        body: dict[str, Any] = {**base, "prompt": prompt, "seed": seed, "sampler_name": rng.choice(samplers)}
        if kind == "txt2img":
            body["batch_size"] = rng.choice([1, 1, 2])
            plan.append((kind, "txt2img", body))
        elif kind == "img2img":
            strength = rng.choice([0.0, 0.05, 0.3, 0.75, 1.0])
            plan.append((kind, "img2img", {**body, "init_images": [init], "denoising_strength": strength}))
        elif kind == "sdxl" and profile.xl_model:
            override = {"override_settings": {"sd_model_checkpoint": profile.xl_model}}
            path = rng.choice(["txt2img", "img2img"])
            extra = {"init_images": [init], "denoising_strength": 0.5} if path == "img2img" else {}
            plan.append((kind, path, {**body, **override, **extra}))
        elif kind == "bad":
            broken = rng.choice([{"width": 65}, {"sampler_name": "Nope"}, {"steps": 0}, {"init_images": ["@@"]}])
            plan.append((kind, "img2img" if "init_images" in broken else "txt2img", {**body, **broken}))
        elif kind == "abandon":
            plan.append((kind, "txt2img", {**body, "steps": profile.steps * 4}))
        elif kind == "interrupt":
            plan.append((kind, "interrupt", {}))
        else:
            plan.append(("txt2img", "txt2img", body))
    return plan


async def _abandon(url: str, body: dict[str, Any], rng: random.Random) -> None:
    """A client that sends a request and gives up before the answer (a closed connection)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    writer.write(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    await asyncio.sleep(rng.uniform(0.0, 0.3))
    writer.close()
    await writer.wait_closed()


async def _one(client: Any, url: str, item: tuple[str, str, dict[str, Any]], tally: Tally, rng: random.Random) -> None:
    kind, path, body = item
    started = time.perf_counter()
    if kind == "abandon":
        await _abandon(url, body, rng)
        tally.statuses["abandon:closed"] += 1
        return
    if kind == "interrupt":
        response = await client.post("/sdapi/v1/interrupt")
    else:
        response = await client.post(f"/sdapi/v1/{path}", json=body)
    tally.statuses[f"{kind}:{response.status_code}"] += 1
    if kind != "bad" and response.status_code >= 500:
        tally.server_errors_on_valid.append(f"{kind} {response.status_code} {response.text[:300]}")
    if kind not in ("bad", "interrupt") and response.status_code == 200:
        tally.latencies.append(time.perf_counter() - started)
        tally.images += len(response.json()["images"])


async def _drive(url: str, plan: list[tuple[str, str, dict[str, Any]]], seed: int) -> Tally:
    import httpx

    tally = Tally()
    rng = random.Random(seed)
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            await _one(client, url, queue.get_nowait(), tally, rng)

    async def watch(client: httpx.AsyncClient, done: asyncio.Event) -> None:
        # The event loop must stay free while images are encoded and decoded: /progress answers at once.
        while not done.is_set():
            started = time.perf_counter()
            (await client.get("/sdapi/v1/progress")).raise_for_status()
            tally.progress_latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=url, timeout=600) as client, httpx.AsyncClient(base_url=url) as probe:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(probe, done))
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        done.set()
        await watcher
    return tally


def _rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def _soak(models: Path, log: Path, profile: Profile, requests: int, default_model: str) -> dict[str, Any]:
    from tests.runtime_helpers import serve_subprocess

    args = ("--default-model", default_model, "--max-batch", "4", "--max-queue", "64", *profile.extra_args)
    with serve_subprocess(models, log, *args) as server:
        assert server.pid is not None
        rng = random.Random(7)
        asyncio.run(_drive(server.url, _plan(WARMUP, profile, rng), 1))
        rss_warm = _rss(server.pid)
        plan = _plan(requests, profile, rng)
        started = time.perf_counter()
        tally = asyncio.run(_drive(server.url, plan, 2))
        wall = time.perf_counter() - started
        rss_end = _rss(server.pid)
        health = server.client.get("/health").status_code
        ready = server.client.get("/ready").status_code
        stats = server.client.get("/stats").json()
    latencies = sorted(tally.latencies)
    return {
        "requests": requests,
        "concurrency": CONCURRENCY,
        "server_errors_on_valid_requests": len(tally.server_errors_on_valid),
        "rss_after_warmup_mb": round(rss_warm / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth_fraction": round(rss_end / rss_warm - 1, 4),
        "rss_within_10_percent": abs(rss_end / rss_warm - 1) <= RSS_TOLERANCE,
        "health_end": health,
        "ready_end": ready,
        "wall_seconds": round(wall, 1),
        "images": tally.images,
        "images_per_second": round(tally.images / wall, 3),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1) if latencies else None,
        "progress_ms_p50": round(statistics.median(tally.progress_latencies) * 1000, 1),
        "progress_ms_max": round(max(tally.progress_latencies) * 1000, 1),
        "statuses": dict(sorted(tally.statuses.items())),
        "server": {
            key: stats[key]
            for key in ("abandoned", "interrupted", "rejected", "out_of_memory", "errors", "consecutive_failures")
        }
        | {"merged_batches": stats["batcher"]["merged_batches"], "gpu_peak_mb": round(stats["gpu_peak_bytes"] / 2**20)},
        "first_errors": tally.server_errors_on_valid[:5],
    }


def run(requests: int = REQUESTS) -> dict[str, Any]:
    from inference_api.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root = Path(tmp)
        models = root / "models"
        build_tiny_model(models, name="tiny-sd", seed=0)
        build_tiny_model(models, xl=True, name="tiny-sdxl", seed=3)
        metrics = _soak(models, root / "server.log", Profile(64, 3, "tiny-sdxl"), requests, "tiny-sd")
    ok = metrics["server_errors_on_valid_requests"] == 0 and metrics["rss_within_10_percent"]
    return {
        "metrics": metrics,
        "passed": ok,
        "notes": (
            f"{requests} mixed requests (txt2img 40 %, img2img at strengths 0-1 20 %, SDXL 14 %, bad inputs 10 %, "
            "abandoned clients 8 %, /interrupt 8 %) at concurrency 8 against `python -m inference_api serve` "
            "(one torch thread, --max-batch 4, --max-queue 64) with the tiny SD 1.x and SDXL models at 64x64, "
            f"3 steps, after {WARMUP} warm-up requests. Pass: no 5xx on a valid request, RSS at the end within "
            "10 % of RSS after warm-up, /health and /ready 200 at the end. progress_ms: GET /sdapi/v1/progress "
            "every 100 ms during the run (the event loop stays free: PNG work runs in threads). Shared 2-core "
            "machine."
        ),
    }


def run_gpu(models: Path, model: str, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-gpu-") as tmp:
        profile = Profile(512, 20, None, ("--device", "cuda", "--dtype", "fp16", "--threads", "0"))
        metrics = _soak(models, Path(tmp) / "server.log", profile, requests, model)
    return {
        "metrics": metrics,
        "notes": f"GPU soak: {requests} mixed requests (no SDXL) with {model} at 512x512, 20 steps, fp16.",
    }


def main(argv: list[str]) -> int:
    from benchmarks.results import record

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_soak", description=__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--gpu", action="store_true", help="run on CUDA with --models/--model (a real model)")
    parser.add_argument("--models", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--no-record", action="store_true", help="print only (a shorter development run)")
    args = parser.parse_args(argv)
    if args.gpu:
        if not (args.models and args.model):
            parser.error("--gpu needs --models DIR and --model NAME")
        data = run_gpu(args.models, args.model, args.requests)
        name = "soak_gpu"
    else:
        data = run(args.requests)
        name = "soak"
    print(json.dumps(data["metrics"], indent=2))
    if not args.no_record:
        print(record(name, data))
    metrics = data["metrics"]
    return 0 if metrics["server_errors_on_valid_requests"] == 0 and metrics["rss_within_10_percent"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
