"""Price table and per-image time table: shipped with their as-of date and sources, overridable from files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import deep_merge

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_PRICES = DATA / "prices-us-west-2.json"
IMAGE_TIMES = DATA / "image-times.json"
GPU_BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "gpu_runtime.json"
HOURS_PER_MONTH = 720.0  # the sample's month (EKS $72 = 720 h x $0.10)


@dataclass(frozen=True)
class InstancePrice:
    name: str
    gpus: int
    vcpus: int
    gpu: str | None
    on_demand: float
    spot: float

    def hourly(self, spot: bool) -> float:
        return self.spot if spot else self.on_demand


@dataclass(frozen=True)
class PriceTable:
    region: str
    as_of: str
    instances: dict[str, InstancePrice]
    services: dict[str, float]

    def instance(self, name: str) -> InstancePrice:
        try:
            return self.instances[name]
        except KeyError:
            raise KeyError(
                f"no price for instance type {name!r} in the {self.region} table (as of {self.as_of}); "
                "add it with --prices FILE"
            ) from None

    def __getitem__(self, service: str) -> float:
        return self.services[service]


def load_prices(override: Path | None = None) -> PriceTable:
    data: dict[str, Any] = json.loads(DEFAULT_PRICES.read_text(encoding="utf-8"))
    if override is not None:
        data = deep_merge(data, json.loads(override.read_text(encoding="utf-8")))
    instances = {
        name: InstancePrice(name, int(row["gpus"]), int(row["vcpus"]), row.get("gpu"), float(row["on_demand"]),
                            float(row["spot"]))
        for name, row in data["instances"].items()
    }
    return PriceTable(str(data["region"]), str(data["as_of"]), instances,
                      {k: float(v) for k, v in data["services"].items()})


@dataclass(frozen=True)
class ImageTime:
    seconds: float
    source: str


def image_time(model: str, gpu: str, *, benchmark: Path | None = GPU_BENCHMARK) -> ImageTime:
    """Seconds per image for a model family on a GPU: our own GPU benchmark when it measured this pair."""
    measured = _measured(model, gpu, benchmark)
    if measured is not None:
        return measured
    rows = json.loads(IMAGE_TIMES.read_text(encoding="utf-8"))["rows"]
    for row in rows:
        if row["model"] == model and row["gpu"] == gpu:
            return ImageTime(float(row["seconds"]), str(row["source"]))
    known = sorted({(r["model"], r["gpu"]) for r in rows})
    raise KeyError(f"no per-image time for model {model!r} on {gpu}; known: {known}; pass --seconds-per-image")


def _measured(model: str, gpu: str, path: Path | None) -> ImageTime | None:
    """Rows of benchmarks/results/gpu_runtime.json: ``{"device": "...", "metrics": {"<model>.ours.images_per_s"}}``."""
    if path is None or not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    device = str(result.get("device") or result.get("environment", {}).get("gpu") or "")
    if gpu.lower() not in device.lower():
        return None
    rate = result.get("metrics", {}).get(f"{model}.ours.images_per_s")
    if not rate:
        return None
    return ImageTime(1.0 / float(rate), f"our GPU benchmark ({path.name}, {device})")
