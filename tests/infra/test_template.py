"""The same design, asserted with aws_cdk.assertions (Template + Match) on both synthesized configs."""

from __future__ import annotations

from aws_cdk.assertions import Match

from infra import naming
from infra.chart_values import needs_device_plugin
from infra.config import runtime_filter_policy
from tests.infra.conftest import Synth


def test_resource_counts_scale_with_runtimes(any_synth: Synth) -> None:
    template, runtimes = any_synth.assertions, len(any_synth.config.models_runtime)
    # Per runtime a normal queue, a high-priority one and their shared DLQ; plus Karpenter's interruption queue.
    template.resource_count_is("AWS::SQS::Queue", 3 * runtimes + 1)
    template.resource_count_is("AWS::SecretsManager::Secret", 1)
    template.resource_count_is("AWS::EKS::PodIdentityAssociation", runtimes + 2)
    # Karpenter, KEDA, DCGM exporter, one release per runtime, and NVIDIA's device plugin where a runtime's nodes
    # are not Bottlerocket.
    plugin = int(needs_device_plugin(any_synth.config))
    template.resource_count_is("Custom::AWSCDK-EKS-HelmChart", runtimes + 3 + plugin)
    template.resource_count_is("AWS::EKS::Cluster", 1)
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    tenants = max(1, len(any_synth.config.api.keys))  # one key + usage plan per tenant, or the single default
    template.resource_count_is("AWS::ApiGateway::UsagePlan", tenants)
    template.resource_count_is("AWS::ApiGateway::ApiKey", tenants)
    # Ours (task API, dead-letter consumer, Karpenter cleanup), plus CDK-provided ones: kubectl handler and its
    # provider framework, the default-SG restrictor, the cleanup's provider framework (onEvent, isComplete, onTimeout).
    template.resource_count_is("AWS::Lambda::Function", 3 + 1 + 2 + 3 + 3)


def test_queues_redrive_and_subscriptions_filter(any_synth: Synth) -> None:
    cfg, template = any_synth.config, any_synth.assertions
    for runtime in cfg.models_runtime:
        dlq_name = naming.runtime_dlq(cfg.stack_name, runtime.name)
        (dlq_id,) = [lid for lid, p in _queue_props(any_synth) if p.get("QueueName") == dlq_name]
        # The high-priority queue is the normal one's twin: same settings, same dead-letter queue and policy.
        for name in (naming.runtime_queue, naming.runtime_high_queue):
            template.has_resource_properties(
                "AWS::SQS::Queue",
                {
                    "QueueName": name(cfg.stack_name, runtime.name),
                    "VisibilityTimeout": cfg.queue.visibility_timeout,
                    "MessageRetentionPeriod": cfg.queue.retention_days * 86400,
                    "ReceiveMessageWaitTimeSeconds": 20,
                    "RedrivePolicy": {
                        "maxReceiveCount": cfg.queue.max_receive_count,
                        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                    },
                },
            )
        for high in (False, True):
            template.has_resource_properties(
                "AWS::SNS::Subscription",
                {
                    "Protocol": "sqs",
                    "RawMessageDelivery": True,
                    "FilterPolicyScope": "MessageAttributes",
                    "FilterPolicy": runtime_filter_policy(cfg, runtime, high=high),
                },
            )


def _queue_props(synth: Synth) -> list[tuple[str, dict[str, object]]]:
    return [(lid, r["Properties"]) for lid, r in synth.of_type("AWS::SQS::Queue").items()]


def test_bucket_table_and_api(any_synth: Synth) -> None:
    cfg, template = any_synth.config, any_synth.assertions
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": Match.object_like({"ServerSideEncryptionConfiguration": Match.any_value()}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": Match.any_value(),
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )
    template.all_resources_properties("AWS::ApiGateway::Method", {"ApiKeyRequired": True})
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": cfg.apigw.throttle.rate_limit, "BurstLimit": cfg.apigw.throttle.burst_limit}},
    )
    template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": cfg.apigw.stage_name})
    for output in ("ApiEndpoint", "ApiKeyCommand", "TasksTopicArn", "ResultsTopicArn", "OutputBucket"):
        template.has_output(output, Match.any_value())


def test_runtime_role_statement(any_synth: Synth) -> None:
    cfg, template = any_synth.config, any_synth.assertions
    (secret_id,) = any_synth.of_type("AWS::SecretsManager::Secret")
    for runtime in cfg.models_runtime:
        names = (
            naming.runtime_queue(cfg.stack_name, runtime.name),
            naming.runtime_high_queue(cfg.stack_name, runtime.name),
        )
        queue_ids = [next(lid for lid, p in _queue_props(any_synth) if p.get("QueueName") == name) for name in names]
        # Its normal and high-priority queues (each in the one consume statement), and the webhook secret.
        expected = [
            {"Sid": "ConsumeOwnQueue", "Effect": "Allow", "Resource": Match.array_with([{"Fn::GetAtt": [lid, "Arn"]}])}
            for lid in queue_ids
        ]
        expected.append(
            {
                "Sid": "ReadWebhookSecret",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Ref": secret_id},
            }
        )
        for statement in expected:
            template.has_resource_properties(
                "AWS::IAM::Policy",
                {"PolicyDocument": {"Statement": Match.array_with([Match.object_like(statement)])}},
            )


def test_webhook_secret_and_its_command(any_synth: Synth) -> None:
    template = any_synth.assertions
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": {"PasswordLength": 40, "ExcludePunctuation": True, "IncludeSpace": False},
            "Description": Match.string_like_regexp(any_synth.config.stack_name),
        },
    )
    (secret_id,) = any_synth.of_type("AWS::SecretsManager::Secret")
    template.has_output(
        "WebhookSecretCommand",
        {
            "Value": {
                "Fn::Join": [
                    "",
                    [
                        "echo whsec_$(aws secretsmanager get-secret-value --secret-id ",
                        {"Ref": secret_id},
                        " --query SecretString --output text --region ",
                        {"Ref": "AWS::Region"},
                        ")",
                    ],
                ]
            },
            "Description": Match.string_like_regexp("whsec_"),
        },
    )
