"""The status table, through the low-level DynamoDB client.

Items go in and out as plain JSON-like values (what ``contract.new_item`` builds and ``StatusRecord``
reads); the conversion to DynamoDB's typed attribute values is done here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from task_api.errors import is_conditional_failure

# DynamoDB refuses documents nested deeper than 32 levels; the item itself is the first level.
MAX_NESTING = 32

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class UnstorableValue(ValueError):
    """A value DynamoDB cannot hold (NaN, a number beyond 38 digits, an empty map key, nesting over 32 levels)."""


def to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """Plain values -> DynamoDB attribute values. Raises UnstorableValue."""
    try:
        return {key: _SERIALIZER.serialize(_decimalize(value, 1)) for key, value in item.items()}
    except ArithmeticError:
        # The serializer traps inexact or out-of-range numbers with decimal signals.
        raise UnstorableValue("a number has over 38 significant digits or lies outside 1e-130..1e126") from None
    except TypeError as exc:
        raise UnstorableValue(str(exc)) from None


def from_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values -> plain values (numbers back to int or float)."""
    return {key: _plain(_DESERIALIZER.deserialize(value)) for key, value in attributes.items()}


def _decimalize(value: Any, depth: int) -> Any:
    if depth > MAX_NESTING:
        raise UnstorableValue(f"nested deeper than {MAX_NESTING} levels")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableValue("NaN and Infinity cannot be stored")
        # repr gives the shortest string that round-trips, so 0.1 stays 0.1 rather than its binary expansion.
        return Decimal(repr(value))
    if isinstance(value, dict):
        # Map keys follow DynamoDB's attribute-name rules: at least one character.
        if "" in value:
            raise UnstorableValue("objects with an empty key cannot be stored")
        return {k: _decimalize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimalize(v, depth + 1) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class StatusStore:
    client: Any
    table: str

    def create(self, item: dict[str, Any]) -> bool:
        """Put a new record; False when one with this id already exists. Raises UnstorableValue."""
        try:
            self.client.put_item(
                TableName=self.table, Item=to_attributes(item), ConditionExpression="attribute_not_exists(id)"
            )
        except Exception as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def get(self, task_id: str) -> dict[str, Any] | None:
        # Strongly consistent: a client that just submitted must see its task, not a 404.
        answer = self.client.get_item(TableName=self.table, Key=to_attributes({"id": task_id}), ConsistentRead=True)
        item = answer.get("Item")
        return from_attributes(item) if item else None

    def update(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """Apply contract-built UpdateItem arguments; the new item, or None when the condition failed."""
        kwargs = {**update, "Key": to_attributes(update["Key"])}
        if "ExpressionAttributeValues" in kwargs:
            kwargs["ExpressionAttributeValues"] = to_attributes(kwargs["ExpressionAttributeValues"])
        try:
            answer = self.client.update_item(TableName=self.table, ReturnValues="ALL_NEW", **kwargs)
        except Exception as exc:
            if is_conditional_failure(exc):
                return None
            raise
        return from_attributes(answer["Attributes"])

    def delete_if(self, task_id: str, condition: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        """Delete the record when ``condition`` holds; False when it did not."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=to_attributes({"id": task_id}),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attributes(values),
            )
        except Exception as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True
