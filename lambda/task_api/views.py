"""What the API answers on success. Pydantic models, so that the OpenAPI document is generated from them."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from contract import StatusRecord, TaskStatus


class SubmitResponse(BaseModel):
    """The replaced sample's answer to ``POST /v1alpha2``; ``POST /tasks`` answers the same."""

    id: str
    runtime: str
    output_location: str | None = Field(description="s3:// folder the results will be written to")
    status: TaskStatus


class LegacySubmitResponse(SubmitResponse):
    """The replaced sample's answer to ``POST /v1alpha1`` (``id_task``, ``sd_model_checkpoint``,
    ``output_location``), with ours (``id``, ``runtime``, ``status``) next to it."""

    id_task: str = Field(description="the task id (the same as id)")
    sd_model_checkpoint: str = Field(description="the model the task was routed on")


class ResultLink(BaseModel):
    s3: str = Field(description="the object's s3:// URI, as the notification names it")
    url: str | None = Field(
        description="presigned HTTPS GET URL, minted on every read; null for objects outside the output bucket"
    )


class TaskView(StatusRecord):
    """The status record as ``GET /tasks/{id}`` shows it: ``image_url``/``output_url`` stay s3:// URIs,
    ``images``/``output`` add presigned URLs next to them."""

    images: list[ResultLink] = Field(default_factory=list)
    output: ResultLink | None = None
    # Which key owns the task, and the submission's nonce, are the deployment's business: not shown.
    owner: SkipJsonSchema[str | None] = Field(default=None, exclude=True)
    nonce: SkipJsonSchema[str] = Field(default="", exclude=True)


def submit_response(record: StatusRecord) -> SubmitResponse:
    return SubmitResponse(
        id=record.id, runtime=record.runtime, output_location=record.output_location, status=record.status
    )


def legacy_submit_response(record: StatusRecord, checkpoint: str) -> LegacySubmitResponse:
    return LegacySubmitResponse(
        **submit_response(record).model_dump(), id_task=record.id, sd_model_checkpoint=checkpoint
    )


def task_view(record: StatusRecord, presign: Callable[[str], str | None]) -> TaskView:
    return TaskView(
        **record.model_dump(),
        images=[ResultLink(s3=uri, url=presign(uri)) for uri in record.image_url],
        output=ResultLink(s3=record.output_url, url=presign(record.output_url)) if record.output_url else None,
    )
