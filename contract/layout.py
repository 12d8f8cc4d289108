"""Where results land in S3. Deterministic, so that a retried job overwrites instead of multiplying."""

from __future__ import annotations


def task_folder(prefix: str, task_id: str) -> str:
    return f"{prefix.strip('/')}/{task_id}"


def image_key(prefix: str, task_id: str, n: int, ext: str = "png") -> str:
    """Key of the n-th output (1-based) of a task."""
    return f"{task_folder(prefix, task_id)}/{task_id}-{n}.{ext}"


def output_key(prefix: str, task_id: str) -> str:
    """Key of the task's JSON result document (the runtime's parameters and info)."""
    return f"{task_folder(prefix, task_id)}/{task_id}.out"


def notification_key(prefix: str, task_id: str) -> str:
    """Key of the full notification, stored when the one published had to be slim (over SNS's size cap)."""
    return f"{task_folder(prefix, task_id)}/{task_id}.notification.json"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def output_location(bucket: str, prefix: str, task_id: str) -> str:
    return s3_uri(bucket, task_folder(prefix, task_id))


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


# Where the dead-letter consumer keeps each message it took off a DLQ, for `sdq redrive`. A task prefix cannot
# start with '.', so no task's results can land here.
DEAD_LETTER_FOLDER = ".dead-letters"


def dead_letter_key(queue_name: str, message_id: str) -> str:
    return f"{dead_letter_prefix(queue_name)}{message_id}.json"


def dead_letter_prefix(queue_name: str) -> str:
    return f"{DEAD_LETTER_FOLDER}/{queue_name}/"
