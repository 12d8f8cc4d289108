"""Values the chart refuses: schema violations, missing identity values, inconsistent settings."""

from __future__ import annotations

import pytest

from tests.chart.harness import CHART, Helm, RenderCache, ValueSet, tolerates

SCHEMA_ERROR = "values don't meet the specifications of the schema"


def test_bare_defaults_name_every_missing_identity_value(helm: Helm) -> None:
    proc = helm.template(None)
    assert proc.returncode != 0
    for key in (
        "runtime.queueAgent.sqsQueueUrl",
        "runtime.queueAgent.snsTopicArn",
        "runtime.queueAgent.s3Bucket",
        "runtime.persistence.s3.modelBucket",
        "karpenter.nodeTemplate.iamRole",
        "global.stackName",
    ):
        assert f"{key}" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("flag", "value", "where"),
    [
        ("--set", "replicaCount=3", "at '': additional properties 'replicaCount' not allowed"),
        ("--set", "runtime.scaling.queueLenght=5", "at '/runtime/scaling': additional properties 'queueLenght'"),
        ("--set-string", "runtime.scaling.queueLength=ten", "/runtime/scaling/queueLength"),
        ("--set-string", "runtime.scaling.enabled=yes", "/runtime/scaling/enabled"),
        ("--set", "runtime.type=automatic1111", "/runtime/type"),
        ("--set-string", "karpenter.provisioner.instanceType=g5.xlarge", "/karpenter/provisioner/instanceType"),
        ("--set", "karpenter.nodeTemplate.osVolume.volumeSize=10GB", "/karpenter/nodeTemplate/osVolume/volumeSize"),
        ("--set", "karpenter.nodeTemplate.amiFamily=Ubuntu", "/karpenter/nodeTemplate/amiFamily"),
        # EKS publishes no AL2 AMIs for Kubernetes 1.33 and later.
        ("--set", "karpenter.nodeTemplate.amiFamily=AL2", "/karpenter/nodeTemplate/amiFamily"),
        # KEDA reads a workload's identity only through IRSA; this chart's pods use EKS Pod Identity.
        ("--set", "runtime.scaling.auth.identityOwner=workload", "/runtime/scaling/auth/identityOwner"),
        ("--set", "global.awsRegion=US West", "/global/awsRegion"),
        ("--set", "runtime.queueAgent.sqsQueueUrl=sdoneks-queue", "/runtime/queueAgent/sqsQueueUrl"),
        ("--set", "runtime.jobTimeoutSeconds=0", "/runtime/jobTimeoutSeconds"),
        ("--set-json", 'runtime.queueAgent.extraEnv="A=1"', "/runtime/queueAgent/extraEnv"),
    ],
)
def test_schema_rejects(helm: Helm, value_sets: dict[str, ValueSet], flag: str, value: str, where: str) -> None:
    proc = helm.template(value_sets["required"], flag, value)
    assert proc.returncode != 0
    assert SCHEMA_ERROR in proc.stderr and where in proc.stderr, proc.stderr


def test_lint_applies_the_schema_too(helm: Helm, value_sets: dict[str, ValueSet]) -> None:
    proc = helm.lint(value_sets["required"], "--set", "bogus=1")
    assert proc.returncode != 0
    assert "bogus" in proc.stdout + proc.stderr


@pytest.mark.parametrize("grace", [1800, 1000])
def test_grace_period_not_above_job_timeout_fails(helm: Helm, value_sets: dict[str, ValueSet], grace: int) -> None:
    proc = helm.template(
        value_sets["required"],
        "--set", "runtime.jobTimeoutSeconds=1800",
        "--set", f"runtime.terminationGracePeriodSeconds={grace}",
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"runtime.terminationGracePeriodSeconds ({grace}) must be larger than runtime.jobTimeoutSeconds (1800)" in (
        proc.stderr
    )


@pytest.mark.parametrize(
    ("args", "grace"),
    [
        ((), 1800 + 120),
        (("--set", "runtime.jobTimeoutSeconds=3600"), 3600 + 120),
        (("--set", "runtime.jobTimeoutSeconds=600", "--set", "runtime.drainMarginSeconds=30"), 630),
        (("--set", "runtime.terminationGracePeriodSeconds=1801"), 1801),
    ],
)
def test_grace_period_derived_or_explicit(
    helm: Helm, value_sets: dict[str, ValueSet], args: tuple[str, ...], grace: int
) -> None:
    out = helm.render(value_sets["required"], *args)
    assert out.pod_spec["terminationGracePeriodSeconds"] == grace
    node_pool_grace = out.one("NodePool")["spec"]["template"]["spec"]["terminationGracePeriod"]
    assert node_pool_grace == f"{grace + 300}s"


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (
            "karpenter.provisioner.capacityType.spot=false,karpenter.provisioner.capacityType.onDemand=false",
            "at least one of spot and onDemand must be true",
        ),
        (
            "runtime.scaling.auth.roleArn=arn:aws:iam::123456789012:role/k,runtime.scaling.auth.identityOwner=keda",
            "roleArn and runtime.scaling.auth.identityOwner are mutually exclusive",
        ),
        ("karpenter.nodeTemplate.instanceProfile=p", "iamRole and instanceProfile are mutually exclusive"),
        ("runtime.type=sdwebui", "runtime.inferenceApi.image.repository is required for runtime type sdwebui"),
        ("runtime.scaling.minReplicaCount=5,runtime.scaling.maxReplicaCount=2", "must not exceed"),
        ("karpenter.nodeTemplate.amiFamily=Custom", "amiSelectorTerms is required when amiFamily is Custom"),
        (
            "karpenter.nodeTemplate.amiFamily=AL2023,karpenter.nodeTemplate.osVolume.volumeSize=40Gi",
            "osVolume.volumeSize (40Gi) must be at least 100Gi with amiFamily AL2023",
        ),
        ("metrics.serviceMonitor.enabled=true,metrics.service.enabled=false", "needs metrics.service"),
    ],
)
def test_inconsistent_values_fail(helm: Helm, value_sets: dict[str, ValueSet], assignments: str, message: str) -> None:
    proc = helm.template(value_sets["required"], "--set", assignments)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_existing_volume_binds_our_claim_to_it(helm: Helm, value_sets: dict[str, ValueSet]) -> None:
    out = helm.render(value_sets["required"], "--set", "runtime.persistence.existingVolume=models-pv")
    assert not out.of_kind("PersistentVolume")
    assert out.one("PersistentVolumeClaim")["spec"]["volumeName"] == "models-pv"


def test_persistence_disabled_uses_an_empty_dir(helm: Helm, value_sets: dict[str, ValueSet]) -> None:
    out = helm.render(value_sets["required"], "--set", "runtime.persistence.enabled=false")
    assert not out.of_kind("PersistentVolume") and not out.of_kind("PersistentVolumeClaim")
    models = next(v for v in out.pod_spec["volumes"] if v["name"] == "models")
    assert models == {"name": "models", "emptyDir": {}}


def test_explicit_subnet_and_security_group_terms_pass_through(helm: Helm, value_sets: dict[str, ValueSet]) -> None:
    out = helm.render(
        value_sets["required"],
        "--set-json", 'karpenter.nodeTemplate.subnetSelector=[{"id": "subnet-0123"}, {"id": "subnet-4567"}]',
        "--set-json", 'karpenter.nodeTemplate.securityGroupSelector={"team": "imaging"}',
        "--set-json", 'karpenter.nodeTemplate.tags={"runtime": "spoofed", "cost-center": "42"}',
    )  # fmt: skip
    spec = out.one("EC2NodeClass")["spec"]
    assert spec["subnetSelectorTerms"] == [{"id": "subnet-0123"}, {"id": "subnet-4567"}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"team": "imaging"}}]
    # The chart's own tags win: cost reports must be able to trust them.
    assert spec["tags"] == {"runtime": "sdruntime", "stack": "sdoneks", "cost-center": "42"}


def test_image_tag_defaults_to_app_version(rendered_sets: RenderCache) -> None:
    out = rendered_sets("required")
    app_version = out.one("Deployment")["metadata"]["labels"]["app.kubernetes.io/version"]
    assert out.container("queue-agent")["image"] == f"sd-async-aws/queue-agent:{app_version}"
    assert out.container("runtime")["image"] == f"sd-async-aws/inference-api:{app_version}"


def test_runtime_name_not_release_name_drives_routing_and_taints(helm: Helm, value_sets: dict[str, ValueSet]) -> None:
    out = helm.render(value_sets["required"], "--set", "global.runtime=xlturbo")
    assert out.env("queue-agent")["RUNTIME_NAME"] == "xlturbo"
    template = out.one("NodePool")["spec"]["template"]
    assert template["metadata"]["labels"]["runtime"] == "xlturbo"
    runtime_taint = next(t for t in template["spec"]["taints"] if t["key"] == "runtime")
    assert runtime_taint["value"] == "xlturbo"
    assert tolerates(out.pod_spec["tolerations"], runtime_taint)
    assert out.one("Deployment")["metadata"]["name"] == "sdruntime"


def test_notes_tell_where_the_runtime_listens(helm: Helm, value_sets: dict[str, ValueSet]) -> None:
    notes = helm.notes(value_sets["required"])
    assert "grace period 1920s, job timeout 1800s" in notes
    assert "https://sqs.us-west-2.amazonaws.com/123456789012/sdoneks-sdruntime-queue" in notes
    assert "kubectl get nodepool default-sdruntime" in notes
    assert "s3://sdoneks-model-bucket-51a6/ mounted read-only at /models" in notes
    assert "high priority" not in notes
    high = helm.notes(value_sets["dynamic-model"])
    assert "+ https://sqs.us-west-2.amazonaws.com/123456789012/sdoneks-sdruntime-high (high priority" in high


def test_kubernetes_older_than_native_sidecars_is_refused(helm: Helm) -> None:
    proc = helm.run("template", "sdruntime", str(CHART), "--kube-version", "1.28.0")
    assert proc.returncode != 0
    assert ">=1.29.0-0" in proc.stderr
