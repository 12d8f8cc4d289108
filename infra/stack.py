"""The one stack: composes the constructs of each concern and exports what a client needs."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra import naming
from infra.api import ApiInputs, TaskApi
from infra.cluster import Cluster
from infra.config import DeploymentConfig
from infra.lambda_bundle import LambdaSources
from infra.messaging import Messaging
from infra.network import Network
from infra.observability import Observability, ObservedResources
from infra.runtimes import Runtimes, SharedResources
from infra.storage import Storage
from infra.webhooks import WebhookSecret


class SdAsyncStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        lambda_sources: LambdaSources | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Asynchronous Stable Diffusion inference: API Gateway, SNS/SQS, EKS with KEDA and Karpenter",
            **kwargs,
        )
        for key, value in config.tags.items():
            Tags.of(self).add(key, value)
        self.config = config
        messaging = Messaging(self, "Messaging", config=config)
        storage = Storage(self, "Storage", config=config.outputs)
        api = TaskApi(
            self,
            "Api",
            inputs=ApiInputs(
                config=config,
                tasks_topic=messaging.tasks_topic,
                topic_key=messaging.key,
                output_bucket=storage.output_bucket,
                lambda_sources=lambda_sources,
                results_topic=messaging.results_topic,
                dead_letter_queues=tuple(q.dlq for q in messaging.queues),
            ),
        )
        network = Network(self, "Network", config=config.network, discovery_tag=naming.cluster_name(config.stack_name))
        cluster = Cluster(
            self,
            "Eks",
            config=config,
            vpc=network.vpc,
            scaled_queues=[q for rq in messaging.queues for q in rq.task_queues],
        )
        webhook_secret = WebhookSecret(self, "Webhooks", stack_name=config.stack_name)
        runtimes = Runtimes(
            self,
            "Runtimes",
            shared=SharedResources(
                config=config,
                cluster=cluster,
                results_topic=messaging.results_topic,
                topic_key=messaging.key,
                queue_key=messaging.queue_key,
                output_bucket=storage.output_bucket,
                status_table=api.table,
                webhook_secret=webhook_secret,
            ),
            queues=messaging.queues,
        )
        Observability(
            self,
            "Observability",
            observed=ObservedResources(
                config=config,
                key=messaging.key,
                queues=messaging.queues,
                topics={"tasks": messaging.tasks_topic, "results": messaging.results_topic},
                functions={**api.functions, **({"deadletters": api.dead_letters} if api.dead_letters else {})},
                api=api.api,
                application_log_group=cluster.application_log_group,
            ),
        )
        self.messaging, self.storage, self.api, self.cluster, self.runtimes = messaging, storage, api, cluster, runtimes
        self.webhook_secret = webhook_secret
        self._outputs()

    def _outputs(self) -> None:
        api, messaging = self.api, self.messaging
        outputs = {
            "ApiEndpoint": (api.api.url, "Base URL of the task API (POST v1alpha2 or tasks, GET/DELETE tasks/{id})"),
            "ApiKeyCommand": (
                f"aws apigateway get-api-key --api-key {api.api_key.key_id} --include-value "
                f"--query value --output text --region {self.region}",
                "Prints the API key (send it as the x-api-key header)",
            ),
            "TasksTopicArn": (messaging.tasks_topic.topic_arn, "Tasks are published here (attribute runtime)"),
            "ResultsTopicArn": (messaging.results_topic.topic_arn, "Subscribe here for completion notifications"),
            "OutputBucket": (self.storage.output_bucket.bucket_name, "Generated images and .out files"),
            "StatusTable": (api.table.table_name, "Task status records"),
            "ClusterName": (self.cluster.name, "EKS cluster"),
            "WebhookSecretCommand": (
                self.webhook_secret.command(),
                "Prints the secret that signs task webhooks (whsec_...); receivers verify signatures with it",
            ),
        }
        # The replaced sample's output names, which its scripts read: the same values under the old names.
        # FrontApiEndpoint has no trailing slash, so that its "{endpoint}/v1alpha2/" has no doubled slash.
        rest = api.api
        outputs |= {
            "FrontApiEndpoint": (
                f"https://{rest.rest_api_id}.execute-api.{self.region}.{self.url_suffix}/{self.config.apigw.stage_name}",
                "Base URL of the task API, without a trailing slash (the replaced sample's name)",
            ),
            "GetAPIKeyCommand": (outputs["ApiKeyCommand"][0], "Prints the API key (the replaced sample's name)"),
            "OutputS3Bucket": (
                outputs["OutputBucket"][0],
                "Generated images and .out files (the replaced sample's name)",
            ),
        }
        if self.config.api.keys:
            for name, key in api.api_keys.items():
                outputs[f"ApiKeyCommand{_pascal(name)}"] = (
                    f"aws apigateway get-api-key --api-key {key.key_id} --include-value "
                    f"--query value --output text --region {self.region}",
                    f"Prints the API key of tenant {name}",
                )
        if self.config.cluster_admin_role_arns:
            # Only the roles of clusterAdminRoleArns get Kubernetes access; without any, nobody would, so neither
            # kubectl output appears then.
            kubeconfig = f"aws eks update-kubeconfig --name {self.cluster.name} --region {self.region}"
            outputs["KubeconfigCommand"] = (
                kubeconfig,
                "Configures kubectl; works for the roles in clusterAdminRoleArns (assume one first)",
            )
            outputs["ConfigCommand"] = (kubeconfig, "Configures kubectl (the replaced sample's name)")
        for rq in messaging.queues:
            outputs[f"QueueUrl{_pascal(rq.runtime.name)}"] = (rq.queue.queue_url, f"Task queue of {rq.runtime.name}")
            outputs[f"HighQueueUrl{_pascal(rq.runtime.name)}"] = (
                rq.high_queue.queue_url,
                f"High-priority task queue of {rq.runtime.name} (metadata.priority: high)",
            )
            outputs[f"DlqUrl{_pascal(rq.runtime.name)}"] = (rq.dlq.queue_url, f"Dead-letter queue of {rq.runtime.name}")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))
