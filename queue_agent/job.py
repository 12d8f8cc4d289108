"""What flows through the pipeline: one received SQS message, what it asks for, and how it ended."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from contract import LEGACY_RUNTIME, ContractError, QueueMessage, parse_queue_body
from queue_agent.errors import JobError

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Delivery:
    """One SQS message as received. Times are ``time.monotonic()`` unless named ``*_epoch``."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_epoch: float | None
    trace_header: str | None
    received_at: float
    receive_wait: float
    received_epoch: float = 0.0

    @classmethod
    def from_sqs(cls, msg: dict[str, Any], *, received_at: float, receive_wait: float) -> Delivery:
        attrs = msg.get("Attributes", {})
        sent = attrs.get("SentTimestamp")
        return cls(
            message_id=msg["MessageId"],
            receipt_handle=msg["ReceiptHandle"],
            body=msg.get("Body", ""),
            receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
            sent_epoch=int(sent) / 1000 if sent else None,
            trace_header=attrs.get("AWSTraceHeader"),
            received_at=received_at,
            receive_wait=receive_wait,
            received_epoch=time.time() - (time.monotonic() - received_at),
        )


@dataclass(frozen=True)
class Artifact:
    """One output file of a job: an image, a gif or a video."""

    data: bytes
    ext: str
    content_type: str


@dataclass(frozen=True)
class PreparedTask:
    """A task made ready for its runtime ahead of time: inputs materialised, the body serialised.

    Built while the previous job still runs, so that base64-encoding and serialising large inputs
    (or uploading them to ComfyUI) never sits between two runtime calls.
    """

    message: QueueMessage
    body: bytes
    # Files the runtime adapter made on the runtime for this task (ComfyUI uploads), removed after it ran.
    files: tuple[str, ...] = ()


@dataclass
class RuntimeResult:
    artifacts: list[Artifact]
    # What goes into the ``.out`` document besides our own fields: the runtime's parameters and info.
    document: dict[str, Any] = field(default_factory=dict)


class RuntimeOutput:
    """A runtime's answer as received. Turning it into files (JSON and base64 decoding, fetching
    ComfyUI's outputs) is left to the finisher, so it happens while the next job already runs
    instead of between two runtime calls. ``decode`` raises JobError when the answer is unusable."""

    def __init__(self, decode: Callable[[], Awaitable[RuntimeResult]]) -> None:
        self._decode = decode

    async def decode(self) -> RuntimeResult:
        return await self._decode()


@dataclass(frozen=True)
class StoredResult:
    """Where a completed job's outputs are in S3."""

    image_url: list[str]
    output_url: str


class Disposition(StrEnum):
    """Where a job ends. The finisher has exactly one branch per value."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Not started within its ttl_seconds: never runs, ends expired.
    EXPIRED = "expired"
    # Already terminal from an earlier delivery: announce again if needed, delete, never re-run.
    ALREADY_DONE = "already_done"
    # Transient failure, retries exhausted: leave the message to SQS redelivery.
    RETRY_LATER = "retry_later"
    # Never started (shutdown): make the message visible again at once.
    RETURN = "return"


@dataclass(frozen=True)
class Span:
    """A phase of a job between two ``time.monotonic()`` readings."""

    start: float
    end: float


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as one stage hands it to the next (never written into the Job)."""

    disposition: Disposition
    output: RuntimeOutput | None = None
    error: JobError | None = None
    # For ALREADY_DONE found through the ``.out`` object rather than the status table.
    stored: StoredResult | None = None
    # When the job was on the runtime (set by the runner) and when its outputs were uploaded (finisher).
    run: Span | None = None
    upload: Span | None = None


@dataclass(frozen=True)
class Job:
    """One received message and what it asks for. Immutable: stages pass ``(job, outcome)`` forward."""

    delivery: Delivery
    message: QueueMessage | None
    # Set when the body breaks the contract; the job is failed without running.
    contract_error: ContractError | None = None
    # Best-effort identity for a message that does not parse, so the failure can still be announced.
    fallback_id: str = ""
    fallback_context: Any = None
    trace: Any = None  # the job's tracing segment (queue_agent.tracing), opaque elsewhere

    @classmethod
    def from_delivery(cls, delivery: Delivery, runtime_name: str = LEGACY_RUNTIME) -> Job:
        """``runtime_name``: this queue's runtime, which the replaced sample's v1alpha1 messages (routed
        by model, not by runtime name) are for."""
        try:
            return cls(delivery=delivery, message=parse_queue_body(delivery.body, legacy_runtime=runtime_name))
        except (ContractError, ValueError, TypeError) as exc:
            # parse_queue_body raises ContractError for bad tasks, but a body that is valid JSON of
            # the wrong shape (an array, a number) can surface as a TypeError: same verdict.
            if not isinstance(exc, ContractError):
                exc = ContractError.single("(message)", "shape", "a queue message must be a JSON object")
            task_id, context = _salvage_identity(delivery.body)
            return cls(
                delivery=delivery,
                message=None,
                contract_error=exc,
                fallback_id=task_id or delivery.message_id,
                fallback_context=context,
            )

    def traced(self, trace: Any) -> Job:
        return replace(self, trace=trace)

    @property
    def task_id(self) -> str:
        return self.message.id if self.message else self.fallback_id

    @property
    def receipt_handle(self) -> str:
        return self.delivery.receipt_handle

    def timings(self, outcome: Outcome | None = None, now: float | None = None) -> dict[str, float]:
        """Seconds spent in each phase; only phases that happened are present."""
        now = time.monotonic() if now is None else now
        d = self.delivery
        run = outcome.run if outcome else None
        upload = outcome.upload if outcome else None
        out: dict[str, float] = {"receive_wait": d.receive_wait}
        if d.sent_epoch is not None and d.received_epoch:
            # Wall clocks of SQS and this host may disagree slightly; never report negative waiting.
            out["queue_time"] = max(0.0, d.received_epoch - d.sent_epoch)
        if run is not None:
            out["prefetch_wait"] = run.start - d.received_at
            out["runtime"] = run.end - run.start
        if upload is not None:
            out["upload"] = upload.end - upload.start
        out["total"] = now - d.received_at
        return {k: round(v, 4) for k, v in out.items()}


@dataclass(frozen=True)
class Ready:
    """What the receiver hands the runner: a job whose task is prepared for the runtime."""

    job: Job
    task: PreparedTask


@dataclass(frozen=True)
class Ended:
    """What the receiver or the runner hands the finisher: a job and how it ended."""

    job: Job
    outcome: Outcome


def _salvage_identity(body: str) -> tuple[str | None, Any]:
    """Dig the task id and context out of a body that failed validation (raw or SNS-enveloped)."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    if isinstance(data.get("task"), dict):
        meta = data["task"].get("metadata")
    else:
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else data
    if not isinstance(meta, dict):
        return None, None
    task_id = meta.get("id")
    valid = isinstance(task_id, str) and bool(_ID_RE.match(task_id))
    return (task_id if valid else None), meta.get("context")
