"""What the three endpoints do, over the status store, the tasks topic and S3 presigning.

No Powertools routing here: the handlers parse the event and call these methods; the methods raise
``ContractError`` / ``ApiError`` for every answer other than success.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import (
    ID_PATTERN,
    RUNTIME_TASKTYPES,
    SNS_MAX_MESSAGE_BYTES,
    ContractError,
    ErrorCode,
    FieldIssue,
    QueueMessage,
    RefError,
    RefKind,
    StatusRecord,
    TaskStatus,
    TaskType,
    cancel_request_update,
    iter_image_fields,
    legacy_request,
    new_item,
    output_location,
    parse_image_ref,
    parse_legacy_request,
    parse_request,
    sns_message_size,
    split_s3_uri,
    to_queue_message,
    transition_update,
    utcnow,
    vet_webhook_url,
)
from task_api import aws
from task_api.errors import ApiError, from_aws_error, unavailable
from task_api.observability import logger, tracer
from task_api.settings import Settings
from task_api.store import StatusStore, UnstorableValue
from task_api.views import TaskView, task_view

_ID_RE = re.compile(ID_PATTERN)
# How often a cancel re-reads a record that changed under it before giving up (each round is one write race).
_CANCEL_ROUNDS = 3


@dataclass(frozen=True)
class Submitted:
    record: StatusRecord
    created: bool  # False: an idempotent resubmit answered with the existing task
    checkpoint: str | None = None  # the model a v1alpha1 task was routed on


@dataclass(frozen=True)
class Cancelled:
    view: TaskView
    finished: bool  # True: the task is cancelled now; False: running, cancel requested, the agent stops it


@dataclass(frozen=True)
class Publisher:
    client: Any
    topic_arn: str

    def __call__(self, message: QueueMessage) -> None:
        self.client.publish(
            TopicArn=self.topic_arn, Message=message.model_dump_json(), MessageAttributes=message.message_attributes()
        )


@dataclass(frozen=True)
class Presigner:
    client: Any
    bucket: str | None
    expires_seconds: int

    def __call__(self, uri: str) -> str | None:
        """A GET URL for an object of the output bucket; None for anything else (the function may not read it)."""
        try:
            bucket, key = split_s3_uri(uri)
        except ValueError:
            return None
        if not self.bucket or bucket != self.bucket or not key:
            return None
        try:
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.expires_seconds
            )
        except BotoCoreError:
            # No credentials to sign with: show the s3:// URI alone rather than fail the whole status answer.
            logger.exception("presigning failed")
            return None
        return url


@dataclass(frozen=True)
class ResultNonces:
    """The submission nonce a result object was written with (the agent's ``nonce`` metadata), or None."""

    client: Any

    def __call__(self, bucket: str, key: str) -> str | None:
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        nonce = (head.get("Metadata") or {}).get("nonce")
        return str(nonce) if nonce else None


def _s3_result_nonces() -> ResultNonces:
    return ResultNonces(aws.LazyClient("s3"))


@dataclass(frozen=True)
class TaskService:
    settings: Settings
    store: StatusStore
    publish: Callable[[QueueMessage], None]
    presign: Callable[[str], str | None]
    now: Callable[[], datetime] = field(default=utcnow)
    result_nonce: Callable[[str, str], str | None] = field(default_factory=_s3_result_nonces)

    @classmethod
    def from_env(cls) -> TaskService:
        settings = Settings.from_env()
        return cls(
            settings=settings,
            store=StatusStore(aws.LazyClient("dynamodb"), settings.require("status_table")),
            publish=_LazyPublisher(settings),
            presign=Presigner(aws.LazyClient("s3"), settings.output_bucket, settings.presign_expires_seconds),
        )

    # -- submit -------------------------------------------------------------------------------------------------

    def submit(self, body: bytes, owner: str | None = None) -> Submitted:
        """``POST /v1alpha2`` and ``POST /tasks``: the v1alpha2 request, for the API key ``owner``."""
        try:
            request = parse_request(body, runtimes=self.settings.runtimes)
        except RecursionError:
            raise ContractError.single("(body)", "max_depth", "JSON is nested too deeply") from None
        meta = request.task.metadata
        self._check_runtime_type(meta.runtime, meta.tasktype, "task.metadata.tasktype")
        if meta.webhook is not None:
            try:
                vet_webhook_url(meta.webhook.url, allow_loopback=self.settings.webhook_allow_loopback)
            except RefError as exc:
                raise ContractError.single("task.metadata.webhook.url", exc.rule, str(exc)) from None
        if meta.ttl_seconds is None and (info := self.settings.catalog.get(meta.runtime)) and info.default_ttl_seconds:
            request = request.model_copy(
                update={"task": request.task.model_copy(
                    update={"metadata": meta.model_copy(update={"ttl_seconds": info.default_ttl_seconds})}
                )}
            )
        return self._accept(to_queue_message(request, submitted_at=self.now(), nonce=_nonce()), owner)

    def submit_legacy(self, body: bytes, owner: str | None = None) -> Submitted:
        """``POST /v1alpha1``: the replaced sample's AUTOMATIC1111 body, routed on the model it names."""
        try:
            task = parse_legacy_request(body)
        except RecursionError:
            raise ContractError.single("(body)", "max_depth", "JSON is nested too deeply") from None
        runtime = self.settings.runtime_for_model(task.checkpoint)
        if runtime is None:
            served = ", ".join(self.settings.served_models()) or "(none)"
            raise ContractError.single(
                "alwayson_scripts.sd_model_checkpoint",
                "one_of",
                f"no runtime serves model {task.checkpoint!r} and none loads models on demand; models served: {served}",
            )
        self._check_runtime_type(runtime, task.tasktype, "alwayson_scripts.task")
        message = to_queue_message(
            legacy_request(task, runtime), submitted_at=self.now(), checkpoint=task.checkpoint, nonce=_nonce()
        )
        fields = {"sd_model_checkpoint": "alwayson_scripts.sd_model_checkpoint"}
        try:
            return self._accept(message, owner, attribute_fields=fields)
        except ContractError as exc:
            # Checks of the ordinary request (s3:// inputs, sizes) name its fields; name the client's instead.
            issues = [FieldIssue(task.client_field(i.field), i.rule, i.message) for i in exc.issues]
            raise ContractError(issues, code=exc.code, status=exc.status) from None

    def _check_runtime_type(self, runtime: str, tasktype: TaskType, field_name: str) -> None:
        """Refuse at submit what the runtime's type cannot run, rather than accept it and fail it later."""
        kind = self.settings.runtime_type(runtime)
        runs = RUNTIME_TASKTYPES.get(kind) if kind else None
        if runs is None or tasktype in runs:
            return
        needs = sorted(k for k, types in RUNTIME_TASKTYPES.items() if tasktype in types)
        raise ContractError.single(
            field_name,
            "runtime_type",
            f"runtime {runtime!r} is a {kind} runtime, which runs {', '.join(sorted(t.value for t in runs))}; "
            f"{tasktype.value} needs a {' or '.join(needs)} runtime",
        )

    def _accept(
        self, message: QueueMessage, owner: str | None, attribute_fields: dict[str, str] | None = None
    ) -> Submitted:
        """Record a validated task of ``owner`` (an API key id; None: an API without keys) as queued and publish
        it (or answer the existing task of a resubmit)."""
        bucket = self.settings.require("output_bucket")
        now = message.submitted_at
        logger.append_keys(task_id=message.id)
        tracer.put_annotation("task_id", message.id)
        _check_message_attributes(message, {**_ATTRIBUTE_FIELDS, **(attribute_fields or {})})
        _check_message_size(message)
        self._check_s3_inputs(message, owner)
        record = StatusRecord(
            id=message.id,
            runtime=message.runtime,
            tasktype=message.tasktype.value,
            status=TaskStatus.QUEUED,
            prefix=message.prefix,
            created_at=now,
            updated_at=now,
            output_location=output_location(bucket, message.prefix, message.id),
            context=message.context,
            fingerprint=message.fingerprint,
            nonce=message.nonce,
            owner=owner,
            priority=message.priority.value,
            expires_at=message.expires_at,
        )
        expires_at = int((now + timedelta(days=self.settings.status_ttl_days)).timestamp())
        if not self._create(new_item(record, ttl_epoch=expires_at)):
            return replace(self._existing(record), checkpoint=message.checkpoint)
        try:
            self.publish(message)
        except (BotoCoreError, ClientError):
            logger.exception("publishing the task failed")
            return replace(self._withdraw(record), checkpoint=message.checkpoint)
        logger.info("task queued", extra={"runtime": record.runtime, "tasktype": record.tasktype})
        return Submitted(record, created=True, checkpoint=message.checkpoint)

    def _create(self, item: dict[str, Any]) -> bool:
        try:
            return self.store.create(item)
        except UnstorableValue as exc:
            raise _context_error(str(exc)) from None
        except ClientError as exc:
            # The only client-controlled free-form value in the record is the context.
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                raise _context_error("the status table refused it") from None
            raise from_aws_error(exc, "the status table") from None
        except BotoCoreError as exc:
            raise from_aws_error(exc, "the status table") from None

    def _existing(self, record: StatusRecord) -> Submitted:
        item = self.store.get(record.id)
        if item is None:
            # Withdrawn by a failed publish between our put and this read: the client's retry decides.
            raise unavailable("the task is being withdrawn after a failed submission; retry shortly")
        existing = StatusRecord.model_validate(item)
        if existing.fingerprint != record.fingerprint or existing.owner != record.owner:
            # Nothing about the other task (its status, its owner) is told: only that the id is in use.
            raise ApiError(409, ErrorCode.CONFLICT, f"task id {record.id} is already taken; submit with a new id")
        logger.info("idempotent resubmit", extra={"status": existing.status.value})
        return Submitted(existing, created=False)

    def _check_s3_inputs(self, message: QueueMessage, owner: str | None) -> None:
        """``s3://`` inputs may name the configured input buckets, or results of the caller's own tasks."""
        issues: list[FieldIssue] = []
        for path, value in iter_image_fields(message.tasktype, message.content):
            try:
                ref = parse_image_ref(value)
            except RefError:
                continue  # the contract already refused it, or it is not a reference at all
            if ref.kind is not RefKind.S3 or ref.bucket in self.settings.input_buckets:
                continue
            field_path = ".".join(["task.content", *map(str, path)])
            if (
                ref.bucket is not None
                and ref.bucket == self.settings.output_bucket
                and self._owns_result(ref.bucket, ref.key or "", owner)
            ):
                continue
            issues.append(
                FieldIssue(
                    field_path,
                    "s3_input",
                    "s3:// inputs must be in a configured input bucket or be results of your own tasks",
                )
            )
        if issues:
            raise ContractError(issues)

    def _owns_result(self, bucket: str, key: str, owner: str | None) -> bool:
        # Results live at {prefix}/{id}/{file}: the record of {id} says whose they are, and the object's nonce
        # says it was written for that record's submission (not left by an earlier holder of the id).
        parts = key.split("/")
        if len(parts) < 3 or not _ID_RE.match(parts[-2]):
            return False
        task_id, prefix = parts[-2], "/".join(parts[:-2])
        item = self.store.get(task_id)
        if item is None:
            return False
        record = StatusRecord.model_validate(item)
        if record.owner != owner or record.prefix.strip("/") != prefix or not record.nonce:
            return False
        return self.result_nonce(bucket, key) == record.nonce

    def _withdraw(self, record: StatusRecord) -> Submitted:
        """After a failed publish, never leave a task 'queued' that no worker will ever see.

        The record is deleted while it is still queued with our fingerprint, so that the client's retry
        (same id, same body) starts afresh. If the delete's condition fails, the agent already moved the
        task on: the publish did go through (the error was on the way back), and the submit succeeded.
        """
        try:
            deleted = self.store.delete_if(
                record.id,
                "#s = :queued AND #f = :fp",
                {"#s": "status", "#f": "fingerprint"},
                {":queued": TaskStatus.QUEUED.value, ":fp": record.fingerprint},
            )
        except (BotoCoreError, ClientError):
            logger.exception("withdrawing the task failed; marking it failed instead")
            self._mark_publish_failed(record.id)
            raise unavailable("the task queue is unavailable; the task was not accepted, retry shortly") from None
        if not deleted:
            current = self.store.get(record.id)
            if current is not None and current.get("status") != TaskStatus.QUEUED.value:
                logger.info("publish reported failure but a worker already has the task")
                return Submitted(StatusRecord.model_validate(current), created=True)
        raise unavailable("the task queue is unavailable; the task was not accepted, retry shortly")

    def _mark_publish_failed(self, task_id: str) -> None:
        error = {
            "code": ErrorCode.PUBLISH_FAILED.value,
            "message": "the task could not be queued; submit it again with a new id",
        }
        try:
            self.store.update(transition_update(task_id, TaskStatus.FAILED, self.now(), extra={"error": error}))
        except (BotoCoreError, ClientError):
            # Both DynamoDB and SNS are failing: nothing more can be done from here; operators see this line.
            logger.exception("task left queued after a failed publish", extra={"task_id": task_id})

    # -- status -------------------------------------------------------------------------------------------------

    def status(self, task_id: str, owner: str | None = None) -> TaskView:
        return task_view(self._record(task_id, owner), self.presign)

    def _record(self, task_id: str, owner: str | None) -> StatusRecord:
        """The caller's task; another key's task is answered exactly like a missing one."""
        if not _ID_RE.match(task_id):
            raise ApiError(404, ErrorCode.NOT_FOUND, "no task with this id (ids are 1-64 letters, digits, '-' or '_')")
        logger.append_keys(task_id=task_id)
        tracer.put_annotation("task_id", task_id)
        item = self.store.get(task_id)
        record = StatusRecord.model_validate(item) if item is not None else None
        if record is None or not _visible(record, owner):
            raise ApiError(404, ErrorCode.NOT_FOUND, f"no task with id {task_id}")
        return record

    # -- cancel -------------------------------------------------------------------------------------------------

    def cancel(self, task_id: str, owner: str | None = None) -> Cancelled:
        """Queued: cancelled now (the agent drops the message and announces it). Running: cancel requested,
        the agent interrupts the runtime. Finished: 409 with the current status. Each write is conditional
        on the state it was decided on; a lost race re-reads and decides again."""
        for _ in range(_CANCEL_ROUNDS):
            record = self._record(task_id, owner)
            if record.status is TaskStatus.QUEUED:
                update = _only_from(transition_update(task_id, TaskStatus.CANCELLED, self.now()), TaskStatus.QUEUED)
                if (item := self.store.update(update)) is not None:
                    logger.info("task cancelled while queued")
                    return Cancelled(self._view(item), finished=True)
            elif record.status is TaskStatus.RUNNING:
                if record.cancel_requested:
                    return Cancelled(task_view(record, self.presign), finished=False)
                if (item := self.store.update(cancel_request_update(task_id, self.now()))) is not None:
                    logger.info("cancel requested for a running task")
                    return Cancelled(self._view(item), finished=False)
            else:
                raise ApiError(
                    409,
                    ErrorCode.TASK_FINISHED,
                    f"task {task_id} is already {record.status.value}; a finished task cannot be cancelled",
                    extra={"id": task_id, "status": record.status.value},
                )
        raise unavailable("the task kept changing state while being cancelled; retry")

    def _view(self, item: dict[str, Any]) -> TaskView:
        return task_view(StatusRecord.model_validate(item), self.presign)


@dataclass(frozen=True)
class _LazyPublisher:
    """Requires TASKS_TOPIC_ARN only when something is published (the status function has no topic)."""

    settings: Settings

    def __call__(self, message: QueueMessage) -> None:
        Publisher(aws.client("sns"), self.settings.require("tasks_topic_arn"))(message)


def _nonce() -> str:
    return secrets.token_hex(16)


def _visible(record: StatusRecord, owner: str | None) -> bool:
    # Records without an owner predate ownership (or were created by an agent for a task published outside
    # the API): every key of the deployment sees those.
    return record.owner is None or record.owner == owner


def _only_from(update: dict[str, Any], status: TaskStatus) -> dict[str, Any]:
    """Narrow a contract transition to one predecessor (own placeholders, so no clash with the contract's)."""
    return {
        **update,
        "ConditionExpression": f"({update['ConditionExpression']}) AND #only_status = :only_status",
        "ExpressionAttributeNames": {**update["ExpressionAttributeNames"], "#only_status": "status"},
        "ExpressionAttributeValues": {**update["ExpressionAttributeValues"], ":only_status": status.value},
    }


# Characters SNS accepts in a message attribute value (those XML 1.0 allows).
_SNS_TEXT_RE = re.compile("^[\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+$")
# Where each attribute's value comes from in the request, to name it in an error.
_ATTRIBUTE_FIELDS = {
    "runtime": "task.metadata.runtime",
    "runtime_high": "task.metadata.runtime",
    "priority": "task.metadata.priority",
    "sd_model_checkpoint": "task.content.override_settings.sd_model_checkpoint",
}


def _check_message_attributes(message: QueueMessage, fields: dict[str, str]) -> None:
    # SNS refuses empty attribute values and characters outside XML's; that is the request's fault, not ours.
    for name, attribute in message.message_attributes().items():
        if not _SNS_TEXT_RE.match(attribute["StringValue"]):
            raise ContractError.single(
                fields.get(name, name),
                "sns_attribute",
                "must be non-empty text without control characters (it routes the task as an SNS attribute)",
            )


def _check_message_size(message: QueueMessage) -> None:
    size = sns_message_size(message.model_dump_json(), message.message_attributes())
    if size > SNS_MAX_MESSAGE_BYTES:
        raise ContractError.single(
            "(body)",
            "max_bytes",
            f"the task would be a {size}-byte queue message, over the {SNS_MAX_MESSAGE_BYTES}-byte limit; "
            "pass images as s3:// or https:// references instead of inline base64",
            code=ErrorCode.REQUEST_TOO_LARGE,
            status=413,
        )


def _context_error(reason: str) -> ContractError:
    return ContractError.single(
        "task.metadata.context",
        "storable",
        f"context cannot be stored ({reason}); keep it plain JSON nested at most 30 levels, "
        "with non-empty keys and numbers of at most 38 digits",
    )
