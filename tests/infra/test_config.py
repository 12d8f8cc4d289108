"""The deployment config schema: compatibility with the replaced sample, defaults, and errors naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import naming
from infra.config import (
    ConfigError,
    DeploymentConfig,
    config_path,
    deep_merge,
    load_config,
    parse_config,
    runtime_by_name,
    runtime_filter_policy,
    runtime_names,
)
from tests.conftest import ROOT, SHARED_FIXTURES, TEST_FIXTURES

CONFIGS = TEST_FIXTURES / "configs"


def base() -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / "aws-sample.yaml").read_text())


def test_replaced_sample_shape_loads_unchanged() -> None:
    cfg = load_config(CONFIGS / "aws-sample.yaml")
    assert cfg.stack_name == "sdsample"
    assert cfg.model_bucket_name == "sdsample-models-0a1b"
    assert cfg.cluster_components.instance_type == "m7g.large"
    assert cfg.cluster_components.desired_count == 2
    assert cfg.cluster_components.is_arm
    assert cfg.apigw.stage_name == "prod"
    assert (cfg.apigw.throttle.rate_limit, cfg.apigw.throttle.burst_limit) == (20, 40)
    (runtime,) = cfg.models_runtime
    assert (runtime.name, runtime.namespace, runtime.type) == ("sdruntime", "default", "sdwebui")
    assert runtime.model_filename == "v1-5-pruned-emaonly.safetensors"
    assert runtime.extra_values["runtime"]["scaling"]["maxReplicaCount"] == 3
    assert runtime.extra_values["karpenter"]["provisioner"]["capacityType"] == {"onDemand": False, "spot": True}


def test_the_real_sample_config_loads_when_the_workspace_has_it() -> None:
    # Our own same-shape fixture always runs (above); the sample's own file is checked too where it exists.
    path = SHARED_FIXTURES / "config.yaml"
    if path.exists():
        cfg = load_config(path)
        assert runtime_names(cfg) == ["sdruntime"]
        assert cfg.models_runtime[0].type == "sdwebui"
    assert load_config(ROOT / "config.yaml").models_runtime[0].type == "diffusers"


def test_older_sample_shapes_load() -> None:
    cfg = load_config(CONFIGS / "aws-sample-legacy.yaml")
    # The sample lower-cased names, namespaces and types before use.
    assert runtime_names(cfg) == ["sdruntime", "sddynamic"]
    first, dynamic = cfg.models_runtime
    assert (first.namespace, first.type) == ("sdruntime", "sdwebui")
    assert first.chart_repository == "oci://public.ecr.aws/example/charts/sd-on-eks"
    assert first.chart_version == "1.1"
    assert first.extra_values["sdWebuiInferenceApi"]["inferenceApi"]["image"]["tag"] == "latest"
    assert dynamic.dynamic_model and dynamic.type == "sdwebui"
    assert cfg.partition == "aws-cn"


def test_our_additions_have_safe_defaults() -> None:
    cfg = parse_config(
        {
            "stackName": "minimal",
            "modelBucketArn": "arn:aws:s3:::models",
            "modelsRuntime": [{"name": "sdruntime"}],
        }
    )
    assert cfg.queue.visibility_timeout == 300 and cfg.queue.max_receive_count == 3
    assert cfg.queue.kms_encryption is False
    assert cfg.outputs.expire_after_days is None and cfg.outputs.output_expiry_days == 30
    assert cfg.api.keys == [] and cfg.input_buckets == []
    assert cfg.network.nat_gateways == 1
    assert cfg.kubernetes_version == "1.35"
    assert cfg.api.key_name is None
    assert cfg.observability.alarm_email is None
    assert cfg.job_timeout_seconds == 1800
    assert cfg.apigw.stage_name == "dev" and cfg.apigw.throttle.burst_limit == 50
    assert cfg.models_runtime[0].namespace == "default"
    assert cfg.models_runtime[0].legacy_model_routing is False


def test_two_runtime_config_and_helpers() -> None:
    cfg = load_config(CONFIGS / "two-runtimes.yaml")
    assert runtime_names(cfg) == ["fast", "webui"]
    assert runtime_by_name(cfg, "webui").dynamic_model
    with pytest.raises(KeyError, match="fast, webui"):
        runtime_by_name(cfg, "nope")
    assert [k.name for k in cfg.api.keys] == ["team-a", "team-b"] and cfg.input_buckets == ["sdtwo-inputs"]
    assert cfg.outputs.output_expiry_days == 7
    assert runtime_filter_policy(cfg, runtime_by_name(cfg, "fast")) == naming.runtime_filter_policy("fast")
    assert runtime_filter_policy(cfg, runtime_by_name(cfg, "fast"), high=True) == {"runtime_high": ["fast"]}
    assert runtime_filter_policy(cfg, runtime_by_name(cfg, "webui")) == {
        "$or": [{"runtime": ["webui"]}, {"sd_model_checkpoint": ["v1-5-pruned-emaonly.safetensors"]}]
    }
    assert cfg.kubernetes_version == "1.35"
    assert not cfg.cluster_components.is_arm


def test_config_path_honours_cdk_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CDK_CONFIG_PATH", raising=False)
    assert config_path() == Path("config.yaml")
    target = tmp_path / "other.yaml"
    target.write_text((CONFIGS / "two-runtimes.yaml").read_text())
    monkeypatch.setenv("CDK_CONFIG_PATH", str(target))
    assert runtime_names(load_config()) == ["fast", "webui"]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

# (mutation path, value, the key the error must name)
BROKEN: list[tuple[str, Any, str]] = [
    ("stackName", _DELETE, "stackName"),
    ("stackName", "1-starts-with-digit", "stackName"),
    ("stackName", "x" * 41, "stackName"),
    ("modelBucketArn", "s3://bucket-not-an-arn", "modelBucketArn"),
    ("modelsRuntime", [], "modelsRuntime"),
    ("modelsRuntime.0.name", "sd_runtime", "modelsRuntime[0].name"),
    ("modelsRuntime.0.type", "automatic1111", "modelsRuntime[0].type"),
    ("modelsRuntime.0.namespace", "Bad Namespace", "modelsRuntime[0].namespace"),
    ("modelsRuntime.0.modelFileName", "typo.safetensors", "modelsRuntime[0].modelFileName"),
    ("modelsRuntime.0.modelFilename", "../../etc/passwd", "modelsRuntime[0].modelFilename"),
    ("modelsRuntime.0.chartRepository", "ftp://charts.example", "modelsRuntime[0].chartRepository"),
    ("modelsRuntime.0.extraValues", ["not", "a", "mapping"], "modelsRuntime[0].extraValues"),
    ("modelsRuntime.0.name", "r" * 41, "modelsRuntime[0].name"),
    ("stackname", "typo-of-stackName", "stackname"),
    ("APIGW.throttle.rateLimit", -1, "APIGW.throttle.rateLimit"),
    ("APIGW.throttle.burstLimit", "many", "APIGW.throttle.burstLimit"),
    ("APIGW.stageName", "dev stage", "APIGW.stageName"),
    ("APIGW.throttling", {"rateLimit": 1}, "APIGW.throttling"),
    ("clusterComponents.desiredCount", 0, "clusterComponents.desiredCount"),
    ("clusterComponents.instanceType", "large", "clusterComponents.instanceType"),
    ("queue.visibilityTimeout", 5, "queue.visibilityTimeout"),
    ("queue.maxReceiveCount", 0, "queue.maxReceiveCount"),
    ("outputs.expireAfterDays", 0, "outputs.expireAfterDays"),
    ("network.natGateways", 4, "network.natGateways"),
    ("network.vpcCidr", "10.0.0.0/8", "network.vpcCidr"),
    ("kubernetesVersion", 1.2, "kubernetesVersion"),
    ("observability.alarmEmail", "nobody", "observability.alarmEmail"),
    ("api.accessLogRetentionDays", 31, "api.accessLogRetentionDays"),
    ("api.keys", [{"name": "Team A"}], "api.keys[0].name"),
    ("api.keys", [{"name": "a"}, {"name": "a"}], "api.keys"),
    ("api.keys", [{"name": "a", "quota": {"limit": 0}}], "api.keys[0].quota.limit"),
    ("outputs.expireAfterDays", 31, "outputs"),
    ("inputBuckets", ["arn:aws:s3:::bucket"], "inputBuckets"),
    ("jobTimeoutSeconds", "soon", "jobTimeoutSeconds"),
    ("dynamicModelRuntime.enabled", "perhaps", "dynamicModelRuntime.enabled"),
]


@pytest.mark.parametrize(("path", "value", "key"), BROKEN, ids=[f"{p}={v!r}"[:60] for p, v, _ in BROKEN])
def test_broken_config_names_the_key(path: str, value: Any, key: str) -> None:
    data = base()
    _set(data, path, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert key in caught.value.keys(), str(caught.value)
    assert f"  {key}: " in str(caught.value)


def test_cross_field_rules_name_the_key() -> None:
    cases: list[tuple[dict[str, Any], str, str]] = []
    duplicate = base()
    duplicate["modelsRuntime"].append(copy.deepcopy(duplicate["modelsRuntime"][0]))
    cases.append((duplicate, "modelsRuntime[1].name", "duplicate runtime name"))
    long_names = base()
    long_names["stackName"] = "s" * 40
    long_names["modelsRuntime"][0]["name"] = "r" * 38
    cases.append((long_names, "modelsRuntime[0].name", "SQS allows 80"))
    comfy = base()
    comfy["modelsRuntime"][0].update(type="comfyui", dynamicModel=True)
    cases.append((comfy, "modelsRuntime[0].dynamicModel", "not supported"))
    legacy = base()
    del legacy["modelsRuntime"][0]["modelFilename"]
    legacy["modelsRuntime"][0]["legacyModelRouting"] = True
    cases.append((legacy, "modelsRuntime[0]", "needs modelFilename"))
    for data, key, text in cases:
        with pytest.raises(ConfigError) as caught:
            parse_config(data)
        assert key in caught.value.keys(), str(caught.value)
        assert text in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    data = base()
    data["stackName"] = ""
    data["APIGW"]["throttle"]["rateLimit"] = 0
    data["modelsRuntime"][0]["name"] = "Not Valid!"
    data["surprise"] = True
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    keys = caught.value.keys()
    assert {"stackName", "APIGW.throttle.rateLimit", "modelsRuntime[0].name", "surprise"} <= set(keys)
    unknown = next(i for i in caught.value.issues if i.field == "surprise")
    assert unknown.rule == "extra_forbidden" and "known keys:" in unknown.message and "modelsRuntime" in unknown.message


def test_unknown_nested_key_lists_the_known_ones() -> None:
    data = base()
    data["modelsRuntime"][0]["modelFileName"] = "x.safetensors"
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    (issue,) = [i for i in caught.value.issues if i.field == "modelsRuntime[0].modelFileName"]
    assert "modelFilename" in issue.message and "extraValues" in issue.message


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("stackName: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad_yaml)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as caught:
        load_config(not_mapping)
    assert caught.value.keys() == ["(root)"]
    assert str(not_mapping) in str(caught.value)


def test_config_is_immutable() -> None:
    cfg = load_config(CONFIGS / "aws-sample.yaml")
    with pytest.raises(ValueError, match="frozen"):
        cfg.stack_name = "other"  # type: ignore[misc]
    assert isinstance(cfg, DeploymentConfig)


def test_deep_merge_merges_mappings_and_replaces_lists() -> None:
    defaults: dict[str, Any] = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    override: dict[str, Any] = {"a": {"c": [3], "e": {"f": 2}}, "g": None}
    merged = deep_merge(defaults, override)
    assert merged == {"a": {"b": 1, "c": [3], "e": {"f": 2}}, "d": 1, "g": None}
    # Inputs are untouched: layers can be reused for every runtime.
    assert defaults == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert override["a"]["e"] == {"f": 2}
    merged["a"]["e"]["f"] = 99
    assert override["a"]["e"]["f"] == 2
