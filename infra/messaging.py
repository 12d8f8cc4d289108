"""Tasks topic -> two queues (normal, high priority) and one DLQ per runtime, filtered on the `runtime` attribute
(`runtime_high` for high-priority tasks); results topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import checkov, naming
from infra.config import DeploymentConfig, RuntimeConfig, runtime_filter_policy


@dataclass(frozen=True)
class RuntimeQueue:
    runtime: RuntimeConfig
    queue: sqs.Queue
    # High-priority tasks (published with the attribute runtime_high); the agent reads it before ``queue``.
    high_queue: sqs.Queue
    dlq: sqs.Queue
    subscription: sns.Subscription
    high_subscription: sns.Subscription

    @property
    def task_queues(self) -> tuple[sqs.Queue, sqs.Queue]:
        """The queues the runtime consumes (and KEDA scales on): normal, then high priority."""
        return (self.queue, self.high_queue)


class Messaging(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        stack = config.stack_name
        # SNS encrypts only with KMS; a customer-managed key (rather than aws/sns) lets CloudWatch alarms and
        # the results topic's subscribers be granted use of it explicitly.
        self.key = kms.Key(
            self,
            "Key",
            description=f"{stack}: SNS topics (tasks, results, alarms)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # SNS decrypts what publishers wrote and encrypts again for encrypted SQS subscribers; CloudWatch
        # publishes alarm notifications to the (encrypted) alarm topic. Each service may use the key only on behalf
        # of this account's own resources (no confused deputy): this stack's topics, this account's alarms.
        here = Stack.of(self)
        for service, source_arn in (
            ("sns", f"arn:{here.partition}:sns:{here.region}:{here.account}:{stack}-*"),
            ("cloudwatch", f"arn:{here.partition}:cloudwatch:{here.region}:{here.account}:alarm:*"),
        ):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"{service.capitalize()}UsesTopicKey",
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    principals=[iam.ServicePrincipal(f"{service}.amazonaws.com")],
                    resources=["*"],  # a key policy's resource is always the key itself
                    conditions={
                        "StringEquals": {"aws:SourceAccount": here.account},
                        "ArnLike": {"aws:SourceArn": source_arn},
                    },
                )
            )
        # Queues get their own key: SNS's grant on a queue key names the topic, and a topic encrypted with that
        # same key would make the key and the topic depend on each other.
        self.queue_key: kms.Key | None = None
        if config.queue.kms_encryption:
            self.queue_key = kms.Key(
                self,
                "QueueKey",
                description=f"{stack}: runtime task queues and their dead-letter queues",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.DESTROY,
            )
        self.tasks_topic = sns.Topic(
            self, "TasksTopic", topic_name=naming.tasks_topic(stack), master_key=self.key, enforce_ssl=True
        )
        self.results_topic = sns.Topic(
            self, "ResultsTopic", topic_name=naming.results_topic(stack), master_key=self.key, enforce_ssl=True
        )
        self.queues = [self._runtime_queue(config, runtime) for runtime in config.models_runtime]

    def _encryption(self) -> dict[str, object]:
        if self.queue_key is not None:
            return {"encryption": sqs.QueueEncryption.KMS, "encryption_master_key": self.queue_key}
        return {"encryption": sqs.QueueEncryption.SQS_MANAGED}

    def _runtime_queue(self, config: DeploymentConfig, runtime: RuntimeConfig) -> RuntimeQueue:
        stack = config.stack_name
        scope = Construct(self, f"Runtime-{runtime.name}")
        encryption = self._encryption()
        dlq = sqs.Queue(
            scope,
            "Dlq",
            queue_name=naming.runtime_dlq(stack, runtime.name),
            retention_period=Duration.days(config.queue.dlq_retention_days),
            enforce_ssl=True,
            **encryption,  # type: ignore[arg-type]
        )
        # Both task queues share the settings and the dead-letter queue: a task exhausts its receives the same way
        # whatever its priority, and one DLQ consumer settles it.
        queues = {
            high: sqs.Queue(
                scope,
                "HighQueue" if high else "Queue",
                queue_name=(naming.runtime_high_queue if high else naming.runtime_queue)(stack, runtime.name),
                visibility_timeout=Duration.seconds(config.queue.visibility_timeout),
                retention_period=Duration.days(config.queue.retention_days),
                # Long polling by default: an idle fleet costs fewer empty receives.
                receive_message_wait_time=Duration.seconds(20),
                dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=config.queue.max_receive_count, queue=dlq),
                enforce_ssl=True,
                **encryption,  # type: ignore[arg-type]
            )
            for high in (False, True)
        }
        if self.queue_key is None:
            for q in (*queues.values(), dlq):
                checkov.skip(
                    q,
                    {
                        "CKV_AWS_27": "Encrypted with SQS-managed SSE (SqsManagedSseEnabled), which this check does "
                        "not recognise; queue.kmsEncryption switches to a customer key.",
                    },
                )
        subscriptions = {high: self._subscribe(config, runtime, queue, high=high) for high, queue in queues.items()}
        return RuntimeQueue(
            runtime=runtime,
            queue=queues[False],
            high_queue=queues[True],
            dlq=dlq,
            subscription=subscriptions[False],
            high_subscription=subscriptions[True],
        )

    def _subscribe(
        self, config: DeploymentConfig, runtime: RuntimeConfig, queue: sqs.Queue, *, high: bool
    ) -> sns.Subscription:
        # SqsSubscription also writes the queue policy letting this topic (only) send to the queue, and, with a
        # customer key, lets SNS use that key.
        subscription = self.tasks_topic.add_subscription(subs.SqsSubscription(queue, raw_message_delivery=True))
        # The L2 filter type cannot express the sample's `$or` legacy routing, so the policy is set on the
        # CloudFormation resource directly; the same code path serves the plain filters of both queues.
        cfn = subscription.node.default_child
        assert isinstance(cfn, sns.CfnSubscription)
        cfn.filter_policy = runtime_filter_policy(config, runtime, high=high)
        cfn.filter_policy_scope = "MessageAttributes"
        return subscription
