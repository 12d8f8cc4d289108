"""Per-task webhooks, time-to-live and priority: the request fields and what they promise.

- ``metadata.webhook``: a URL, or ``{"url", "events"}``. The agent POSTs the task's notification body to it,
  signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``) with the stack's ``whsec_`` secret.
- ``metadata.ttl_seconds``: a task that has not started that long after submission never runs; it ends
  ``expired``.
- ``metadata.priority``: ``high`` tasks go to the runtime's high-priority queue, which its agents read first.

The signing itself is the maintained ``standardwebhooks`` package (imported where it is used: the agent
signs, ``sdq`` and receivers verify; the submit Lambda only vets URLs and needs no more than pydantic).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from contract.refs import check_https_url
from contract.tasks import TaskStatus

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MAX_URL_CHARS = 2_048
MAX_TTL_SECONDS = 14 * 86_400  # SQS keeps a message at most 14 days: a longer deadline means nothing


class WebhookEvent(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


DEFAULT_EVENTS = (WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELLED, WebhookEvent.EXPIRED)


class Priority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class WebhookTarget(BaseModel):
    """Where and for which events; a bare URL string means the terminal events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[StrictStr, Field(min_length=1, max_length=MAX_URL_CHARS)]
    events: tuple[WebhookEvent, ...] = DEFAULT_EVENTS

    @classmethod
    def coerce(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[WebhookEvent, ...]) -> tuple[WebhookEvent, ...]:
        if not value:
            raise ValueError("events must name at least one of " + ", ".join(e.value for e in WebhookEvent))
        return tuple(dict.fromkeys(value))

    def wants(self, status: TaskStatus | str) -> bool:
        return str(status) in {e.value for e in self.events}


class WebhookRecord(BaseModel):
    """What the status record says about a task's webhook deliveries."""

    attempts: int = 0
    last_status: int | None = Field(default=None, description="HTTP status of the last attempt; null: no answer")
    delivered: bool = False


def vet_webhook_url(url: str, *, allow_loopback: bool = False) -> None:
    """Raise RefError unless ``url`` is an https URL to a public host (http to loopback where allowed: the
    local stack). DNS answers are vetted again by the agent at delivery."""
    if allow_loopback and _is_loopback_url(url):
        return
    check_https_url(url)


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_from_stored(value: str) -> str:
    """The stack keeps 40 random letters and digits in Secrets Manager (valid base64 as they are): that is
    the key, ``whsec_`` + the value is the secret clients verify with."""
    return value if value.startswith(SECRET_PREFIX) else SECRET_PREFIX + value


def sign(secret: str, message_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    from standardwebhooks import Webhook  # the agent's and the CLI's dependency, not the Lambda's

    when = at or datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, when, body),
    }


def verify(secret: str, body: bytes | str, headers: dict[str, str]) -> Any:
    """Check a delivery's signature and age (5 minutes) and return the parsed body; raises
    ``standardwebhooks.WebhookVerificationError`` otherwise. This is what a receiver runs."""
    from standardwebhooks import Webhook

    return Webhook(secret).verify(body, headers)


__all__ = [
    "DEFAULT_EVENTS",
    "MAX_TTL_SECONDS",
    "Priority",
    "WebhookEvent",
    "WebhookRecord",
    "WebhookTarget",
    "new_secret",
    "secret_from_stored",
    "sign",
    "verify",
    "vet_webhook_url",
]
