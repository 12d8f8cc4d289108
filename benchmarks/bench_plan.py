"""sdq plan: how fast it plans a month, and the month the README's "What will it cost?" quotes.

Scenarios, all 1M images over 30 days in us-west-2 prices as of March 2026:
- ``sample.full_utilization``: the replaced sample's own arithmetic (GPU busy every paid hour, no NAT);
- ``sample.steady`` / ``sample.diurnal``: its deployment simulated (sdwebui from a public registry, one call
  in flight and the 149 ms gap per job its agent measured in bench_agent, g6/g5 2xlarge spot, scale to zero);
- ``ours.*``: this project's config.yaml as shipped (our runtime image from the stack's ECR, two calls in flight);
- ``ours_xlarge.diurnal``: the same with the 1-GPU xlarge sizes (the same L4/A10G GPU, half the vCPUs).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from infra.config import parse_config
from planner import traffic
from planner.plan import PlanResult, Traffic, run_plan
from planner.prices import load_prices
from planner.settings import Timings, apply_override, settings_from_config

ROOT = Path(__file__).resolve().parent.parent
IMAGES, DAYS = 1_000_000, 30.0
SAMPLE_AGENT_GAP_SECONDS = 0.149  # bench_agent: replaced_agent.median_gap_ms

SAMPLE = {
    "stackName": "sdoneks",
    "modelBucketArn": "arn:aws:s3:::sdoneks-models",
    "modelsRuntime": [{
        "name": "sdruntime", "type": "sdwebui", "modelFilename": "sd_xl_turbo_1.0.safetensors",
        "extraValues": {
            "karpenter": {"provisioner": {"instanceType": ["g6.2xlarge", "g5.2xlarge"]}},
            "runtime": {"scaling": {"queueLength": 10, "minReplicaCount": 0, "maxReplicaCount": 5,
                                    "cooldownPeriod": 300}},
        },
    }],
}


def _summary(result: PlanResult) -> dict[str, Any]:
    d = result.as_dict()
    return {
        "total_usd": d["cost_usd"]["total"],
        "variable_usd": d["cost_usd"]["variable"],
        "fixed_usd": d["cost_usd"]["fixed"],
        "gpu_usd": round(sum(line["usd"] for line in d["cost_usd"]["lines"] if line["item"].startswith("EC2 g")), 2),
        "nat_data_usd": round(sum(line["usd"] for line in d["cost_usd"]["lines"] if "NAT data" in line["item"]), 2),
        "gpu_hours": d["gpu_hours"],
        "busy_fraction": d["busy_fraction"],
        "p50_s": d["latency_s"]["p50"],
        "p95_s": d["latency_s"]["p95"],
        "node_launches": d["nodes"]["launches"],
    }


def run() -> dict[str, Any]:
    prices = load_prices()
    loads = {kind: Traffic(traffic.generate(kind, IMAGES, DAYS, 0), DAYS, kind) for kind in ("steady", "diurnal")}
    ours_raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    sample = settings_from_config(parse_config(SAMPLE), timings=Timings(agent_gap_seconds=SAMPLE_AGENT_GAP_SECONDS))
    sample = replace(sample, in_flight=1)
    ours = settings_from_config(parse_config(ours_raw))
    xlarge = settings_from_config(parse_config(apply_override(
        ours_raw, "karpenter.provisioner.instanceType", ["g6.xlarge", "g5.xlarge"])))
    metrics: dict[str, Any] = {}

    started_cpu, started = time.process_time(), time.perf_counter()
    first = run_plan(sample, prices, loads["steady"], assume_full_utilization=True)
    metrics["speed"] = {"cpu_seconds_1m_images_30_days": round(time.process_time() - started_cpu, 2),
                        "wall_seconds_1m_images_30_days": round(time.perf_counter() - started, 2)}
    assert first.anchor is not None
    metrics["sample.full_utilization"] = {"total_usd": round(first.anchor.total, 2),
                                          "variable_usd": round(first.anchor.variable, 2),
                                          "fixed_usd": round(first.anchor.fixed, 2)}
    metrics["sample.steady"] = _summary(first)
    metrics["sample.diurnal"] = _summary(run_plan(sample, prices, loads["diurnal"]))
    for kind, load in loads.items():
        metrics[f"ours.{kind}"] = _summary(run_plan(ours, prices, load))
    metrics["ours_xlarge.diurnal"] = _summary(run_plan(xlarge, prices, loads["diurnal"]))
    return {
        "metrics": metrics,
        "notes": (
            "1M images over 30 days, us-west-2 prices as of 2026-03-01, seed 0, 1.5 s per image (the sample's "
            "figure). Speed: one plan of 1M images, CPU seconds of this process (one core) and wall seconds on the "
            "shared 2-core machine. Per-scenario costs are for the whole 30 days, fixed costs included; "
            "batching gain 1.0 (no GPU measurement yet)."
        ),
    }
