"""The Lambda's configuration, read from its environment on every invocation (a few dict lookups)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from contract.status import STATUS_TTL_DAYS

DEFAULT_PRESIGN_EXPIRES_SECONDS = 3600
# S3 refuses presigned URLs that live longer than seven days.
MAX_PRESIGN_EXPIRES_SECONDS = 7 * 24 * 3600


class ConfigurationError(RuntimeError):
    """The function is deployed without a setting it needs: a server fault, never the client's."""


@dataclass(frozen=True)
class Settings:
    tasks_topic_arn: str | None
    status_table: str | None
    output_bucket: str | None
    runtimes: frozenset[str]
    status_ttl_days: int = STATUS_TTL_DAYS
    presign_expires_seconds: int = DEFAULT_PRESIGN_EXPIRES_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            tasks_topic_arn=env.get("TASKS_TOPIC_ARN") or None,
            status_table=env.get("STATUS_TABLE") or None,
            output_bucket=env.get("OUTPUT_BUCKET") or None,
            runtimes=frozenset(r.strip() for r in env.get("RUNTIMES", "").split(",") if r.strip()),
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
