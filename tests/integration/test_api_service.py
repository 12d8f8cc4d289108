"""Races and partial failures of the task service, on the real status table (moto), with the one
collaborator each test needs to misbehave made to misbehave on purpose."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from task_api import aws
from task_api.errors import ApiError
from task_api.service import Presigner, TaskService
from task_api.settings import Settings
from task_api.store import StatusStore

from contract import QueueMessage, TaskStatus, transition_update
from tests.integration import test_api_support as support
from tests.integration.test_api_support import REGION, ApiStack

api_stack = support.api_stack  # the fixture, shared by the API test modules

BODY = json.dumps(
    {"task": {"metadata": {"id": "s-1", "runtime": "sdruntime", "tasktype": "text-to-image"}, "content": {}}}
).encode()


def sns_error(code: str = "InternalError", status: int = 500) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Publish"
    )


def agent_moves(stack: ApiStack, task_id: str, target: TaskStatus) -> None:
    table = boto3.resource("dynamodb", endpoint_url=stack.endpoint, region_name=REGION).Table(stack.table)
    table.update_item(**transition_update(task_id, target, datetime.now(UTC)))


def service(stack: ApiStack, publish: Any, store: StatusStore | None = None) -> TaskService:
    settings = Settings.from_env()
    return TaskService(
        settings=settings,
        store=store or StatusStore(aws.client("dynamodb"), stack.table),
        publish=publish,
        presign=Presigner(aws.client("s3"), stack.bucket, 60),
    )


def test_a_publish_that_failed_on_the_way_back_still_counts(api_stack: ApiStack) -> None:
    # SNS delivered, the agent started the task, and only the answer to Publish was lost.
    def delivered_then_failed(message: QueueMessage) -> None:
        agent_moves(api_stack, message.id, TaskStatus.RUNNING)
        raise sns_error()

    submitted = service(api_stack, delivered_then_failed).submit(BODY)
    assert submitted.created and submitted.record.status is TaskStatus.RUNNING
    assert api_stack.item("s-1")["status"] == "running"  # type: ignore[index]


@dataclass(frozen=True)
class _UndeletableStore(StatusStore):
    def delete_if(self, task_id: str, condition: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        raise sns_error("ProvisionedThroughputExceededException", 400)


def test_when_the_task_cannot_be_withdrawn_it_is_marked_failed(api_stack: ApiStack) -> None:
    def broken(message: QueueMessage) -> None:
        raise sns_error()

    store = _UndeletableStore(aws.client("dynamodb"), api_stack.table)
    with pytest.raises(ApiError) as refused:
        service(api_stack, broken, store).submit(BODY)
    assert refused.value.status == 503
    item = api_stack.item("s-1")
    assert item is not None and item["status"] == "failed" and item["error"]["code"] == "publish_failed"


@dataclass(frozen=True)
class _RacingStore(StatusStore):
    """The agent picks the task up between the cancel's read and its write."""

    stack: ApiStack | None = None

    def update(self, update: dict[str, Any]) -> dict[str, Any] | None:
        current = self.get(update["Key"]["id"])
        if self.stack is not None and current is not None and current["status"] == "queued":
            agent_moves(self.stack, current["id"], TaskStatus.RUNNING)
        return super().update(update)


def test_a_cancel_racing_the_agent_requests_cancellation_instead_of_overwriting(api_stack: ApiStack) -> None:
    published: list[str] = []
    service(api_stack, lambda m: published.append(m.id)).submit(BODY)
    racing = _RacingStore(aws.client("dynamodb"), api_stack.table, api_stack)
    outcome = service(api_stack, published.append, racing).cancel("s-1")
    assert not outcome.finished and outcome.view.status is TaskStatus.RUNNING and outcome.view.cancel_requested
    item = api_stack.item("s-1")
    assert item is not None and item["status"] == "running" and item["cancel_requested"] is True


def test_a_resubmit_while_the_first_attempt_is_withdrawn_is_told_to_retry(api_stack: ApiStack) -> None:
    @dataclass(frozen=True)
    class _VanishingStore(StatusStore):
        def create(self, item: dict[str, Any]) -> bool:
            return False  # "exists"... and by the time it is read, the failed first attempt deleted it

    with pytest.raises(ApiError) as refused:
        service(api_stack, lambda m: None, _VanishingStore(aws.client("dynamodb"), api_stack.table)).submit(BODY)
    assert refused.value.status == 503
