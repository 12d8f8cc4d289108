"""``sdq redrive RUNTIME``: the documented way to retry dead-lettered tasks.

Every dead letter of the runtime goes back on its task queue: the messages still in its DLQ, and those the
dead-letter consumer already took off it (kept under ``.dead-letters/{dlq name}/`` in the output bucket).
Before a message goes back, its task is reset to ``queued`` (unless it completed or was cancelled), so that
the agent runs it instead of treating it as finished and deleting it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import ContractError, Priority, dead_letter_prefix, parse_queue_body, requeue_update, utcnow

# How long a DLQ message received by a redrive stays invisible when it cannot be moved (it is not a task).
_HOLD_SECONDS = 300


class RedriveError(RuntimeError):
    """The runtime's queues could not be found; the message says what to pass."""


@dataclass(frozen=True)
class RedriveTarget:
    runtime: str
    queue_url: str
    dlq_url: str
    table: str
    bucket: str
    # A high-priority task goes back to the runtime's high-priority queue ("": the stack has none).
    high_queue_url: str = ""

    @property
    def dlq_name(self) -> str:
        return self.dlq_url.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class RedriveReport:
    requeued: list[str] = field(default_factory=list)  # task ids put back on the queue
    skipped: int = 0  # dead letters that are no task message (kept where they are)


@dataclass(frozen=True)
class Redriver:
    target: RedriveTarget
    sqs: Any
    s3: Any
    table: Any  # a boto3 DynamoDB Table resource

    def run(self) -> RedriveReport:
        report = RedriveReport()
        self._from_dlq(report)
        self._from_archive(report)
        return report

    def _from_dlq(self, report: RedriveReport) -> None:
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.target.dlq_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=_HOLD_SECONDS,
            ).get("Messages", [])
            if not batch:
                return
            for message in batch:
                if self._requeue(message["Body"], report):
                    self.sqs.delete_message(QueueUrl=self.target.dlq_url, ReceiptHandle=message["ReceiptHandle"])

    def _from_archive(self, report: RedriveReport) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        prefix = dead_letter_prefix(self.target.dlq_name)
        for page in paginator.paginate(Bucket=self.target.bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.target.bucket, Key=entry["Key"])["Body"].read().decode()
                if self._requeue(body, report):
                    self.s3.delete_object(Bucket=self.target.bucket, Key=entry["Key"])

    def _requeue(self, body: str, report: RedriveReport) -> bool:
        """Reset the task and send ``body`` back to the task queue; False when it is no task message."""
        try:
            message = parse_queue_body(body)
        except (ContractError, RecursionError):
            report.skipped += 1
            return False
        try:
            self.table.update_item(**requeue_update(message.id, utcnow()))
        except ClientError as exc:
            # Completed or cancelled (or no record): sent anyway; the agent announces and drops it.
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        high = message.priority is Priority.HIGH and self.target.high_queue_url
        self.sqs.send_message(QueueUrl=self.target.high_queue_url if high else self.target.queue_url, MessageBody=body)
        report.requeued.append(message.id)
        return True


def target_from_stack(stack_name: str, runtime: str, session: Any) -> RedriveTarget:
    """Queue, DLQ, table and bucket of ``runtime`` from a deployed stack's outputs."""
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise RedriveError(f"cannot read stack {stack_name}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    suffix = "".join(part.capitalize() for part in runtime.split("-"))
    wanted = {"queue": f"QueueUrl{suffix}", "dlq": f"DlqUrl{suffix}", "table": "StatusTable", "bucket": "OutputBucket"}
    missing = [name for name in wanted.values() if name not in outputs]
    if missing:
        raise RedriveError(
            f"stack {stack_name} has no output {', '.join(missing)}: is {runtime!r} one of its runtimes?"
        )
    return RedriveTarget(
        runtime,
        outputs[wanted["queue"]],
        outputs[wanted["dlq"]],
        outputs[wanted["table"]],
        outputs[wanted["bucket"]],
        outputs.get(f"HighQueueUrl{suffix}", ""),
    )


def target_from_local(local_file: Path, runtime: str) -> tuple[RedriveTarget, str]:
    """The local stack's target and its AWS endpoint (moto), from the file ``sdq local up`` writes."""
    try:
        data = json.loads(local_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RedriveError(f"no local stack recorded in {local_file}: pass --stack NAME for a deployed one") from None
    endpoint, resources = data.get("aws_endpoint"), data.get("resources")
    if not isinstance(endpoint, str) or not isinstance(resources, dict):
        raise RedriveError(f"{local_file} does not name the local stack's AWS resources; restart `sdq local up`")
    queues = resources.get("runtimes", {}).get(runtime)
    if not isinstance(queues, dict):
        raise RedriveError(f"the local stack has no runtime {runtime!r}")
    return (
        RedriveTarget(
            runtime,
            queues["queue_url"],
            queues["dlq_url"],
            resources["table"],
            resources["bucket"],
            queues.get("high_queue_url", ""),
        ),
        endpoint,
    )


def redrive(runtime: str, *, stack: str | None, local_file: Path) -> RedriveReport:
    import boto3

    if stack:
        session = boto3.session.Session()
        target = target_from_stack(stack, runtime, session)
        clients = {name: session.client(name) for name in ("sqs", "s3")}
        table = session.resource("dynamodb").Table(target.table)
    else:
        target, endpoint = target_from_local(local_file, runtime)
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        # The local stack's moto server takes any credentials; never the user's real ones.
        fake = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": region}
        clients = {name: boto3.client(name, endpoint_url=endpoint, **fake) for name in ("sqs", "s3")}
        table = boto3.resource("dynamodb", endpoint_url=endpoint, **fake).Table(target.table)
    return Redriver(target, clients["sqs"], clients["s3"], table).run()
