"""One plan: traffic through the throttle, the simulated fleet, its costs, and the limits that bound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner import costs, traffic
from planner.costs import Costs
from planner.prices import PriceTable
from planner.settings import PlanSettings
from planner.sim import Outcome, Quota, Simulation
from planner.traffic import Throttled


@dataclass(frozen=True)
class Traffic:
    times: list[float]  # submit times in seconds, sorted
    days: float
    label: str


@dataclass(frozen=True)
class PlanResult:
    settings: PlanSettings
    traffic: Traffic
    throttled: Throttled
    outcome: Outcome
    costs: Costs
    anchor: Costs | None
    prices: PriceTable
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        o, c = self.outcome, self.costs
        images = len(self.traffic.times) * self.settings.workload.images_per_task
        completed_images = o.completed * self.settings.workload.images_per_task
        gpu_hours = sum(o.node_seconds.values()) / 3600.0
        data: dict[str, Any] = {
            "images": images,
            "requests": len(self.traffic.times),
            "accepted": o.accepted,
            "throttled_calls": self.throttled.throttled_calls,
            "rejected": self.throttled.rejected,
            "completed": completed_images,
            "dead_lettered": o.dead_lettered,
            "gpu_hours": round(gpu_hours, 3),
            "busy_fraction": round(o.busy_seconds / (gpu_hours * 3600.0), 4) if gpu_hours else 0.0,
            "cost_usd": {
                "variable": round(c.variable, 2),
                "fixed": round(c.fixed, 2),
                "total": round(c.total, 2),
                "per_1k_images": round(c.total / completed_images * 1000, 4) if completed_images else None,
                "lines": [line.as_dict() for line in c.lines],
            },
            "latency_s": latency_summary(o),
            "nodes": {"max": o.nodes_max, "mean": round(o.nodes_mean, 3), "launches": o.node_launches},
            "pods_max": o.pods_max,
            "backlog_max": o.backlog_max,
            "interruptions": o.interruptions,
            "seconds_per_image": o.seconds_per_image,
            "seconds_per_image_source": o.image_time_source,
            "days": self.traffic.days,
            "arrival": self.traffic.label,
            "runtime": self.settings.runtime,
            "prices": {"region": self.prices.region, "as_of": self.prices.as_of},
            "warnings": list(self.warnings),
        }
        if self.anchor is not None:
            data["full_utilization"] = {
                "variable": round(self.anchor.variable, 2),
                "fixed": round(self.anchor.fixed, 2),
                "total": round(self.anchor.total, 2),
                "lines": [line.as_dict() for line in self.anchor.lines],
            }
        return data


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(q / 100.0 * len(sorted_values)) - 1)
    return sorted_values[rank]


def latency_summary(outcome: Outcome) -> dict[str, float]:
    values = sorted(outcome.latencies)
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(values[-1], 3) if values else 0.0,
    }


def run_plan(
    settings: PlanSettings,
    prices: PriceTable,
    load: Traffic,
    *,
    seed: int = 0,
    quota: Quota | None = None,
    assume_full_utilization: bool = False,
) -> PlanResult:
    throttled = traffic.throttle(load.times, settings.rate_limit, settings.burst_limit)
    sim = Simulation(settings, prices, throttled.accepted, horizon=load.days * traffic.DAY, seed=seed, quota=quota)
    outcome = sim.run()
    period_costs = costs.simulated(settings, prices, outcome, load.days)
    anchor = None
    if assume_full_utilization:
        images = len(load.times) * settings.workload.images_per_task
        anchor = costs.full_utilization(settings, prices, images, outcome.seconds_per_image, load.days)
    return PlanResult(settings, load, throttled, outcome, period_costs, anchor, prices,
                      tuple(warnings(settings, throttled, outcome)))


def warnings(settings: PlanSettings, throttled: Throttled, outcome: Outcome) -> list[str]:
    notes = []
    if throttled.throttled_calls:
        notes.append(
            f"API throttle binds: {throttled.throttled_calls} calls answered 429 (rateLimit "
            f"{settings.rate_limit:g}/s, burstLimit {settings.burst_limit}); {throttled.rejected} requests "
            "gave up after 3 retries"
        )
    if "maxReplicaCount" in outcome.binds:
        notes.append(f"maxReplicaCount ({settings.scaling.max_replicas}) binds: KEDA wanted more pods")
    if "nodepool" in outcome.binds:
        notes.append(f"NodePool limit binds: nvidia.com/gpu {settings.fleet.gpu_limit}")
    if "quota" in outcome.binds:
        notes.append("the vCPU quota given with --quota binds: pods waited for capacity")
    if "capacity" in outcome.binds:
        notes.append("spot capacity was short and on-demand is not allowed: pods waited")
    if outcome.dead_lettered:
        notes.append(f"{outcome.dead_lettered} messages reached the DLQ (maxReceiveCount {settings.max_receive_count})")
    unfinished = outcome.accepted - outcome.completed - outcome.dead_lettered
    if unfinished > 0:
        notes.append(f"{unfinished} accepted requests were still queued a day after the last arrival")
    return notes
