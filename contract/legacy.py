"""The replaced sample's v1alpha1 API: an AUTOMATIC1111 body whose ``alwayson_scripts`` carries the routing.

``POST /v1alpha1`` takes such a body; the sample's v1alpha1 Lambda put it on the queue as
``{"metadata": {"id", "runtime": "legacy", "tasktype", "prefix", "context"}, "content": <the body>}``.
Both become an ordinary task here: the routing keys leave ``alwayson_scripts`` (the runtime never sees
them), ``override_settings`` found there joins the body's, ``image_link`` becomes the init image, and the
checkpoint named there travels as the message's ``checkpoint`` (a runtime with dynamic models switches to
it). Every other entry of ``alwayson_scripts`` (an ``AnimateDiff`` block, say) reaches the runtime as is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from contract.errors import ContractError, FieldIssue
from contract.limits import DEFAULT_LIMITS, Limits
from contract.request import ID_PATTERN, GenerationContent, _check_prefix, _load_json, content_issues, new_task_id
from contract.tasks import A1111_TASKTYPES, TaskType

# What the sample's v1alpha1 queue messages carry as metadata.runtime: routed by model, not by name.
LEGACY_RUNTIME = "legacy"
# The keys of alwayson_scripts that address the task rather than a script of the runtime.
ROUTING_KEYS = (
    "task",
    "id_task",
    "uid",
    "sd_model_checkpoint",
    "image_link",
    "save_dir",
    "sd_vae",
    "override_settings",
)
DEFAULT_SAVE_DIR = "outputs"
# Added to the content by the sample's v1alpha1 Lambda; outputs go to the agent's bucket here.
_SAMPLE_ONLY_CONTENT = ("s3_output_path",)


class LegacyRouting(BaseModel):
    """The routing keys of a v1alpha1 body's ``alwayson_scripts`` (other entries are scripts and pass on)."""

    model_config = ConfigDict(extra="allow")

    task: TaskType
    sd_model_checkpoint: StrictStr = Field(min_length=1, max_length=512)
    id_task: Annotated[StrictStr, Field(pattern=ID_PATTERN)] | None = None
    save_dir: StrictStr = DEFAULT_SAVE_DIR
    uid: StrictStr | None = Field(default=None, max_length=256)
    image_link: StrictStr | None = None
    sd_vae: StrictStr | None = Field(default=None, max_length=512)
    override_settings: dict[str, Any] | None = None

    @field_validator("task")
    @classmethod
    def _a1111_task(cls, value: TaskType) -> TaskType:
        if value not in A1111_TASKTYPES:
            allowed = ", ".join(sorted(t.value for t in A1111_TASKTYPES))
            raise ValueError(f"v1alpha1 runs AUTOMATIC1111 tasks ({allowed}); send {value.value} to /v1alpha2")
        return value

    @field_validator("save_dir")
    @classmethod
    def _save_dir_is_safe(cls, value: str) -> str:
        return _check_prefix(value)


class LegacyRequest(GenerationContent):
    """The ``POST /v1alpha1`` body (for the API's schema; use :func:`parse_legacy_request` to validate)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"title": "LegacyRequest"})

    alwayson_scripts: LegacyRouting  # type: ignore[assignment]


@dataclass(frozen=True)
class LegacyTask:
    """A v1alpha1 task made ordinary: content as the runtime gets it, routing pulled out of it."""

    id: str
    tasktype: TaskType
    prefix: str
    checkpoint: str
    content: dict[str, Any]
    uid: str | None = None
    image_link: str | None = None

    def client_field(self, field: str) -> str:
        """The name the client wrote for a field of the ordinary request this task became
        (``task.content.init_images.0`` -> ``alwayson_scripts.image_link``, ``task.content.steps`` -> ``steps``)."""
        if self.image_link is not None and field == "task.content.init_images.0":
            return "alwayson_scripts.image_link"
        return field.removeprefix("task.content.")


def parse_legacy_request(body: bytes | str | dict[str, Any], *, limits: Limits = DEFAULT_LIMITS) -> LegacyTask:
    """Validate a ``POST /v1alpha1`` body. Raises ContractError naming every offending field.

    Fields are named as the client wrote them (``alwayson_scripts.task``, ``steps``). A body without
    ``id_task`` gets a generated id.
    """
    data = _load_json(body, limits)
    if not isinstance(data, dict):
        raise ContractError.single("(body)", "object", "a v1alpha1 body must be a JSON object")
    return _legacy_task(data, base="", limits=limits)


def legacy_task_from_message(metadata: dict[str, Any], content: Any, *, limits: Limits = DEFAULT_LIMITS) -> LegacyTask:
    """The sample's v1alpha1 queue message (``metadata.runtime == "legacy"``) as a task."""
    if not isinstance(content, dict):
        raise ContractError.single("content", "object", "content must be a JSON object (the AUTOMATIC1111 body)")
    content = {k: v for k, v in content.items() if k not in _SAMPLE_ONLY_CONTENT}
    scripts = content.get("alwayson_scripts")
    # The sample's Lambda copied id, task and save_dir into the metadata; the metadata wins when both say.
    if isinstance(scripts, dict):
        content["alwayson_scripts"] = {
            **scripts,
            **{
                key: metadata[source]
                for key, source in (("id_task", "id"), ("task", "tasktype"), ("save_dir", "prefix"))
                if isinstance(metadata.get(source), str) and metadata[source]
            },
        }
    return _legacy_task(content, base="content", limits=limits)


def _legacy_task(data: dict[str, Any], *, base: str, limits: Limits) -> LegacyTask:
    scripts_field = _join(base, "alwayson_scripts")
    scripts = data.get("alwayson_scripts")
    if not isinstance(scripts, dict):
        raise ContractError.single(
            scripts_field,
            "missing" if scripts is None else "object",
            "a v1alpha1 body carries its routing (task, sd_model_checkpoint, id_task, save_dir) in alwayson_scripts",
        )
    try:
        routing = LegacyRouting.model_validate(scripts)
    except ValidationError as exc:
        issues = ContractError.from_validation_error(exc, prefix=scripts_field).issues
        # Check the body too, so that one answer names every bad field.
        raw_task = scripts.get("task")
        if isinstance(raw_task, str) and raw_task in {t.value for t in A1111_TASKTYPES}:
            issues += _body_issues(TaskType(raw_task), data, scripts, base, limits)
        raise ContractError(issues) from None
    content = to_runtime_content(data)
    issues = _body_issues(routing.task, data, scripts, base, limits)
    if issues:
        raise ContractError(issues)
    return LegacyTask(
        id=routing.id_task or new_task_id(),
        tasktype=routing.task,
        prefix=routing.save_dir,
        checkpoint=routing.sd_model_checkpoint,
        content=content,
        uid=routing.uid,
        image_link=routing.image_link or None,
    )


def _body_issues(
    tasktype: TaskType, data: dict[str, Any], scripts: dict[str, Any], base: str, limits: Limits
) -> list[FieldIssue]:
    content = to_runtime_content(data)
    issues = content_issues(tasktype, content, limits, base=base)
    if isinstance(scripts.get("image_link"), str):
        # image_link became init_images[0]; name the field the client wrote.
        moved = _join(base, "init_images.0")
        link = _join(base, "alwayson_scripts.image_link")
        issues = [FieldIssue(link, i.rule, i.message) if i.field == moved else i for i in issues]
    return issues


def to_runtime_content(payload: dict[str, Any]) -> dict[str, Any]:
    """The AUTOMATIC1111 body the runtime gets for a v1alpha1 payload (which is not modified)."""
    content = {k: copy.deepcopy(v) for k, v in payload.items() if k not in _SAMPLE_ONLY_CONTENT}
    scripts = content.get("alwayson_scripts")
    if not isinstance(scripts, dict):
        return content
    overrides = scripts.get("override_settings")
    if isinstance(overrides, dict):
        body_overrides = content.get("override_settings")
        content["override_settings"] = {**(body_overrides if isinstance(body_overrides, dict) else {}), **overrides}
    link = scripts.get("image_link")
    if isinstance(link, str) and link:
        content["init_images"] = [link]
    content["alwayson_scripts"] = {k: v for k, v in scripts.items() if k not in ROUTING_KEYS}
    return content


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name
