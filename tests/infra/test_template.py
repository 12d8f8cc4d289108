"""The same design, asserted with aws_cdk.assertions (Template + Match) on both synthesized configs."""

from __future__ import annotations

from aws_cdk.assertions import Match

from infra import naming
from infra.chart_values import needs_device_plugin
from infra.config import runtime_filter_policy
from tests.infra.conftest import Synth


def test_resource_counts_scale_with_runtimes(any_synth: Synth) -> None:
    template, runtimes = any_synth.assertions, len(any_synth.config.models_runtime)
    template.resource_count_is("AWS::SQS::Queue", 2 * runtimes + 1)
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
        template.has_resource_properties(
            "AWS::SQS::Queue",
            {
                "QueueName": naming.runtime_queue(cfg.stack_name, runtime.name),
                "VisibilityTimeout": cfg.queue.visibility_timeout,
                "RedrivePolicy": {
                    "maxReceiveCount": cfg.queue.max_receive_count,
                    "deadLetterTargetArn": Match.any_value(),
                },
            },
        )
        template.has_resource_properties(
            "AWS::SNS::Subscription",
            {
                "Protocol": "sqs",
                "RawMessageDelivery": True,
                "FilterPolicyScope": "MessageAttributes",
                "FilterPolicy": runtime_filter_policy(cfg, runtime),
            },
        )


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
    for runtime in cfg.models_runtime:
        queue_id = next(
            lid
            for lid, p in ((k, r["Properties"]) for k, r in any_synth.of_type("AWS::SQS::Queue").items())
            if p.get("QueueName") == naming.runtime_queue(cfg.stack_name, runtime.name)
        )
        template.has_resource_properties(
            "AWS::IAM::Policy",
            {
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Sid": "ConsumeOwnQueue",
                                    "Effect": "Allow",
                                    "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
                                }
                            )
                        ]
                    )
                }
            },
        )
