"""Prometheus metrics, in a registry owned by the agent instance (no process-global collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs = Counter("queue_agent_jobs", "Jobs finished, by how they ended", ["status"], registry=r)
        self.retries = Counter("queue_agent_retries", "Transient failures retried in process", registry=r)
        self.job_duration = Histogram(
            "queue_agent_job_duration_seconds",
            "Runtime call duration per job",
            ["tasktype"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.runtime_idle = Counter(
            "queue_agent_runtime_idle_seconds", "Time the runtime waited for the agent between jobs", registry=r
        )
        self.runtime_idle_gap = Histogram(
            "queue_agent_runtime_idle_gap_seconds",
            "Gap between consecutive runtime calls",
            buckets=_GAP_BUCKETS,
            registry=r,
        )
        self.receive_latency = Histogram(
            "queue_agent_receive_latency_seconds",
            "Duration of SQS receive calls that returned messages",
            buckets=_GAP_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "queue_agent_queue_time_seconds",
            "Time messages waited in SQS before this agent received them",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("queue_agent_in_flight_messages", "Messages the agent holds", registry=r)
        self.running = Gauge(
            "queue_agent_running_jobs", "Calls in flight at the runtime right now (up to RUNTIME_INFLIGHT)", registry=r
        )
        self.runtime_healthy = Gauge("queue_agent_runtime_healthy", "1 when the runtime answers probes", registry=r)
