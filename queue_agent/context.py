"""Everything the pipeline stages share, built once per agent run and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from queue_agent.health import Health
from queue_agent.inputs import InputResolver
from queue_agent.leases import Leases
from queue_agent.metrics import Metrics
from queue_agent.notifier import Notifier
from queue_agent.results import ResultStore
from queue_agent.retry import RetryPolicy
from queue_agent.runtimes.base import Runtime
from queue_agent.settings import Settings
from queue_agent.sqs import QueueInfo, TaskQueue
from queue_agent.store import StatusStore
from queue_agent.tracing import Tracer
from queue_agent.webhooks import WebhookSender


@dataclass
class AgentContext:
    settings: Settings
    queue: TaskQueue
    queue_info: QueueInfo
    leases: Leases
    store: StatusStore
    results: ResultStore
    notifier: Notifier
    inputs: InputResolver
    runtime: Runtime
    retry: RetryPolicy
    metrics: Metrics
    tracer: Tracer
    health: Health
    # None when no webhook secret is configured: tasks asking for a webhook get none (a warning says so).
    webhooks: WebhookSender | None = None
