"""Helm values of one runtime's release of ``charts/sd-on-eks``. Pure data: no CDK imports, tested directly.

Layers, later wins (the replaced sample's order):
1. our defaults (images built from this repo, the job timeout, allowed input buckets);
2. the runtime's ``extraValues`` from config.yaml (deep-merged: nested keys merge, lists replace);
3. the values the deployment owns (queue, topic, bucket, table, role and cluster names): the sample
   documented them as "populated by CDK, not changeable", and a typo there would silently break the runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import FieldIssue
from infra import naming
from infra.config import DeploymentConfig, RuntimeConfig, deep_merge
from infra.versions import COMMUNITY_RUNTIME_IMAGES


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str = ""

    def values(self) -> dict[str, str]:
        return {"repository": self.repository, "tag": self.tag} if self.tag else {"repository": self.repository}


@dataclass(frozen=True)
class RuntimeWiring:
    """Names and addresses of the AWS resources a runtime uses (CloudFormation tokens in a real synth)."""

    region: str
    stack_name: str
    cluster_name: str
    queue_url: str
    # The runtime's high-priority queue (read first by the agent; KEDA scales on the sum of both).
    high_queue_url: str
    results_topic_arn: str
    output_bucket: str
    status_table: str
    model_bucket: str
    service_account: str
    node_role_name: str
    # The Secrets Manager secret whose value signs webhooks (whsec_<value>).
    webhook_secret_arn: str
    # None where extraValues names its own image (then nothing is built).
    agent_image: Image | None
    # Our diffusers runtime image; None for sdwebui/comfyui, which run the community images.
    runtime_image: Image | None


def default_runtime_image(runtime: RuntimeConfig, built: Image | None) -> Image | None:
    if runtime.type == "diffusers":
        return built
    return Image(COMMUNITY_RUNTIME_IMAGES[runtime.type], "latest")


def chart_values(config: DeploymentConfig, runtime: RuntimeConfig, wiring: RuntimeWiring) -> dict[str, Any]:
    runtime_image = default_runtime_image(runtime, wiring.runtime_image)
    defaults: dict[str, Any] = {
        "runtime": {
            "jobTimeoutSeconds": config.job_timeout_seconds,
            "queueAgent": {
                **({"image": wiring.agent_image.values()} if wiring.agent_image else {}),
                # Large inputs travel as s3:// references: the configured input buckets, and the output bucket
                # (the submit function lets a tenant name only its own results there).
                "allowedInputBuckets": [wiring.output_bucket, *config.input_buckets],
            },
            "inferenceApi": {"image": runtime_image.values()} if runtime_image else {},
        },
    }
    owned: dict[str, Any] = {
        "global": {
            "awsRegion": wiring.region,
            "stackName": wiring.stack_name,
            "clusterName": wiring.cluster_name,
            "runtime": runtime.name,
        },
        "runtime": {
            "type": runtime.type,
            "serviceAccountName": wiring.service_account,
            "queueAgent": {
                "sqsQueueUrl": wiring.queue_url,
                "sqsHighQueueUrl": wiring.high_queue_url,
                "webhookSecretArn": wiring.webhook_secret_arn,
                "snsTopicArn": wiring.results_topic_arn,
                "s3Bucket": wiring.output_bucket,
                "statusTable": wiring.status_table,
                "dynamicModel": runtime.dynamic_model,
            },
            "inferenceApi": {"modelFilename": runtime.model_filename or ""},
            "persistence": {"s3": {"modelBucket": wiring.model_bucket}},
        },
        "karpenter": {"nodeTemplate": {"iamRole": wiring.node_role_name}},
    }
    return deep_merge(defaults, runtime.extra_values, owned)


# The chart's default node family (charts/sd-on-eks/values.yaml karpenter.nodeTemplate.amiFamily).
DEFAULT_NODE_FAMILY = "Bottlerocket"


def node_family(runtime: RuntimeConfig) -> str | None:
    """The AMI family of the runtime's GPU nodes, or None where its release launches no nodes of its own."""
    if runtime.extra_value("karpenter", "enabled", default=True) is False:
        return None
    return str(runtime.extra_value("karpenter", "nodeTemplate", "amiFamily", default=DEFAULT_NODE_FAMILY))


def needs_device_plugin(config: DeploymentConfig) -> bool:
    """Bottlerocket's NVIDIA variants run the device plugin themselves; every other family needs NVIDIA's."""
    return any(family not in (None, "Bottlerocket") for family in map(node_family, config.models_runtime))


def image_overridden(runtime: RuntimeConfig, component: str) -> bool:
    """Whether extraValues names its own image for ``runtime.<component>``: then nothing needs building."""
    return bool(runtime.extra_value("runtime", component, "image", "repository"))


CHART_SCHEMA = Path(__file__).resolve().parent.parent / "charts" / "sd-on-eks" / "values.schema.json"


def placeholder_wiring(config: DeploymentConfig, runtime: RuntimeConfig) -> RuntimeWiring:
    """Plausible stand-ins for the deploy-time values, to check the rest of the values before deploying."""
    account, region = "123456789012", "us-east-1"
    return RuntimeWiring(
        region=region,
        stack_name=config.stack_name,
        cluster_name=naming.cluster_name(config.stack_name),
        queue_url=f"https://sqs.{region}.amazonaws.com/{account}/"
        + naming.runtime_queue(config.stack_name, runtime.name),
        high_queue_url=f"https://sqs.{region}.amazonaws.com/{account}/"
        + naming.runtime_high_queue(config.stack_name, runtime.name),
        results_topic_arn=f"arn:aws:sns:{region}:{account}:{naming.results_topic(config.stack_name)}",
        output_bucket=f"{config.stack_name.lower()}-outputs",
        status_table=naming.status_table(config.stack_name),
        model_bucket=config.model_bucket_name,
        service_account=naming.runtime_service_account(runtime.name),
        node_role_name=f"{config.stack_name}-karpenter-node",
        webhook_secret_arn=f"arn:aws:secretsmanager:{region}:{account}:secret:WebhookSecret-AbCdEf",
        agent_image=Image(f"{account}.dkr.ecr.{region}.amazonaws.com/queue-agent", "0" * 64),
        runtime_image=Image(f"{account}.dkr.ecr.{region}.amazonaws.com/inference-api", "0" * 64),
    )


def chart_value_issues(config: DeploymentConfig, schema_path: Path = CHART_SCHEMA) -> list[FieldIssue]:
    """Check every local-chart runtime's merged values against the chart's values.schema.json.

    Helm would reject them only at deploy time, mid-stack; here a typo in extraValues stops the synth and
    names the config key.
    """
    import jsonschema

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    issues = []
    for index, runtime in enumerate(config.models_runtime):
        if runtime.chart_repository:
            continue  # a remote chart brings its own schema; helm checks it at deploy time
        values = chart_values(config, runtime, placeholder_wiring(config, runtime))
        for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in error.absolute_path)
            in_extra = bool(error.absolute_path) and error.absolute_path[0] in runtime.extra_values
            key = f"modelsRuntime[{index}].extraValues" if in_extra else f"modelsRuntime[{index}] (chart values)"
            field = f"{key}.{path}" if path else key
            issues.append(FieldIssue(field, f"chart-schema:{error.validator}", error.message))
    return issues
