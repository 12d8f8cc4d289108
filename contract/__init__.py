"""The wire contract shared by the Lambdas, the queue agent, the CLI and the local stack.

Request -> queue message -> status record -> notification. Nothing here does I/O.
"""

from __future__ import annotations

from contract.errors import ContractError, FieldIssue, error_body
from contract.images import iter_image_fields, set_at
from contract.layout import image_key, output_key, output_location, s3_uri, split_s3_uri, task_folder
from contract.limits import DEFAULT_LIMITS, SNS_MAX_MESSAGE_BYTES, Limits
from contract.messages import SCHEMA_VERSION, QueueMessage, fingerprint, parse_queue_body, to_queue_message, utcnow
from contract.notification import ErrorInfo, Notification, notification_status
from contract.refs import ImageRef, RefError, RefKind, check_https_url, is_public_address, parse_image_ref
from contract.request import TaskRequest, new_task_id, parse_request
from contract.status import StatusRecord, cancel_request_update, new_item, transition_update
from contract.tasks import TERMINAL_STATUSES, TaskStatus, TaskType, can_transition

__all__ = [
    "DEFAULT_LIMITS",
    "SCHEMA_VERSION",
    "SNS_MAX_MESSAGE_BYTES",
    "TERMINAL_STATUSES",
    "ContractError",
    "ErrorInfo",
    "FieldIssue",
    "ImageRef",
    "Limits",
    "Notification",
    "QueueMessage",
    "RefError",
    "RefKind",
    "StatusRecord",
    "TaskRequest",
    "TaskStatus",
    "TaskType",
    "can_transition",
    "cancel_request_update",
    "check_https_url",
    "error_body",
    "fingerprint",
    "image_key",
    "is_public_address",
    "iter_image_fields",
    "new_item",
    "new_task_id",
    "notification_status",
    "output_key",
    "output_location",
    "parse_image_ref",
    "parse_queue_body",
    "parse_request",
    "s3_uri",
    "set_at",
    "split_s3_uri",
    "task_folder",
    "to_queue_message",
    "transition_update",
    "utcnow",
]
