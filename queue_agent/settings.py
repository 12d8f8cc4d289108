"""The agent's configuration, read once from the environment at start.

The replaced sample's variables keep their names and meaning so that the agent drops into an
existing deployment; everything else is ours and has a safe default. A bad value stops the agent
at start with a message that names the variable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator


class RuntimeType(StrEnum):
    SDWEBUI = "sdwebui"
    DIFFUSERS = "diffusers"
    COMFYUI = "comfyui"


class SettingsError(ValueError):
    """Raised when the environment does not describe a runnable agent; the message names each bad variable."""


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _env_bool(value: Any) -> Any:
    # The sample's charts write "true"/"false"; Kubernetes users also write "1", "yes", "True".
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


EnvBool = Annotated[bool, BeforeValidator(_env_bool)]
CsvList = Annotated[tuple[str, ...], BeforeValidator(_csv)]

_DEFAULT_BASE_URLS = {
    RuntimeType.SDWEBUI: "http://localhost:8080/sdapi/v1/",
    RuntimeType.DIFFUSERS: "http://localhost:8080/sdapi/v1/",
    RuntimeType.COMFYUI: "http://localhost:8188/",
}


class Settings(BaseModel):
    """Every field is read from the environment variable named by its alias."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # --- the replaced sample's variables -------------------------------------------------------
    queue_url: str = Field(alias="SQS_QUEUE_URL", min_length=1)
    topic_arn: str = Field(alias="SNS_TOPIC_ARN", min_length=1)
    bucket: str = Field(alias="S3_BUCKET", min_length=3)
    runtime_type: RuntimeType = Field(alias="RUNTIME_TYPE", default=RuntimeType.SDWEBUI)
    runtime_name: str = Field(alias="RUNTIME_NAME", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    api_base_url: str = Field(alias="API_BASE_URL", default="")
    dynamic_sd_model: EnvBool = Field(alias="DYNAMIC_SD_MODEL", default=False)
    log_level: str = Field(alias="LOGLEVEL", default="INFO")
    disable_xray: EnvBool = Field(alias="DISABLE_XRAY", default=False)

    # --- ours ----------------------------------------------------------------------------------
    status_table: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(alias="STATUS_TABLE", default=None)
    prefetch: int = Field(alias="PREFETCH", default=1, ge=0, le=10)
    # Calls kept in flight at the runtime. The AUTOMATIC1111 APIs queue requests and ComfyUI queues
    # prompts, so with 2 the next job is already waiting at the runtime when the current one ends (the
    # GPU never waits for an HTTP round trip), and our runtime can merge the two into one batch.
    runtime_inflight: int = Field(alias="RUNTIME_INFLIGHT", default=2, ge=1, le=8)
    metrics_host: str = Field(alias="METRICS_HOST", default="0.0.0.0")
    # 0 turns the metrics/health server off (handy when several agents share one host in tests).
    metrics_port: int = Field(alias="METRICS_PORT", default=9090, ge=0, le=65535)
    job_timeout: float = Field(alias="JOB_TIMEOUT_SECONDS", default=1800.0, gt=0)
    allowed_input_buckets: CsvList = Field(alias="ALLOWED_INPUT_BUCKETS", default=())
    runtime_ready_timeout: float = Field(alias="RUNTIME_READY_TIMEOUT_SECONDS", default=900.0, gt=0)
    # Unset: derived from the queue's own VisibilityTimeout, so a crashed agent's messages come
    # back exactly as soon as the queue owner configured.
    visibility_extension: Annotated[float | None, BeforeValidator(_blank_is_none)] = Field(
        alias="VISIBILITY_EXTENSION_SECONDS", default=None, ge=1, le=43_200
    )
    heartbeat_interval: Annotated[float | None, BeforeValidator(_blank_is_none)] = Field(
        alias="HEARTBEAT_INTERVAL_SECONDS", default=None, gt=0
    )
    receive_wait: int = Field(alias="RECEIVE_WAIT_SECONDS", default=20, ge=1, le=20)
    transient_retries: int = Field(alias="TRANSIENT_RETRIES", default=3, ge=0, le=20)
    retry_backoff: float = Field(alias="RETRY_BACKOFF_SECONDS", default=1.0, ge=0)
    retry_backoff_max: float = Field(alias="RETRY_BACKOFF_MAX_SECONDS", default=30.0, ge=0)
    # When in-process retries are exhausted the message goes back to SQS after this long.
    retry_visibility: int = Field(alias="RETRY_VISIBILITY_SECONDS", default=10, ge=0, le=43_200)
    input_max_bytes: int = Field(alias="INPUT_MAX_BYTES", default=20 * 1024 * 1024, gt=0)
    https_fetch_timeout: float = Field(alias="HTTPS_FETCH_TIMEOUT_SECONDS", default=30.0, gt=0)
    cancel_poll_interval: float = Field(alias="CANCEL_POLL_SECONDS", default=5.0, gt=0)
    health_interval: float = Field(alias="HEALTH_CHECK_INTERVAL_SECONDS", default=10.0, gt=0)
    # Consecutive failed runtime health checks before /healthz turns 503.
    health_failures: int = Field(alias="HEALTH_FAILURE_THRESHOLD", default=3, ge=1)
    finish_concurrency: int = Field(alias="FINISH_CONCURRENCY", default=4, ge=1, le=64)
    # ComfyUI node types a workflow may use: "@default" stands for the core nodes of
    # queue_agent.runtimes.comfyui.DEFAULT_NODES, "*" for any node. E.g. "@default,VHS_VideoCombine".
    comfyui_allowed_nodes: CsvList = Field(alias="COMFYUI_ALLOWED_NODES", default=("@default",))
    # ComfyUI's input and output folders as mounted in the agent's container: each task's uploads and outputs
    # are deleted from there once collected. Unset: only the /history entry is deleted.
    comfyui_input_dir: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        alias="COMFYUI_INPUT_DIR", default=None
    )
    comfyui_output_dir: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        alias="COMFYUI_OUTPUT_DIR", default=None
    )
    # The runtime's high-priority queue, read before SQS_QUEUE_URL; unset: one queue.
    high_queue_url: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        alias="SQS_HIGH_QUEUE_URL", default=None
    )
    # Share of receives that look at the normal queue first, so that it is never starved.
    normal_queue_share: float = Field(alias="NORMAL_QUEUE_SHARE", default=0.1, ge=0, le=1)
    # Webhooks: the stack's whsec_ secret (locally) or the Secrets Manager secret holding it (deployed).
    webhook_secret: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        alias="WEBHOOK_SECRET", default=None, repr=False
    )
    webhook_secret_arn: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        alias="WEBHOOK_SECRET_ARN", default=None
    )
    # Plain http to loopback webhook targets: the local stack only.
    webhook_allow_loopback: EnvBool = Field(alias="WEBHOOK_ALLOW_LOOPBACK", default=False)
    webhook_attempts: int = Field(alias="WEBHOOK_ATTEMPTS", default=5, ge=1, le=20)
    webhook_timeout: float = Field(alias="WEBHOOK_TIMEOUT_SECONDS", default=10.0, gt=0)
    webhook_backoff: float = Field(alias="WEBHOOK_BACKOFF_SECONDS", default=1.0, ge=0)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("queue_url", "api_base_url", "high_queue_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value

    @field_validator("topic_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not value.startswith("arn:"):
            raise ValueError(f"must be an SNS topic ARN (arn:...), got {value!r}")
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if not self.api_base_url:
            object.__setattr__(self, "api_base_url", _DEFAULT_BASE_URLS[self.runtime_type])
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("RETRY_BACKOFF_MAX_SECONDS must be at least RETRY_BACKOFF_SECONDS")
        return self

    @property
    def input_buckets(self) -> frozenset[str]:
        """Buckets ``s3://`` inputs may name: the configured ones plus our own output bucket."""
        return frozenset({*self.allowed_input_buckets, self.bucket})

    def lease_timing(self, queue_visibility_timeout: int) -> tuple[float, float]:
        """(extension, interval): how far each heartbeat pushes a message's visibility, and how often."""
        extension = self.visibility_extension or float(max(queue_visibility_timeout, 1))
        interval = self.heartbeat_interval or extension / 3
        return extension, min(interval, extension / 2)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment; raise SettingsError naming every bad variable."""
    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    try:
        return Settings.model_validate({k: v for k, v in environ.items() if k in names})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            var = str(err["loc"][0]) if err["loc"] else "(settings)"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{var}: {message}" if err["type"] != "missing" else f"{var}: required but not set")
        raise SettingsError("invalid agent configuration:\n  " + "\n  ".join(problems)) from None
