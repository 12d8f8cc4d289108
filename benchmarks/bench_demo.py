"""The local stack end to end: how long it takes to come up, to run tasks through the whole pipeline, to stop.

Runs with the tiny model on CPU, so the numbers measure the pipeline's overhead (API, SNS->SQS, agent,
S3, DynamoDB, notification), not diffusion speed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from local_stack.notifications import NotificationInbox
from local_stack.stack import LocalStack, StackOptions
from sdq.client import ApiClient, Endpoint, build_request

ROOT = Path(__file__).resolve().parent.parent
TASKS = 16
SIDE = 64
STEPS = 2


def _one_stack(inflight: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        options = StackOptions(
            config_path=ROOT / "config.yaml",
            workdir=Path(tmp),
            generated_model="tiny",
            model_cache=ROOT / ".local-stack" / "models",
            extra_env={"agent": {"RUNTIME_INFLIGHT": str(inflight)}},
        )
        started = time.perf_counter()
        stack = LocalStack(options).up()
        up_seconds = time.perf_counter() - started
        try:
            assert stack.resources is not None
            inbox = NotificationInbox(stack.aws_endpoint, stack.resources.results_topic_arn, "bench-results")
            runtime = stack.runtime_names[0]
            sent: dict[str, float] = {}
            with ApiClient(Endpoint(stack.api_url, stack.api_key)) as api:
                burst_started = time.perf_counter()
                for n in range(TASKS):
                    body = build_request(
                        "a benchmark lighthouse", runtime=runtime, steps=STEPS, size=(SIDE, SIDE), seed=n
                    )
                    sent[str(api.submit(body)["id"])] = time.monotonic()
                submit_seconds = time.perf_counter() - burst_started
                got = inbox.wait_for(sent, timeout=600)
                burst_seconds = time.perf_counter() - burst_started
            latencies = sorted(got[i].received_at - sent[i] for i in sent)
            completed = sum(1 for r in got.values() if r.notification.status == "completed")
        finally:
            stopping = time.perf_counter()
            stack.down()
            down_seconds = time.perf_counter() - stopping
    return {
        "stack_up_seconds": round(up_seconds, 2),
        "stack_down_seconds": round(down_seconds, 2),
        "tasks": TASKS,
        "completed": completed,
        "submit_ms_per_task": round(1000 * submit_seconds / TASKS, 1),
        "tasks_per_minute": round(60 * TASKS / burst_seconds, 1),
        "latency_first_seconds": round(latencies[0], 2),
        "latency_median_seconds": round(statistics.median(latencies), 2),
        "latency_last_seconds": round(latencies[-1], 2),
    }


def run() -> dict[str, Any]:
    by_inflight = {f"inflight{k}": _one_stack(k) for k in (1, 2)}
    return {
        "metrics": {
            **by_inflight["inflight2"],
            "inflight1_tasks_per_minute": by_inflight["inflight1"]["tasks_per_minute"],
            "inflight2_vs_inflight1": round(
                by_inflight["inflight2"]["tasks_per_minute"] / by_inflight["inflight1"]["tasks_per_minute"], 3
            ),
        },
        "notes": (
            f"{TASKS} text-to-image tasks ({SIDE}x{SIDE}, {STEPS} steps, tiny model, CPU) submitted at once through "
            "the local HTTP API; latency is submit -> completion notification on a client's own SQS subscription. "
            "One runtime and one agent (PREFETCH 1), so tasks run one after another: the last latency is the queue. "
            "The stack runs twice: RUNTIME_INFLIGHT 2 (the default; the top-level metrics) and 1. The runtime "
            "runs at its defaults (no batch window, so with two calls in flight batches rarely merge). "
            f"Details: {by_inflight}"
        ),
    }
