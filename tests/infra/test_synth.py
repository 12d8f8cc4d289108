"""Assertions on the synthesized template: every resource the design asks for, wired as the config says."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra import naming, versions
from infra.config import runtime_filter_policy, runtime_names
from tests.infra.cfn import as_list, flat, helm_values, refers_to, statements
from tests.infra.conftest import Synth

DATA_TYPES = ("AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::S3::Bucket", "AWS::DynamoDB::Table")


def logical_id_of(synth: Synth, type_name: str, **properties: Any) -> str:
    matches = [
        lid
        for lid, res in synth.of_type(type_name).items()
        if all(res.get("Properties", {}).get(k) == v for k, v in properties.items())
    ]
    assert len(matches) == 1, f"{type_name} {properties}: {matches}"
    return matches[0]


def queue_ids(synth: Synth, runtime: str) -> tuple[str, str]:
    stack = synth.config.stack_name
    return (
        logical_id_of(synth, "AWS::SQS::Queue", QueueName=naming.runtime_queue(stack, runtime)),
        logical_id_of(synth, "AWS::SQS::Queue", QueueName=naming.runtime_dlq(stack, runtime)),
    )


def high_queue_id(synth: Synth, runtime: str) -> str:
    return logical_id_of(
        synth, "AWS::SQS::Queue", QueueName=naming.runtime_high_queue(synth.config.stack_name, runtime)
    )


def webhook_secret_id(synth: Synth) -> str:
    (lid,) = synth.of_type("AWS::SecretsManager::Secret")
    return lid


def policy_statements(synth: Synth) -> list[tuple[str, dict[str, Any]]]:
    """(owner logical id, statement) for every identity policy: AWS::IAM::Policy and inline role policies."""
    found = []
    for lid, res in synth.resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Policy":
            found += [(lid, s) for s in statements(props["PolicyDocument"])]
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                found += [(lid, s) for s in statements(policy["PolicyDocument"])]
    return found


def role_statements(synth: Synth, role_id: str) -> list[dict[str, Any]]:
    found = []
    for res in synth.of_type("AWS::IAM::Policy").values():
        if any(refers_to(r, role_id) for r in res["Properties"].get("Roles", [])):
            found += list(statements(res["Properties"]["PolicyDocument"]))
    return found


def helm_releases(synth: Synth) -> dict[str, dict[str, Any]]:
    return {p["Release"]: p for p in synth.props("Custom::AWSCDK-EKS-HelmChart")}


# -- network --------------------------------------------------------------------------------------------------


def test_network_one_nat_by_default_and_s3_gateway_endpoint(default_synth: Synth, two_synth: Synth) -> None:
    assert len(default_synth.of_type("AWS::EC2::NatGateway")) == 1
    assert len(two_synth.of_type("AWS::EC2::NatGateway")) == 2  # network.natGateways: 2
    (endpoint,) = default_synth.props("AWS::EC2::VPCEndpoint")
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert ".s3" in flat(endpoint["ServiceName"])
    assert len(default_synth.of_type("AWS::EC2::FlowLog")) == 1
    cluster = naming.cluster_name(default_synth.config.stack_name)
    private = [
        p
        for p in default_synth.props("AWS::EC2::Subnet")
        if {"Key": "aws-cdk:subnet-type", "Value": "Private"} in p.get("Tags", [])
    ]
    assert len(private) == 2
    for subnet in private:
        assert {"Key": "karpenter.sh/discovery", "Value": cluster} in subnet["Tags"]


# -- messaging ------------------------------------------------------------------------------------------------


def test_topics_are_named_encrypted_and_tls_only(any_synth: Synth) -> None:
    stack = any_synth.config.stack_name
    (key_id,) = [lid for lid in any_synth.of_type("AWS::KMS::Key") if lid.startswith("MessagingKey")]
    for name in (naming.tasks_topic(stack), naming.results_topic(stack), naming.alarms_topic(stack)):
        topic_id = logical_id_of(any_synth, "AWS::SNS::Topic", TopicName=name)
        assert refers_to(any_synth.resources[topic_id]["Properties"]["KmsMasterKeyId"], key_id)
        policies = [p for p in any_synth.props("AWS::SNS::TopicPolicy") if refers_to(p["Topics"], topic_id)]
        denies = [s for p in policies for s in statements(p["PolicyDocument"]) if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
    key = any_synth.resources[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    # SNS and CloudWatch (alarm notifications) may use the key; nothing else is granted by service principal.
    services = {
        principal
        for s in statements(key["KeyPolicy"])
        for principal in as_list(s.get("Principal", {}).get("Service", []))
    }
    assert services == {"sns.amazonaws.com", "cloudwatch.amazonaws.com"}
    # Each only for this account's own resources (no confused deputy): this stack's topics, this account's alarms.
    for s in statements(key["KeyPolicy"]):
        service = s.get("Principal", {}).get("Service")
        if service is None:
            continue
        condition = s["Condition"]
        assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        source_arn = json.dumps(condition["ArnLike"]["aws:SourceArn"])
        assert "AWS::AccountId" in source_arn and "AWS::Region" in source_arn
        if service == "sns.amazonaws.com":
            assert ":sns:" in source_arn and f"{stack}-*" in source_arn
        else:
            assert ":cloudwatch:" in source_arn and ":alarm:*" in source_arn


def test_two_task_queues_and_one_dlq_per_runtime(any_synth: Synth) -> None:
    cfg = any_synth.config
    names = runtime_names(cfg)
    # Normal and high-priority queues and their DLQ, plus Karpenter's interruption queue.
    assert len(any_synth.of_type("AWS::SQS::Queue")) == 3 * len(names) + 1
    for runtime in names:
        queue_id, dlq_id = queue_ids(any_synth, runtime)
        queue = any_synth.resources[queue_id]["Properties"]
        assert queue["VisibilityTimeout"] == cfg.queue.visibility_timeout
        assert queue["MessageRetentionPeriod"] == cfg.queue.retention_days * 86400
        assert queue["RedrivePolicy"]["maxReceiveCount"] == cfg.queue.max_receive_count
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
        # The high-priority queue differs from the normal one in its name only: same settings, encryption and
        # dead-letter redrive (same DLQ, same receive count).
        high = any_synth.resources[high_queue_id(any_synth, runtime)]["Properties"]
        assert {k: v for k, v in high.items() if k != "QueueName"} == {
            k: v for k, v in queue.items() if k != "QueueName"
        }
        dlq = any_synth.resources[dlq_id]["Properties"]
        assert dlq["MessageRetentionPeriod"] == cfg.queue.dlq_retention_days * 86400
        for props in (queue, high, dlq):
            if cfg.queue.kms_encryption:
                (queue_key,) = [
                    lid for lid in any_synth.of_type("AWS::KMS::Key") if lid.startswith("MessagingQueueKey")
                ]
                assert refers_to(props["KmsMasterKeyId"], queue_key)
            else:
                assert props["SqsManagedSseEnabled"] is True


def test_two_runtime_config_has_two_runtime_queues(two_synth: Synth) -> None:
    stack = two_synth.config.stack_name
    names = {p["QueueName"] for p in two_synth.props("AWS::SQS::Queue")}
    assert names == {
        "sdtwo-fast-queue",
        "sdtwo-fast-high",
        "sdtwo-fast-dlq",
        "sdtwo-webui-queue",
        "sdtwo-webui-high",
        "sdtwo-webui-dlq",
        naming.karpenter_interruption_queue(stack),
    }


def test_subscriptions_filter_on_runtime_and_priority_with_raw_delivery(any_synth: Synth) -> None:
    cfg = any_synth.config
    tasks_id = logical_id_of(any_synth, "AWS::SNS::Topic", TopicName=naming.tasks_topic(cfg.stack_name))
    subs = any_synth.props("AWS::SNS::Subscription")
    sqs_subs = [s for s in subs if s["Protocol"] == "sqs"]
    assert len(sqs_subs) == 2 * len(cfg.models_runtime)
    for runtime in cfg.models_runtime:
        normal_id, _ = queue_ids(any_synth, runtime.name)
        for queue_id, high in ((normal_id, False), (high_queue_id(any_synth, runtime.name), True)):
            (sub,) = [s for s in sqs_subs if refers_to(s["Endpoint"], queue_id)]
            assert refers_to(sub["TopicArn"], tasks_id)
            assert sub["RawMessageDelivery"] is True
            assert sub["FilterPolicyScope"] == "MessageAttributes"
            assert sub["FilterPolicy"] == runtime_filter_policy(cfg, runtime, high=high)
            # Only the tasks topic may send to the queue, and only over its own subscription.
            (policy,) = [p for p in any_synth.props("AWS::SQS::QueuePolicy") if refers_to(p["Queues"], queue_id)]
            allows = [s for s in statements(policy["PolicyDocument"]) if s["Effect"] == "Allow"]
            assert len(allows) == 1
            assert allows[0]["Action"] == "sqs:SendMessage"
            assert allows[0]["Principal"] == {"Service": "sns.amazonaws.com"}
            assert refers_to(allows[0]["Condition"]["ArnEquals"]["aws:SourceArn"], tasks_id)


def test_priority_splits_a_runtime_s_tasks_between_its_queues(two_synth: Synth) -> None:
    """High-priority tasks carry the attribute runtime_high instead of runtime, so the high queue gets them alone and
    the normal queue's filter is what it always was (with the legacy model route as an `$or`)."""
    policies = [s["FilterPolicy"] for s in two_synth.props("AWS::SNS::Subscription") if "FilterPolicy" in s]
    assert sorted(policies, key=json.dumps) == sorted(
        [
            {"runtime": ["fast"]},
            {"runtime_high": ["fast"]},
            {"$or": [{"runtime": ["webui"]}, {"sd_model_checkpoint": ["v1-5-pruned-emaonly.safetensors"]}]},
            {"runtime_high": ["webui"]},
        ],
        key=json.dumps,
    )


# -- storage --------------------------------------------------------------------------------------------------


def output_bucket_id(synth: Synth) -> str:
    (lid,) = [lid for lid in synth.of_type("AWS::S3::Bucket") if lid.startswith("StorageOutputs")]
    return lid


def test_output_bucket_encrypted_tls_only_private_and_logged(any_synth: Synth) -> None:
    bucket_id = output_bucket_id(any_synth)
    template = Template.from_json({"Resources": {bucket_id: any_synth.resources[bucket_id]}})
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "outputs/"},
        },
    )
    (policy,) = [p for p in any_synth.props("AWS::S3::BucketPolicy") if refers_to(p["Bucket"], bucket_id)]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements(policy["PolicyDocument"])
    )
    assert any_synth.resources[bucket_id]["DeletionPolicy"] == "Retain"


def test_outputs_expire_with_their_status_records(default_synth: Synth, two_synth: Synth) -> None:
    def rules(synth: Synth) -> list[dict[str, Any]]:
        return synth.resources[output_bucket_id(synth)]["Properties"]["LifecycleConfiguration"]["Rules"]

    # Default: the record TTL (30 days); the two-runtime config sets a shorter expiry (7 of its 10 days).
    expiry = {"Id": "ResultsExpireWithRecords", "Status": "Enabled"}
    assert {**expiry, "ExpirationInDays": default_synth.config.outputs.status_ttl_days} in rules(default_synth)
    assert {**expiry, "ExpirationInDays": 7} in rules(two_synth)
    assert any("AbortIncompleteMultipartUpload" in r for r in rules(default_synth))


# -- API ------------------------------------------------------------------------------------------------------


def test_status_table(any_synth: Synth) -> None:
    (table,) = any_synth.props("AWS::DynamoDB::Table")
    assert table["TableName"] == naming.status_table(any_synth.config.stack_name)
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["BillingMode"] == "PAY_PER_REQUEST"


def function_ids(synth: Synth) -> dict[str, str]:
    found = {}
    for lid, res in synth.of_type("AWS::Lambda::Function").items():
        handler = res["Properties"].get("Handler", "")
        if handler.startswith("task_api."):
            found[handler.split(".")[1]] = lid
    return found


def test_routes_require_api_keys_and_reach_their_functions(any_synth: Synth) -> None:
    functions = function_ids(any_synth)
    resources = {lid: p for lid, p in any_synth.of_type("AWS::ApiGateway::Resource").items()}

    def path_of(resource: Any) -> str:
        parts = []
        while isinstance(resource, dict) and "Ref" in resource and resource["Ref"] in resources:
            props = resources[resource["Ref"]]["Properties"]
            parts.append(props["PathPart"])
            resource = props["ParentId"]
        return "/" + "/".join(reversed(parts))

    routes = {}
    for method in any_synth.props("AWS::ApiGateway::Method"):
        assert method["ApiKeyRequired"] is True
        target = next(name for name, lid in functions.items() if refers_to(method["Integration"]["Uri"], lid))
        routes[(method["HttpMethod"], path_of(method["ResourceId"]))] = target
    assert routes == {
        ("POST", "/v1alpha2"): "submit",
        ("POST", "/v1alpha1"): "submit",
        ("POST", "/tasks"): "submit",
        ("GET", "/tasks/{id}"): "status",
        ("DELETE", "/tasks/{id}"): "cancel",
    }


def test_stage_usage_plan_and_key_follow_the_config(any_synth: Synth) -> None:
    cfg = any_synth.config
    (stage,) = any_synth.props("AWS::ApiGateway::Stage")
    assert stage["StageName"] == cfg.apigw.stage_name
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    # The access log format never includes the API key header or the request body.
    assert "x-api-key" not in stage["AccessLogSetting"]["Format"].lower()
    assert "$context.requestId" in stage["AccessLogSetting"]["Format"]
    plans = any_synth.props("AWS::ApiGateway::UsagePlan")
    keys = any_synth.props("AWS::ApiGateway::ApiKey")
    if not cfg.api.keys:
        (plan,) = plans
        assert plan["Throttle"] == {
            "RateLimit": cfg.apigw.throttle.rate_limit,
            "BurstLimit": cfg.apigw.throttle.burst_limit,
        }
        (key,) = keys
        assert key.get("Name") == cfg.api.key_name  # None (generated) unless api.keyName is set
    else:
        # One key and one usage plan per tenant; a tenant without its own throttle gets APIGW.throttle.
        assert sorted(k["Name"] for k in keys) == [f"{cfg.stack_name}-{t.name}" for t in cfg.api.keys]
        by_name = {p["UsagePlanName"]: p for p in plans}
        assert by_name["sdtwo-team-a"]["Throttle"] == {"RateLimit": 5, "BurstLimit": 10}
        assert by_name["sdtwo-team-a"]["Quota"] == {"Limit": 1000, "Period": "DAY"}
        assert by_name["sdtwo-team-b"]["Throttle"]["RateLimit"] == cfg.apigw.throttle.rate_limit
        assert "Quota" not in by_name["sdtwo-team-b"]
    plan_keys = any_synth.props("AWS::ApiGateway::UsagePlanKey")
    assert len(plan_keys) == len(keys) and {p["KeyType"] for p in plan_keys} == {"API_KEY"}
    responses = {p["ResponseType"]: p for p in any_synth.props("AWS::ApiGateway::GatewayResponse")}
    template = json.loads(
        responses["DEFAULT_4XX"]["ResponseTemplates"]["application/json"].replace(
            "$context.error.messageString", '"msg"'
        )
    )
    assert template == {"error": {"code": "client_error", "message": "msg", "fields": []}}


def test_task_functions(any_synth: Synth) -> None:
    cfg = any_synth.config
    functions = function_ids(any_synth)
    assert set(functions) == {"submit", "status", "cancel", "dead_letters"}
    code_keys = {flat(any_synth.resources[functions.pop("dead_letters")]["Properties"]["Code"]["S3Key"])}
    for name, lid in functions.items():
        props = any_synth.resources[lid]["Properties"]
        assert props["Handler"] == f"task_api.{name}.handler"
        assert props["Runtime"] == f"python{versions.LAMBDA_PYTHON}"
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert env["RUNTIMES"] == ",".join(runtime_names(cfg))
        assert env["STATUS_TTL_DAYS"] == str(cfg.outputs.status_ttl_days)
        assert env["INPUT_BUCKETS"] == ",".join(cfg.input_buckets)
        assert {"TASKS_TOPIC_ARN", "STATUS_TABLE", "OUTPUT_BUCKET"} <= set(env)
        code_keys.add(flat(props["Code"]["S3Key"]))
    assert len(code_keys) == 1, "the task functions and the dead-letter consumer share one asset"


def test_one_dead_letter_consumer_fed_by_every_dlq(any_synth: Synth) -> None:
    lid = function_ids(any_synth)["dead_letters"]
    env = any_synth.resources[lid]["Properties"]["Environment"]["Variables"]
    assert {"STATUS_TABLE", "RESULTS_TOPIC_ARN", "OUTPUT_BUCKET"} == set(env)
    mappings = any_synth.props("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == len(any_synth.config.models_runtime)
    for runtime in any_synth.config.models_runtime:
        _, dlq_id = queue_ids(any_synth, runtime.name)
        [mapping] = [m for m in mappings if m["EventSourceArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}]
        assert mapping["FunctionName"] == {"Ref": lid}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    role = next(r for r in any_synth.of_type("AWS::IAM::Role") if r.startswith("ApiDeadlettersRole"))
    actions = {a for s in role_statements(any_synth, role) for a in as_list(s["Action"])}
    assert "s3:PutObject" in actions and "sns:Publish" in actions and "dynamodb:UpdateItem" in actions
    assert not actions & {"dynamodb:PutItem", "dynamodb:DeleteItem", "s3:GetObject", "s3:DeleteObject"}


def test_lambda_asset_bundles_sources_and_platform_wheels(default_synth: Synth) -> None:
    code = default_synth.resources[function_ids(default_synth)["submit"]]["Properties"]["Code"]
    asset_hash = flat(code["S3Key"]).removesuffix(".zip")
    manifest = json.loads((default_synth.outdir / f"{default_synth.stack.artifact_id}.assets.json").read_text())
    bundle = default_synth.outdir / manifest["files"][asset_hash]["source"]["path"]
    assert (bundle / "task_api" / "submit.py").is_file()
    assert (bundle / "contract" / "request.py").is_file()
    assert (bundle / "aws_lambda_powertools").is_dir()
    cores = list((bundle / "pydantic_core").glob("_pydantic_core.cpython-*-aarch64-linux-gnu.so"))
    assert len(cores) == 1, "pydantic-core must be the Lambda platform's (arm64) build"
    # boto3/botocore come from the Lambda runtime; a bundled copy would shadow it with a mismatched version.
    assert not (bundle / "botocore").exists() and not (bundle / "boto3").exists()
    assert not list(bundle.rglob("__pycache__"))


# -- IAM ------------------------------------------------------------------------------------------------------


def test_no_wildcard_actions_anywhere_on_data_resources(any_synth: Synth) -> None:
    data_ids = [lid for t in DATA_TYPES for lid in any_synth.of_type(t)]
    checked = 0
    for owner, statement in policy_statements(any_synth):
        actions = as_list(statement.get("Action", []))
        assert "*" not in actions, owner
        assert not any(re.fullmatch(r"[a-z0-9-]+:\*", a) for a in actions), (owner, actions)
        resources = as_list(statement.get("Resource", []))
        if any(refers_to(r, lid) for r in resources for lid in data_ids):
            checked += 1
            assert not any("*" in a for a in actions), (owner, actions)
    assert checked >= 8


def test_runtime_roles_touch_only_their_own_queue(any_synth: Synth) -> None:
    cfg = any_synth.config
    queues = {r.name: queue_ids(any_synth, r.name)[0] for r in cfg.models_runtime}
    for runtime in cfg.models_runtime:
        (role_id,) = [
            lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith(f"RuntimesRole{runtime.name}")
        ]
        granted = role_statements(any_synth, role_id)
        sqs = [s for s in granted if any(a.startswith("sqs:") for a in as_list(s["Action"]))]
        assert len(sqs) == 1
        assert sorted(as_list(sqs[0]["Action"])) == sorted(
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ]
        )
        # Its normal queue and its high-priority one, nothing else.
        assert len(as_list(sqs[0]["Resource"])) == 2
        assert refers_to(sqs[0]["Resource"], queues[runtime.name])
        assert refers_to(sqs[0]["Resource"], high_queue_id(any_synth, runtime.name))
        # The webhook secret: its value, of that one secret.
        (secret,) = [s for s in granted if any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))]
        assert secret["Action"] == "secretsmanager:GetSecretValue"
        assert secret["Resource"] == {"Ref": webhook_secret_id(any_synth)}
        for other, other_id in queues.items():
            if other != runtime.name:
                assert not any(refers_to(s, other_id) for s in granted), f"{runtime.name} may touch {other}"
        actions = {a for s in granted for a in as_list(s["Action"])}
        assert {"sns:Publish", "s3:PutObject", "dynamodb:UpdateItem", "dynamodb:PutItem", "s3:ListBucket"} <= actions
        assert not actions & {"dynamodb:DeleteItem", "dynamodb:Scan", "s3:DeleteObject", "sqs:SendMessage"}
        model_reads = [s for s in granted if s["Action"] == "s3:GetObject" and "Sid" in s and s["Sid"] == "ReadModels"]
        assert model_reads[0]["Resource"] == f"{cfg.model_bucket_arn}/*"


def test_lambda_roles_are_least_privilege(any_synth: Synth) -> None:
    roles = {
        name: next(lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith(f"Api{name.capitalize()}Role"))
        for name in ("submit", "status", "cancel")
    }
    actions = {
        name: {a for s in role_statements(any_synth, lid) for a in as_list(s["Action"])} for name, lid in roles.items()
    }
    assert "sns:Publish" in actions["submit"] and "dynamodb:PutItem" in actions["submit"]
    assert "sns:Publish" not in actions["status"] | actions["cancel"]
    assert not actions["status"] & {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    # status presigns result URLs; submit heads a result named as an input (its nonce says whose it is).
    assert "s3:GetObject" in actions["status"] and "s3:GetObject" in actions["submit"]
    assert "s3:GetObject" not in actions["cancel"] and "s3:PutObject" not in actions["submit"] | actions["status"]
    assert "dynamodb:UpdateItem" in actions["cancel"] and "dynamodb:PutItem" not in actions["cancel"]
    assert "dynamodb:DeleteItem" in actions["submit"]
    assert "dynamodb:DeleteItem" not in actions["status"] | actions["cancel"]
    # No AWS managed policy (AWSLambdaBasicExecutionRole would allow writing to any log group).
    for lid in roles.values():
        assert "ManagedPolicyArns" not in any_synth.resources[lid]["Properties"]


def test_pod_identity_associations_and_trust(any_synth: Synth) -> None:
    cfg = any_synth.config
    associations = {
        (p["Namespace"], p["ServiceAccount"]): p for p in any_synth.props("AWS::EKS::PodIdentityAssociation")
    }
    expected = {("kube-system", "karpenter"), ("keda", "keda-operator")}
    expected |= {(r.namespace, naming.runtime_service_account(r.name)) for r in cfg.models_runtime}
    assert set(associations) == expected
    addons = {p["AddonName"]: p for p in any_synth.props("AWS::EKS::Addon")}
    assert addons["aws-mountpoint-s3-csi-driver"]["PodIdentityAssociations"][0]["ServiceAccount"] == "s3-csi-driver-sa"
    assert (
        addons["amazon-cloudwatch-observability"]["PodIdentityAssociations"][0]["ServiceAccount"] == "cloudwatch-agent"
    )
    role_arns = [p["RoleArn"] for p in associations.values()]
    role_arns += [a["PodIdentityAssociations"][0]["RoleArn"] for a in addons.values() if "PodIdentityAssociations" in a]
    for role_arn in role_arns:
        role = any_synth.resources[role_arn["Fn::GetAtt"][0]]["Properties"]
        (trust,) = list(statements(role["AssumeRolePolicyDocument"]))
        assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert sorted(as_list(trust["Action"])) == ["sts:AssumeRole", "sts:TagSession"]


# -- cluster --------------------------------------------------------------------------------------------------


def test_cluster_version_logging_encryption_and_system_nodes(any_synth: Synth) -> None:
    cfg = any_synth.config
    (cluster,) = any_synth.props("AWS::EKS::Cluster")
    assert cluster["Version"] == cfg.kubernetes_version == "1.35"
    assert cluster["Name"] == naming.cluster_name(cfg.stack_name)
    assert len(cluster["Logging"]["ClusterLogging"]["EnabledTypes"]) == 5
    assert cluster["EncryptionConfig"][0]["Resources"] == ["secrets"]
    assert cluster["AccessConfig"]["AuthenticationMode"] == "API"
    (nodes,) = any_synth.props("AWS::EKS::Nodegroup")
    count = cfg.cluster_components.desired_count
    assert nodes["ScalingConfig"] == {"DesiredSize": count, "MaxSize": count, "MinSize": count}
    assert nodes["InstanceTypes"] == [cfg.cluster_components.instance_type]
    assert nodes["AmiType"] == ("AL2023_ARM_64_STANDARD" if cfg.cluster_components.is_arm else "AL2023_x86_64_STANDARD")
    # The kubectl layer matches the control plane version.
    layers = [p for p in any_synth.props("AWS::Lambda::LayerVersion") if "kubectl" in p.get("Description", "").lower()]
    assert layers and all("v1.35" in p["Description"] or "1.35" in p["Description"] for p in layers)


def test_cluster_addons(any_synth: Synth) -> None:
    addons = {p["AddonName"] for p in any_synth.props("AWS::EKS::Addon")}
    assert addons == {
        "eks-pod-identity-agent",
        "aws-mountpoint-s3-csi-driver",
        "amazon-cloudwatch-observability",
        "vpc-cni",
    }
    # Network policies (the chart's default one keeps other pods off the runtime) are enforced.
    cni = next(p for p in any_synth.props("AWS::EKS::Addon") if p["AddonName"] == "vpc-cni")
    assert json.loads(cni["ConfigurationValues"]) == {"enableNetworkPolicy": "true"}
    (csi_role_id,) = [lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith("EksS3CsiDriverRole")]
    granted = role_statements(any_synth, csi_role_id)
    bucket = any_synth.config.model_bucket_arn
    assert {(s["Action"], s["Resource"]) for s in granted} == {
        ("s3:ListBucket", bucket),
        ("s3:GetObject", f"{bucket}/*"),
    }
    cw = next(p for p in any_synth.props("AWS::EKS::Addon") if p["AddonName"] == "amazon-cloudwatch-observability")
    config = json.loads(cw["ConfigurationValues"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in config["tolerations"]


def test_karpenter_with_interruption_handling(any_synth: Synth) -> None:
    stack = any_synth.config.stack_name
    release = helm_releases(any_synth)["karpenter"]
    assert release["Repository"] == versions.KARPENTER_CHART
    assert release["Version"] == versions.KARPENTER_VERSION
    queue_id = logical_id_of(any_synth, "AWS::SQS::Queue", QueueName=naming.karpenter_interruption_queue(stack))
    values = helm_values(release)
    assert values["settings"] == {
        "clusterName": naming.cluster_name(stack),
        "interruptionQueue": f"${{{queue_id}.QueueName}}",
    }
    rules = any_synth.props("AWS::Events::Rule")
    detail_types = {t for r in rules for t in r["EventPattern"]["detail-type"]}
    assert detail_types == {
        "AWS Health Event",
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
    }
    assert all(refers_to(r["Targets"], queue_id) for r in rules)
    (node_role_id,) = [lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith("EksKarpenterNodeRole")]
    # The EC2NodeClass names the role; Karpenter creates the instance profiles itself.
    assert not any_synth.props("AWS::IAM::InstanceProfile")
    entries = [p for p in any_synth.props("AWS::EKS::AccessEntry") if p.get("Type") == "EC2_LINUX"]
    assert len(entries) == 1 and refers_to(entries[0]["PrincipalArn"], node_role_id)
    (controller_id,) = [
        lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith("EksKarpenterControllerRole")
    ]
    granted = role_statements(any_synth, controller_id)
    (pass_role,) = [s for s in granted if s["Action"] == "iam:PassRole"]
    assert refers_to(pass_role["Resource"], node_role_id)
    launches = [s for s in granted if "ec2:RunInstances" in as_list(s["Action"]) and "Condition" in s]
    assert launches and all("owned" in json.dumps(s["Condition"]) for s in launches)


def test_keda_and_dcgm_exporter(any_synth: Synth) -> None:
    releases = helm_releases(any_synth)
    assert releases["keda"]["Repository"] == versions.KEDA_REPOSITORY
    assert releases["keda"]["Version"] == versions.KEDA_VERSION
    dcgm = releases["dcgm-exporter"]
    assert dcgm["Repository"] == versions.DCGM_EXPORTER_REPOSITORY
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in helm_values(dcgm)["tolerations"]
    (keda_role,) = [lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith("EksKedaOperatorRole")]
    (statement,) = role_statements(any_synth, keda_role)
    assert statement["Action"] == "sqs:GetQueueAttributes"
    # KEDA reads the depth of both task queues of every runtime (it scales on their sum).
    queues = [queue_ids(any_synth, r.name)[0] for r in any_synth.config.models_runtime]
    queues += [high_queue_id(any_synth, r.name) for r in any_synth.config.models_runtime]
    assert len(as_list(statement["Resource"])) == len(queues)
    assert all(refers_to(statement["Resource"], q) for q in queues)


def test_cluster_admins_from_config(two_synth: Synth, default_synth: Synth) -> None:
    def admins(synth: Synth) -> list[str]:
        return [
            flat(p["PrincipalArn"])
            for p in synth.props("AWS::EKS::AccessEntry")
            if "AmazonEKSClusterAdminPolicy" in json.dumps(p.get("AccessPolicies", []))
        ]

    assert "arn:aws:iam::123456789012:role/platform-admins" in admins(two_synth)
    assert len(admins(two_synth)) == len(admins(default_synth)) + 1


# -- runtimes -------------------------------------------------------------------------------------------------


def test_one_helm_release_per_runtime_with_owned_values(any_synth: Synth) -> None:
    cfg = any_synth.config
    releases = helm_releases(any_synth)
    (node_role_id,) = [lid for lid in any_synth.of_type("AWS::IAM::Role") if lid.startswith("EksKarpenterNodeRole")]
    charts = {
        p["Release"]: lid
        for lid, p in ((k, r["Properties"]) for k, r in any_synth.of_type("Custom::AWSCDK-EKS-HelmChart").items())
    }
    (csi_addon,) = [lid for lid in any_synth.of_type("AWS::EKS::Addon") if lid.startswith("EksS3CsiDriver")]
    for runtime in cfg.models_runtime:
        release = releases[runtime.name]
        # CRDs (Karpenter, KEDA), the CSI driver and the Pod Identity association exist before the release.
        depends = set(any_synth.resources[charts[runtime.name]].get("DependsOn", []))
        assert {charts["karpenter"], charts["keda"], csi_addon} <= depends
        assert any(d.startswith(f"EksIdentity{runtime.name}") for d in depends)
        assert release["Namespace"] == runtime.namespace
        assert release["CreateNamespace"] is True
        assert "s3://" in flat(release["ChartAssetURL"])  # the local chart, shipped as an asset
        values = helm_values(release)
        queue_id, _ = queue_ids(any_synth, runtime.name)
        agent = values["runtime"]["queueAgent"]
        assert agent["sqsQueueUrl"] == f"${{{queue_id}}}"
        assert agent["sqsHighQueueUrl"] == f"${{{high_queue_id(any_synth, runtime.name)}}}"
        assert agent["webhookSecretArn"] == f"${{{webhook_secret_id(any_synth)}}}"
        assert agent["snsTopicArn"].startswith("${MessagingResultsTopic")
        assert agent["statusTable"].startswith("${ApiStatusTable")
        assert agent["s3Bucket"].startswith("${StorageOutputs")
        assert agent["dynamicModel"] is runtime.dynamic_model
        assert values["global"]["runtime"] == runtime.name
        assert values["global"]["clusterName"] == naming.cluster_name(cfg.stack_name)
        assert values["runtime"]["type"] == runtime.type
        assert values["runtime"]["serviceAccountName"] == naming.runtime_service_account(runtime.name)
        assert values["runtime"]["jobTimeoutSeconds"] == cfg.job_timeout_seconds
        assert values["runtime"]["inferenceApi"]["modelFilename"] == (runtime.model_filename or "")
        assert values["runtime"]["persistence"]["s3"]["modelBucket"] == cfg.model_bucket_name
        assert values["karpenter"]["nodeTemplate"]["iamRole"] == f"${{{node_role_id}}}"
        assert ".dkr.ecr." in agent["image"]["repository"] and agent["image"]["tag"]


def test_extra_values_merge_but_cannot_rewire(two_synth: Synth, default_synth: Synth) -> None:
    fast = helm_values(helm_releases(two_synth)["fast"])
    assert fast["runtime"]["scaling"] == {"maxReplicaCount": 7}
    assert "example.invalid" not in json.dumps(fast)
    default = helm_values(helm_releases(default_synth)["sdruntime"])
    assert default["runtime"]["scaling"]["maxReplicaCount"] == 5
    assert default["karpenter"]["provisioner"]["instanceType"] == ["g6.2xlarge", "g5.2xlarge"]


def test_runtime_images(two_synth: Synth) -> None:
    releases = helm_releases(two_synth)
    diffusers = helm_values(releases["fast"])["runtime"]["inferenceApi"]["image"]
    assert ".dkr.ecr." in diffusers["repository"] and diffusers["tag"]
    webui = helm_values(releases["webui"])["runtime"]["inferenceApi"]["image"]
    assert webui["repository"] == versions.COMMUNITY_RUNTIME_IMAGES["sdwebui"]
    # One agent image serves every runtime.
    agents = {json.dumps(helm_values(releases[n])["runtime"]["queueAgent"]["image"]) for n in ("fast", "webui")}
    assert len(agents) == 1


def test_images_are_staged_for_deploy_time_builds(any_synth: Synth) -> None:
    manifest = json.loads((any_synth.outdir / f"{any_synth.stack.artifact_id}.assets.json").read_text())
    images = {a["displayName"]: a["source"] for a in manifest["dockerImages"].values()}
    assert images["queue-agent"]["dockerFile"] == "docker/queue-agent.Dockerfile"
    assert images["queue-agent"]["platform"] == "linux/amd64"
    contexts = {
        name: sorted(p.name for p in (any_synth.outdir / src["directory"]).iterdir()) for name, src in images.items()
    }
    assert contexts["queue-agent"] == ["constraints.txt", "contract", "docker", "pyproject.toml", "queue_agent"]
    if "inference-api" in contexts:
        assert contexts["inference-api"] == ["constraints.txt", "contract", "docker", "inference_api", "pyproject.toml"]
    for name, src in images.items():
        staged = any_synth.outdir / src["directory"]
        assert not list(staged.rglob("__pycache__")), name
        assert (staged / src["dockerFile"]).is_file()


# -- observability --------------------------------------------------------------------------------------------


def test_alarms_notify_the_alarm_topic(any_synth: Synth) -> None:
    cfg = any_synth.config
    alarm_topic = logical_id_of(any_synth, "AWS::SNS::Topic", TopicName=naming.alarms_topic(cfg.stack_name))
    alarms = any_synth.props("AWS::CloudWatch::Alarm")
    assert all(refers_to(a["AlarmActions"], alarm_topic) for a in alarms)
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for alarm in alarms:
        by_metric.setdefault(alarm["MetricName"], []).append(alarm)
    runtimes = len(cfg.models_runtime)
    # Both task queues of each runtime have their age alarm.
    ages = by_metric["ApproximateAgeOfOldestMessage"]
    assert len(ages) == 2 * runtimes
    assert {a["Threshold"] for a in ages} == {cfg.observability.oldest_message_alarm_seconds}
    task_queues = {queue_ids(any_synth, r.name)[0] for r in cfg.models_runtime}
    task_queues |= {high_queue_id(any_synth, r.name) for r in cfg.models_runtime}
    assert {next(q for q in task_queues if refers_to(a["Dimensions"], q)) for a in ages} == task_queues
    dlq_ids = {queue_ids(any_synth, r.name)[1] for r in cfg.models_runtime}
    # Every dead letter counts (the consumer takes them off the DLQ at once, so its depth would miss them).
    dlq_alarms = by_metric["NumberOfMessagesReceived"]
    assert len(dlq_alarms) == runtimes
    assert all(any(refers_to(a["Dimensions"], d) for d in dlq_ids) for a in dlq_alarms)
    assert len(by_metric["NumberOfNotificationsFailed"]) == 2
    assert len(by_metric["Errors"]) == 4  # submit, status, cancel and the dead-letter consumer
    assert len(by_metric["5XXError"]) == 1
    (agent,) = by_metric["QueueAgentErrors"]
    assert agent["Namespace"] == "SdAsync"
    (metric_filter,) = any_synth.props("AWS::Logs::MetricFilter")
    assert "queue-agent" in metric_filter["FilterPattern"] and "ERROR" in metric_filter["FilterPattern"]
    groups = [p.get("LogGroupName") for p in any_synth.props("AWS::Logs::LogGroup")]
    assert f"/aws/containerinsights/{naming.cluster_name(cfg.stack_name)}/application" in groups
    assert len(any_synth.of_type("AWS::CloudWatch::Dashboard")) == 1


def test_config_tags_reach_the_resources(two_synth: Synth) -> None:
    tagged = [
        p for p in two_synth.props("AWS::SQS::Queue") if {"Key": "project", "Value": "sd-async"} in p.get("Tags", [])
    ]
    assert len(tagged) == len(two_synth.props("AWS::SQS::Queue"))


def test_alarm_email_only_when_configured(default_synth: Synth, two_synth: Synth) -> None:
    assert not [s for s in default_synth.props("AWS::SNS::Subscription") if s["Protocol"] == "email"]
    (email,) = [s for s in two_synth.props("AWS::SNS::Subscription") if s["Protocol"] == "email"]
    assert email["Endpoint"] == "ops@example.com"


def test_every_log_group_has_a_retention(any_synth: Synth) -> None:
    assert all("RetentionInDays" in p for p in any_synth.props("AWS::Logs::LogGroup"))
    access = [
        p
        for lid, p in ((lid, r["Properties"]) for lid, r in any_synth.of_type("AWS::Logs::LogGroup").items())
        if lid.startswith("ApiAccessLogs")
    ]
    assert access[0]["RetentionInDays"] == any_synth.config.api.access_log_retention_days


# -- outputs, environment ---------------------------------------------------------------------------------------


def test_stack_outputs(any_synth: Synth) -> None:
    outputs = any_synth.template["Outputs"]
    for name in ("ApiEndpoint", "ApiKeyCommand", "TasksTopicArn", "ResultsTopicArn", "OutputBucket", "StatusTable"):
        assert name in outputs
    command = flat(outputs["WebhookSecretCommand"]["Value"])
    assert command.startswith("echo whsec_$(aws secretsmanager get-secret-value --secret-id ")
    assert f"${{{webhook_secret_id(any_synth)}}}" in command and "--query SecretString --output text" in command
    assert "aws apigateway get-api-key" in flat(outputs["ApiKeyCommand"]["Value"])
    assert "--include-value" in flat(outputs["ApiKeyCommand"]["Value"])
    for tenant in any_synth.config.api.keys:
        command = flat(outputs["ApiKeyCommand" + "".join(p.capitalize() for p in tenant.name.split("-"))]["Value"])
        assert "aws apigateway get-api-key" in command
    for runtime in any_synth.config.models_runtime:
        suffix = "".join(p.capitalize() for p in runtime.name.split("-"))
        queue_id, _ = queue_ids(any_synth, runtime.name)
        assert outputs[f"QueueUrl{suffix}"]["Value"] == {"Ref": queue_id}
        assert outputs[f"HighQueueUrl{suffix}"]["Value"] == {"Ref": high_queue_id(any_synth, runtime.name)}


def test_outputs_of_the_replaced_sample(any_synth: Synth) -> None:
    """Its scripts read FrontApiEndpoint and GetAPIKeyCommand (and OutputS3Bucket, ClusterName, ConfigCommand)."""
    outputs = any_synth.template["Outputs"]
    assert outputs["GetAPIKeyCommand"]["Value"] == outputs["ApiKeyCommand"]["Value"]
    assert outputs["OutputS3Bucket"]["Value"] == outputs["OutputBucket"]["Value"]
    # kubectl outputs only where clusterAdminRoleArns grants someone access (issue 11).
    if any_synth.config.cluster_admin_role_arns:
        assert outputs["ConfigCommand"]["Value"] == outputs["KubeconfigCommand"]["Value"]
    else:
        assert "ConfigCommand" not in outputs and "KubeconfigCommand" not in outputs
    assert "ClusterName" in outputs
    endpoint = flat(outputs["FrontApiEndpoint"]["Value"])
    # "{FrontApiEndpoint}/v1alpha2/" must not have a doubled slash: no trailing one here.
    assert endpoint.startswith("https://") and not endpoint.endswith("/")
    assert endpoint.endswith(f"/{any_synth.config.apigw.stage_name}")
    (api_id,) = any_synth.of_type("AWS::ApiGateway::RestApi")
    assert refers_to(outputs["FrontApiEndpoint"]["Value"], api_id)
    for name in ("FrontApiEndpoint", "GetAPIKeyCommand", "OutputS3Bucket", "ConfigCommand"):
        assert name not in outputs or outputs[name]["Description"]


def test_submit_function_knows_runtime_types_and_models(any_synth: Synth) -> None:
    (submit,) = [
        r["Properties"]
        for r in any_synth.of_type("AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == "task_api.submit.handler"
    ]
    catalog = json.loads(submit["Environment"]["Variables"]["RUNTIME_CATALOG"])
    assert list(catalog) == [r.name for r in any_synth.config.models_runtime]
    for runtime in any_synth.config.models_runtime:
        assert catalog[runtime.name] == {
            "type": runtime.type,
            "modelFilename": runtime.model_filename,
            "dynamicModel": runtime.dynamic_model,
        }


def test_synth_is_environment_agnostic(default_synth: Synth) -> None:
    manifest = json.loads((default_synth.outdir / "manifest.json").read_text())
    artifact = manifest["artifacts"][default_synth.stack.artifact_id]
    assert artifact["environment"] == "aws://unknown-account/unknown-region"
    text = json.dumps(default_synth.template)
    assert "Fn::GetAZs" in text
    assert not re.search(r"\b\d{12}\b", text), "no account id may be hard-coded"


@pytest.mark.parametrize("name", ["ApiEndpoint", "ClusterName"])
def test_outputs_have_descriptions(default_synth: Synth, name: str) -> None:
    assert default_synth.template["Outputs"][name]["Description"]
