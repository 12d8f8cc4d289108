"""The AWS side of one runtime on a moto server, created the way the deployment creates it.

Tasks queue with a DLQ (redrive), a tasks topic feeding the queue through a filtered subscription
(so messages arrive SNS-enveloped, as in production), a results topic with a raw-delivery SQS
subscription to observe notifications, the output bucket and the status table. Real boto3 clients.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from contract import StatusRecord, TaskStatus, new_item, parse_request, to_queue_message
from infra import naming
from infra.config import parse_config, runtime_filter_policy

ACCOUNT, REGION = "123456789012", "us-east-1"


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(predicate: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Like ``wait_until`` but lets the event loop run between polls (for in-process agents).

    ``predicate`` is blocking (boto3), so it runs in a thread to keep the agent's loop responsive.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def task(task_id: str, tasktype: str = "text-to-image", content: dict[str, Any] | None = None, **meta: Any) -> dict:
    """A v1alpha2 request body, as a client would POST it."""
    body = content if content is not None else {"prompt": f"a fake picture {task_id}", "steps": 4}
    return {
        "task": {
            "metadata": {"id": task_id, "runtime": "sdruntime", "tasktype": tasktype, "prefix": "output", **meta},
            "content": body,
        }
    }


@dataclass
class AgentWorld:
    endpoint: str
    stack: str = "agenttest"
    runtime: str = "sdruntime"
    visibility_timeout: int = 3
    max_receive_count: int = 3
    queue_url: str = ""
    dlq_url: str = ""
    tasks_topic: str = ""
    results_topic: str = ""
    observer_url: str = ""
    bucket: str = ""
    table: str = ""
    # A high-priority queue beside the normal one, subscribed as the stack subscribes it.
    high_queue: bool = False
    high_queue_url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def create(self) -> AgentWorld:
        sqs, sns = self.client("sqs"), self.client("sns")
        self.dlq_url = sqs.create_queue(QueueName=naming.runtime_dlq(self.stack, self.runtime))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName=naming.runtime_queue(self.stack, self.runtime),
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count}
                ),
            },
        )["QueueUrl"]
        queue_arn = self._arn(self.queue_url)
        self.tasks_topic = sns.create_topic(Name=naming.tasks_topic(self.stack))["TopicArn"]
        policy: dict[str, Any] = naming.runtime_filter_policy(self.runtime)
        if self.high_queue:
            names = {"stackName": self.stack, "modelBucketArn": "arn:aws:s3:::models"}
            cfg = parse_config({**names, "modelsRuntime": [{"name": self.runtime}]})
            runtime = cfg.models_runtime[0]
            policy = runtime_filter_policy(cfg, runtime)
            self.high_queue_url = sqs.create_queue(
                QueueName=naming.runtime_high_queue(self.stack, self.runtime),
                Attributes={
                    "VisibilityTimeout": str(self.visibility_timeout),
                    "RedrivePolicy": json.dumps(
                        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count}
                    ),
                },
            )["QueueUrl"]
            sns.subscribe(
                TopicArn=self.tasks_topic,
                Protocol="sqs",
                Endpoint=self._arn(self.high_queue_url),
                Attributes={"FilterPolicy": json.dumps(runtime_filter_policy(cfg, runtime, high=True))},
            )
        sns.subscribe(
            TopicArn=self.tasks_topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"FilterPolicy": json.dumps(policy)},
        )
        self.results_topic = sns.create_topic(Name=naming.results_topic(self.stack))["TopicArn"]
        self.observer_url = sqs.create_queue(QueueName=f"{self.stack}-results-observer")["QueueUrl"]
        sns.subscribe(
            TopicArn=self.results_topic,
            Protocol="sqs",
            Endpoint=self._arn(self.observer_url),
            Attributes={"RawMessageDelivery": "true"},
        )
        self.bucket = naming.output_bucket(self.stack, ACCOUNT, REGION)
        self.client("s3").create_bucket(Bucket=self.bucket)
        self.table = naming.status_table(self.stack)
        self.client("dynamodb").create_table(
            TableName=self.table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return self

    def _table(self) -> Any:
        return boto3.resource("dynamodb", endpoint_url=self.endpoint, region_name=REGION).Table(self.table)

    def _arn(self, url: str) -> str:
        attrs = self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def agent_env(self, api_base_url: str, **overrides: str) -> dict[str, str]:
        """The agent's environment, as the chart sets it (plus short timings for tests)."""
        env = {
            "SQS_QUEUE_URL": self.queue_url,
            "SNS_TOPIC_ARN": self.results_topic,
            "S3_BUCKET": self.bucket,
            "RUNTIME_TYPE": "sdwebui",
            "RUNTIME_NAME": self.runtime,
            "API_BASE_URL": api_base_url,
            "DYNAMIC_SD_MODEL": "false",
            "LOGLEVEL": "INFO",
            "DISABLE_XRAY": "true",
            "STATUS_TABLE": self.table,
            "METRICS_PORT": "0",
            "RECEIVE_WAIT_SECONDS": "1",
            "RETRY_BACKOFF_SECONDS": "0.05",
            "RETRY_BACKOFF_MAX_SECONDS": "0.2",
            "RETRY_VISIBILITY_SECONDS": "0",
            "CANCEL_POLL_SECONDS": "0.3",
            "HEALTH_CHECK_INTERVAL_SECONDS": "1",
            "RUNTIME_READY_TIMEOUT_SECONDS": "20",
        }
        if self.high_queue_url:
            env["SQS_HIGH_QUEUE_URL"] = self.high_queue_url
        env.update(overrides)
        return env

    # -- submitting ------------------------------------------------------------------------------
    def submit(
        self,
        body: dict[str, Any],
        *,
        via: str = "sns",
        record: bool = True,
        nonce: str | None = None,
        submitted_at: datetime | None = None,
    ) -> str:
        """Do what the submit Lambda does: validate, write status=queued (with a fresh submission nonce unless
        ``nonce`` is given), publish. Returns the task id."""
        request = parse_request(body, runtimes={self.runtime})
        message = to_queue_message(
            request, nonce=secrets.token_hex(16) if nonce is None else nonce, submitted_at=submitted_at
        )
        if record:
            now = datetime.now(UTC)
            item = StatusRecord(
                id=message.id,
                runtime=message.runtime,
                tasktype=str(message.tasktype),
                status=TaskStatus.QUEUED,
                prefix=message.prefix,
                created_at=now,
                updated_at=now,
                context=message.context,
                fingerprint=message.fingerprint,
                nonce=message.nonce,
                priority=message.priority.value,
                expires_at=message.expires_at,
            )
            self._table().put_item(Item=new_item(item))
        if via == "sns":
            self.client("sns").publish(
                TopicArn=self.tasks_topic,
                Message=message.model_dump_json(),
                MessageAttributes=message.message_attributes(),
            )
        elif via == "sqs":
            self.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json())
        elif via == "raw-request":
            # What the replaced sample put on the queue: the client's request itself, no envelope.
            self.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))
        else:
            raise ValueError(via)
        return message.id

    def send_raw(self, body: str) -> None:
        self.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=body)

    # -- observing -------------------------------------------------------------------------------
    def notifications(self) -> list[dict[str, Any]]:
        """Every notification published so far (drains the observer queue into ``seen``)."""
        sqs = self.client("sqs")
        while True:
            resp = sqs.receive_message(
                QueueUrl=self.observer_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            )
            messages = resp.get("Messages", [])
            if not messages:
                return list(self.seen)
            for m in messages:
                body = json.loads(m["Body"])
                body["_attributes"] = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                self.seen.append(body)
                sqs.delete_message(QueueUrl=self.observer_url, ReceiptHandle=m["ReceiptHandle"])

    def wait_notifications(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        return wait_until(lambda: len(self.notifications()) >= count and self.seen, timeout, what=f"{count} notes")

    async def await_notifications(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        return await async_wait_until(
            lambda: len(self.notifications()) >= count and self.seen, timeout, what=f"{count} notifications"
        )

    def notes_per_task(self) -> Counter[str]:
        return Counter(n["id"] for n in self.notifications())

    def status(self, task_id: str) -> dict[str, Any] | None:
        return self._table().get_item(Key={"id": task_id}, ConsistentRead=True).get("Item")

    def status_of(self, task_id: str) -> str | None:
        record = self.status(task_id)
        return str(record["status"]) if record else None

    def update_status(self, task_id: str, **fields: Any) -> None:
        table = self._table()
        names = {f"#k{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        table.update_item(
            Key={"id": task_id},
            UpdateExpression="SET " + ", ".join(f"#k{i} = :v{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        s3 = self.client("s3")
        listing = s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read() for o in listing}

    def put_object(self, key: str, data: bytes, bucket: str | None = None) -> str:
        target = bucket or self.bucket
        self.client("s3").put_object(Bucket=target, Key=key, Body=data)
        return f"s3://{target}/{key}"

    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of the tasks queue (or ``url``)."""
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dlq_bodies(self) -> list[str]:
        """Bodies in the DLQ (peeked: received with a 0 s visibility so they stay)."""
        resp = self.client("sqs").receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        )
        return [m["Body"] for m in resp.get("Messages", [])]

    def drain_queue(self) -> int:
        """Receive (and thereby redrive) what is visible on the tasks queue; returns how many were seen."""
        resp = self.client("sqs").receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        )
        return len(resp.get("Messages", []))
