"""REST API (API key + usage plan), the submit/status/cancel Lambdas and the DynamoDB status table."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as lambda_events
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from contract import DEAD_LETTER_FOLDER
from infra import checkov, nag, naming
from infra.config import DeploymentConfig, runtime_catalog, runtime_names
from infra.lambda_bundle import LAMBDA_ARCHITECTURE, LambdaSources, lambda_code
from infra.versions import LAMBDA_PYTHON

# Handler entry points inside the bundled asset (lambda/README.md documents them).
HANDLERS = {
    "submit": "task_api.submit.handler",
    "status": "task_api.status.handler",
    "cancel": "task_api.cancel.handler",
}
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
DEAD_LETTER_HANDLER = "task_api.dead_letters.handler"
_TABLE_READ = ["dynamodb:GetItem"]
_TABLE_WRITE = ["dynamodb:PutItem", "dynamodb:UpdateItem"]


@dataclass(frozen=True)
class ApiInputs:
    config: DeploymentConfig
    tasks_topic: sns.ITopic
    topic_key: kms.IKey
    output_bucket: s3.IBucket
    lambda_sources: LambdaSources | None = None
    # The dead-letter consumer: every runtime's DLQ feeds it; it announces on the results topic.
    results_topic: sns.ITopic | None = None
    dead_letter_queues: tuple[sqs.IQueue, ...] = ()


class TaskApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, inputs: ApiInputs) -> None:
        super().__init__(scope, construct_id)
        config = inputs.config
        self.table = dynamodb.Table(
            self,
            "StatusTable",
            table_name=naming.status_table(config.stack_name),
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.DESTROY,
        )
        checkov.skip(
            self.table,
            {
                "CKV_AWS_119": "AWS-managed encryption: the records hold task ids, states and result keys; a "
                "customer key would need grants for every reader and add nothing they need.",
            },
        )
        environment = {
            "TASKS_TOPIC_ARN": inputs.tasks_topic.topic_arn,
            "STATUS_TABLE": self.table.table_name,
            "OUTPUT_BUCKET": inputs.output_bucket.bucket_name,
            "RUNTIMES": ",".join(runtime_names(config)),
            "RUNTIME_CATALOG": runtime_catalog(config),
            "STATUS_TTL_DAYS": str(config.outputs.status_ttl_days),
            "INPUT_BUCKETS": ",".join(config.input_buckets),
        }
        code = lambda_code(inputs.lambda_sources)
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.functions = {name: self._function(name, handler, code, environment) for name, handler in HANDLERS.items()}
        self._grant(inputs)
        self.dead_letters = self._dead_letter_consumer(inputs, code) if inputs.results_topic is not None else None
        self.api = self._rest_api(config)

    def _dead_letter_consumer(self, inputs: ApiInputs, code: lambda_.Code) -> lambda_.Function:
        """One per stack: fails and announces the tasks whose messages reached a DLQ (lambda/task_api/dead_letters)."""
        assert inputs.results_topic is not None
        environment = {
            "STATUS_TABLE": self.table.table_name,
            "RESULTS_TOPIC_ARN": inputs.results_topic.topic_arn,
            "OUTPUT_BUCKET": inputs.output_bucket.bucket_name,
        }
        function = self._function("deadletters", DEAD_LETTER_HANDLER, code, environment)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=[*_TABLE_READ, "dynamodb:UpdateItem"], resources=[self.table.table_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[inputs.results_topic.topic_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey*", "kms:Decrypt"], resources=[inputs.topic_key.key_arn])
        )
        # Each dead letter is kept for `sdq redrive` under the archive prefix, and nowhere else.
        archive = inputs.output_bucket.arn_for_objects(f"{DEAD_LETTER_FOLDER}/*")
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[archive]))
        for queue in inputs.dead_letter_queues:
            function.add_event_source(
                lambda_events.SqsEventSource(queue, batch_size=10, report_batch_item_failures=True)
            )
        nag.acknowledge(
            function.role,  # type: ignore[arg-type]
            {
                nag.wildcard_resource("*"): "Active tracing: xray:PutTraceSegments/PutTelemetryRecords take "
                "no resource.",
                nag.wildcard_resource(f"{nag.token(self.log_groups['deadletters'], 'Arn')}:*"): "Streams of the "
                "function's own log group, named by Lambda at run time.",
                nag.wildcard_action("kms:GenerateDataKey*"): "Publishing to the KMS-encrypted results topic needs data "
                "keys of that one key.",
                nag.wildcard_resource(f"{nag.token(inputs.output_bucket, 'Arn')}/{DEAD_LETTER_FOLDER}/*"): "One "
                "archive object per dead letter, named by its message id.",
            },
        )
        return function

    def _function(self, name: str, handler: str, code: lambda_.Code, environment: dict[str, str]) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{name.capitalize()}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.log_groups[name] = log_group
        checkov.skip(log_group, checkov.LOG_GROUP)
        role = iam.Role(
            self,
            f"{name.capitalize()}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"task API {name} function",
        )
        # Written out rather than the AWSLambdaBasicExecutionRole managed policy: scoped to this log group only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[f"{log_group.log_group_arn}:*"]
            )
        )
        function = lambda_.Function(
            self,
            f"{name.capitalize()}Function",
            runtime=lambda_.Runtime(f"python{LAMBDA_PYTHON}", lambda_.RuntimeFamily.PYTHON),
            architecture=LAMBDA_ARCHITECTURE,
            handler=handler,
            code=code,
            role=role,
            memory_size=512,
            # API Gateway gives up after 29 s; a function must answer well inside it.
            timeout=Duration.seconds(15),
            environment=environment,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        checkov.skip(function, checkov.SYNC_FUNCTION | checkov.OUTSIDE_VPC)
        return function

    def _grant(self, inputs: ApiInputs) -> None:
        table_arn = self.table.table_arn
        submit, status, cancel = (self.functions[n] for n in ("submit", "status", "cancel"))
        submit.add_to_role_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[inputs.tasks_topic.topic_arn])
        )
        submit.add_to_role_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey*", "kms:Decrypt"], resources=[inputs.topic_key.key_arn])
        )
        # DeleteItem: a submit whose publish failed withdraws its still-queued record (conditional delete).
        submit.add_to_role_policy(
            iam.PolicyStatement(actions=[*_TABLE_READ, *_TABLE_WRITE, "dynamodb:DeleteItem"], resources=[table_arn])
        )
        # HeadObject: an s3:// input naming a result must carry the nonce of the caller's own submission.
        submit.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[inputs.output_bucket.arn_for_objects("*")])
        )
        status.add_to_role_policy(iam.PolicyStatement(actions=_TABLE_READ, resources=[table_arn]))
        # Presigned result URLs are signed with the status function's own credentials.
        status.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[inputs.output_bucket.arn_for_objects("*")])
        )
        cancel.add_to_role_policy(
            iam.PolicyStatement(actions=[*_TABLE_READ, "dynamodb:UpdateItem"], resources=[table_arn])
        )
        topic_key = nag.wildcard_action("kms:GenerateDataKey*")
        presign = nag.wildcard_resource(f"{nag.token(inputs.output_bucket, 'Arn')}/*")
        for name, function in self.functions.items():
            reasons = {
                nag.wildcard_resource(
                    "*"
                ): "Active tracing: xray:PutTraceSegments/PutTelemetryRecords take no resource.",
                nag.wildcard_resource(f"{nag.token(self.log_groups[name], 'Arn')}:*"): "Streams of the function's own "
                "log group, named by Lambda at run time.",
            }
            if name == "submit":
                reasons[topic_key] = "Publishing to the KMS-encrypted tasks topic needs data keys of that one key."
                reasons[presign] = "HeadObject of result objects named as inputs, whose keys are per task."
            if name == "status":
                reasons[presign] = "Presigned GET URLs for result objects, whose keys are per task."
            nag.acknowledge(function.role, reasons)  # type: ignore[arg-type]

    def _keys(self, api: apigw.RestApi, config: DeploymentConfig) -> dict[str, apigw.IApiKey]:
        """One key per tenant, each on its own usage plan (its throttle and quota); without tenants, one key on
        the APIGW.throttle plan, as the replaced sample had. Handlers tell tenants apart by the key's id."""
        stage = [apigw.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)]
        default = config.apigw.throttle
        if not config.api.keys:
            key = api.add_api_key("ApiKey", api_key_name=config.api.key_name)
            plan = api.add_usage_plan(
                "UsagePlan",
                name=f"{config.stack_name}-usage-plan",
                throttle=apigw.ThrottleSettings(rate_limit=default.rate_limit, burst_limit=default.burst_limit),
                api_stages=stage,
            )
            plan.add_api_key(key)
            return {"default": key}
        keys: dict[str, apigw.IApiKey] = {}
        for tenant in config.api.keys:
            pascal = "".join(part.capitalize() for part in tenant.name.split("-"))
            throttle = tenant.throttle or default
            quota = (
                apigw.QuotaSettings(limit=tenant.quota.limit, period=apigw.Period[tenant.quota.period])
                if tenant.quota
                else None
            )
            key = api.add_api_key(f"ApiKey{pascal}", api_key_name=f"{config.stack_name}-{tenant.name}")
            plan = api.add_usage_plan(
                f"UsagePlan{pascal}",
                name=f"{config.stack_name}-{tenant.name}",
                throttle=apigw.ThrottleSettings(rate_limit=throttle.rate_limit, burst_limit=throttle.burst_limit),
                quota=quota,
                api_stages=stage,
            )
            plan.add_api_key(key)
            keys[tenant.name] = key
        return keys

    def _rest_api(self, config: DeploymentConfig) -> apigw.RestApi:
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=_RETENTION[config.api.access_log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        checkov.skip(access_logs, checkov.LOG_GROUP)
        throttle = config.apigw.throttle
        api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{config.stack_name}-api",
            description="Asynchronous Stable Diffusion task API",
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=config.apigw.stage_name,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                # Standard fields only: the request body and the x-api-key header never reach a log.
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                tracing_enabled=True,
                metrics_enabled=True,
                throttling_rate_limit=throttle.rate_limit,
                throttling_burst_limit=throttle.burst_limit,
            ),
            default_method_options=apigw.MethodOptions(api_key_required=True),
        )
        checkov.skip(
            api.deployment_stage,
            {
                "CKV_AWS_120": "Every answer is per task and changes as the task runs (status, cancel); a cache "
                "would serve stale states, and POSTs are never cached.",
            },
        )
        # API Gateway's own rejections (missing key, throttled, unknown route) in the contract's error shape.
        for response_type, code in (
            (apigw.ResponseType.DEFAULT_4_XX, "client_error"),
            (apigw.ResponseType.DEFAULT_5_XX, "gateway_error"),
        ):
            api.add_gateway_response(
                f"Gateway{code.replace('_', ' ').title().replace(' ', '')}",
                type=response_type,
                templates={
                    "application/json": json.dumps(
                        {"error": {"code": code, "message": "$context.error.messageString", "fields": []}}
                    ).replace('"$context.error.messageString"', "$context.error.messageString")
                },
            )
        # Validates that required path parameters are present; bodies are validated by the submit function,
        # which names every offending field (API Gateway's model validation would not).
        validator = api.add_request_validator("Params", validate_request_parameters=True)

        def integrate(name: str) -> apigw.LambdaIntegration:
            return apigw.LambdaIntegration(self.functions[name], proxy=True)

        submit = {"request_validator": validator}
        # The replaced sample's routes. API Gateway REST APIs match "/v1alpha2/" to the "/v1alpha2" resource, and
        # the endpoint outputs carry no trailing slash, so its scripts' "{endpoint}/v1alpha2/" lands here.
        for version in ("v1alpha2", "v1alpha1"):
            api.root.add_resource(version).add_method("POST", integrate("submit"), **submit)  # type: ignore[arg-type]
        tasks = api.root.add_resource("tasks")
        tasks.add_method("POST", integrate("submit"), **submit)  # type: ignore[arg-type]
        task = tasks.add_resource("{id}")
        path = {"request_parameters": {"method.request.path.id": True}, "request_validator": validator}
        task.add_method("GET", integrate("status"), **path)  # type: ignore[arg-type]
        task.add_method("DELETE", integrate("cancel"), **path)  # type: ignore[arg-type]

        self.api_keys = self._keys(api, config)
        # The first key: what the replaced sample's scripts read through the ApiKeyCommand output.
        self.api_key = next(iter(self.api_keys.values()))
        nag.acknowledge(
            api,
            {
                "AwsSolutions-APIG2": "API Gateway validates the required path parameters; bodies are validated by the "
                "submit function against the wire contract, which names every offending field in a 400 (a gateway "
                "model would answer with a generic message instead).",
                "AwsSolutions-APIG4": "Clients authenticate with an API key bound to a usage plan (the contract of the "
                "replaced sample); a Cognito or IAM authorizer can be added per deployment.",
                "AwsSolutions-COG4": "No Cognito user pool: API key + usage plan is the API's authentication model.",
                "AwsSolutions-APIG3": "WAF is optional and billed per web ACL; the usage plan throttles each key. "
                "Attach a web ACL to the stage where the API faces untrusted traffic.",
                "AwsSolutions-APIG6": "Execution logging needs an account-wide API Gateway CloudWatch role this stack "
                "should not own; access logs and X-Ray tracing are on for the stage.",
            },
        )
        return api
