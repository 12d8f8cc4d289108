"""The Lambda's configuration, read from its environment on every invocation (a few dict lookups)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from contract import STATUS_TTL_DAYS

DEFAULT_PRESIGN_EXPIRES_SECONDS = 3600
# S3 refuses presigned URLs that live longer than seven days.
MAX_PRESIGN_EXPIRES_SECONDS = 7 * 24 * 3600


class ConfigurationError(RuntimeError):
    """The function is deployed without a setting it needs: a server fault, never the client's."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What the submit function knows of a configured runtime (``RUNTIME_CATALOG``)."""

    type: str | None = None  # sdwebui, diffusers or comfyui; None: unknown, nothing is refused for it
    model_filename: str | None = None
    dynamic_model: bool = False
    # Applied to tasks that give no ttl_seconds of their own (config.yaml's modelsRuntime[].ttlSeconds).
    default_ttl_seconds: int | None = None


@dataclass(frozen=True)
class Settings:
    tasks_topic_arn: str | None
    status_table: str | None
    output_bucket: str | None
    runtimes: frozenset[str]
    # Buckets any key's s3:// inputs may name (besides its own results in the output bucket).
    input_buckets: frozenset[str] = frozenset()
    status_ttl_days: int = STATUS_TTL_DAYS
    presign_expires_seconds: int = DEFAULT_PRESIGN_EXPIRES_SECONDS
    # Per runtime, in configuration order: its type and model (v1alpha1 tasks are routed on the model).
    catalog: dict[str, RuntimeInfo] = field(default_factory=dict)
    # Webhook targets on loopback over plain http: only the local stack sets this.
    webhook_allow_loopback: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        catalog = _catalog(env)
        names = frozenset(r.strip() for r in env.get("RUNTIMES", "").split(",") if r.strip())
        return cls(
            tasks_topic_arn=env.get("TASKS_TOPIC_ARN") or None,
            status_table=env.get("STATUS_TABLE") or None,
            output_bucket=env.get("OUTPUT_BUCKET") or None,
            runtimes=names or frozenset(catalog),
            catalog=catalog,
            input_buckets=_csv(env.get("INPUT_BUCKETS", "")),
            webhook_allow_loopback=env.get("WEBHOOK_ALLOW_LOOPBACK", "").lower() in ("1", "true", "yes"),
            status_ttl_days=_int(env, "STATUS_TTL_DAYS", STATUS_TTL_DAYS, 1, 3650),
            presign_expires_seconds=_int(
                env, "PRESIGN_EXPIRES_SECONDS", DEFAULT_PRESIGN_EXPIRES_SECONDS, 1, MAX_PRESIGN_EXPIRES_SECONDS
            ),
        )

    def require(self, name: str) -> str:
        """The named setting, or ConfigurationError naming its environment variable.

        Each function checks only what it uses, so the status function can be deployed without the
        topic and the submit function without presigning rights.
        """
        value = getattr(self, name)
        if not value:
            raise ConfigurationError(f"environment variable {name.upper()} is not set")
        return str(value)

    def runtime_type(self, name: str) -> str | None:
        info = self.catalog.get(name)
        return info.type if info else None

    def runtime_for_model(self, model: str) -> str | None:
        """The runtime a v1alpha1 task naming ``model`` goes to: the first whose modelFilename is that model,
        else the first with dynamic models (it loads any); None when no runtime can serve it."""
        serving = [n for n, info in self.catalog.items() if n in self.runtimes]
        for name in serving:
            if _same_model(self.catalog[name].model_filename, model):
                return name
        return next((n for n in serving if self.catalog[n].dynamic_model), None)

    def served_models(self) -> list[str]:
        return [i.model_filename for n, i in self.catalog.items() if n in self.runtimes and i.model_filename]


def _same_model(filename: str | None, wanted: str) -> bool:
    # Clients of the webui name a model by file, by title ("file.safetensors [hash]") or by path in the bucket.
    if not filename:
        return False
    wanted = wanted.split(" [", 1)[0]
    return wanted in (filename, filename.rsplit("/", 1)[-1])


def _catalog(env: Mapping[str, str]) -> dict[str, RuntimeInfo]:
    raw = env.get("RUNTIME_CATALOG", "").strip()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return {
            str(name): RuntimeInfo(
                type=spec.get("type"),
                model_filename=spec.get("modelFilename"),
                dynamic_model=bool(spec.get("dynamicModel", False)),
                default_ttl_seconds=int(spec["ttlSeconds"]) if spec.get("ttlSeconds") else None,
            )
            for name, spec in data.items()
        }
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigurationError(
            f"environment variable RUNTIME_CATALOG must be a JSON object of runtime name to "
            f"{{type, modelFilename, dynamicModel}}: {exc}"
        ) from None


def _csv(raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"environment variable {key} must be between {low} and {high}, got {value}")
    return value
