"""AWS X-Ray tracing, kept to this one module (the SDK's support ends in February 2027; OpenTelemetry
is the way on, and swapping it in should touch nothing else).

One segment per job, continuing the trace the submit Lambda started (the SQS ``AWSTraceHeader``
system attribute), with a subsegment per phase. Segments are built explicitly and sent with the
SDK's UDP emitter rather than through the SDK's global recorder and its implicit context, because a
job crosses several asyncio tasks (receiver, runner, finisher) on its way through the pipeline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
from aws_xray_sdk.core.models.segment import Segment
from aws_xray_sdk.core.models.subsegment import Subsegment
from aws_xray_sdk.core.models.trace_header import TraceHeader

log = logging.getLogger(__name__)


class Tracer:
    def __init__(self, enabled: bool, service: str) -> None:
        self.enabled = enabled
        self.service = service
        # The emitter reads the daemon address from AWS_XRAY_DAEMON_ADDRESS (default 127.0.0.1:2000).
        self._emitter = UDPEmitter() if enabled else None

    def start(self, trace_header: str | None, task_id: str) -> Segment | None:
        """Open the job's segment, as a child of the upstream trace when the message carries one."""
        if not self.enabled:
            return None
        header = TraceHeader.from_header_str(trace_header) if trace_header else TraceHeader()
        segment = Segment(
            self.service,
            traceid=header.root,
            parent_id=header.parent,
            sampled=header.sampled != 0,
        )
        segment.put_annotation("task_id", task_id)
        segment.origin = "AWS::EKS::Container"
        return segment

    @contextlib.contextmanager
    def span(self, segment: Segment | None, name: str, **annotations: Any) -> Iterator[None]:
        """A subsegment around a phase of the job; records the exception when the block raises."""
        if segment is None:
            yield
            return
        sub = Subsegment(name, "remote" if name in {"s3", "sns", "sqs", "dynamodb"} else "local", segment)
        segment.add_subsegment(sub)
        for key, value in annotations.items():
            sub.put_annotation(key, value)
        try:
            yield
        except BaseException as exc:
            sub.add_exception(exc, [], remote=False)
            raise
        finally:
            sub.close()

    def finish(self, segment: Segment | None, status: str, error: str | None = None) -> None:
        if segment is None or self._emitter is None:
            return
        segment.put_annotation("status", status)
        if error:
            segment.add_error_flag()
            segment.put_metadata("error", error)
        segment.close()
        if segment.sampled:
            self._emitter.send_entity(segment)
