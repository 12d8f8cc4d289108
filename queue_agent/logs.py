"""Structured JSON logs: one object per line, with the task id on every line logged about a task.

The task id travels in a context variable, so each asyncio task that works on a job tags all its
log lines (including those of helpers that know nothing about jobs) without passing loggers around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("queue_agent_task_id", default=None)

# LogRecord attributes that are plumbing, not data worth a JSON key.
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


@contextmanager
def task_context(task_id: str | None) -> Iterator[None]:
    """Tag every log line written inside the block (and in tasks it starts) with ``task_id``."""
    token = _task_id.set(task_id)
    try:
        yield
    finally:
        _task_id.reset(token)


def current_task_id() -> str | None:
    return _task_id.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        task_id = getattr(record, "task_id", None) or _task_id.get()
        if task_id:
            entry["task_id"] = task_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(level: str, stream: TextIO | None = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter at DEBUG would log request bodies (our payloads); keep it at WARNING.
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3", "httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level]))
