"""The completion notification on the results topic: a superset of the replaced sample's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.tasks import TaskStatus

TerminalStatus = Literal["completed", "failed", "cancelled"]


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

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """Attributes subscribers filter on."""
        return {
            "runtime": {"DataType": "String", "StringValue": self.runtime},
            "status": {"DataType": "String", "StringValue": self.status},
        }


def notification_status(status: TaskStatus) -> TerminalStatus:
    if not status.terminal:
        raise ValueError(f"{status} is not a terminal status")
    return status.value  # type: ignore[return-value]
