"""What a first real deployment needs (issue 11, fixes 3 to 7), asserted on the synthesized templates.

The default config runs Bottlerocket GPU nodes and leaves the spot service-linked role alone; the two-runtime
config has an AL2023 runtime and asks for the role.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import naming, versions
from infra.config import ConfigError, parse_config
from infra.karpenter_cleanup import KUBERNETES_GROUP
from tests.infra.cfn import as_list, flat, helm_values, refers_to, statements
from tests.infra.conftest import Synth


def _one(synth: Synth, type_name: str, prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(lid, r) for lid, r in synth.of_type(type_name).items() if lid.startswith(prefix)]
    return found


def _releases(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    return {r["Properties"]["Release"]: (lid, r) for lid, r in synth.of_type("Custom::AWSCDK-EKS-HelmChart").items()}


def _granted(synth: Synth, role_prefix: str) -> list[dict[str, Any]]:
    role_id, _ = _one(synth, "AWS::IAM::Role", role_prefix)
    return [
        s
        for p in synth.props("AWS::IAM::Policy")
        if any(refers_to(r, role_id) for r in p.get("Roles", []))
        for s in statements(p["PolicyDocument"])
    ]


def test_karpenter_lists_instance_profiles_on_any_resource(any_synth: Synth) -> None:
    granted = _granted(any_synth, "EksKarpenterControllerRole")
    (listing,) = [s for s in granted if "iam:ListInstanceProfiles" in as_list(s["Action"])]
    # IAM List actions take no resource ARN: anything but '*' denies every call.
    assert listing["Resource"] == "*" and as_list(listing["Action"]) == ["iam:ListInstanceProfiles"]
    (reading,) = [s for s in granted if "iam:GetInstanceProfile" in as_list(s["Action"])]
    assert ":instance-profile/" in flat(reading["Resource"])


def test_no_unused_instance_profile(any_synth: Synth) -> None:
    # The EC2NodeClass names the node role; Karpenter makes its own instance profiles from it.
    assert not any_synth.of_type("AWS::IAM::InstanceProfile")
    values = helm_values(next(iter(_releases_of_runtimes(any_synth).values())))
    assert values["karpenter"]["nodeTemplate"]["iamRole"].startswith("${EksKarpenterNodeRole")


def _releases_of_runtimes(synth: Synth) -> dict[str, dict[str, Any]]:
    names = {r.name for r in synth.config.models_runtime}
    return {name: r["Properties"] for name, (_, r) in _releases(synth).items() if name in names}


def test_application_log_group_exists_before_the_cloudwatch_add_on(any_synth: Synth) -> None:
    group_id, group = _one(any_synth, "AWS::Logs::LogGroup", "EksApplicationLogs")
    assert group["Properties"]["LogGroupName"].endswith("/application")
    assert group["DeletionPolicy"] == "Delete"
    addon_id, addon = _one(any_synth, "AWS::EKS::Addon", "EksCloudWatchObservability")
    # Created first (Fluent Bit would otherwise create it and this creation fail), deleted after the add-on.
    assert group_id in addon["DependsOn"]
    assert addon_id not in group.get("DependsOn", [])
    # The agent-error metric filter lives on that group.
    (metric_filter,) = any_synth.props("AWS::Logs::MetricFilter")
    assert metric_filter["LogGroupName"] == {"Ref": group_id}


def test_device_plugin_only_where_a_runtime_is_not_bottlerocket(default_synth: Synth, two_synth: Synth) -> None:
    assert "nvidia-device-plugin" not in _releases(default_synth)
    _, plugin = _releases(two_synth)["nvidia-device-plugin"]
    props = plugin["Properties"]
    assert props["Repository"] == versions.NVIDIA_DEVICE_PLUGIN_REPOSITORY
    assert props["Version"] == versions.NVIDIA_DEVICE_PLUGIN_VERSION
    values = helm_values(props)
    # Tolerates both GPU taints of the chart's NodePool ...
    tolerated = {(t["key"], t["effect"]) for t in values["tolerations"] if t["operator"] == "Exists"}
    assert {("nvidia.com/gpu", "NoSchedule"), ("runtime", "NoSchedule")} <= tolerated
    # ... and runs only on the nodes the chart labels for it (never Bottlerocket, which brings its own).
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "sd-async/device-plugin", "operator": "In", "values": ["nvidia"]}]}]
    fast = helm_values(_releases_of_runtimes(two_synth)["fast"])
    assert fast["karpenter"]["nodeTemplate"]["amiFamily"] == "AL2023"


def test_spot_service_linked_role_when_the_config_asks(default_synth: Synth, two_synth: Synth) -> None:
    assert not default_synth.of_type("AWS::IAM::ServiceLinkedRole")
    role_id, role = _one(two_synth, "AWS::IAM::ServiceLinkedRole", "EksSpotServiceLinkedRole")
    assert role["Properties"]["AWSServiceName"] == "spot.amazonaws.com"
    # Account-wide: never deleted with the stack.
    assert role["DeletionPolicy"] == "Retain"
    _, karpenter = _releases(two_synth)["karpenter"]
    assert role_id in karpenter["DependsOn"]


def test_destroy_removes_karpenter_capacity_before_karpenter(any_synth: Synth) -> None:
    cleanup_id, cleanup = _one(any_synth, "Custom::KarpenterCleanup", "EksKarpenterCleanup")
    releases = _releases(any_synth)
    karpenter_id, _ = releases["karpenter"]
    # CloudFormation deletes dependents first: runtime releases, then the cleanup, then Karpenter.
    assert karpenter_id in cleanup["DependsOn"]
    for name in (r.name for r in any_synth.config.models_runtime):
        assert cleanup_id in releases[name][1]["DependsOn"]
    assert cleanup["Properties"]["ClusterName"] == naming.cluster_name(any_synth.config.stack_name)
    # The handler reaches Kubernetes through an access entry whose group may only do the cleanup.
    (entry,) = [p for p in any_synth.props("AWS::EKS::AccessEntry") if p.get("KubernetesGroups")]
    assert entry["KubernetesGroups"] == [KUBERNETES_GROUP]
    manifests = [
        doc
        for p in any_synth.props("Custom::AWSCDK-EKS-KubernetesResource")
        for doc in json.loads(flat(p["Manifest"]))
        if doc["kind"] == "ClusterRole"
    ]
    (role,) = [m for m in manifests if m["metadata"]["name"] == "sd-async-karpenter-cleanup"]
    verbs = {(rule["resources"][0], verb) for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {("nodepools", "list"), ("nodepools", "delete"), ("nodeclaims", "list")}
    # The handler waits until the last NodeClaim is gone (polled by the provider framework).
    handlers = {p["Handler"] for p in any_synth.props("AWS::Lambda::Function") if "Handler" in p}
    assert {"handler.on_event", "handler.is_complete"} <= handlers


def test_nothing_it_creates_is_retained(any_synth: Synth) -> None:
    ours = [lid for lid in any_synth.of_type("AWS::Logs::LogGroup") if lid.startswith("EksKarpenterCleanup")]
    assert len(ours) == 3
    assert all(any_synth.resources[lid]["DeletionPolicy"] == "Delete" for lid in ours)


def test_kubectl_output_only_for_configured_admins(default_synth: Synth, two_synth: Synth) -> None:
    # Nobody has Kubernetes access unless clusterAdminRoleArns names them; the outputs must not suggest otherwise.
    assert "KubeconfigCommand" not in default_synth.template["Outputs"]
    output = two_synth.template["Outputs"]["KubeconfigCommand"]
    assert "update-kubeconfig" in flat(output["Value"]) and "clusterAdminRoleArns" in output["Description"]


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        (
            {"karpenter": {"nodeTemplate": {"amiFamily": "AL2"}}},
            "modelsRuntime[0].extraValues.karpenter.nodeTemplate.amiFamily",
            "no AL2 AMIs",
        ),
        (
            {"runtime": {"scaling": {"auth": {"identityOwner": "workload"}}}},
            "modelsRuntime[0].extraValues.runtime.scaling.auth.identityOwner",
            "EKS Pod Identity",
        ),
    ],
)
def test_config_refuses_what_cannot_work(extra: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "stackName": "s",
                "modelBucketArn": "arn:aws:s3:::models",
                "modelsRuntime": [{"name": "r", "extraValues": extra}],
            }
        )
    (issue,) = caught.value.issues
    assert issue.field == key and words in issue.message


def test_spot_role_flag_defaults_off() -> None:
    cfg = parse_config({"stackName": "s", "modelBucketArn": "arn:aws:s3:::models", "modelsRuntime": [{"name": "r"}]})
    assert cfg.create_spot_service_linked_role is False
