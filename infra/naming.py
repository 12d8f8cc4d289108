"""Resource names derived from config.yaml: one place, used by the CDK stack and the local stack alike."""

from __future__ import annotations


def tasks_topic(stack: str) -> str:
    return f"{stack}-tasks"


def results_topic(stack: str) -> str:
    return f"{stack}-results"


def runtime_queue(stack: str, runtime: str) -> str:
    return f"{stack}-{runtime}-queue"


def runtime_high_queue(stack: str, runtime: str) -> str:
    """The runtime's high-priority queue (``metadata.priority: high``), read before the normal one."""
    return f"{stack}-{runtime}-high"


def runtime_dlq(stack: str, runtime: str) -> str:
    return f"{stack}-{runtime}-dlq"


def status_table(stack: str) -> str:
    return f"{stack}-task-status"


def output_bucket(stack: str, account: str, region: str) -> str:
    # Bucket names are global; account and region keep two deployments of one config apart.
    return f"{stack.lower()}-outputs-{account}-{region}"[:63]


def runtime_filter_policy(runtime: str) -> dict[str, list[str]]:
    """SNS subscription filter: each runtime queue receives only the tasks addressed to it."""
    return {"runtime": [runtime]}


def cluster_name(stack: str) -> str:
    return f"{stack}-cluster"


def karpenter_interruption_queue(stack: str) -> str:
    return f"{stack}-karpenter-interruption"


def runtime_service_account(runtime: str) -> str:
    # The chart creates this ServiceAccount; the Pod Identity association must name it exactly.
    return f"{runtime}-sa"


def alarms_topic(stack: str) -> str:
    return f"{stack}-alarms"
