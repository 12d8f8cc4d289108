"""Plain values <-> DynamoDB attribute values, and what DynamoDB cannot hold."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from task_api.store import MAX_NESTING, UnstorableValue, from_attributes, to_attributes

storable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100).filter(
        lambda f: f == 0 or abs(f) > 1e-100
    )
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3),
    max_leaves=10,
)


def _numbers_as_decimals(value: Any) -> Any:
    # JSON numbers have no int/float distinction: 1e16 may come back as 10000000000000000, the same number.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [_numbers_as_decimals(v) for v in value]
    return {k: _numbers_as_decimals(v) for k, v in value.items()}


@given(value=storable)
def test_json_values_round_trip(value: Any) -> None:
    back = from_attributes(to_attributes({"v": value}))["v"]
    assert _numbers_as_decimals(back) == _numbers_as_decimals(value)


def test_numbers_keep_their_json_type() -> None:
    item = from_attributes(to_attributes({"i": 3, "f": 0.1, "whole_float": 2.0, "big": 10**37}))
    assert item == {"i": 3, "f": 0.1, "whole_float": 2, "big": 10**37}
    assert isinstance(item["i"], int) and isinstance(item["f"], float)
    assert json.dumps(item)  # nothing DynamoDB-specific (Decimal) leaks out


def test_attribute_values_are_dynamodb_typed() -> None:
    assert to_attributes({"s": "x", "n": 1, "m": {"a": [True, None]}}) == {
        "s": {"S": "x"},
        "n": {"N": "1"},
        "m": {"M": {"a": {"L": [{"BOOL": True}, {"NULL": True}]}}},
    }


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 10**40, 1e200, 5e-324, {"": 1}, {"a": [{"": 1}]}, _nested(MAX_NESTING)],
    ids=["nan", "inf", "40-digits", "1e200", "5e-324", "empty-key", "nested-empty-key", "too-deep"],
)
def test_values_dynamodb_cannot_hold_are_refused(value: Any) -> None:
    with pytest.raises(UnstorableValue):
        to_attributes({"context": value})


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert from_attributes(to_attributes({"context": _nested(MAX_NESTING - 1)}))["context"] == _nested(MAX_NESTING - 1)
