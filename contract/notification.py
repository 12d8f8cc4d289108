"""The completion notification on the results topic: a superset of the replaced sample's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.tasks import TaskStatus

TerminalStatus = Literal["completed", "failed", "cancelled", "expired"]
SLIM_ERROR_CHARS = 1_000


class ErrorInfo(BaseModel):
    code: str
    message: str


class Notification(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    runtime: str
    status: TerminalStatus
    result: bool = Field(description="true when the task completed (the replaced sample's field)")
    image_url: list[str] = Field(default_factory=list)
    output_url: str | None = None
    context: Any = None
    tasktype: str | None = None
    attempts: int = 0
    error: ErrorInfo | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    truncated: bool = Field(
        default=False,
        description="true: the full notification was over SNS's 256 KiB cap; this slim one leaves out context, "
        "image_url and timings, and full_url names the full one in S3",
    )
    full_url: str | None = Field(default=None, description="s3:// URI of the full notification when truncated")

    def slim(self, full_url: str) -> Notification:
        """What goes out instead of a notification too large to publish: who, what status, where the rest is."""
        error = ErrorInfo(code=self.error.code, message=self.error.message[:SLIM_ERROR_CHARS]) if self.error else None
        return Notification(
            id=self.id,
            runtime=self.runtime,
            status=self.status,
            result=self.result,
            output_url=self.output_url,
            tasktype=self.tasktype,
            attempts=self.attempts,
            error=error,
            truncated=True,
            full_url=full_url,
        )

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """Attributes subscribers filter on."""
        return {
            "runtime": {"DataType": "String", "StringValue": self.runtime},
            "status": {"DataType": "String", "StringValue": self.status},
        }


def sns_message_size(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """What SNS counts against its 256 KiB cap: the body plus every attribute's name, type and value."""
    size = len(body.encode())
    return size + sum(len(k) + len(v["DataType"]) + len(v["StringValue"].encode()) for k, v in attributes.items())


def notification_status(status: TaskStatus) -> TerminalStatus:
    if not status.terminal:
        raise ValueError(f"{status} is not a terminal status")
    return status.value  # type: ignore[return-value]
