"""Helpers to read a synthesized CloudFormation template in tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def flat(value: Any) -> str:
    """Intrinsics as readable text: Ref X -> ${X}, GetAtt X.Y -> ${X.Y}, joins inlined, Sub as written."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return json.dumps([flat(v) for v in value])
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            return f"${{{arg[0]}.{arg[1]}}}"
        if key == "Fn::Join":
            return arg[0].join(flat(part) for part in arg[1])
        if key == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
    return json.dumps(value, sort_keys=True)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policy_document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from as_list(policy_document.get("Statement", []))


def refers_to(value: Any, logical_id: str) -> bool:
    """Whether a template value references the resource ``logical_id`` (Ref or GetAtt, anywhere inside)."""
    text = json.dumps(value)
    return f'{{"Ref": "{logical_id}"}}' in text or f'["{logical_id}", ' in text


def helm_values(properties: dict[str, Any]) -> dict[str, Any]:
    """The Values of a HelmChart custom resource, tokens rendered as ${LogicalId} / ${LogicalId.Attr} strings."""
    return json.loads(flat(properties["Values"]))
