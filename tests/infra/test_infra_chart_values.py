"""The Helm values the stack gives each runtime: layering, images, and agreement with the real chart."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.chart_values import (
    CHART_SCHEMA,
    Image,
    chart_value_issues,
    chart_values,
    image_overridden,
    placeholder_wiring,
)
from infra.config import ConfigError, DeploymentConfig, load_config, parse_config
from infra.versions import COMMUNITY_RUNTIME_IMAGES
from tests.conftest import ROOT, TEST_FIXTURES

CONFIGS = TEST_FIXTURES / "configs"
CHART = ROOT / "charts" / "sd-on-eks"


def two() -> DeploymentConfig:
    return load_config(CONFIGS / "two-runtimes.yaml")


def test_owned_values_win_over_extra_values() -> None:
    cfg = two()
    fast = cfg.models_runtime[0]
    values = chart_values(cfg, fast, placeholder_wiring(cfg, fast))
    agent = values["runtime"]["queueAgent"]
    # extraValues tried to point the agent elsewhere; the deployment's own queue wins.
    assert agent["sqsQueueUrl"].endswith("/sdtwo-fast-queue")
    assert values["runtime"]["scaling"] == {"maxReplicaCount": 7}
    assert values["global"]["runtime"] == "fast"
    assert values["runtime"]["jobTimeoutSeconds"] == 900


def test_extra_values_override_our_defaults() -> None:
    cfg = two()
    data = cfg.model_dump(by_alias=True)
    data["modelsRuntime"][0]["extraValues"] = {
        "runtime": {
            "jobTimeoutSeconds": 3600,
            "queueAgent": {"allowedInputBuckets": ["inputs-bucket"], "image": {"repository": "my/agent", "tag": "1"}},
        }
    }
    cfg = parse_config(data)
    runtime = cfg.models_runtime[0]
    assert image_overridden(runtime, "queueAgent")
    assert not image_overridden(runtime, "inferenceApi")
    wiring = placeholder_wiring(cfg, runtime)
    values = chart_values(cfg, runtime, wiring)
    assert values["runtime"]["jobTimeoutSeconds"] == 3600
    assert values["runtime"]["queueAgent"]["allowedInputBuckets"] == ["inputs-bucket"]
    assert values["runtime"]["queueAgent"]["image"] == {"repository": "my/agent", "tag": "1"}
    assert values["runtime"]["inferenceApi"]["image"] == wiring.runtime_image.values()  # type: ignore[union-attr]


def test_community_runtimes_use_their_images_and_ours_the_built_one() -> None:
    cfg = two()
    webui = cfg.models_runtime[1]
    values = chart_values(cfg, webui, placeholder_wiring(cfg, webui))
    assert values["runtime"]["inferenceApi"]["image"] == {
        "repository": COMMUNITY_RUNTIME_IMAGES["sdwebui"],
        "tag": "latest",
    }
    assert values["runtime"]["queueAgent"]["dynamicModel"] is True
    assert Image("repo").values() == {"repository": "repo"}


def test_chart_values_do_not_mutate_the_config() -> None:
    cfg = two()
    before = copy.deepcopy(cfg.models_runtime[0].extra_values)
    chart_values(cfg, cfg.models_runtime[0], placeholder_wiring(cfg, cfg.models_runtime[0]))
    assert cfg.models_runtime[0].extra_values == before


@pytest.mark.parametrize("config", ["config.yaml", "two-runtimes.yaml", "aws-sample.yaml"])
def test_values_satisfy_the_chart_schema(config: str) -> None:
    path = ROOT / config if config == "config.yaml" else CONFIGS / config
    assert CHART_SCHEMA.exists()
    assert chart_value_issues(load_config(path)) == []


def test_a_typo_in_extra_values_names_the_config_key() -> None:
    data: dict[str, Any] = yaml.safe_load((CONFIGS / "aws-sample.yaml").read_text())
    data["modelsRuntime"][0]["extraValues"]["runtime"]["scaling"]["maxReplicas"] = 3
    issues = chart_value_issues(parse_config(data))
    assert len(issues) == 1
    assert issues[0].field == "modelsRuntime[0].extraValues.runtime.scaling"
    assert "maxReplicas" in issues[0].message


def test_build_app_refuses_values_the_chart_would_reject() -> None:
    from infra.app import build_app

    data: dict[str, Any] = yaml.safe_load((CONFIGS / "aws-sample.yaml").read_text())
    data["modelsRuntime"][0]["extraValues"]["karpenter"]["provisioner"]["capacityType"]["spot"] = "yes"
    with pytest.raises(ConfigError) as caught:
        build_app(parse_config(data))
    assert caught.value.keys() == ["modelsRuntime[0].extraValues.karpenter.provisioner.capacityType.spot"]


def helm() -> str:
    found = shutil.which("helm", path=str(ROOT / ".tools" / "bin")) or shutil.which("helm")
    assert found, "helm is missing: run `make setup` (installs it into .tools/bin)"
    return found


def test_helm_renders_the_chart_with_our_values(tmp_path: Path) -> None:
    cfg = two()
    kinds: dict[str, set[str]] = {}
    for runtime in cfg.models_runtime:
        values = tmp_path / f"{runtime.name}.yaml"
        values.write_text(yaml.safe_dump(chart_values(cfg, runtime, placeholder_wiring(cfg, runtime))))
        result = subprocess.run(
            [helm(), "template", runtime.name, str(CHART), "--namespace", runtime.namespace, "-f", str(values)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        kinds[runtime.name] = {d["kind"] for d in docs}
        (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
        # The Pod Identity association names this ServiceAccount; the chart must create exactly it.
        assert account["metadata"]["name"] == f"{runtime.name}-sa"
        assert account["metadata"]["namespace"] == runtime.namespace
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == f"{runtime.name}-sa"
        text = result.stdout
        assert f"/sdtwo-{runtime.name}-queue" in text
    for rendered in kinds.values():
        assert {"Deployment", "ScaledObject", "NodePool", "EC2NodeClass", "ServiceAccount"} <= rendered
