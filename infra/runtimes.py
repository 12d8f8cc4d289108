"""Per runtime: a least-privilege Pod Identity role and a Helm release of charts/sd-on-eks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import nag, naming
from infra.chart_values import Image, RuntimeWiring, chart_values, image_overridden
from infra.cluster import Cluster, pod_identity_role
from infra.config import DeploymentConfig
from infra.images import build_image
from infra.messaging import RuntimeQueue
from infra.webhooks import WebhookSecret

CHART_DIR = Path(__file__).resolve().parent.parent / "charts" / "sd-on-eks"
CHART_NAME = "sd-on-eks"
# Why a runtime role's wildcards are acceptable, per statement.
_RUNTIME_REASONS = {
    "UseTopicKey": "Publishing to the KMS-encrypted results topic needs data keys of that one key.",
    "WriteOutputs": "Result objects are written under per-task keys of the output bucket.",
    "ReadInputs": "Tasks name any object of the configured input buckets as s3:// inputs.",
    "ReadModels": "Any model file of the configured model bucket may be loaded (dynamic model switching).",
    "Tracing": "X-Ray trace and sampling APIs support no resource scoping.",
}


@dataclass(frozen=True)
class SharedResources:
    config: DeploymentConfig
    cluster: Cluster
    results_topic: sns.ITopic
    topic_key: kms.IKey
    # Set when queue.kmsEncryption is on.
    queue_key: kms.IKey | None
    output_bucket: s3.IBucket
    status_table: dynamodb.ITable
    webhook_secret: WebhookSecret


class Runtimes(Construct):
    """Every runtime of the config; images are built once and shared by all runtimes that use them."""

    def __init__(
        self, scope: Construct, construct_id: str, *, shared: SharedResources, queues: list[RuntimeQueue]
    ) -> None:
        super().__init__(scope, construct_id)
        self.shared = shared
        self._images: dict[str, ecr_assets.DockerImageAsset] = {}
        self._chart_asset: s3_assets.Asset | None = None
        self.roles: dict[str, iam.Role] = {}
        self.values: dict[str, dict[str, object]] = {}
        for runtime_queue in queues:
            self._runtime(runtime_queue)

    def image(self, name: str) -> Image:
        if name not in self._images:
            self._images[name] = build_image(self, f"Image-{name}", name)
        asset = self._images[name]
        return Image(asset.repository.repository_uri, asset.image_tag)

    def chart_asset(self) -> s3_assets.Asset:
        if self._chart_asset is None:
            if not (CHART_DIR / "Chart.yaml").exists():
                raise FileNotFoundError(f"the runtime chart is missing: {CHART_DIR}/Chart.yaml")
            self._chart_asset = s3_assets.Asset(self, "Chart", path=str(CHART_DIR))
        return self._chart_asset

    def _role(self, runtime_queue: RuntimeQueue) -> iam.Role:
        shared, runtime = self.shared, runtime_queue.runtime
        role = pod_identity_role(self, f"Role-{runtime.name}", f"runtime {runtime.name}: queue agent and model reads")
        statements = [
            iam.PolicyStatement(
                sid="ConsumeOwnQueue",
                actions=[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                # The normal queue and the high-priority one, which the agent reads first.
                resources=[q.queue_arn for q in runtime_queue.task_queues],
            ),
            iam.PolicyStatement(
                sid="PublishResults", actions=["sns:Publish"], resources=[shared.results_topic.topic_arn]
            ),
            iam.PolicyStatement(
                sid="UseTopicKey", actions=["kms:GenerateDataKey*", "kms:Decrypt"], resources=[shared.topic_key.key_arn]
            ),
            iam.PolicyStatement(
                sid="WriteOutputs",
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                resources=[shared.output_bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                sid="ListModels", actions=["s3:ListBucket"], resources=[shared.config.model_bucket_arn]
            ),
            iam.PolicyStatement(
                sid="ReadModels", actions=["s3:GetObject"], resources=[f"{shared.config.model_bucket_arn}/*"]
            ),
            iam.PolicyStatement(
                sid="TaskStatus",
                # PutItem: a task published straight to the topic (no API) gets its record created by the agent.
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"],
                resources=[shared.status_table.table_arn],
            ),
            shared.webhook_secret.read_statement(),
            iam.PolicyStatement(
                sid="Tracing",
                actions=[
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                ],
                resources=["*"],
            ),
        ]
        if shared.config.input_buckets:
            partition = shared.config.partition
            statements.append(
                iam.PolicyStatement(
                    sid="ReadInputs",
                    actions=["s3:GetObject"],
                    resources=[f"arn:{partition}:s3:::{bucket}/*" for bucket in shared.config.input_buckets],
                )
            )
        if shared.queue_key is not None:
            statements.append(
                iam.PolicyStatement(sid="DecryptQueue", actions=["kms:Decrypt"], resources=[shared.queue_key.key_arn])
            )
        stack = Stack.of(self)
        for statement in statements:
            role.add_to_policy(statement)
            findings = nag.wildcard_findings(stack, [statement])
            if findings:
                nag.acknowledge(role, nag.same_reason(_RUNTIME_REASONS[statement.sid or ""], *findings))
        return role

    def _runtime(self, runtime_queue: RuntimeQueue) -> None:
        shared, runtime = self.shared, runtime_queue.runtime
        config, cluster = shared.config, shared.cluster
        role = self._role(runtime_queue)
        self.roles[runtime.name] = role
        service_account = naming.runtime_service_account(runtime.name)
        association = cluster.associate(
            f"Identity-{runtime.name}", namespace=runtime.namespace, service_account=service_account, role=role
        )
        wiring = RuntimeWiring(
            region=Aws.REGION,
            stack_name=Aws.STACK_NAME,
            cluster_name=cluster.name,
            queue_url=runtime_queue.queue.queue_url,
            high_queue_url=runtime_queue.high_queue.queue_url,
            webhook_secret_arn=shared.webhook_secret.arn,
            results_topic_arn=shared.results_topic.topic_arn,
            output_bucket=shared.output_bucket.bucket_name,
            status_table=shared.status_table.table_name,
            model_bucket=config.model_bucket_name,
            service_account=service_account,
            node_role_name=cluster.node_role.role_name,
            agent_image=None if image_overridden(runtime, "queueAgent") else self.image("queue-agent"),
            runtime_image=(
                self.image("inference-api")
                if runtime.type == "diffusers" and not image_overridden(runtime, "inferenceApi")
                else None
            ),
        )
        values = chart_values(config, runtime, wiring)
        self.values[runtime.name] = values
        if runtime.chart_repository:
            source: dict[str, object] = {
                "chart": CHART_NAME,
                "repository": runtime.chart_repository,
                "version": runtime.chart_version,
            }
        else:
            source = {"chart_asset": self.chart_asset()}
        release = cluster.helm(
            f"Release-{runtime.name}",
            release=runtime.name,
            namespace=runtime.namespace,
            create_namespace=True,
            values=values,
            # Pods may wait minutes for a GPU node; the release itself must not block the deployment on that.
            wait=False,
            timeout=Duration.minutes(10),
            **source,
        )
        # The chart creates NodePool/EC2NodeClass (Karpenter CRDs), a ScaledObject (KEDA CRD) and a Mountpoint
        # volume (CSI driver): each must exist before the release applies.
        release.node.add_dependency(association, cluster.karpenter, cluster.keda, cluster.s3_csi_driver)
        # Uninstalled before the capacity cleanup runs (which then waits for this release's nodes to go).
        release.node.add_dependency(cluster.capacity_cleanup)
