"""The status transitions, applied by a real boto3 client to DynamoDB on the moto server."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from contract import StatusRecord, TaskStatus, cancel_request_update, new_item, transition_update
from local_stack.moto_server import MotoServer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def table(aws_env: MotoServer):  # type: ignore[no-untyped-def]
    ddb = boto3.resource("dynamodb", endpoint_url=aws_env.endpoint)
    t = ddb.create_table(
        TableName="status",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    record = StatusRecord(
        id="t1", runtime="r", tasktype="text-to-image", status=TaskStatus.QUEUED, created_at=NOW, updated_at=NOW
    )
    t.put_item(Item=new_item(record, ttl_epoch=1_900_000_000), ConditionExpression="attribute_not_exists(id)")
    return t


def _status(table) -> str:  # type: ignore[no-untyped-def]
    return str(table.get_item(Key={"id": "t1"}, ConsistentRead=True)["Item"]["status"])


def _conditional_fails(table, **kwargs) -> bool:  # type: ignore[no-untyped-def]
    try:
        table.update_item(**kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
    return False


def test_lifecycle_and_terminal_never_regresses(table) -> None:  # type: ignore[no-untyped-def]
    table.update_item(**transition_update("t1", TaskStatus.RUNNING, NOW, count_attempt=True))
    table.update_item(**transition_update("t1", TaskStatus.RUNNING, NOW, count_attempt=True))
    item = table.get_item(Key={"id": "t1"})["Item"]
    assert item["status"] == "running" and item["attempts"] == 2 and item["started_at"] == NOW.isoformat()

    done = transition_update("t1", TaskStatus.COMPLETED, NOW, extra={"image_url": ["s3://b/k-1.png"]})
    table.update_item(**done)
    assert _status(table) == "completed"
    for target in set(TaskStatus) - {TaskStatus.QUEUED}:
        assert _conditional_fails(table, **transition_update("t1", target, NOW)), target
    assert _conditional_fails(table, **cancel_request_update("t1", NOW))
    assert _status(table) == "completed"


def test_cancel_request_only_while_running(table) -> None:  # type: ignore[no-untyped-def]
    assert _conditional_fails(table, **cancel_request_update("t1", NOW))
    table.update_item(**transition_update("t1", TaskStatus.RUNNING, NOW))
    table.update_item(**cancel_request_update("t1", NOW))
    assert table.get_item(Key={"id": "t1"})["Item"]["cancel_requested"] is True


def test_unknown_task_is_never_created_by_an_update(table) -> None:  # type: ignore[no-untyped-def]
    assert _conditional_fails(table, **transition_update("ghost", TaskStatus.RUNNING, NOW))
    assert "Item" not in table.get_item(Key={"id": "ghost"})


def test_queued_is_only_reached_by_creation() -> None:
    with pytest.raises(ValueError, match="conditional put"):
        transition_update("t1", TaskStatus.QUEUED, NOW)
