"""Assemble the agent from its settings and run it: clients, queue facts, runtime readiness, pipeline."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aioboto3

from contract import DEFAULT_LIMITS, secret_from_stored
from queue_agent.aws import open_clients
from queue_agent.context import AgentContext
from queue_agent.fetch import HttpsFetcher
from queue_agent.health import Health
from queue_agent.inputs import InputResolver
from queue_agent.leases import Leases
from queue_agent.metrics import Metrics
from queue_agent.notifier import Notifier
from queue_agent.pipeline import Pipeline
from queue_agent.results import ResultStore
from queue_agent.retry import RetryPolicy
from queue_agent.runtimes import build_runtime
from queue_agent.runtimes.base import Runtime
from queue_agent.server import StatusServer
from queue_agent.settings import Settings
from queue_agent.sqs import PriorityQueues, TaskQueue
from queue_agent.store import DynamoStatusStore, NullStatusStore, StatusStore
from queue_agent.tracing import Tracer
from queue_agent.webhooks import WebhookSender

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Overrides:
    """Collaborators a test or the benchmark may supply instead of the ones built from settings."""

    runtime: Runtime | None = None
    fetcher: HttpsFetcher | None = None
    session: Any = None


class _Stopped(Exception):
    pass


async def _unless_stopped(step: Awaitable[T], stop: asyncio.Event) -> T:
    work = asyncio.ensure_future(step)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    raise _Stopped


async def run_agent(
    settings: Settings,
    stop: asyncio.Event,
    abort: asyncio.Event | None = None,
    overrides: Overrides | None = None,
    *,
    on_ready: Callable[[AgentContext], None] | None = None,
) -> int:
    """Run until ``stop`` is set. Returns the process exit code."""
    overrides = overrides or Overrides()
    abort = abort or asyncio.Event()
    metrics = Metrics()
    health = Health(threshold=settings.health_failures)
    server = StatusServer(health, metrics)
    if settings.metrics_port:
        await server.start(settings.metrics_host, settings.metrics_port)
    runtime = overrides.runtime or build_runtime(settings)
    try:
        async with open_clients(settings.receive_wait, overrides.session) as aws:
            queue = (
                PriorityQueues(aws.sqs, settings.queue_url, settings.high_queue_url,
                               normal_share=settings.normal_queue_share)
                if settings.high_queue_url
                else TaskQueue(aws.sqs, settings.queue_url)
            )
            try:
                info = await queue.info()
            except Exception as exc:
                log.error(
                    "cannot read the task queue's attributes", extra={"queue": settings.queue_url, "error": str(exc)}
                )
                return 1
            extension, interval = settings.lease_timing(info.visibility_timeout)
            log.info(
                "queue",
                extra={
                    "visibility_timeout": info.visibility_timeout,
                    "max_receive_count": info.max_receive_count,
                    "lease_extension": extension,
                    "heartbeat_interval": interval,
                },
            )
            store: StatusStore = (
                DynamoStatusStore(await aws.dynamodb.Table(settings.status_table))
                if settings.status_table
                else NullStatusStore()
            )
            # INPUT_MAX_BYTES may tighten the contract's per-input limit, never loosen it.
            max_input = min(settings.input_max_bytes, DEFAULT_LIMITS.max_input_bytes)
            fetcher = overrides.fetcher or HttpsFetcher(max_input, settings.https_fetch_timeout)
            ctx = AgentContext(
                settings=settings,
                queue=queue,
                queue_info=info,
                leases=Leases(queue, extension, interval),
                store=store,
                results=ResultStore(aws.s3, settings.bucket),
                notifier=Notifier(aws.sns, settings.topic_arn, s3=aws.s3, bucket=settings.bucket),
                inputs=InputResolver(aws.s3, settings.input_buckets, fetcher),
                runtime=runtime,
                retry=RetryPolicy(settings.transient_retries, settings.retry_backoff, settings.retry_backoff_max),
                metrics=metrics,
                tracer=Tracer(enabled=not settings.disable_xray, service=f"queue-agent-{settings.runtime_name}"),
                health=health,
            )
            secret = await _webhook_secret(settings, overrides.session)
            if secret is not None:
                ctx.webhooks = WebhookSender(
                    secret,
                    store.record_webhook,
                    attempts=settings.webhook_attempts,
                    timeout=settings.webhook_timeout,
                    backoff=settings.webhook_backoff,
                    allow_loopback=settings.webhook_allow_loopback,
                )
            log.info("waiting for the runtime", extra={"url": settings.api_base_url})
            try:
                await _unless_stopped(runtime.wait_ready(settings.runtime_ready_timeout), stop)
            except TimeoutError:
                log.error("runtime did not become ready", extra={"timeout_s": settings.runtime_ready_timeout})
                return 1
            except _Stopped:
                log.info("stopped before the runtime was ready")
                return 0
            # Everything allocated so far (botocore's service models above all) lives as long as the
            # process: keep it out of the collector's way so a full collection never stalls a hand-off.
            gc.freeze()
            health.mark_ready()
            metrics.runtime_healthy.set(1)
            log.info("runtime ready; receiving", extra={"runtime": settings.runtime_type.value})
            if on_ready is not None:
                on_ready(ctx)
            code = await Pipeline(ctx).run(stop, abort)
            if ctx.webhooks is not None:
                await ctx.webhooks.drain(WEBHOOK_DRAIN_SECONDS)
            return code
    finally:
        await runtime.aclose()
        await server.stop()


# At shutdown, webhook deliveries still retrying get this long before they are abandoned.
WEBHOOK_DRAIN_SECONDS = 10.0


async def _webhook_secret(settings: Settings, session: Any) -> str | None:
    """The stack's ``whsec_`` secret: from WEBHOOK_SECRET, else read once from Secrets Manager."""
    if settings.webhook_secret:
        return secret_from_stored(settings.webhook_secret)
    if not settings.webhook_secret_arn:
        return None
    async with (session or aioboto3.Session()).client("secretsmanager") as client:
        value = await client.get_secret_value(SecretId=settings.webhook_secret_arn)
    return secret_from_stored(str(value["SecretString"]))
