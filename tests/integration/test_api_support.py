"""Shared by the task API tests: the AWS resources the API needs, created on the moto server, and a way to
call a handler with a real REST proxy event. No tests here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from infra import naming
from local_stack.gateway_events import GatewayRoute, Handler, HttpRequest, LambdaContext, rest_proxy_event
from local_stack.moto_server import MotoServer

STACK = "sdtest"
ACCOUNT = "123456789012"
REGION = "us-east-1"
RUNTIMES = ("sdruntime", "comfyruntime")


@dataclass(frozen=True)
class ApiStack:
    endpoint: str
    topic_arn: str
    table: str
    bucket: str
    queues: dict[str, str]

    def env(self) -> dict[str, str]:
        return {
            "TASKS_TOPIC_ARN": self.topic_arn,
            "STATUS_TABLE": self.table,
            "OUTPUT_BUCKET": self.bucket,
            "RUNTIMES": ",".join(self.queues),
            # The request fixtures stage their inputs here.
            "INPUT_BUCKETS": "example-input-bucket",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def drain(self, runtime: str) -> list[dict[str, Any]]:
        """Every message waiting on a runtime's queue (body parsed, attributes kept), deleted as read."""
        sqs = self.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(
                QueueUrl=self.queues[runtime], MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
            )
            batch = answer.get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append({"body": json.loads(message["Body"]), "attributes": message.get("MessageAttributes", {})})
                sqs.delete_message(QueueUrl=self.queues[runtime], ReceiptHandle=message["ReceiptHandle"])

    def item(self, task_id: str) -> dict[str, Any] | None:
        table = boto3.resource("dynamodb", endpoint_url=self.endpoint, region_name=REGION).Table(self.table)
        item: dict[str, Any] | None = table.get_item(Key={"id": task_id}, ConsistentRead=True).get("Item")
        return item


def build_api_stack(endpoint: str) -> ApiStack:
    """Tasks topic, one queue per runtime subscribed with the runtime's filter policy (raw delivery), the
    status table (TTL on expires_at) and the output bucket: named as infra/naming.py names them."""
    sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    topic_arn = sns.create_topic(Name=naming.tasks_topic(STACK))["TopicArn"]
    queues: dict[str, str] = {}
    for runtime in RUNTIMES:
        url = sqs.create_queue(QueueName=naming.runtime_queue(STACK, runtime))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicy": json.dumps(naming.runtime_filter_policy(runtime)),
            },
        )
        queues[runtime] = url
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    table = naming.status_table(STACK)
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    bucket = naming.output_bucket(STACK, ACCOUNT, REGION)
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=bucket)
    return ApiStack(endpoint=endpoint, topic_arn=topic_arn, table=table, bucket=bucket, queues=queues)


@pytest.fixture
def api_stack(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    stack = build_api_stack(aws_env.endpoint)
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    yield stack


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def call(
    handler: Handler,
    method: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    *,
    resource: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Invoke a handler in-process with the REST proxy event the local gateway would build."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    resource = resource or ("/tasks/{id}" if path.startswith("/tasks/") else path)
    route = GatewayRoute(method, resource, handler)
    params = route.match(path)
    assert params is not None, f"{path} does not match {resource}"
    request = HttpRequest(method, path, "", list((headers or {"content-type": "application/json"}).items()), raw or b"")
    event = rest_proxy_event(request, route, params, stage="test", domain="localhost", api_key="test-key")
    result = handler(event, LambdaContext(function_name="task-api-test"))
    merged = {k.lower(): ", ".join(v) for k, v in (result.get("multiValueHeaders") or {}).items()}
    merged.update({k.lower(): v for k, v in (result.get("headers") or {}).items()})
    return Answer(result["statusCode"], merged, result.get("body") or "")
