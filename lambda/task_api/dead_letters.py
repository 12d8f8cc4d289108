"""The dead-letter consumer (one per stack, fed by every runtime's DLQ through an SQS event source).

A message reaches a DLQ when its deliveries ran out without the task finishing: usually the agent died
with it (OOM, SIGKILL, a node gone), so nobody settled the task. For each dead letter this function:

1. keeps the message for ``sdq redrive`` (an object under ``.dead-letters/{dlq name}/`` in the output
   bucket: the event source deletes the message from the DLQ once this function returns);
2. marks the task failed with the reason (``dead_lettered``), unless it is already terminal (the agent
   may have failed it on its last delivery, or it completed): terminal tasks are left alone;
3. announces the failure on the results topic, once (the same ``notified`` guard the agent uses).

Transient AWS failures report the record as failed, so SQS delivers it again; the steps are idempotent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import (
    NOTIFIED_ATTRIBUTE,
    ContractError,
    ErrorCode,
    ErrorInfo,
    Notification,
    QueueMessage,
    StatusRecord,
    TaskStatus,
    dead_letter_key,
    notified_update,
    parse_queue_body,
    transition_update,
    utcnow,
)
from task_api import aws
from task_api.observability import logger, tracer
from task_api.settings import ConfigurationError
from task_api.store import StatusStore


@dataclass(frozen=True)
class DeadLetterSettings:
    status_table: str
    results_topic_arn: str
    output_bucket: str

    @classmethod
    def from_env(cls) -> DeadLetterSettings:
        names = {
            "status_table": "STATUS_TABLE",
            "results_topic_arn": "RESULTS_TOPIC_ARN",
            "output_bucket": "OUTPUT_BUCKET",
        }
        missing = [env for env in names.values() if not os.environ.get(env)]
        if missing:
            raise ConfigurationError(f"environment variables not set: {', '.join(missing)}")
        return cls(**{field: os.environ[env] for field, env in names.items()})


@dataclass(frozen=True)
class DeadLetterConsumer:
    settings: DeadLetterSettings
    store: StatusStore
    sns: Any
    s3: Any

    @classmethod
    def from_env(cls) -> DeadLetterConsumer:
        settings = DeadLetterSettings.from_env()
        return cls(
            settings, StatusStore(aws.client("dynamodb"), settings.status_table), aws.client("sns"), aws.client("s3")
        )

    def handle(self, record: dict[str, Any]) -> None:
        """One SQS record of a DLQ. Raises on transient failures (the record is then retried)."""
        body = str(record.get("body", ""))
        queue_name = str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1] or "unknown"
        self.s3.put_object(
            Bucket=self.settings.output_bucket,
            Key=dead_letter_key(queue_name, str(record["messageId"])),
            Body=body.encode(),
            ContentType="application/json",
        )
        try:
            message = parse_queue_body(body)
        except (ContractError, RecursionError):
            # No task we can trust to name: kept for inspection, nothing to announce.
            logger.warning("dead letter is not a task message; kept for inspection", extra={"queue": queue_name})
            return
        logger.append_keys(task_id=message.id)
        item = self.store.get(message.id)
        current = StatusRecord.model_validate(item) if item is not None else None
        error = ErrorInfo(
            code=ErrorCode.DEAD_LETTERED,
            message=f"the task's message reached the dead-letter queue {queue_name} without the task finishing "
            "(its worker stopped, e.g. out of memory); an operator can retry it with `sdq redrive`",
        )
        if current is not None and current.status.terminal:
            ours = current.error is not None and current.error.code == ErrorCode.DEAD_LETTERED
            if not (ours and item is not None and item.get(NOTIFIED_ATTRIBUTE) is None):
                logger.info("dead letter of a finished task; left alone", extra={"status": current.status.value})
                return
            # Failed by an earlier run of this function that could not announce it: finish that job.
        elif current is not None:
            update = transition_update(message.id, TaskStatus.FAILED, utcnow(), extra={"error": error.model_dump()})
            if self.store.update(update) is None:
                logger.info("the task finished meanwhile; left alone")
                return
        self._announce(message, error, current)
        if current is not None:
            self.store.update(notified_update(message.id, TaskStatus.FAILED))
        logger.info("dead-lettered task failed and announced")

    def _announce(self, message: QueueMessage, error: ErrorInfo, record: StatusRecord | None) -> None:
        notification = Notification(
            id=message.id,
            runtime=message.runtime,
            status="failed",
            result=False,
            context=message.context,
            tasktype=str(message.tasktype),
            attempts=record.attempts if record else 0,
            error=error,
        )
        self.sns.publish(
            TopicArn=self.settings.results_topic_arn,
            Message=notification.model_dump_json(),
            MessageAttributes=notification.message_attributes(),
        )


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    consumer = DeadLetterConsumer.from_env()
    failures = []
    for record in event.get("Records", []):
        try:
            consumer.handle(record)
        except (BotoCoreError, ClientError):
            logger.exception("handling a dead letter failed; SQS delivers it again")
            failures.append({"itemIdentifier": record.get("messageId", "")})
        finally:
            logger.remove_keys(["task_id"])
    return {"batchItemFailures": failures}
