"""The values the CDK really hands the chart (infra.chart_values, from a parsed config.yaml) render into valid,
consistent objects: the contract between the infrastructure and the chart, checked from the chart's side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra import naming
from infra.chart_values import Image, RuntimeWiring, chart_values
from infra.config import DeploymentConfig, RuntimeConfig, load_config
from queue_agent.settings import load_settings
from tests.chart.harness import (
    ACCOUNT,
    CRD_GROUPS,
    KUBE_VERSIONS,
    REGION,
    ROOT,
    Helm,
    Rendered,
    ValueSet,
    config_sources,
    is_builtin,
    scaling_modifier_errors,
    tolerates,
    validate_builtin,
    validate_crds,
)


def _configs() -> dict[str, Path]:
    sources = config_sources()
    if (ROOT / "config.yaml").is_file():
        sources["repo"] = ROOT / "config.yaml"
    return sources


def _cases() -> list[tuple[str, Path, str]]:
    cases = []
    for source, path in _configs().items():
        for runtime in yaml.safe_load(path.read_text())["modelsRuntime"]:
            cases.append((f"{source}-{runtime['name']}", path, runtime["name"]))
    return cases


CASES = _cases()


def _wiring(config: DeploymentConfig, runtime: RuntimeConfig) -> RuntimeWiring:
    stack, ecr = config.stack_name, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    return RuntimeWiring(
        region=REGION,
        stack_name=stack,
        cluster_name=naming.cluster_name(stack),
        queue_url=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{naming.runtime_queue(stack, runtime.name)}",
        high_queue_url=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{naming.runtime_high_queue(stack, runtime.name)}",
        results_topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:{naming.results_topic(stack)}",
        output_bucket=naming.output_bucket(stack, ACCOUNT, REGION),
        status_table=naming.status_table(stack),
        model_bucket=config.model_bucket_name,
        service_account=naming.runtime_service_account(runtime.name),
        node_role_name=f"{stack}-karpenter-node",
        webhook_secret_arn=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:WebhooksSecret-AbCdEf",
        agent_image=Image(f"{ecr}/cdk-assets", "agent0123"),
        runtime_image=Image(f"{ecr}/cdk-assets", "runtime0123") if runtime.type == "diffusers" else None,
    )


@dataclass(frozen=True)
class CdkRelease:
    value_set: ValueSet
    rendered: Rendered
    runtime: RuntimeConfig
    stack: str


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def cdk_release(request: pytest.FixtureRequest, helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> CdkRelease:
    name, path, runtime_name = request.param
    config = load_config(path)
    runtime = next(r for r in config.models_runtime if r.name == runtime_name)
    values_file = tmp_path_factory.mktemp("cdk") / f"{name}.yaml"
    values_file.write_text(yaml.safe_dump(chart_values(config, runtime, _wiring(config, runtime))))
    value_set = ValueSet(f"cdk-{name}", (values_file,), release=runtime.name, namespace=runtime.namespace)
    return CdkRelease(value_set, helm.render(value_set), runtime, config.stack_name)


def test_lints_strict(helm: Helm, cdk_release: CdkRelease) -> None:
    proc = helm.lint(cdk_release.value_set)
    assert proc.returncode == 0 and "[WARNING]" not in proc.stdout, proc.stdout + proc.stderr


def test_objects_valid(cdk_release: CdkRelease) -> None:
    docs = cdk_release.rendered.docs
    for doc in (d for d in docs if is_builtin(d)):
        for version in KUBE_VERSIONS:
            validate_builtin(doc, version)
    crds = [d for d in docs if d["apiVersion"].split("/")[0] in CRD_GROUPS]
    assert {d["kind"] for d in crds} == {"ScaledObject", "TriggerAuthentication", "NodePool", "EC2NodeClass"}
    status, results = validate_crds(crds)
    assert status == 0, [r for r in results if not r["valid"]]
    assert scaling_modifier_errors(cdk_release.rendered.one("ScaledObject")) == []


def test_release_matches_the_identity_the_cdk_created(cdk_release: CdkRelease) -> None:
    out, runtime = cdk_release.rendered, cdk_release.runtime
    # The Pod Identity association names this ServiceAccount; the chart must create exactly it.
    (account,) = out.of_kind("ServiceAccount")
    assert account["metadata"]["name"] == naming.runtime_service_account(runtime.name)
    assert account["metadata"]["namespace"] == runtime.namespace
    assert out.pod_spec["serviceAccountName"] == account["metadata"]["name"]
    settings = load_settings(out.env("queue-agent"))
    assert settings.runtime_name == runtime.name and settings.runtime_type.value == runtime.type
    # The agent reads the high-priority queue the CDK created beside the normal one; KEDA scales on both.
    assert settings.high_queue_url and settings.high_queue_url.endswith(
        "/" + naming.runtime_high_queue(cdk_release.stack, runtime.name)
    )
    scaled = out.one("ScaledObject")["spec"]
    assert [t["metadata"]["queueURL"] for t in scaled["triggers"]] == [settings.queue_url, settings.high_queue_url]
    assert scaled["advanced"]["scalingModifiers"]["formula"] == "normal + high"
    assert settings.webhook_secret_arn and settings.webhook_secret_arn.startswith("arn:aws:secretsmanager:")
    # Nodes launch into the subnets the network stack tags for this cluster.
    subnets = out.one("EC2NodeClass")["spec"]["subnetSelectorTerms"]
    assert subnets == [{"tags": {"karpenter.sh/discovery": naming.cluster_name(cdk_release.stack)}}]


def test_pods_fit_their_nodes_and_drain(cdk_release: CdkRelease) -> None:
    out = cdk_release.rendered
    spec = out.pod_spec
    assert [c["name"] for c in spec["containers"]] == ["queue-agent"]
    assert next(c for c in spec["initContainers"] if c["name"] == "runtime")["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] > int(out.env("queue-agent")["JOB_TIMEOUT_SECONDS"])
    pool = out.one("NodePool")
    assert spec["nodeSelector"]["karpenter.sh/nodepool"] == pool["metadata"]["name"]
    for taint in pool["spec"]["template"]["spec"]["taints"]:
        assert tolerates(spec["tolerations"], taint), taint
