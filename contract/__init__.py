"""The wire contract shared by the Lambdas, the queue agent, the CLI and the local stack.

Request -> queue message -> status record -> notification. Nothing here does I/O.

``__all__`` is exactly what the other packages import (a test keeps it so): they import from
``contract`` only, never from its modules, so this list is the contract's whole public surface.
"""

from __future__ import annotations

from contract.budget import extras_size_issues, input_image_issues
from contract.errors import ContractError, ErrorCode, FieldIssue, error_body
from contract.image_header import image_size
from contract.images import iter_image_fields, set_at
from contract.layout import (
    DEAD_LETTER_FOLDER,
    dead_letter_key,
    dead_letter_prefix,
    image_key,
    notification_key,
    output_key,
    output_location,
    s3_uri,
    split_s3_uri,
)
from contract.legacy import LEGACY_RUNTIME, LegacyRequest, parse_legacy_request
from contract.limits import DEFAULT_LIMITS, SNS_MAX_MESSAGE_BYTES, Limits
from contract.messages import QueueMessage, legacy_request, parse_queue_body, to_queue_message, utcnow
from contract.notification import ErrorInfo, Notification, notification_status, sns_message_size
from contract.refs import RefError, RefKind, check_https_url, is_public_address, parse_image_ref
from contract.request import ID_PATTERN, TaskRequest, content_issues, parse_request, refused_override_keys
from contract.scripts import batch_size_limit
from contract.status import (
    NOTIFIED_ATTRIBUTE,
    STATUS_TTL_DAYS,
    StatusRecord,
    cancel_request_update,
    new_item,
    notified_update,
    requeue_update,
    transition_update,
    webhook_update,
)
from contract.tasks import RUNTIME_TASKTYPES, TaskStatus, TaskType
from contract.webhooks import (
    Priority,
    WebhookRecord,
    WebhookTarget,
    new_secret,
    secret_from_stored,
    sign,
    verify,
    vet_webhook_url,
)

__all__ = [
    "DEAD_LETTER_FOLDER",
    "DEFAULT_LIMITS",
    "ID_PATTERN",
    "LEGACY_RUNTIME",
    "NOTIFIED_ATTRIBUTE",
    "RUNTIME_TASKTYPES",
    "SNS_MAX_MESSAGE_BYTES",
    "STATUS_TTL_DAYS",
    "ContractError",
    "ErrorCode",
    "ErrorInfo",
    "FieldIssue",
    "LegacyRequest",
    "Limits",
    "Notification",
    "Priority",
    "QueueMessage",
    "RefError",
    "RefKind",
    "StatusRecord",
    "TaskRequest",
    "TaskStatus",
    "TaskType",
    "WebhookRecord",
    "WebhookTarget",
    "batch_size_limit",
    "cancel_request_update",
    "check_https_url",
    "content_issues",
    "dead_letter_key",
    "dead_letter_prefix",
    "error_body",
    "extras_size_issues",
    "image_key",
    "image_size",
    "input_image_issues",
    "is_public_address",
    "iter_image_fields",
    "legacy_request",
    "new_item",
    "new_secret",
    "notification_key",
    "notification_status",
    "notified_update",
    "output_key",
    "output_location",
    "parse_image_ref",
    "parse_legacy_request",
    "parse_queue_body",
    "parse_request",
    "refused_override_keys",
    "requeue_update",
    "s3_uri",
    "secret_from_stored",
    "set_at",
    "sign",
    "sns_message_size",
    "split_s3_uri",
    "to_queue_message",
    "transition_update",
    "utcnow",
    "verify",
    "vet_webhook_url",
    "webhook_update",
]
