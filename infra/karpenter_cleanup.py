"""The delete-time step that removes Karpenter's capacity before Karpenter is uninstalled.

Without it, `cdk destroy` uninstalls the Karpenter release while its nodes still run: the instances, their
ENIs and launch templates are orphaned and the VPC and cluster deletions fail. This custom resource depends on
the Karpenter release and every runtime release depends on it, so CloudFormation deletes, in order: the runtime
releases, this resource (deletes every NodePool, waits until no NodeClaim is left), then Karpenter.
The handler is lambda/karpenter_cleanup/handler.py.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra import checkov, nag
from infra.lambda_bundle import LAMBDA_ARCHITECTURE
from infra.versions import LAMBDA_PYTHON

HANDLER_DIR = Path(__file__).resolve().parent.parent / "lambda" / "karpenter_cleanup"
# The Kubernetes group of the handler's access entry; the ClusterRole below is all it may do.
KUBERNETES_GROUP = "sd-async:karpenter-cleanup"
RBAC_NAME = "sd-async-karpenter-cleanup"
# How long deletion may wait for the nodes: a running job finishes (job timeout + drain margin) before its node
# drains, then the instance terminates.
_TERMINATION_ALLOWANCE = Duration.minutes(20)
_MAX_WAIT = Duration.hours(2)


def rbac_manifests() -> list[dict[str, object]]:
    rules = [
        {"apiGroups": ["karpenter.sh"], "resources": ["nodepools"], "verbs": ["list", "delete"]},
        {"apiGroups": ["karpenter.sh"], "resources": ["nodeclaims"], "verbs": ["list"]},
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": RBAC_NAME},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": RBAC_NAME},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RBAC_NAME},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": KUBERNETES_GROUP}],
        },
    ]


class KarpenterCleanup(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.Cluster,
        cluster_name: str,
        karpenter: Construct,
        job_timeout_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)
        role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Deletes Karpenter NodePools and waits for their nodes when the stack is deleted",
        )
        role.add_to_policy(iam.PolicyStatement(actions=["eks:DescribeCluster"], resources=[cluster.cluster_arn]))
        functions = {
            name: self._function(name, handler, role)
            for name, handler in (("OnEvent", "handler.on_event"), ("IsComplete", "handler.is_complete"))
        }
        access = eks.CfnAccessEntry(
            self,
            "Access",
            cluster_name=cluster.cluster_name,
            principal_arn=role.role_arn,
            kubernetes_groups=[KUBERNETES_GROUP],
            type="STANDARD",
        )
        rbac = cluster.add_manifest("KarpenterCleanupRbac", *rbac_manifests())
        wait = Duration.seconds(min(job_timeout_seconds + _TERMINATION_ALLOWANCE.to_seconds(), _MAX_WAIT.to_seconds()))
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=functions["OnEvent"],
            is_complete_handler=functions["IsComplete"],
            query_interval=Duration.seconds(30),
            total_timeout=wait,
            log_group=self._log_group("ProviderLogs"),
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::KarpenterCleanup",
            properties={"ClusterName": cluster_name, "Region": Aws.REGION},
        )
        # Deleted before Karpenter (it needs the controller to drain the nodes) and before its own access.
        self.resource.node.add_dependency(karpenter, access, rbac)
        self._acknowledge(provider, functions)
        checkov.skip(provider, checkov.LIBRARY_FUNCTION, resource_type="AWS::Lambda::Function")

    def _log_group(self, construct_id: str) -> logs.LogGroup:
        # Deleted with the stack: `cdk destroy` leaves nothing behind.
        group = logs.LogGroup(
            self, construct_id, retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        checkov.skip(group, checkov.LOG_GROUP)
        return group

    def _function(self, name: str, handler: str, role: iam.IRole) -> lambda_.Function:
        group = self._log_group(f"{name}Logs")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[f"{group.log_group_arn}:*"]
            )
        )
        function = lambda_.Function(
            self,
            name,
            runtime=lambda_.Runtime(f"python{LAMBDA_PYTHON}", lambda_.RuntimeFamily.PYTHON),
            architecture=LAMBDA_ARCHITECTURE,
            handler=handler,
            code=lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["__pycache__", "*.pyc"]),
            role=role,
            timeout=Duration.minutes(2),
            memory_size=256,
            log_group=group,
            description=f"Karpenter cleanup before uninstall ({name})",
        )
        checkov.skip(function, checkov.SYNC_FUNCTION | checkov.OUTSIDE_VPC)
        return function

    def _acknowledge(self, provider: cr.Provider, functions: dict[str, lambda_.Function]) -> None:
        stack = Stack.of(self)
        logs_reason = "Log streams of the handler's own log group get generated names."
        invoke_reason = (
            "The CDK provider framework invokes any version of these functions (Arn:*); its policies are the "
            "library's, not ours to narrow."
        )
        findings = {
            nag.wildcard_resource(f"{nag.render(stack, f.log_group.log_group_arn)}:*"): logs_reason
            for f in functions.values()
        }
        invoked = [
            *functions.values(),
            *(provider.node.find_child(f"framework-{n}") for n in ("isComplete", "onTimeout")),
        ]
        findings |= nag.same_reason(
            invoke_reason, *(nag.wildcard_resource(f"{nag.token(f, 'Arn')}:*") for f in invoked)
        )
        nag.acknowledge(self, findings)
        nag.acknowledge(
            provider,
            {
                nag.managed_policy("service-role/AWSLambdaBasicExecutionRole"): "Created by the CDK custom resource "
                "provider framework for its own functions; not ours to narrow.",
                "AwsSolutions-L1": "The provider framework's Lambda runtime is pinned by the CDK library.",
                "AwsSolutions-SF1": "The provider framework's waiter state machine logs through its functions.",
                "AwsSolutions-SF2": "The provider framework's waiter state machine is the library's; X-Ray adds "
                "nothing to a delete-time wait.",
            },
        )
