"""Task types and the status lifecycle."""

from __future__ import annotations

from enum import StrEnum


class TaskType(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    EXTRA_SINGLE_IMAGE = "extra-single-image"
    EXTRA_BATCH_IMAGE = "extra-batch-image"
    PIPELINE = "pipeline"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Not started within the task's ttl_seconds: it never ran.
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})

# Which states a record may move from into each target state. Terminal states have no way out.
ALLOWED_PREDECESSORS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset(),
    TaskStatus.RUNNING: frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING}),
    TaskStatus.COMPLETED: frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING}),
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING}),
    # A task expires only before it starts: once running, it finishes.
    TaskStatus.EXPIRED: frozenset({TaskStatus.QUEUED}),
}


def can_transition(current: TaskStatus | None, target: TaskStatus) -> bool:
    if current is None:
        return target is TaskStatus.QUEUED
    return current in ALLOWED_PREDECESSORS[target]


# Which task types each runtime type runs: ComfyUI runs workflows, the AUTOMATIC1111 API (the webui and
# our diffusers runtime) runs the rest. The submit function refuses a task its runtime's type cannot run.
A1111_TASKTYPES = frozenset(
    {TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE, TaskType.EXTRA_SINGLE_IMAGE, TaskType.EXTRA_BATCH_IMAGE}
)
RUNTIME_TASKTYPES: dict[str, frozenset[TaskType]] = {
    "sdwebui": A1111_TASKTYPES,
    "diffusers": A1111_TASKTYPES,
    "comfyui": frozenset({TaskType.PIPELINE}),
}
