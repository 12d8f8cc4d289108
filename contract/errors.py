"""The single validation error every component raises for bad input, and its JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldIssue:
    """One offending field: a dotted path (``task.content.steps``), the rule it broke, and why."""

    field: str
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class ContractError(ValueError):
    """Input that does not satisfy the wire contract. Carries every offending field, not just the first."""

    code = "invalid_request"

    def __init__(self, issues: list[FieldIssue], *, code: str | None = None, status: int = 400) -> None:
        if not issues:
            raise ValueError("ContractError needs at least one issue")
        self.issues = issues
        self.status = status
        if code is not None:
            self.code = code
        summary = "; ".join(f"{i.field}: {i.message}" for i in issues[:5])
        more = f" (+{len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"{len(issues)} invalid field(s): {summary}{more}")

    @classmethod
    def single(cls, field: str, rule: str, message: str, **kwargs: Any) -> ContractError:
        return cls([FieldIssue(field, rule, message)], **kwargs)

    @classmethod
    def from_validation_error(cls, exc: ValidationError, *, prefix: str = "") -> ContractError:
        issues = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"] if p not in ("function-after[check(), TaskContent]",)]
            path = ".".join(p for p in [prefix, *loc] if p)
            issues.append(FieldIssue(path or "(body)", err["type"], _clean_message(err["msg"])))
        return cls(issues)

    def to_dict(self) -> dict[str, Any]:
        """The error body the API returns; stable shape: {"error": {code, message, fields[]}}."""
        return {
            "error": {
                "code": self.code,
                "message": str(self),
                "fields": [i.to_dict() for i in self.issues],
            }
        }


def _clean_message(msg: str) -> str:
    # pydantic prefixes custom errors with "Value error, "; the field name already says where.
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def error_body(code: str, message: str) -> dict[str, Any]:
    """An error body with no field list (auth, not found, conflict...), same shape as ContractError."""
    return {"error": {"code": code, "message": message, "fields": []}}
