"""GPU throughput of the runtime: plain diffusers vs our runtime, SD 1.5 at 512² and SDXL at 1024².

Run on a CUDA machine: ``python -m benchmarks.gpu_runtime [--budget SECONDS]``. Full-size
architectures with random weights (``fast_init``), 20 steps. For each model, three phases:

- ``diffusers_fp16``: a plain diffusers pipeline in fp16 (SDPA attention, nothing else), called one
  request (one image) at a time: what a naive server does;
- ``ours_defaults``: our runtime (the real HTTP server in process: loader, micro-batcher, worker) at
  its defaults, with 4 requests in flight (4 clients sending one-image requests back to back);
- ``ours_all``: the same with every optimisation on: channels-last, fused QKV projections,
  ``torch.compile(mode="max-autotune")`` warmed per batch size (the buckets), a 10 ms batch window,
  and torchao float8 dynamic quantisation when the GPU is Hopper or later (``--float8``); plus
  ``ours_bf16`` (defaults in bf16) where the GPU supports bf16.

Each phase reports images/s, p50/p95 latency per request, and peak GPU memory, and is written to
``benchmarks/results/runtime_gpu.json`` (and RESULTS.md) as soon as it ends, so a time limit loses
nothing already measured. ``--budget`` skips the phases whose estimate would not fit in what is left.
The acceptance goal: ``ours_defaults`` (or ``ours_all``) >= 1.5x ``diffusers_fp16`` images/s on SD 1.5.
The runtime's GPU options stay off by default until these numbers show their gain.

And in seconds, ``single_file_ready``: ``python -m inference_api serve`` started on a folder holding only a
full-size SD 1.5 original-layout ``.safetensors`` (``build-tiny-model --full-size --single-file --no-configs``,
2.1 GB fp16, offline, empty HF cache) until ``/ready`` answers 200 (``--smoke``: the tiny single file).

``--smoke`` runs the same code paths with the tiny models on the CPU (no compile, no float8), records
nothing, and checks the script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REQUESTS_IN_FLIGHT = 4


@dataclass(frozen=True)
class Model:
    name: str
    arch: str  # attribute of inference_api.architectures
    size: int
    # Rough seconds per phase on an H100-class GPU (build + save + load + warm-up + measure), for --budget.
    estimate: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    device: str
    steps: int
    requests: int  # requests measured per phase (after warm-up)
    models: tuple[Model, ...]
    smoke: bool


FULL = Plan(
    device="cuda",
    steps=20,
    requests=32,
    models=(
        Model("sd15_512", "SD15", 512, {"diffusers_fp16": 60, "ours_defaults": 90, "ours_bf16": 90, "ours_all": 420}),
        Model(
            "sdxl_1024", "SDXL", 1024, {"diffusers_fp16": 150, "ours_defaults": 240, "ours_bf16": 240, "ours_all": 900}
        ),
    ),
    smoke=False,
)
SMOKE = Plan(
    device="cpu",
    steps=2,
    requests=4,
    models=(Model("tiny_sd_64", "TINY_SD", 64), Model("tiny_sdxl_64", "TINY_SDXL", 64)),
    smoke=True,
)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def _summary(latencies: list[float], seconds: float, images: int, device: str) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "images_per_s": round(images / seconds, 3),
        "p50_latency_s": round(statistics.median(ordered), 3),
        "p95_latency_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "peak_gpu_gib": _peak_gib(device),
        "requests": len(ordered),
    }


def _arch(model: Model) -> Any:
    from inference_api import architectures

    return getattr(architectures, model.arch)


def _dtype(plan: Plan, name: str = "fp16") -> Any:
    import torch

    return torch.float32 if plan.smoke else {"fp16": torch.float16, "bf16": torch.bfloat16}[name]


def diffusers_fp16(plan: Plan, model: Model, work: Path) -> dict[str, Any]:
    """Plain diffusers: the pipeline on the GPU in fp16, one request at a time."""
    import torch

    from inference_api.builder import build_pipeline

    pipe = build_pipeline(_arch(model), dtype=_dtype(plan), device=plan.device, fast_init=not plan.smoke)
    pipe = pipe.to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": plan.steps, "width": model.size, "height": model.size, "output_type": "pil"}
    pipe("warm-up", **kwargs)
    _sync(plan.device)
    _reset_peak(plan.device)
    latencies = []
    started = time.perf_counter()
    for i in range(plan.requests):
        t0 = time.perf_counter()
        pipe(f"a photo of a cat {i}", generator=torch.Generator(plan.device).manual_seed(i), **kwargs)
        _sync(plan.device)
        latencies.append(time.perf_counter() - t0)
    result = _summary(latencies, time.perf_counter() - started, plan.requests, plan.device)
    del pipe
    return result


def _server_phase(plan: Plan, model: Model, work: Path, **options: Any) -> dict[str, Any]:
    from inference_api.settings import ServerSettings
    from tests.runtime_helpers import serve_in_thread

    models = _saved_model(plan, model, work)
    settings = ServerSettings(models_dir=models, device=plan.device, dtype="fp32" if plan.smoke else "fp16")
    settings = replace(settings, **options)
    with serve_in_thread(settings) as server:
        result = asyncio.run(_clients(server.url, plan, model))
        result["batcher"] = {
            k: server.client.get("/stats").json()["batcher"][k] for k in ("merged_batches", "largest_batch")
        }
    return result


def ours_defaults(plan: Plan, model: Model, work: Path) -> dict[str, Any]:
    return _server_phase(plan, model, work)


def ours_bf16(plan: Plan, model: Model, work: Path) -> dict[str, Any]:
    return _server_phase(plan, model, work, dtype="fp32" if plan.smoke else "bf16")


def ours_all(plan: Plan, model: Model, work: Path) -> dict[str, Any]:
    options: dict[str, Any] = {"channels_last": True, "fuse_qkv": True, "batch_window_ms": 10.0}
    if not plan.smoke:
        # Inductor on a shared CPU takes minutes; on the GPU the compiled graphs are warmed per batch size.
        options |= {"compile": True, "compile_mode": "max-autotune", "warmup": True, "float8": _hopper()}
    return _server_phase(plan, model, work, **options)


def _hopper() -> bool:
    import importlib.util

    import torch

    capable = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
    return capable and importlib.util.find_spec("torchao") is not None


def _bf16_supported(plan: Plan) -> bool:
    import torch

    return plan.smoke or (torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _saved_model(plan: Plan, model: Model, work: Path) -> Path:
    """The model as a diffusers folder the server loads (written once per model)."""
    from inference_api.builder import build_pipeline

    root = work / model.name
    if not (root / model.name / "model_index.json").exists():
        pipe = build_pipeline(_arch(model), dtype=_dtype(plan), fast_init=not plan.smoke)
        pipe.save_pretrained(root / model.name)
        del pipe
    return root


async def _clients(url: str, plan: Plan, model: Model) -> dict[str, Any]:
    import httpx

    body = {"prompt": "a photo of a cat", "steps": plan.steps, "width": model.size, "height": model.size}
    per_client = max(1, plan.requests // REQUESTS_IN_FLIGHT)
    latencies: list[float] = []

    async def client(index: int, http: httpx.AsyncClient) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            response = await http.post("/sdapi/v1/txt2img", json={**body, "seed": index * 1000 + i})
            response.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=url, timeout=1800) as http:
        # Warm-up at every batch size the batcher can form (compiled graphs are per shape).
        for batch in range(1, REQUESTS_IN_FLIGHT + 1):
            (await http.post("/sdapi/v1/txt2img", json={**body, "batch_size": batch})).raise_for_status()
        _reset_peak(plan.device)
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(REQUESTS_IN_FLIGHT)))
        seconds = time.perf_counter() - started
    return _summary(latencies, seconds, per_client * REQUESTS_IN_FLIGHT, plan.device)


def single_file_ready(plan: Plan, work: Path) -> dict[str, Any]:
    from benchmarks.bench_runtime import seconds_to_ready
    from inference_api.tiny import build_tiny_model

    models = work / "single-file"
    started = time.perf_counter()
    # Smoke: the tiny file needs its configs/ (its dimensions are not the published ones).
    path = build_tiny_model(models, single_file=True, full_size=not plan.smoke, no_configs=not plan.smoke)
    build = time.perf_counter() - started
    ready = seconds_to_ready(models, work / "ready.log", "--device", plan.device)
    shutil.rmtree(models, ignore_errors=True)
    return {
        "file_gb": round(path.stat().st_size / 1e9, 2),
        "build_seconds": round(build, 1),
        "seconds_to_ready": round(ready, 2),
    }


SINGLE_FILE_ESTIMATE = 180.0

PHASES: dict[str, Callable[[Plan, Model, Path], dict[str, Any]]] = {
    "diffusers_fp16": diffusers_fp16,
    "ours_defaults": ours_defaults,
    "ours_bf16": ours_bf16,
    "ours_all": ours_all,
}


def run(plan: Plan, budget: float | None, on_result: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    import torch

    if not plan.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --smoke to check the script on CPU")
    if plan.smoke:
        torch.set_num_threads(1)
    started = time.monotonic()
    data: dict[str, Any] = {
        "metrics": {"device": torch.cuda.get_device_name() if plan.device.startswith("cuda") else "cpu"},
        "notes": (
            f"{plan.steps} steps, {REQUESTS_IN_FLIGHT} requests in flight for our runtime, {plan.requests} one-image "
            "requests per phase after warm-up; full-size architectures with random weights; torch " + torch.__version__
        ),
    }
    work = Path(tempfile.mkdtemp(prefix="gpu-runtime-"))
    try:
        for model in plan.models:
            results: dict[str, Any] = {}
            data["metrics"][model.name] = results
            for name, phase in PHASES.items():
                if name == "ours_bf16" and not _bf16_supported(plan):
                    results[name] = "skipped: no bf16 on this GPU"
                    continue
                left = None if budget is None else budget - (time.monotonic() - started)
                if left is not None and model.estimate.get(name, 0.0) > left:
                    results[name] = f"skipped: needs ~{model.estimate[name]:.0f}s, {left:.0f}s of the budget left"
                    on_result(data)
                    continue
                t0 = time.monotonic()
                try:
                    results[name] = {**phase(plan, model, work), "phase_seconds": round(time.monotonic() - t0, 1)}
                except Exception as exc:  # one failing phase must not lose the others
                    results[name] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
                finally:
                    if plan.device.startswith("cuda"):
                        torch.cuda.empty_cache()
                _ratio(results)
                on_result(data)
            shutil.rmtree(work / model.name, ignore_errors=True)
        left = None if budget is None else budget - (time.monotonic() - started)
        if left is not None and not plan.smoke and SINGLE_FILE_ESTIMATE > left:
            data["metrics"]["single_file_ready"] = f"skipped: {left:.0f}s of the budget left"
        else:
            try:
                data["metrics"]["single_file_ready"] = single_file_ready(plan, work)
            except Exception as exc:
                data["metrics"]["single_file_ready"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        on_result(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return data


def _ratio(results: dict[str, Any]) -> None:
    base = results.get("diffusers_fp16")
    if not isinstance(base, dict):
        return
    for name in ("ours_defaults", "ours_bf16", "ours_all"):
        ours = results.get(name)
        if isinstance(ours, dict):
            results[f"{name}_vs_diffusers"] = round(ours["images_per_s"] / base["images_per_s"], 3)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_runtime", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU, nothing recorded")
    parser.add_argument("--budget", type=float, help="seconds available; phases that would not fit are skipped")
    args = parser.parse_args(argv)

    def on_result(data: dict[str, Any]) -> None:
        print(json.dumps(data["metrics"]), flush=True)
        if not args.smoke:
            from benchmarks.results import record

            record("runtime_gpu", data)

    data = run(SMOKE if args.smoke else FULL, args.budget, on_result)
    print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
