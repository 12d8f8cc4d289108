"""GPU throughput of the runtime: SD 1.5 architecture (random weights), 512x512, 20 steps, fp16.

Run on a CUDA machine: ``python -m benchmarks.gpu_runtime`` (records ``runtime_gpu`` through
``benchmarks.results.record``). ``--smoke`` runs the same code paths with the tiny model on the CPU in
seconds, without recording, to check the script itself on a machine without a GPU.

Measured, in images/second:
- ``pipeline``: direct pipeline calls at batch 1 and batch 4, for each optimisation level:
  ``baseline`` (fp16 + SDPA attention, diffusers' default on torch 2), ``channels_last``, and
  ``channels_last+compile`` (``torch.compile`` of the UNet; compile time reported separately).
- ``server``: the real HTTP server (in-process uvicorn, the runtime's own loader, batcher and worker) with
  4 concurrent clients each sending batch-1 requests, micro-batching off (``max_batch 1``) and on
  (``max_batch 4``): what micro-batching buys a runtime fed by several agents or clients at once.

And in seconds, ``single_file_ready``: ``python -m inference_api serve`` started on a folder holding only a
full-size SD 1.5 original-layout ``.safetensors`` (``build-tiny-model --full-size --single-file --no-configs``,
2.1 GB fp16, offline, empty HF cache) until ``/ready`` answers 200 (``--smoke``: the tiny single file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Plan:
    device: str
    size: int
    steps: int
    images: int  # images per measurement
    clients: int
    smoke: bool


FULL = Plan(device="cuda", size=512, steps=20, images=16, clients=4, smoke=False)
SMOKE = Plan(device="cpu", size=64, steps=2, images=4, clients=4, smoke=True)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _architecture(plan: Plan) -> Any:
    from inference_api.architectures import SD15, TINY_SD

    return TINY_SD if plan.smoke else SD15


def _images_per_second(pipe: Any, plan: Plan, batch: int) -> float:
    import torch

    generators = [torch.Generator(plan.device).manual_seed(i) for i in range(batch)]
    kwargs = {"num_inference_steps": plan.steps, "width": plan.size, "height": plan.size, "output_type": "pil"}
    pipe(["warm-up"] * batch, generator=generators, **kwargs)  # first call: kernels, autotune, compile
    _sync(plan.device)
    calls = max(1, plan.images // batch)
    started = time.perf_counter()
    for i in range(calls):
        pipe([f"a photo of a cat {i}"] * batch, generator=generators, **kwargs)
    _sync(plan.device)
    return calls * batch / (time.perf_counter() - started)


def pipeline_throughput(plan: Plan) -> dict[str, Any]:
    import torch

    from inference_api.builder import build_pipeline
    from inference_api.loading import DeviceSettings, optimise

    dtype = torch.float32 if plan.smoke else torch.float16
    results: dict[str, Any] = {}
    levels = [("baseline", False, False), ("channels_last", True, False), ("channels_last+compile", True, True)]
    for label, channels_last, compile_unet in levels:
        if compile_unet and plan.smoke:
            continue  # inductor on a shared 2-core CPU takes minutes; the GPU run is the one that counts
        pipe = build_pipeline(_architecture(plan), dtype=dtype, device=plan.device)
        settings = DeviceSettings(plan.device, dtype, channels_last, compile_unet)
        started = time.perf_counter()
        pipe = optimise(pipe, settings)
        row: dict[str, Any] = {}
        for batch in (1, 4):
            t0 = time.perf_counter()
            row[f"batch{batch}_images_per_s"] = round(_images_per_second(pipe, plan, batch), 3)
            if compile_unet:
                row[f"batch{batch}_first_call_seconds"] = round(time.perf_counter() - t0, 1)
        row["setup_seconds"] = round(time.perf_counter() - started, 1)
        results[label] = row
        del pipe
        if plan.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results


async def _clients(url: str, plan: Plan) -> float:
    import httpx

    body = {"prompt": "a photo of a cat", "steps": plan.steps, "width": plan.size, "height": plan.size}
    per_client = max(1, plan.images // plan.clients)

    async def client(index: int, client_http: httpx.AsyncClient) -> None:
        for i in range(per_client):
            response = await client_http.post("/sdapi/v1/txt2img", json={**body, "seed": index * 1000 + i})
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        await http.post("/sdapi/v1/txt2img", json={**body, "batch_size": 4})  # warm-up at the largest batch
        await http.post("/sdapi/v1/txt2img", json=body)
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(plan.clients)))
        return per_client * plan.clients / (time.perf_counter() - started)


def server_throughput(plan: Plan, work: Path) -> dict[str, Any]:
    import torch

    from inference_api.builder import build_pipeline
    from inference_api.settings import ServerSettings
    from tests.runtime_helpers import serve_in_thread

    dtype = torch.float32 if plan.smoke else torch.float16
    models = work / "models"
    build_pipeline(_architecture(plan), dtype=dtype, device=plan.device).save_pretrained(models / "sd15-random")
    results: dict[str, Any] = {}
    for max_batch in (1, 4):
        settings = ServerSettings(
            models_dir=models, device=plan.device, dtype="fp32" if plan.smoke else "fp16", max_batch=max_batch
        )
        with serve_in_thread(settings) as server:
            rate = asyncio.run(_clients(server.url, plan))
            stats = server.client.get("/stats").json()["batcher"]
        results[f"max_batch_{max_batch}"] = {
            "images_per_s": round(rate, 3),
            "merged_batches": stats["merged_batches"],
            "largest_batch": stats["largest_batch"],
        }
    return results


def single_file_ready(plan: Plan, work: Path) -> dict[str, Any]:
    from benchmarks.bench_runtime import seconds_to_ready
    from inference_api.tiny import build_tiny_model

    models = work / "single-file"
    started = time.perf_counter()
    # Smoke: the tiny file needs its configs/ (its dimensions are not the published ones).
    path = build_tiny_model(models, single_file=True, full_size=not plan.smoke, no_configs=not plan.smoke)
    build = time.perf_counter() - started
    ready = seconds_to_ready(models, work / "ready.log", "--device", plan.device)
    return {
        "file_gb": round(path.stat().st_size / 1e9, 2),
        "build_seconds": round(build, 1),
        "seconds_to_ready": round(ready, 2),
    }


def run(plan: Plan) -> dict[str, Any]:
    import torch

    if not plan.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --smoke to check the script on CPU")
    device_name = torch.cuda.get_device_name() if plan.device.startswith("cuda") else "cpu"
    work = Path(tempfile.mkdtemp(prefix="gpu-runtime-"))
    try:
        metrics = {
            "device": device_name,
            "pipeline": pipeline_throughput(plan),
            "server_4_clients": server_throughput(plan, work),
            "single_file_ready": single_file_ready(plan, work),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = (
        f"{_architecture(plan).name} architecture with random weights, {plan.size}x{plan.size}, {plan.steps} steps, "
        f"{'fp32 (smoke)' if plan.smoke else 'fp16'}, {plan.images} images per measurement after a warm-up call; "
        "torch " + torch.__version__
    )
    return {"metrics": metrics, "notes": notes}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_runtime", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, nothing recorded")
    args = parser.parse_args(argv)
    data = run(SMOKE if args.smoke else FULL)
    print(json.dumps(data, indent=2))
    if not args.smoke:
        from benchmarks.results import record

        print(f"-> {record('runtime_gpu', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
