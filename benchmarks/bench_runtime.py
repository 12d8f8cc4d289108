"""What the runtime adds around the pipeline, and how long an SD-1.5-sized model takes to load.

1. HTTP overhead: the real server (``python -m inference_api serve``, one torch thread) with the tiny
   model; sequential 64x64, 2-step txt2img requests from a client in this process. Overhead per request =
   client wall time minus the pipeline's own time (reported by the server in ``info.timings``): routing,
   validation, queueing, the batch window, PNG encoding, JSON. Measured with the default micro-batching
   (no idle window), with a 10 ms window (which a lone request waits out) and with batching off.
2. Load time: a pipeline of the SD 1.5 architecture (860M UNet, 84M VAE, 123M CLIP text encoder) with
   random weights, stored fp16, loaded by the runtime's own loader onto the CPU: from a diffusers folder
   and from one original-layout ``.safetensors`` file alone in its folder (offline, the published SD 1.5
   configs shipped with the package). Cold: the model's files are first dropped from the page cache
   (posix_fadvise, only those files); warm: the best of the following loads. Each load ends by reading every
   weight (as the copy to a GPU would), since safetensors may map files lazily.
3. Time to ``/ready``: ``python -m inference_api serve`` started on the folder holding only that single
   file (``HF_HUB_OFFLINE=1``, an empty HF cache), until ``/ready`` answers 200: process start, imports,
   discovery, the family's configs and CLIP tokenizer written, conversion and load (fp32 on the CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REQUESTS = 60
WARMUP = 5
LOAD_REPEATS = 2


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _overhead(models: Path, log: Path, *extra: str) -> dict[str, float]:
    from tests.runtime_helpers import serve_subprocess

    body = {"prompt": "a photo of a cat", "steps": 2, "width": 64, "height": 64, "seed": 1}
    totals, pipelines = [], []
    with serve_subprocess(models, log, *extra) as server:
        for i in range(WARMUP + REQUESTS):
            started = time.perf_counter()
            response = server.client.post("/sdapi/v1/txt2img", json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if i >= WARMUP:
                totals.append(elapsed)
                pipelines.append(json.loads(response.json()["info"])["timings"]["pipeline_seconds"])
    overheads = [(t - p) * 1000 for t, p in zip(totals, pipelines, strict=True)]
    return {
        "overhead_ms_median": round(statistics.median(overheads), 2),
        "overhead_ms_p95": round(_percentile(overheads, 0.95), 2),
        "request_ms_median": round(statistics.median(totals) * 1000, 2),
        "pipeline_ms_median": round(statistics.median(pipelines) * 1000, 2),
    }


def _load_times(work: Path) -> dict[str, Any]:
    import torch

    from inference_api.architectures import SD15
    from inference_api.builder import build_pipeline
    from inference_api.catalog import discover
    from inference_api.ldm import save_single_file
    from inference_api.loading import DeviceSettings, load_model

    started = time.perf_counter()
    pipe = build_pipeline(SD15, dtype=torch.float16, fast_init=True)
    build_seconds = time.perf_counter() - started
    folder_root, single_root = work / "folder", work / "single"
    pipe.save_pretrained(folder_root / "sd15", safe_serialization=True)
    save_single_file(pipe, single_root / "sd15.safetensors")  # alone: what users download
    params = sum(p.numel() for name in ("unet", "vae", "text_encoder") for p in getattr(pipe, name).parameters())
    del pipe

    device = DeviceSettings(device="cpu", dtype=torch.float16)
    # A throw-away load first, so that importing the pipeline classes is not billed to the first model.
    (warmup,) = discover(work / "warmup").models
    load_model(warmup, work / "warmup", device)
    results: dict[str, Any] = {"parameters_millions": round(params / 1e6, 1), "build_seconds": round(build_seconds, 1)}
    for label, root in (("folder", folder_root), ("single_file", single_root)):
        (entry,) = discover(root).models
        _evict_from_page_cache(root)
        cold = _timed_load(entry, root, device)
        warm = min(_timed_load(entry, root, device) for _ in range(LOAD_REPEATS))
        size = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
        results[label] = {"cold_load_seconds": round(cold, 2), "warm_load_seconds": round(warm, 2)}
        results[label]["size_gb"] = round(size / 1e9, 2)
    _evict_from_page_cache(single_root)
    results["single_file"]["cold_seconds_to_ready"] = round(seconds_to_ready(single_root, work / "ready.log"), 2)
    return results


def seconds_to_ready(models: Path, log: Path, *extra: str) -> float:
    """From starting ``python -m inference_api serve`` on ``models`` until ``/ready`` answers 200."""
    from tests.runtime_helpers import serve_subprocess

    hf_home = Path(tempfile.mkdtemp(prefix="bench-empty-hf-"))
    previous = os.environ.get("HF_HOME")
    os.environ["HF_HOME"] = str(hf_home)  # an empty cache: nothing may come from the hub
    try:
        started = time.perf_counter()
        with serve_subprocess(models, log, *extra, ready_timeout=1800):
            return time.perf_counter() - started
    finally:
        if previous is None:
            os.environ.pop("HF_HOME", None)
        else:
            os.environ["HF_HOME"] = previous
        shutil.rmtree(hf_home, ignore_errors=True)


def _timed_load(entry: Any, root: Path, device: Any) -> float:

    from inference_api.loading import load_model

    started = time.perf_counter()
    loaded = load_model(entry, root, device)
    # safetensors may map weights lazily; read every byte, as the copy to a GPU would.
    pipe = loaded.text2img
    for name in ("unet", "vae", "text_encoder"):
        for param in getattr(pipe, name).parameters():
            param.detach().clone()  # a memcpy, like the host side of a device copy
    elapsed = time.perf_counter() - started
    del loaded, pipe
    return elapsed


def _evict_from_page_cache(root: Path) -> None:
    """Drop only these files' pages from the page cache (not the machine's: others work here too)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run() -> dict[str, Any]:
    import torch

    from inference_api.tiny import build_tiny_model

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        models = work / "tiny"
        build_tiny_model(models)
        batched = _overhead(models, work / "server-batched.log")
        windowed = _overhead(models, work / "server-window.log", "--batch-window-ms", "10")
        unbatched = _overhead(models, work / "server-unbatched.log", "--max-batch", "1")
        build_tiny_model(work / "sd15" / "warmup")
        loads = _load_times(work / "sd15")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "metrics": {
            "http_overhead_default": batched,
            "http_overhead_10ms_window": windowed,
            "http_overhead_batching_off": unbatched,
            "sd15_load": loads,
        },
        "notes": (
            f"{REQUESTS} sequential tiny-model 64x64 2-step txt2img requests per configuration after {WARMUP} "
            "warm-up; overhead = client wall time - pipeline time from info.timings. Default: micro-batching on "
            "(--max-batch 4) with no idle window, so a lone request starts at once; a 10 ms window is waited out "
            "by a lone request; batching off (--max-batch 1) shows the server's own cost. "
            "SD 1.5 load: random weights stored fp16, loaded to CPU by "
            "inference_api.loading (what a GPU pod does before moving to the device); cold = the files dropped from "
            "the page cache first, warm = best of the next loads; the single file lies alone in its folder. "
            "cold_seconds_to_ready: serve started on that folder (offline, empty HF cache) until /ready is 200."
        ),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
