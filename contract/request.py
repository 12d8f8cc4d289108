"""The client request: the replaced sample's v1alpha2 body ``{"task": {"metadata": ..., "content": ...}}``.

Validation checks the content's shape and bounds, but the content travels on exactly as the
client wrote it: the runtimes apply their own defaults.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contract.budget import budget_issues, context_issues, notification_issues
from contract.errors import ContractError, ErrorCode, FieldIssue
from contract.images import LOAD_IMAGE_NODES, iter_image_fields
from contract.limits import DEFAULT_LIMITS, Limits
from contract.refs import RefError, parse_image_ref
from contract.scripts import batch_size_limit
from contract.tasks import TaskType
from contract.webhooks import MAX_TTL_SECONDS, Priority, WebhookTarget

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
RUNTIME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=-]*(/[A-Za-z0-9_][A-Za-z0-9._=-]*)*$")

Number = StrictInt | StrictFloat


def new_task_id() -> str:
    return str(uuid.uuid4())


def _check_prefix(value: str) -> str:
    segments = value.split("/")
    if len(value) > 256 or not _PREFIX_RE.match(value) or any(s in {".", ".."} for s in segments):
        raise PydanticCustomError(
            "safe_path",
            "prefix must be a relative path of letters, digits and ._=- separated by single '/', "
            "without '..' segments, at most 256 characters",
        )
    return value


class TaskMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[StrictStr, Field(pattern=ID_PATTERN)] | None = None
    runtime: Annotated[StrictStr, Field(pattern=RUNTIME_PATTERN)]
    tasktype: TaskType
    prefix: StrictStr = "output"
    context: Any = None
    # Ours (see contract.webhooks): a signed POST per event, a start-by deadline, the queue to take.
    webhook: WebhookTarget | None = None
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_TTL_SECONDS)] | None = None
    priority: Priority = Priority.NORMAL

    @field_validator("prefix")
    @classmethod
    def _prefix_is_safe(cls, value: str) -> str:
        return _check_prefix(value)

    @field_validator("webhook", mode="before")
    @classmethod
    def _webhook_url_alone(cls, value: Any) -> Any:
        return WebhookTarget.coerce(value)


# The AUTOMATIC1111 options a task may override for itself (models, VAE, clip skip, sampler noise knobs). Every
# other option (paths, output settings, the API's own switches, URL fetching...) is the operator's, not a task's;
# and the runtime always restores the options after the task (override_settings_restore_afterwards is forced).
OVERRIDE_SETTINGS_KEYS = frozenset(
    {
        "sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "eta_noise_seed_delta", "eta_ancestral",
        "eta_ddim", "randn_source", "always_discard_next_to_last_sigma", "s_churn", "s_tmin", "s_tmax", "s_noise",
        "sigma_min", "sigma_max", "rho", "img2img_fix_steps", "token_merging_ratio", "token_merging_ratio_hr",
        "sd_vae_overrides_per_model_preferences",
    }
)  # fmt: skip


def refused_override_keys(overrides: Any) -> list[str]:
    """The keys of an ``override_settings`` object that a task may not set, sorted."""
    if not isinstance(overrides, dict):
        return []
    return sorted(str(k) for k in overrides if k not in OVERRIDE_SETTINGS_KEYS)


class OverrideSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    sd_model_checkpoint: StrictStr | None = Field(default=None, max_length=512)

    @model_validator(mode="before")
    @classmethod
    def _allowed_keys(cls, value: Any) -> Any:
        if refused := refused_override_keys(value):
            raise PydanticCustomError(
                "allowed_keys",
                "options a task may not override: {refused} (allowed: {allowed})",
                {"refused": ", ".join(refused), "allowed": ", ".join(sorted(OVERRIDE_SETTINGS_KEYS))},
            )
        return value


class GenerationContent(BaseModel):
    """txt2img / img2img fields we bound or type-check; everything else passes through."""

    model_config = ConfigDict(extra="allow")

    prompt: StrictStr = ""
    negative_prompt: StrictStr = ""
    styles: list[StrictStr] | None = None
    steps: StrictInt | None = Field(default=None, ge=1)
    width: StrictInt | None = None
    height: StrictInt | None = None
    batch_size: StrictInt | None = Field(default=None, ge=1)
    n_iter: StrictInt | None = Field(default=None, ge=1)
    cfg_scale: Number | None = Field(default=None, ge=0, le=50)
    seed: StrictInt | None = Field(default=None, ge=-1, le=2**63 - 1)
    subseed: StrictInt | None = Field(default=None, ge=-1, le=2**63 - 1)
    sampler_name: StrictStr | None = Field(default=None, max_length=64)
    sampler_index: StrictStr | None = Field(default=None, max_length=64)
    scheduler: StrictStr | None = Field(default=None, max_length=64)
    denoising_strength: Number | None = Field(default=None, ge=0, le=1)
    init_images: list[StrictStr] | None = None
    mask: StrictStr | None = None
    override_settings: OverrideSettings | None = None
    alwayson_scripts: dict[str, Any] | None = None
    send_images: bool | None = None
    save_images: bool | None = None


class ExtraSingleContent(BaseModel):
    model_config = ConfigDict(extra="allow")

    image: StrictStr
    resize_mode: StrictInt | None = Field(default=None, ge=0, le=1)
    upscaling_resize: Number | None = Field(default=None, gt=0)
    upscaling_resize_w: StrictInt | None = None
    upscaling_resize_h: StrictInt | None = None
    upscaler_1: StrictStr | None = Field(default=None, max_length=128)
    upscaler_2: StrictStr | None = Field(default=None, max_length=128)


class BatchImage(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: StrictStr
    name: StrictStr = Field(default="image", max_length=256)


class ExtraBatchContent(ExtraSingleContent):
    image: StrictStr | None = None  # type: ignore[assignment]
    imageList: list[BatchImage] = Field(min_length=1)


class WorkflowNode(BaseModel):
    model_config = ConfigDict(extra="allow")

    class_type: StrictStr = Field(min_length=1, max_length=256)
    inputs: dict[str, Any]


class Task(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: TaskMetadata
    content: dict[str, Any]


class TaskRequest(BaseModel):
    """The POST body. Use :func:`parse_request` rather than validating this directly."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"title": "TaskRequest"})

    task: Task


_CONTENT_MODELS: dict[TaskType, type[BaseModel]] = {
    TaskType.TEXT_TO_IMAGE: GenerationContent,
    TaskType.IMAGE_TO_IMAGE: GenerationContent,
    TaskType.EXTRA_SINGLE_IMAGE: ExtraSingleContent,
    TaskType.EXTRA_BATCH_IMAGE: ExtraBatchContent,
}


def parse_request(
    body: bytes | str | dict[str, Any],
    *,
    runtimes: set[str] | frozenset[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> TaskRequest:
    """Parse and validate a request body. Raises ContractError listing every offending field.

    ``runtimes`` is the set of configured runtime names; when given, any other name is refused.
    A request without an id gets a generated one.
    """
    data = _load_json(body, limits)
    issues: list[FieldIssue] = []
    request: TaskRequest | None = None
    try:
        request = TaskRequest.model_validate(data)
    except ValidationError as exc:
        issues += ContractError.from_validation_error(exc).issues
    # Content is checked even when metadata is wrong, so that one answer names every bad field.
    tasktype, content = _raw_tasktype_and_content(data)
    if tasktype is not None and content is not None:
        issues += content_issues(tasktype, content, limits)
    if request is not None:
        meta = request.task.metadata
        issues += context_issues(meta.context, limits)
        if not issues:
            # Ids are generated below when absent: count the longest one.
            task_id = meta.id or "x" * limits.max_id_chars
            issues += notification_issues(
                task_id, meta.runtime, meta.tasktype, meta.prefix, meta.context, request.task.content, limits
            )
    runtime = request.task.metadata.runtime if request else None
    if runtimes is not None and runtime is not None and runtime not in runtimes:
        known = ", ".join(sorted(runtimes)) or "(none)"
        issues.insert(
            0,
            FieldIssue("task.metadata.runtime", "one_of", f"unknown runtime {runtime!r}; configured runtimes: {known}"),
        )
    if issues or request is None:
        raise ContractError(issues)
    if request.task.metadata.id is None:
        request.task.metadata.id = new_task_id()
    return request


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; pydantic would quietly turn them into null downstream.
    raise ValueError(f"{name} is not valid JSON")


def _raw_tasktype_and_content(data: Any) -> tuple[TaskType | None, dict[str, Any] | None]:
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(task, dict):
        return None, None
    metadata, content = task.get("metadata"), task.get("content")
    raw_type = metadata.get("tasktype") if isinstance(metadata, dict) else None
    try:
        tasktype = TaskType(raw_type) if isinstance(raw_type, str) else None
    except ValueError:
        tasktype = None
    return tasktype, content if isinstance(content, dict) else None


def _load_json(body: bytes | str | dict[str, Any], limits: Limits) -> Any:
    if isinstance(body, dict):
        size = len(json.dumps(body, separators=(",", ":")).encode())
    else:
        size = len(body.encode() if isinstance(body, str) else body)
    if size > limits.max_request_bytes:
        raise ContractError.single(
            "(body)",
            "max_bytes",
            f"request is {size} bytes, over the {limits.max_request_bytes}-byte limit; "
            "pass images as s3:// or https:// references instead of inline base64",
            code=ErrorCode.REQUEST_TOO_LARGE,
            status=413,
        )
    if isinstance(body, dict):
        return body
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError.single("(body)", "json", f"body is not valid JSON: {exc}") from None


def content_issues(
    tasktype: TaskType, content: dict[str, Any], limits: Limits = DEFAULT_LIMITS, *, base: str = "task.content"
) -> list[FieldIssue]:
    """Every shape, bound and image-reference issue of a task's content; fields are named under ``base``."""
    if tasktype is TaskType.PIPELINE:
        issues = _workflow_issues(content, limits, base)
    else:
        issues = _typed_content_issues(tasktype, content, limits, base)
    for path, value in iter_image_fields(tasktype, content):
        field = ".".join([p for p in (base, *map(str, path)) if p])
        try:
            parse_image_ref(value)
        except RefError as exc:
            issues.append(FieldIssue(field, exc.rule, str(exc)))
    return issues + budget_issues(tasktype, content, limits, base)


def _typed_content_issues(tasktype: TaskType, content: dict[str, Any], limits: Limits, base: str) -> list[FieldIssue]:
    model = _CONTENT_MODELS[tasktype]
    try:
        return _bound_issues(tasktype, model.model_validate(content), limits, base)
    except ValidationError as exc:
        type_issues = ContractError.from_validation_error(exc, prefix=base).issues
        wrong = {err["loc"][0] for err in exc.errors() if err["loc"]}
    # Check the bounds of the fields that are well typed too, so one answer names every bad field.
    try:
        rest = model.model_validate({k: v for k, v in content.items() if k not in wrong})
    except ValidationError:
        return type_issues
    reported = {_join(base, str(name)) for name in wrong}
    return type_issues + [i for i in _bound_issues(tasktype, rest, limits, base) if i.field not in reported]


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _side_issues(field: str, value: int | None, limits: Limits) -> list[FieldIssue]:
    if value is None:
        return []
    if not limits.min_side <= value <= limits.max_side:
        return [FieldIssue(field, "range", f"must be between {limits.min_side} and {limits.max_side}")]
    if value % limits.side_multiple:
        return [FieldIssue(field, "multiple_of", f"must be a multiple of {limits.side_multiple}")]
    return []


def _bound_issues(tasktype: TaskType, parsed: BaseModel, limits: Limits, base: str) -> list[FieldIssue]:
    def f(name: str) -> str:
        return _join(base, name)

    issues: list[FieldIssue] = []
    if isinstance(parsed, GenerationContent):
        for name in ("prompt", "negative_prompt"):
            if len(getattr(parsed, name)) > limits.max_prompt_chars:
                issues.append(FieldIssue(f(name), "max_length", f"at most {limits.max_prompt_chars} characters"))
        if parsed.steps is not None and parsed.steps > limits.max_steps:
            issues.append(FieldIssue(f("steps"), "range", f"must be between 1 and {limits.max_steps}"))
        issues += _side_issues(f("width"), parsed.width, limits)
        issues += _side_issues(f("height"), parsed.height, limits)
        most = batch_size_limit(parsed.alwayson_scripts, limits)
        if parsed.batch_size is not None and parsed.batch_size > most:
            video = " (frames of an AnimateDiff video)" if most != limits.max_batch_size else ""
            issues.append(FieldIssue(f("batch_size"), "range", f"must be between 1 and {most}{video}"))
        if parsed.n_iter is not None and parsed.n_iter > limits.max_n_iter:
            issues.append(FieldIssue(f("n_iter"), "range", f"must be between 1 and {limits.max_n_iter}"))
        pixels = (parsed.width or 512) * (parsed.height or 512) * (parsed.batch_size or 1) * (parsed.n_iter or 1)
        if not issues and pixels > limits.max_total_pixels:
            issues.append(
                FieldIssue(
                    f("batch_size"),
                    "max_total_pixels",
                    f"width*height*batch_size*n_iter is {pixels}, over {limits.max_total_pixels}",
                )
            )
        if tasktype is TaskType.IMAGE_TO_IMAGE and not parsed.init_images:
            issues.append(FieldIssue(f("init_images"), "missing", "image-to-image needs at least one init image"))
    if isinstance(parsed, ExtraSingleContent):
        if parsed.upscaling_resize is not None and parsed.upscaling_resize > limits.max_upscale_factor:
            issues.append(FieldIssue(f("upscaling_resize"), "range", f"must be at most {limits.max_upscale_factor}"))
        for name in ("upscaling_resize_w", "upscaling_resize_h"):
            value = getattr(parsed, name)
            if value is not None and not 1 <= value <= 4 * limits.max_side:
                issues.append(FieldIssue(f(name), "range", f"must be between 1 and {4 * limits.max_side}"))
    if isinstance(parsed, ExtraBatchContent) and len(parsed.imageList) > limits.max_batch_images:
        issues.append(FieldIssue(f("imageList"), "max_items", f"at most {limits.max_batch_images} images"))
    return issues


# ComfyUI node inputs we bound wherever they appear, whatever the node class.
_WORKFLOW_BOUNDS = {"steps": "max_steps", "batch_size": "max_batch_size"}


def _workflow_issues(content: dict[str, Any], limits: Limits, base: str) -> list[FieldIssue]:
    b = base or "(body)"
    if not content:
        return [FieldIssue(b, "min_items", "a pipeline workflow needs at least one node")]
    if len(content) > limits.max_workflow_nodes:
        return [FieldIssue(b, "max_items", f"at most {limits.max_workflow_nodes} nodes")]
    issues: list[FieldIssue] = []
    for node_id, node in content.items():
        try:
            parsed = WorkflowNode.model_validate(node)
        except ValidationError as exc:
            issues += ContractError.from_validation_error(exc, prefix=_join(base, str(node_id))).issues
            continue
        for name, value in parsed.inputs.items():
            field = _join(base, f"{node_id}.inputs.{name}")
            if name in _WORKFLOW_BOUNDS and isinstance(value, int) and not isinstance(value, bool):
                bound = getattr(limits, _WORKFLOW_BOUNDS[name])
                if not 1 <= value <= bound:
                    issues.append(FieldIssue(field, "range", f"must be between 1 and {bound}"))
            if name in {"width", "height"} and isinstance(value, int) and not isinstance(value, bool):
                issues += _side_issues(field, value, limits)
            if name in {"text", "prompt"} and isinstance(value, str) and len(value) > limits.max_prompt_chars:
                issues.append(FieldIssue(field, "max_length", f"at most {limits.max_prompt_chars} characters"))
        image = parsed.inputs.get("image")
        if parsed.class_type in LOAD_IMAGE_NODES and not (
            isinstance(image, str) and image[:8].lower().startswith(("s3://", "https://"))
        ):
            # A name would load a file already on the ComfyUI server: another task's upload or output.
            issues.append(
                FieldIssue(
                    _join(base, f"{node_id}.inputs.image"),
                    "image_ref",
                    f"a {parsed.class_type} must load an s3:// or https:// image given in the task, "
                    "not a file on the server",
                )
            )
    return issues
