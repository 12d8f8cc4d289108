"""Which alwayson_scripts entries ask the runtime for something it must then do (or refuse)."""

from __future__ import annotations

from typing import Any

import pytest

from inference_api.scripts import asks_for_something, check_scripts, unsupported_scripts


@pytest.mark.parametrize(
    ("script", "asks"),
    [
        ({"args": []}, False),
        ({}, False),
        ({"args": [{"enable": False}]}, False),
        ({"args": [{"enabled": False}, {"enabled": False}]}, False),
        ({"args": [{"enable": True}]}, True),
        ({"args": [{"enabled": False}, {"enabled": True}]}, True),
        ({"args": [True, 16]}, True),  # positional arguments: cannot tell, so it counts
        ({"args": "x"}, True),
        ({"foo": 1}, True),
        ("on", True),
    ],
)
def test_asks_for_something(script: Any, asks: bool) -> None:
    assert asks_for_something(script) is asks


def test_unsupported_scripts_are_named() -> None:
    scripts = {
        "ADetailer": {"args": [{"enable": True}]},
        "AnimateDiff": {"args": [{"enable": True}]},
        "ControlNet": {"args": [{"enabled": True}]},
    }
    assert unsupported_scripts(scripts) == ["ADetailer"]
    with pytest.raises(ValueError, match="ADetailer"):
        check_scripts(scripts)
    assert check_scripts({"ControlNet": {"args": []}}) == {"ControlNet": {"args": []}}
