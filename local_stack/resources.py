"""Create, in moto, the AWS resources the cloud stack would create from the same config.

Names come from ``infra.naming`` only, so a local run and a deployment of one config.yaml agree
on every topic, queue, table and bucket name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from infra import naming
from infra.config import DeploymentConfig, runtime_filter_policy
from local_stack.moto_server import FAKE_AWS_ENV

# moto's default account; the bucket name embeds it exactly as a deployment embeds the real one.
LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"
TTL_ATTRIBUTE = "expires_at"


@dataclass(frozen=True)
class RuntimeResources:
    name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    subscription_arn: str
    # metadata.priority "high" tasks: the agent reads this queue first.
    high_queue_url: str = ""


@dataclass(frozen=True)
class StackResources:
    tasks_topic_arn: str
    results_topic_arn: str
    bucket: str
    table: str
    runtimes: dict[str, RuntimeResources] = field(default_factory=dict)
    # Where clients stage s3:// inputs: config.yaml's inputBuckets, or one local stand-in when it lists none.
    input_buckets: tuple[str, ...] = ()


def client(service: str, endpoint: str) -> Any:
    """A real boto3 client aimed at the moto server, with moto's fake credentials whatever this process's env says."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_AWS_ENV["AWS_SESSION_TOKEN"],
    )


def _queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def allow_topic_to_send(sqs: Any, queue_url: str, queue_arn: str, topic_arn: str) -> None:
    """The queue policy SNS needs in AWS; moto does not enforce it, but the local stack mirrors the cloud."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def subscribe_queue(
    sns: Any, sqs: Any, topic_arn: str, queue_url: str, queue_arn: str, filter_policy: dict[str, Any] | None
) -> str:
    """Subscribe a queue to a topic with raw delivery (the body is the message itself, attributes carried)."""
    allow_topic_to_send(sqs, queue_url, queue_arn, topic_arn)
    attributes = {"RawMessageDelivery": "true"}
    if filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    response = sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes, ReturnSubscriptionArn=True
    )
    return str(response["SubscriptionArn"])


def local_bucket(cfg: DeploymentConfig) -> str:
    return naming.output_bucket(cfg.stack_name, LOCAL_ACCOUNT, LOCAL_REGION)


def create_resources(cfg: DeploymentConfig, endpoint: str) -> StackResources:
    """Topics, per-runtime queue + DLQ + filtered subscription, output bucket and status table."""
    sns, sqs = client("sns", endpoint), client("sqs", endpoint)
    s3, dynamodb = client("s3", endpoint), client("dynamodb", endpoint)
    stack, queue = cfg.stack_name, cfg.queue
    day = 86_400

    tasks_topic = sns.create_topic(Name=naming.tasks_topic(stack))["TopicArn"]
    results_topic = sns.create_topic(Name=naming.results_topic(stack))["TopicArn"]

    runtimes: dict[str, RuntimeResources] = {}
    for runtime in cfg.models_runtime:
        dlq_url, dlq_arn = _queue(
            sqs,
            naming.runtime_dlq(stack, runtime.name),
            {"MessageRetentionPeriod": str(queue.dlq_retention_days * day)},
        )
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue.max_receive_count)}
        # The normal queue and the high-priority one: the same settings, the same dead-letter queue.
        attributes = {
            "VisibilityTimeout": str(queue.visibility_timeout),
            "MessageRetentionPeriod": str(queue.retention_days * day),
            "RedrivePolicy": json.dumps(redrive),
        }
        queue_url, queue_arn = _queue(sqs, naming.runtime_queue(stack, runtime.name), attributes)
        policy = runtime_filter_policy(cfg, runtime)
        subscription = subscribe_queue(sns, sqs, tasks_topic, queue_url, queue_arn, policy)
        high_url, high_arn = _queue(sqs, naming.runtime_high_queue(stack, runtime.name), attributes)
        high_policy = runtime_filter_policy(cfg, runtime, high=True)
        subscribe_queue(sns, sqs, tasks_topic, high_url, high_arn, high_policy)
        runtimes[runtime.name] = RuntimeResources(
            runtime.name, queue_url, queue_arn, dlq_url, dlq_arn, subscription, high_queue_url=high_url
        )

    # us-east-1 is the one region where CreateBucket takes no location constraint.
    bucket, table = local_bucket(cfg), naming.status_table(stack)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=output_lifecycle(cfg))
    inputs = local_input_buckets(cfg)
    for name in inputs:
        s3.create_bucket(Bucket=name)

    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
    return StackResources(tasks_topic, results_topic, bucket, table, runtimes, inputs)


def local_input_buckets(cfg: DeploymentConfig) -> tuple[str, ...]:
    """The buckets any tenant may name as s3:// inputs. A deployment has those config.yaml lists (they exist
    already); locally they are created, and without any a ``<stack>-inputs`` bucket stands in for them."""
    return tuple(cfg.input_buckets) or (f"{cfg.stack_name.lower()}-inputs-{LOCAL_ACCOUNT}",)


def output_lifecycle(cfg: DeploymentConfig) -> dict[str, Any]:
    """The output bucket's expiry, as the CDK stack declares it: results go when their status records go."""
    return {
        "Rules": [
            {
                "ID": "ResultsExpireWithRecords",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Expiration": {"Days": cfg.outputs.output_expiry_days},
            }
        ]
    }
