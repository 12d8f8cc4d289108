"""The Lambda's environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest
from task_api.settings import ConfigurationError, Settings


def test_defaults_and_runtime_list_parsing() -> None:
    settings = Settings.from_env({"RUNTIMES": " sdruntime, comfy ,,", "STATUS_TABLE": "t"})
    assert settings.runtimes == frozenset({"sdruntime", "comfy"})
    assert settings.status_ttl_days == 30 and settings.presign_expires_seconds == 3600
    assert settings.require("status_table") == "t"
    assert settings.tasks_topic_arn is None and settings.output_bucket is None


def test_no_runtimes_configured_means_none_accepted() -> None:
    assert Settings.from_env({}).runtimes == frozenset()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STATUS_TTL_DAYS": "soon"}, "STATUS_TTL_DAYS"),
        ({"STATUS_TTL_DAYS": "0"}, "STATUS_TTL_DAYS"),
        ({"PRESIGN_EXPIRES_SECONDS": "604801"}, "PRESIGN_EXPIRES_SECONDS"),
        ({"PRESIGN_EXPIRES_SECONDS": "-1"}, "PRESIGN_EXPIRES_SECONDS"),
    ],
)
def test_bad_numbers_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(env)


def test_numbers_are_read() -> None:
    settings = Settings.from_env({"STATUS_TTL_DAYS": "7", "PRESIGN_EXPIRES_SECONDS": "60"})
    assert settings.status_ttl_days == 7 and settings.presign_expires_seconds == 60


def test_require_names_the_missing_variable() -> None:
    with pytest.raises(ConfigurationError, match="TASKS_TOPIC_ARN"):
        Settings.from_env({}).require("tasks_topic_arn")


def test_runtime_catalog_routes_models_and_knows_types() -> None:
    catalog = (
        '{"a": {"type": "sdwebui", "modelFilename": "models/one.safetensors"},'
        ' "b": {"type": "diffusers", "modelFilename": "two.safetensors", "dynamicModel": true},'
        ' "c": {"type": "comfyui"}}'
    )
    settings = Settings.from_env({"RUNTIME_CATALOG": catalog})
    assert settings.runtimes == frozenset({"a", "b", "c"})
    assert settings.runtime_type("c") == "comfyui" and settings.runtime_type("zzz") is None
    assert settings.runtime_for_model("one.safetensors") == "a"
    assert settings.runtime_for_model("models/one.safetensors [0123abcd]") == "a"
    assert settings.runtime_for_model("two.safetensors") == "b"
    assert settings.runtime_for_model("three.safetensors") == "b"  # the dynamic runtime loads any model
    only_a = Settings.from_env({"RUNTIME_CATALOG": catalog, "RUNTIMES": "a"})
    assert only_a.runtime_for_model("three.safetensors") is None
    assert only_a.served_models() == ["models/one.safetensors"]


@pytest.mark.parametrize("raw", ["[1]", "{", '{"a": 3}'])
def test_malformed_runtime_catalog_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="RUNTIME_CATALOG"):
        Settings.from_env({"RUNTIME_CATALOG": raw})
