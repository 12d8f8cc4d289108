"""Prometheus text exposition of the engine's counters (no client library needed in the runtime image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Counters:
    requests: int = 0
    images: int = 0
    errors: int = 0
    interrupted: int = 0
    out_of_memory: int = 0
    abandoned: int = 0
    rejected: int = 0
    pipeline_seconds: float = 0.0


_COUNTERS = {
    "requests": "generation requests received",
    "images": "images generated",
    "errors": "generation requests that failed",
    "interrupted": "jobs stopped by /interrupt",
    "out_of_memory": "batches that ran out of accelerator memory",
    "abandoned": "requests whose client went away before the answer",
    "rejected": "requests refused because the queue was full",
    "pipeline_seconds": "seconds spent inside pipeline calls",
}
_BATCHER = {
    "batches": "pipeline batches run",
    "requests": "requests run through the batcher",
    "merged_batches": "batches that merged several requests",
    "merged_requests": "requests that shared a batch",
}
_CACHE = {"hits": "model cache hits", "loads": "model loads", "evictions": "model evictions"}


def render_metrics(stats: dict[str, Any]) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {float(value)}"])

    for key, text in _COUNTERS.items():
        metric(f"inference_api_{key}_total", "counter", text, stats[key])
    for key, text in _BATCHER.items():
        metric(f"inference_api_batcher_{key}_total", "counter", text, stats["batcher"][key])
    metric("inference_api_batcher_waiting", "gauge", "requests waiting for the worker", stats["batcher"]["waiting"])
    for key, text in _CACHE.items():
        metric(f"inference_api_model_{key}_total", "counter", text, stats["cache"][key])
    load_seconds = stats["cache"]["load_seconds"]
    metric("inference_api_model_load_seconds_total", "counter", "seconds spent loading models", load_seconds)
    metric("inference_api_ready", "gauge", "1 when a request sent now would run", 1 if stats["ready"] else 0)
    metric("inference_api_healthy", "gauge", "0 once /health fails (restart the container)", int(stats["healthy"]))
    failures = stats["consecutive_failures"]
    metric("inference_api_consecutive_failures", "gauge", "failed generations since the last success", failures)
    return "\n".join(lines) + "\n"
