"""EKS with the cluster-wide pieces every runtime relies on.

System node group, Pod Identity agent, Karpenter (+ spot interruption queue and rules, node role and instance
profile), KEDA, Mountpoint for S3 CSI driver (read access to the model bucket), NVIDIA DCGM exporter and
CloudWatch observability. Runtimes (infra/runtimes.py) add their own Helm releases on top.
"""

from __future__ import annotations

import json
from typing import Any, cast

from aws_cdk import Aws, CfnCondition, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer
from constructs import Construct

from infra import checkov, nag, naming, versions
from infra.chart_values import needs_device_plugin
from infra.config import DeploymentConfig
from infra.karpenter_cleanup import KarpenterCleanup

# Taints every GPU node carries (the chart's NodePool sets them); cluster daemons that must also run on GPU
# nodes tolerate them.
GPU_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "runtime", "operator": "Exists", "effect": "NoSchedule"},
]
KARPENTER_NAMESPACE = "kube-system"
KARPENTER_SERVICE_ACCOUNT = "karpenter"
KEDA_NAMESPACE = "keda"
KEDA_SERVICE_ACCOUNT = "keda-operator"
S3_CSI_SERVICE_ACCOUNT = "s3-csi-driver-sa"
# The label the chart's NodePool puts on GPU nodes that are not Bottlerocket (which runs its own device plugin).
DEVICE_PLUGIN_NODE_LABEL = "sd-async/device-plugin"
CLOUDWATCH_NAMESPACE = "amazon-cloudwatch"
CLOUDWATCH_SERVICE_ACCOUNT = "cloudwatch-agent"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
NODE_GROUP_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
KARPENTER_NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


def pod_identity_role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    """A role only EKS Pod Identity can assume (it also tags the session with the pod's identity)."""
    role = iam.Role(
        scope, construct_id, assumed_by=iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL), description=description
    )
    assert role.assume_role_policy is not None
    role.assume_role_policy.add_statements(
        iam.PolicyStatement(actions=["sts:TagSession"], principals=[iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL)])
    )
    return role


class Cluster(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc,
        scaled_queues: list[sqs.IQueue],
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.name = naming.cluster_name(config.stack_name)
        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=self.name,
            version=eks.KubernetesVersion.of(config.kubernetes_version),
            vpc=vpc,
            vpc_subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
            default_capacity=0,
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV35Layer(self, "KubectlLayer")),
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
            ],
            endpoint_access=eks.EndpointAccess.PUBLIC_AND_PRIVATE,
            secrets_encryption_key=kms.Key(
                self, "SecretsKey", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        self._system_nodes()
        for index, role_arn in enumerate(config.cluster_admin_role_arns):
            self.cluster.grant_cluster_admin(f"Admin{index}", role_arn)
        self.pod_identity_agent = eks.CfnAddon(
            self, "PodIdentityAgent", addon_name="eks-pod-identity-agent", cluster_name=self.cluster.cluster_name
        )
        # The VPC CNI as a managed add-on with its network-policy agent on: the runtime chart's NetworkPolicy (only
        # the agent's metrics port is open to other pods) is enforced, not merely declared.
        self.vpc_cni = eks.CfnAddon(
            self,
            "VpcCni",
            addon_name="vpc-cni",
            cluster_name=self.cluster.cluster_name,
            resolve_conflicts="OVERWRITE",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
        )
        self.node_role = self._karpenter_node_role()
        self.interruption_queue = self._interruption_queue()
        self.spot_role = self._spot_service_linked_role()
        self.karpenter = self._karpenter()
        self.capacity_cleanup = KarpenterCleanup(
            self,
            "KarpenterCleanup",
            cluster=self.cluster,
            cluster_name=self.name,
            karpenter=self.karpenter,
            job_timeout_seconds=config.job_timeout_seconds,
        ).resource
        self.keda = self._keda(scaled_queues)
        self._s3_csi_driver()
        self._dcgm_exporter()
        self.device_plugin = self._nvidia_device_plugin() if needs_device_plugin(config) else None
        self._cloudwatch_observability()
        self._acknowledge_cdk_internals()

    # -- helpers -------------------------------------------------------------------------------------------

    def associate(self, construct_id: str, *, namespace: str, service_account: str, role: iam.IRole) -> Construct:
        association = eks.CfnPodIdentityAssociation(
            self,
            construct_id,
            cluster_name=self.cluster.cluster_name,
            namespace=namespace,
            service_account=service_account,
            role_arn=role.role_arn,
        )
        # Credentials flow only once the agent runs; workloads started earlier would crash-loop on AWS calls.
        association.node.add_dependency(self.pod_identity_agent)
        return association

    def helm(self, construct_id: str, **options: Any) -> eks.HelmChart:
        # The jsii stubs omit an optional member from ICluster's protocol; Cluster implements ICluster.
        chart = eks.HelmChart(self, construct_id, cluster=cast(eks.ICluster, self.cluster), **options)
        chart.node.add_dependency(self.pod_identity_agent)
        return chart

    # -- pieces --------------------------------------------------------------------------------------------

    def _system_nodes(self) -> None:
        components = self.config.cluster_components
        ami = (
            eks.NodegroupAmiType.AL2023_ARM_64_STANDARD
            if components.is_arm
            else eks.NodegroupAmiType.AL2023_X86_64_STANDARD
        )
        self.system_nodes = self.cluster.add_nodegroup_capacity(
            "SystemNodes",
            instance_types=[ec2.InstanceType(components.instance_type)],
            ami_type=ami,
            min_size=components.desired_count,
            max_size=components.desired_count,
            desired_size=components.desired_count,
            labels={"role": "system"},
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
        nag.acknowledge(
            self.system_nodes,
            nag.same_reason(
                "An EKS managed node group role needs the AWS-maintained worker, CNI and ECR read policies.",
                *map(nag.managed_policy, NODE_GROUP_POLICIES),
            ),
        )

    def _karpenter_node_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "KarpenterNodeRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Role of the GPU nodes Karpenter launches",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(name) for name in KARPENTER_NODE_POLICIES],
        )
        nag.acknowledge(
            role,
            nag.same_reason(
                "GPU nodes need the AWS-maintained EKS worker, CNI, ECR pull and SSM core policies, which follow "
                "changes of those services that a hand-written copy would miss.",
                *map(nag.managed_policy, KARPENTER_NODE_POLICIES),
            ),
        )
        # Nodes join the cluster through an access entry (no aws-auth ConfigMap).
        eks.CfnAccessEntry(
            self,
            "KarpenterNodeAccess",
            cluster_name=self.cluster.cluster_name,
            principal_arn=role.role_arn,
            type="EC2_LINUX",
        )
        return role

    def _interruption_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "InterruptionQueue",
            queue_name=naming.karpenter_interruption_queue(self.config.stack_name),
            # Interruption warnings are useless after the two-minute spot notice.
            retention_period=Duration.minutes(5),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        checkov.skip(
            queue,
            {
                "CKV_AWS_27": "Encrypted with SQS-managed SSE (SqsManagedSseEnabled), which this check does not "
                "recognise.",
            },
        )
        nag.acknowledge(
            queue,
            {
                "AwsSolutions-SQS3": "Karpenter consumes interruption events as they come; one it cannot read "
                "is stale within minutes, so a dead-letter queue would only collect noise.",
            },
        )
        rules = {
            "HealthEvents": events.EventPattern(source=["aws.health"], detail_type=["AWS Health Event"]),
            "SpotInterruption": events.EventPattern(
                source=["aws.ec2"], detail_type=["EC2 Spot Instance Interruption Warning"]
            ),
            "Rebalance": events.EventPattern(source=["aws.ec2"], detail_type=["EC2 Instance Rebalance Recommendation"]),
            "InstanceStateChange": events.EventPattern(
                source=["aws.ec2"], detail_type=["EC2 Instance State-change Notification"]
            ),
        }
        for rule_id, pattern in rules.items():
            events.Rule(self, f"Karpenter{rule_id}", event_pattern=pattern, targets=[targets.SqsQueue(queue)])
        return queue

    def _spot_service_linked_role(self) -> iam.CfnServiceLinkedRole | None:
        """AWSServiceRoleForEC2Spot: spot launches need it, and the Karpenter controller may not create it."""
        if not self.config.create_spot_service_linked_role:
            return None
        role = iam.CfnServiceLinkedRole(
            self,
            "SpotServiceLinkedRole",
            aws_service_name="spot.amazonaws.com",
            description="Lets EC2 launch and manage spot instances for Karpenter",
        )
        # Account-wide and possibly used by other workloads: a stack deletion must not remove it.
        role.apply_removal_policy(RemovalPolicy.RETAIN)
        return role

    def _karpenter(self) -> eks.HelmChart:
        role = pod_identity_role(self, "KarpenterControllerRole", "Karpenter controller (EKS Pod Identity)")
        stack = Stack.of(self)
        for statement, reason in karpenter_controller_statements(
            cluster_name=self.name,
            cluster_arn=self.cluster.cluster_arn,
            node_role_arn=self.node_role.role_arn,
            interruption_queue_arn=self.interruption_queue.queue_arn,
        ):
            role.add_to_policy(statement)
            nag.acknowledge(role, nag.same_reason(reason, *nag.wildcard_findings(stack, [statement])))
        association = self.associate(
            "KarpenterIdentity", namespace=KARPENTER_NAMESPACE, service_account=KARPENTER_SERVICE_ACCOUNT, role=role
        )
        chart = self.helm(
            "Karpenter",
            chart="karpenter",
            repository=versions.KARPENTER_CHART,
            version=versions.KARPENTER_VERSION,
            namespace=KARPENTER_NAMESPACE,
            release="karpenter",
            values={
                "serviceAccount": {"name": KARPENTER_SERVICE_ACCOUNT},
                "replicas": min(2, self.config.cluster_components.desired_count),
                "settings": {
                    "clusterName": self.name,
                    "interruptionQueue": self.interruption_queue.queue_name,
                },
                "nodeSelector": {"role": "system"},
                "controller": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
            },
            wait=True,
        )
        chart.node.add_dependency(association, self.system_nodes)
        if self.spot_role is not None:
            chart.node.add_dependency(self.spot_role)
        return chart

    def _keda(self, scaled_queues: list[sqs.IQueue]) -> eks.HelmChart:
        role = pod_identity_role(self, "KedaOperatorRole", "KEDA operator: reads runtime queue depth")
        # KEDA's aws-sqs-queue scaler reads only the approximate message counts.
        role.add_to_policy(
            iam.PolicyStatement(actions=["sqs:GetQueueAttributes"], resources=[q.queue_arn for q in scaled_queues])
        )
        association = self.associate(
            "KedaIdentity", namespace=KEDA_NAMESPACE, service_account=KEDA_SERVICE_ACCOUNT, role=role
        )
        chart = self.helm(
            "Keda",
            chart="keda",
            repository=versions.KEDA_REPOSITORY,
            version=versions.KEDA_VERSION,
            namespace=KEDA_NAMESPACE,
            create_namespace=True,
            release="keda",
            values={
                "serviceAccount": {"operator": {"name": KEDA_SERVICE_ACCOUNT}},
                "nodeSelector": {"role": "system"},
                # Pod Identity credentials reach the operator through the default AWS credential chain.
                "podIdentity": {"aws": {"irsa": {"enabled": False}}},
            },
        )
        chart.node.add_dependency(association, self.system_nodes)
        return chart

    def _s3_csi_driver(self) -> None:
        config = self.config
        role = pod_identity_role(self, "S3CsiDriverRole", "Mountpoint for S3 CSI driver: read the model bucket")
        bucket_arn = config.model_bucket_arn
        role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket_arn]))
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/*"]))
        nag.acknowledge(
            role,
            {nag.wildcard_resource(f"{bucket_arn}/*"): "Read-only access to the model files of the configured bucket."},
        )
        self.s3_csi_driver = addon = eks.CfnAddon(
            self,
            "S3CsiDriver",
            addon_name="aws-mountpoint-s3-csi-driver",
            cluster_name=self.cluster.cluster_name,
            pod_identity_associations=[
                eks.CfnAddon.PodIdentityAssociationProperty(
                    role_arn=role.role_arn, service_account=S3_CSI_SERVICE_ACCOUNT
                )
            ],
            configuration_values=json.dumps({"node": {"tolerateAllTaints": True}}),
        )
        addon.node.add_dependency(self.pod_identity_agent)

    def _dcgm_exporter(self) -> None:
        # GPU metrics in Prometheus format on every NVIDIA node (Bottlerocket NVIDIA variants already ship the
        # driver and device plugin); the CloudWatch add-on's own GPU collection is switched off below so that
        # only one DCGM host engine profiles each GPU.
        self.helm(
            "DcgmExporter",
            chart="dcgm-exporter",
            repository=versions.DCGM_EXPORTER_REPOSITORY,
            version=versions.DCGM_EXPORTER_VERSION,
            namespace="gpu-monitoring",
            create_namespace=True,
            release="dcgm-exporter",
            values={
                "tolerations": GPU_TOLERATIONS,
                "nodeSelector": {"karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia"},
                "serviceMonitor": {"enabled": False},
            },
        )

    def _nvidia_device_plugin(self) -> eks.HelmChart:
        """NVIDIA's device plugin for GPU nodes of families other than Bottlerocket (AL2023, custom AMIs).

        Without it `nvidia.com/gpu` never appears on those nodes, runtime pods never schedule and Karpenter keeps
        replacing nodes. It runs only where the chart's NodePool put DEVICE_PLUGIN_NODE_LABEL, never on
        Bottlerocket, whose NVIDIA variants run their own.
        """
        selector = {"key": DEVICE_PLUGIN_NODE_LABEL, "operator": "In", "values": ["nvidia"]}
        return self.helm(
            "NvidiaDevicePlugin",
            chart="nvidia-device-plugin",
            repository=versions.NVIDIA_DEVICE_PLUGIN_REPOSITORY,
            version=versions.NVIDIA_DEVICE_PLUGIN_VERSION,
            namespace="nvidia-device-plugin",
            create_namespace=True,
            release="nvidia-device-plugin",
            values={
                "tolerations": GPU_TOLERATIONS,
                # Replaces the chart's default affinity (node feature discovery labels, which nothing sets here).
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [selector]}]
                        }
                    }
                },
            },
        )

    def _cloudwatch_observability(self) -> None:
        role = pod_identity_role(self, "CloudWatchAgentRole", "CloudWatch agent and Fluent Bit (Container Insights)")
        role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy"))
        nag.acknowledge(
            role,
            {
                nag.managed_policy("CloudWatchAgentServerPolicy"): "The AWS-maintained policy the Container Insights "
                "add-on documents for its agent (metrics and log delivery).",
            },
        )
        addon = eks.CfnAddon(
            self,
            "CloudWatchObservability",
            addon_name="amazon-cloudwatch-observability",
            cluster_name=self.cluster.cluster_name,
            pod_identity_associations=[
                eks.CfnAddon.PodIdentityAssociationProperty(
                    role_arn=role.role_arn, service_account=CLOUDWATCH_SERVICE_ACCOUNT
                )
            ],
            configuration_values=json.dumps(
                {
                    "tolerations": GPU_TOLERATIONS,
                    "containerLogs": {"enabled": True},
                    "agent": {
                        "config": {
                            "logs": {
                                "metrics_collected": {
                                    "kubernetes": {
                                        "enhanced_container_insights": True,
                                        "accelerated_compute_metrics": False,
                                    }
                                }
                            }
                        }
                    },
                }
            ),
        )
        addon.node.add_dependency(self.pod_identity_agent)
        # Fluent Bit writes pod logs here. Owning the group fixes its retention and lets metric filters exist
        # before the first pod logs. The add-on depends on it: created first, so Fluent Bit never creates it
        # (which would make this creation fail); deleted last, so Fluent Bit cannot recreate it after deletion.
        self.application_log_group = logs.LogGroup(
            self,
            "ApplicationLogs",
            log_group_name=f"/aws/containerinsights/{self.name}/application",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        addon.node.add_dependency(self.application_log_group)
        checkov.skip(self.application_log_group, checkov.LOG_GROUP)

    def _acknowledge_cdk_internals(self) -> None:
        """Findings on what the CDK EKS library creates for itself (cluster role, kubectl provider)."""
        nag.acknowledge(
            self.cluster,
            {
                "AwsSolutions-EKS1": "The API endpoint stays public (and private) so that `cdk deploy` and operators "
                "outside the VPC can reach it; access needs an IAM access entry.",
                nag.managed_policy("AmazonEKSClusterPolicy"): "The EKS control plane role requires this AWS policy.",
            },
        )
        provider = self.cluster.node.find_child("KubectlProvider")
        checkov.skip(provider, checkov.LIBRARY_FUNCTION, resource_type="AWS::Lambda::Function")
        checkov.skip(provider, checkov.LOG_GROUP, resource_type="AWS::Logs::LogGroup")
        library = (
            "Created by the CDK EKS library for its kubectl provider (Lambda in the VPC that applies manifests and "
            "Helm charts); its policies are the library's, not ours to narrow."
        )
        findings = [
            *map(
                nag.managed_policy,
                (
                    "AmazonEC2ContainerRegistryReadOnly",
                    "service-role/AWSLambdaBasicExecutionRole",
                    "service-role/AWSLambdaVPCAccessExecutionRole",
                ),
            ),
            nag.wildcard_action("s3:GetBucket*"),
            nag.wildcard_action("s3:GetObject*"),
            nag.wildcard_action("s3:List*"),
            nag.wildcard_resource("arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*"),
        ]
        handler = provider.node.find_child("Handler")
        findings.append(nag.wildcard_resource(f"{nag.token(handler, 'Arn')}:*"))
        ecr_public = handler.node.try_find_child("HasEcrPublic")
        if isinstance(ecr_public, CfnCondition):
            # The ECR Public policy is attached conditionally (partitions with ECR Public); nag prints the If.
            policy = {
                "Fn::If": [
                    Stack.of(self).resolve(ecr_public.logical_id),
                    {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                ":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly",
                            ],
                        ]
                    },
                    {"Ref": "AWS::NoValue"},
                ]
            }
            findings.append(f"AwsSolutions-IAM4[Policy::{json.dumps(policy, separators=(',', ':'))}]")
        nag.acknowledge(provider, nag.same_reason(library, *findings))
        nag.acknowledge(
            provider,
            {"AwsSolutions-L1": "The kubectl provider's Lambda runtime is pinned by the CDK EKS library, not by us."},
        )


# Why each Karpenter statement needs the wildcard it has (cdk-nag asks for a reason per finding).
_KARPENTER_REASONS = {
    "LaunchFromSharedResources": "Karpenter picks AMIs, snapshots, subnets and security groups at launch time by "
    "selector; it can only launch with them, never modify them.",
    "LaunchFromOwnedTemplates": "Launch templates are created by Karpenter with generated ids; only those tagged as "
    "owned by this cluster may be used.",
    "CreateOwnedResources": "Instances, volumes, fleets and launch templates get generated ids; creation requires the "
    "cluster ownership and nodepool request tags.",
    "TagOnCreate": "Tags may be set only while creating cluster-owned resources.",
    "TagOwnedInstances": "Only instances already owned by this cluster, and only the node-claim tag keys.",
    "DeleteOwned": "Termination and template deletion limited to resources tagged as owned by this cluster.",
    "RegionalReads": "EC2 Describe calls support no resource scoping; limited to the stack's region.",
    "AmiParameters": "Public SSM parameters under /aws/service publish the current EKS AMI ids.",
    "Pricing": "pricing:GetProducts supports no resource scoping.",
    "CreateInstanceProfiles": "Karpenter names instance profiles itself; creation requires the ownership tag.",
    "ManageOwnedInstanceProfiles": "Changes limited to instance profiles tagged as owned by this cluster.",
    "ReadInstanceProfiles": "Read-only lookups of instance profiles whose names Karpenter generated.",
    "ListInstanceProfiles": "iam:ListInstanceProfiles supports no resource scoping (IAM List actions need '*').",
}


def karpenter_controller_statements(
    *, cluster_name: str, cluster_arn: str, node_role_arn: str, interruption_queue_arn: str
) -> list[tuple[iam.PolicyStatement, str]]:
    """The Karpenter v1 controller's permissions, scoped to resources tagged as owned by this cluster.

    Each statement comes with the reason its wildcards are acceptable (empty when it has none).
    """
    region, partition, account = Aws.REGION, Aws.PARTITION, Aws.ACCOUNT_ID
    owned = f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}"
    owned_resource = f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}"

    def ec2_arn(resource: str, *, global_account: bool = False) -> str:
        return f"arn:{partition}:ec2:{region}:{'' if global_account else '*'}:{resource}/*"

    instance_profiles = f"arn:{partition}:iam::{account}:instance-profile/*"
    launch_targets = [
        ec2_arn(r)
        for r in ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")
    ]
    statements = [
        iam.PolicyStatement(
            sid="LaunchFromSharedResources",
            actions=["ec2:RunInstances", "ec2:CreateFleet"],
            resources=[
                ec2_arn("image", global_account=True),
                ec2_arn("snapshot", global_account=True),
                ec2_arn("security-group"),
                ec2_arn("subnet"),
                ec2_arn("capacity-reservation"),
            ],
        ),
        iam.PolicyStatement(
            sid="LaunchFromOwnedTemplates",
            actions=["ec2:RunInstances", "ec2:CreateFleet"],
            resources=[ec2_arn("launch-template")],
            conditions={"StringEquals": {owned_resource: "owned"}},
        ),
        iam.PolicyStatement(
            sid="CreateOwnedResources",
            actions=["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            resources=launch_targets,
            conditions={"StringEquals": {owned: "owned"}, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}},
        ),
        iam.PolicyStatement(
            sid="TagOnCreate",
            actions=["ec2:CreateTags"],
            resources=launch_targets,
            conditions={
                "StringEquals": {
                    owned: "owned",
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
            },
        ),
        iam.PolicyStatement(
            sid="TagOwnedInstances",
            actions=["ec2:CreateTags"],
            resources=[ec2_arn("instance")],
            conditions={
                "StringEquals": {owned_resource: "owned"},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                },
            },
        ),
        iam.PolicyStatement(
            sid="DeleteOwned",
            actions=["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            resources=[ec2_arn("instance"), ec2_arn("launch-template")],
            conditions={"StringEquals": {owned_resource: "owned"}},
        ),
        iam.PolicyStatement(
            sid="RegionalReads",
            actions=[
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeCapacityReservations",
                "ec2:DescribeImages",
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSpotPriceHistory",
                "ec2:DescribeSubnets",
            ],
            resources=["*"],
            conditions={"StringEquals": {"aws:RequestedRegion": region}},
        ),
        iam.PolicyStatement(
            sid="AmiParameters",
            actions=["ssm:GetParameter"],
            resources=[f"arn:{partition}:ssm:{region}::parameter/aws/service/*"],
        ),
        iam.PolicyStatement(sid="Pricing", actions=["pricing:GetProducts"], resources=["*"]),
        iam.PolicyStatement(
            sid="Interruptions",
            actions=["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            resources=[interruption_queue_arn],
        ),
        iam.PolicyStatement(
            sid="PassNodeRole",
            actions=["iam:PassRole"],
            resources=[node_role_arn],
            conditions={"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com"]}},
        ),
        iam.PolicyStatement(
            sid="CreateInstanceProfiles",
            actions=["iam:CreateInstanceProfile", "iam:TagInstanceProfile"],
            resources=[instance_profiles],
            conditions={"StringEquals": {owned: "owned"}},
        ),
        iam.PolicyStatement(
            sid="ManageOwnedInstanceProfiles",
            actions=["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
            resources=[instance_profiles],
            conditions={"StringEquals": {owned_resource: "owned"}},
        ),
        iam.PolicyStatement(
            sid="ReadInstanceProfiles", actions=["iam:GetInstanceProfile"], resources=[instance_profiles]
        ),
        # List actions take no resource scoping: a resource ARN here makes every call AccessDenied.
        iam.PolicyStatement(sid="ListInstanceProfiles", actions=["iam:ListInstanceProfiles"], resources=["*"]),
        iam.PolicyStatement(sid="DescribeCluster", actions=["eks:DescribeCluster"], resources=[cluster_arn]),
    ]
    return [(statement, _KARPENTER_REASONS.get(statement.sid or "", "")) for statement in statements]
