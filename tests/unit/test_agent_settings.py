"""The agent's configuration: the replaced sample's environment works unchanged; bad values are named."""

from __future__ import annotations

import pytest

from queue_agent.settings import RuntimeType, SettingsError, load_settings

# What the replaced sample's Helm chart sets on its queue agent container.
SAMPLE_ENV = {
    "SQS_QUEUE_URL": "https://sqs.us-west-2.amazonaws.com/123456789012/sdoneks-sdruntime-queue",
    "SNS_TOPIC_ARN": "arn:aws:sns:us-west-2:123456789012:sdoneks-results",
    "S3_BUCKET": "sdoneks-outputs",
    "RUNTIME_TYPE": "sdwebui",
    "RUNTIME_NAME": "sdruntime",
    "API_BASE_URL": "http://localhost:8080/sdapi/v1/",
    "DYNAMIC_SD_MODEL": "false",
    "LOGLEVEL": "info",
    "DISABLE_XRAY": "True",
}


def test_the_replaced_samples_environment_loads_unchanged() -> None:
    s = load_settings(SAMPLE_ENV)
    assert s.runtime_type is RuntimeType.SDWEBUI and s.runtime_name == "sdruntime"
    assert s.api_base_url == "http://localhost:8080/sdapi/v1/"
    assert s.dynamic_sd_model is False and s.disable_xray is True and s.log_level == "INFO"
    # Our own settings default safely.
    assert (s.prefetch, s.metrics_port, s.job_timeout, s.status_table) == (1, 9090, 1800.0, None)
    assert s.input_buckets == frozenset({"sdoneks-outputs"})


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load_settings({**SAMPLE_ENV, "HOME": "/root", "PATH": "/bin"}).bucket == "sdoneks-outputs"


@pytest.mark.parametrize(
    ("runtime_type", "default_url"),
    [
        ("sdwebui", "http://localhost:8080/sdapi/v1/"),
        ("diffusers", "http://localhost:8080/sdapi/v1/"),
        ("comfyui", "http://localhost:8188/"),
    ],
)
def test_api_base_url_defaults_per_runtime_type(runtime_type: str, default_url: str) -> None:
    env = {k: v for k, v in SAMPLE_ENV.items() if k != "API_BASE_URL"} | {"RUNTIME_TYPE": runtime_type}
    assert load_settings(env).api_base_url == default_url


def test_own_settings_are_read() -> None:
    env = SAMPLE_ENV | {
        "STATUS_TABLE": "sdoneks-task-status",
        "PREFETCH": "3",
        "ALLOWED_INPUT_BUCKETS": "in-a, in-b,,",
        "VISIBILITY_EXTENSION_SECONDS": "90",
        "HEARTBEAT_INTERVAL_SECONDS": "20",
        "JOB_TIMEOUT_SECONDS": "600",
    }
    s = load_settings(env)
    assert s.status_table == "sdoneks-task-status" and s.prefetch == 3
    assert s.input_buckets == frozenset({"in-a", "in-b", "sdoneks-outputs"})
    assert s.lease_timing(queue_visibility_timeout=30) == (90.0, 20.0)


def test_lease_timing_follows_the_queue_when_not_set() -> None:
    s = load_settings(SAMPLE_ENV)
    assert s.lease_timing(queue_visibility_timeout=30) == (30.0, 10.0)
    assert s.lease_timing(queue_visibility_timeout=2) == (2.0, 2 / 3)
    # An interval longer than half the extension would let a message expire between two beats.
    assert load_settings(SAMPLE_ENV | {"HEARTBEAT_INTERVAL_SECONDS": "100"}).lease_timing(30) == (30.0, 15.0)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"RUNTIME_TYPE": "midjourney"}, "RUNTIME_TYPE"),
        ({"PREFETCH": "lots"}, "PREFETCH"),
        ({"PREFETCH": "11"}, "PREFETCH"),
        ({"DYNAMIC_SD_MODEL": "maybe"}, "DYNAMIC_SD_MODEL"),
        ({"DISABLE_XRAY": "2"}, "DISABLE_XRAY"),
        ({"LOGLEVEL": "chatty"}, "LOGLEVEL"),
        ({"SQS_QUEUE_URL": "sqs://queue"}, "SQS_QUEUE_URL"),
        ({"SNS_TOPIC_ARN": "results"}, "SNS_TOPIC_ARN"),
        ({"API_BASE_URL": "localhost:8080"}, "API_BASE_URL"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"JOB_TIMEOUT_SECONDS": "0"}, "JOB_TIMEOUT_SECONDS"),
        ({"RECEIVE_WAIT_SECONDS": "21"}, "RECEIVE_WAIT_SECONDS"),
        ({"VISIBILITY_EXTENSION_SECONDS": "0.5"}, "VISIBILITY_EXTENSION_SECONDS"),
        ({"RETRY_BACKOFF_SECONDS": "5", "RETRY_BACKOFF_MAX_SECONDS": "1"}, "RETRY_BACKOFF_MAX_SECONDS"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(SAMPLE_ENV | overrides)
    assert named in str(info.value)


def test_every_missing_required_variable_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"RUNTIME_TYPE": "comfyui"})
    message = str(info.value)
    for var in ("SQS_QUEUE_URL", "SNS_TOPIC_ARN", "S3_BUCKET", "RUNTIME_NAME"):
        assert f"{var}: required but not set" in message


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False)])
def test_booleans_accept_the_usual_spellings(raw: str, value: bool) -> None:
    assert load_settings(SAMPLE_ENV | {"DYNAMIC_SD_MODEL": raw}).dynamic_sd_model is value


def test_blank_optional_values_mean_unset() -> None:
    s = load_settings(SAMPLE_ENV | {"STATUS_TABLE": " ", "VISIBILITY_EXTENSION_SECONDS": ""})
    assert s.status_table is None and s.visibility_extension is None
