"""The local stack creates the cloud stack's resources in moto, with the cloud's names and wiring."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from contract import Notification
from infra import naming
from infra.config import parse_config
from local_stack.notifications import NotificationInbox
from local_stack.resources import LOCAL_ACCOUNT, LOCAL_REGION, client, create_resources

CONFIG = {
    "stackName": "demo-stack",
    "modelBucketArn": "arn:aws:s3:::models-bucket",
    "modelsRuntime": [
        {"name": "sdruntime", "type": "diffusers"},
        {"name": "xl", "type": "sdwebui", "modelFilename": "xl.safetensors", "legacyModelRouting": True},
    ],
    "queue": {"visibilityTimeout": 120, "maxReceiveCount": 4},
}


@pytest.fixture
def created(aws_env):
    cfg = parse_config(CONFIG)
    return cfg, create_resources(cfg, aws_env.endpoint), aws_env.endpoint


def _receive(sqs, url: str) -> list[dict]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])


def test_names_and_queue_wiring_follow_the_config(created):
    _, res, endpoint = created
    sqs, ddb, s3 = client("sqs", endpoint), client("dynamodb", endpoint), client("s3", endpoint)
    assert res.tasks_topic_arn.endswith(":" + naming.tasks_topic("demo-stack"))
    assert res.results_topic_arn.endswith(":" + naming.results_topic("demo-stack"))
    assert res.bucket == naming.output_bucket("demo-stack", LOCAL_ACCOUNT, LOCAL_REGION)
    s3.head_bucket(Bucket=res.bucket)
    assert sorted(res.runtimes) == ["sdruntime", "xl"]
    for name, rt in res.runtimes.items():
        assert rt.queue_url.endswith("/" + naming.runtime_queue("demo-stack", name))
        assert rt.dlq_url.endswith("/" + naming.runtime_dlq("demo-stack", name))
        attrs = sqs.get_queue_attributes(QueueUrl=rt.queue_url, AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "120"
        assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": rt.dlq_arn, "maxReceiveCount": 4}
    ttl = ddb.describe_time_to_live(TableName=res.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    key = ddb.describe_table(TableName=naming.status_table("demo-stack"))["Table"]["KeySchema"]
    assert key == [{"AttributeName": "id", "KeyType": "HASH"}]
    # Results expire with their records (outputs.statusTtlDays by default).
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=res.bucket)["Rules"]
    assert rule["Expiration"] == {"Days": 30} and rule["Status"] == "Enabled"


def test_the_local_aws_sends_no_cors_headers_to_other_origins(created):
    # moto reflects any Origin unless MOTO_DISABLE_GLOBAL_CORS is set: a page could then drive the local AWS.
    _, res, endpoint = created
    request = urllib.request.Request(
        f"{endpoint}/{res.bucket}", method="OPTIONS", headers={"Origin": "https://evil.example"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            headers = dict(answer.headers)
    except urllib.error.HTTPError as refused:
        headers = dict(refused.headers)
    assert "https://evil.example" not in {v for k, v in headers.items() if k.lower().startswith("access-control")}
    sqs = urllib.request.Request(f"{endpoint}/?Action=ListQueues", headers={"Origin": "https://evil.example"})
    with urllib.request.urlopen(sqs, timeout=10) as answer:
        assert answer.headers.get("Access-Control-Allow-Origin") is None


def test_tasks_reach_only_their_runtime_queue_raw(created):
    _, res, endpoint = created
    sns, sqs = client("sns", endpoint), client("sqs", endpoint)
    body = json.dumps({"id": "t1", "runtime": "xl"})
    sns.publish(
        TopicArn=res.tasks_topic_arn,
        Message=body,
        MessageAttributes={"runtime": {"DataType": "String", "StringValue": "xl"}},
    )
    # Legacy routing: the sample's publishers addressed sdwebui runtimes by model name only.
    sns.publish(
        TopicArn=res.tasks_topic_arn,
        Message="legacy",
        MessageAttributes={"sd_model_checkpoint": {"DataType": "String", "StringValue": "xl.safetensors"}},
    )
    got = _receive(sqs, res.runtimes["xl"].queue_url)
    assert sorted(m["Body"] for m in got) == sorted([body, "legacy"])
    assert _receive(sqs, res.runtimes["sdruntime"].queue_url) == []


def test_inbox_collects_results_topic_notifications(created):
    _, res, endpoint = created
    sns = client("sns", endpoint)
    inbox = NotificationInbox(endpoint, res.results_topic_arn, "demo-stack-local-results")
    note = Notification(id="abc", runtime="sdruntime", status="completed", result=True, image_url=["s3://b/k.png"])
    sns.publish(
        TopicArn=res.results_topic_arn, Message=note.model_dump_json(), MessageAttributes=note.message_attributes()
    )
    got = inbox.wait_for(["abc"], timeout=10)
    assert got["abc"].notification == note
    assert got["abc"].attributes == {"runtime": "sdruntime", "status": "completed"}
    with pytest.raises(TimeoutError, match="never"):
        inbox.wait_for(["abc", "never"], timeout=0.5)
