"""The deployment config (``config.yaml``): schema, loading and validation. No CDK imports here.

The replaced sample's config loads unchanged (``stackName``, ``modelBucketArn``, ``clusterComponents``,
``APIGW``, ``modelsRuntime[]`` with ``chartRepository``/``chartVersion``/``extraValues``, and the older
``dynamicModelRuntime`` block). Everything this project adds is optional with a safe default. Unknown keys are
rejected, because a typo that silently falls back to a default is the worst kind of config bug.

Errors name the key: ``ConfigError`` carries one ``FieldIssue(field, rule, message)`` per problem, with
``field`` a path such as ``modelsRuntime[1].name``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contract import FieldIssue
from infra import naming

DEFAULT_CONFIG_PATH = Path("config.yaml")
CONFIG_PATH_ENV = "CDK_CONFIG_PATH"

# Newest Kubernetes version for which the kubectl Lambda layer (aws-cdk.lambda-layer-kubectl-v35) is installed;
# the cluster construct needs the layer matching the control plane.
SUPPORTED_KUBERNETES_VERSIONS = ("1.35",)
DEFAULT_KUBERNETES_VERSION = "1.35"

RuntimeType = Literal["sdwebui", "comfyui", "diffusers"]

# Runtime names and namespaces become Helm release names, Kubernetes namespaces and parts of SQS/SNS names:
# the strictest of those is an RFC 1123 label.
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_BUCKET_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:s3:::(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])$")
_ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CHART_REPOSITORY = re.compile(r"^(oci|https)://\S+$")
_API_KEY_NAME = re.compile(r"^[A-Za-z0-9 _.-]{1,128}$")
_TENANT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Deliberately loose: SNS confirms the address by mail anyway; this only catches obvious typos.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# SQS queue names are at most 80 characters; the longest name we derive is the DLQ/queue of a runtime.
_MAX_QUEUE_NAME = 80
# EKS cluster names are at most 100 characters, CloudFormation stack names 128: 40 keeps every derived name
# (cluster, queues, log groups, Karpenter interruption queue) comfortably inside its limit.
_MAX_STACK_NAME = 40
_MAX_RUNTIME_NAME = 40


class ConfigError(ValueError):
    """An invalid deployment config. ``issues`` lists every problem, each naming its key path."""

    def __init__(self, issues: list[FieldIssue], *, source: str | None = None) -> None:
        if not issues:
            raise ValueError("ConfigError needs at least one issue")
        self.issues = issues
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  {i.field}: {i.message} [{i.rule}]" for i in issues)
        super().__init__(f"{where}invalid deployment config ({len(issues)} problem(s)):\n{lines}")

    def keys(self) -> list[str]:
        return [i.field for i in self.issues]


class _Model(BaseModel):
    # Keys are camelCase in YAML (the sample's spelling), snake_case in Python.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, str_strip_whitespace=True)


class Throttle(_Model):
    rate_limit: Annotated[float, Field(gt=0, le=10_000)] = Field(default=30, alias="rateLimit")
    burst_limit: Annotated[int, Field(ge=1, le=5_000)] = Field(default=50, alias="burstLimit")


class ApiGatewayConfig(_Model):
    """The sample's ``APIGW`` block: stage name and usage-plan throttle."""

    stage_name: str = Field(default="dev", alias="stageName")
    throttle: Throttle = Field(default_factory=Throttle)

    @field_validator("stage_name")
    @classmethod
    def _stage(cls, value: str) -> str:
        if not _STAGE_NAME.match(value):
            raise ValueError("must be 1-128 characters of letters, digits, '-' or '_'")
        return value


class ClusterComponents(_Model):
    """The system node group that runs Karpenter, KEDA and the other cluster add-ons (never GPU work)."""

    instance_type: str = Field(default="m7g.large", alias="instanceType")
    desired_count: Annotated[int, Field(ge=1, le=20)] = Field(default=2, alias="desiredCount")

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not _INSTANCE_TYPE.match(value):
            raise ValueError("must be an EC2 instance type such as 'm7g.large'")
        return value

    @property
    def is_arm(self) -> bool:
        """Graviton families carry a 'g' right after the generation digit (m7g, c8g, r6gd, t4g) or are a1."""
        family = self.instance_type.split(".", 1)[0]
        return bool(re.search(r"\dg", family)) or family.startswith("a1")


class RuntimeConfig(_Model):
    """One entry of ``modelsRuntime``: a runtime type, its model and chart overrides."""

    name: str
    namespace: str = "default"
    type: RuntimeType = "sdwebui"
    model_filename: str | None = Field(default=None, alias="modelFilename")
    dynamic_model: bool = Field(default=False, alias="dynamicModel")
    chart_repository: str | None = Field(default=None, alias="chartRepository")
    chart_version: str | None = Field(default=None, alias="chartVersion")
    extra_values: dict[str, Any] = Field(default_factory=dict, alias="extraValues")
    # Ours: also route tasks that carry the old `sd_model_checkpoint` message attribute equal to modelFilename
    # (how the sample addressed sdwebui runtimes before `runtime` existed). Off by default: a publisher setting
    # both attributes would otherwise reach two queues.
    legacy_model_routing: bool = Field(default=False, alias="legacyModelRouting")
    # Default time-to-live of this runtime's tasks (a task's own metadata.ttl_seconds wins): a task that has not
    # started that long after submission ends `expired` without running. None: tasks wait as long as it takes.
    ttl_seconds: Annotated[int, Field(ge=1, le=14 * 86_400)] | None = Field(default=None, alias="ttlSeconds")

    @field_validator("name", "namespace", "type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # The sample lower-cased names, namespaces and types before using them ("SdWebUI" was valid).
        return value.lower() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > _MAX_RUNTIME_NAME or not _DNS_LABEL.match(value):
            raise ValueError(
                f"must be 1-{_MAX_RUNTIME_NAME} lowercase letters, digits or '-', starting and ending with a "
                "letter or digit (it names a Helm release and AWS resources)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise ValueError("must be a Kubernetes namespace name: 1-63 lowercase letters, digits or '-'")
        return value

    @field_validator("model_filename", mode="before")
    @classmethod
    def _filename_str(cls, value: Any) -> Any:
        # YAML reads an unquoted all-digit filename as a number; the sample asked users to quote it, we forgive.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("model_filename")
    @classmethod
    def _filename(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split("/")
        if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value:
            raise ValueError("must be a relative path inside the model bucket (no '..', no leading '/')")
        return value

    @field_validator("chart_repository")
    @classmethod
    def _chart_repository(cls, value: str | None) -> str | None:
        if value is not None and not _CHART_REPOSITORY.match(value):
            raise ValueError("must start with oci:// or https://")
        return value

    @field_validator("chart_version", mode="before")
    @classmethod
    def _chart_version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    def extra_value(self, *path: str, default: Any = None) -> Any:
        """A value under ``extraValues``, or ``default`` where any part of the path is missing."""
        node: Any = self.extra_values
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    @model_validator(mode="after")
    def _routing(self) -> RuntimeConfig:
        if self.legacy_model_routing and not self.model_filename:
            raise ValueError(
                "legacyModelRouting needs modelFilename: it routes on sd_model_checkpoint == modelFilename"
            )
        if self.chart_version is not None and self.chart_repository is None:
            raise ValueError("chartVersion applies to a remote chart: set chartRepository too")
        return self


class DynamicModelRuntime(_Model):
    """The sample's older ``dynamicModelRuntime`` block: a catch-all runtime that loads models per request."""

    enabled: bool = False
    name: str = "sddynamic"
    namespace: str = "default"
    chart_repository: str | None = Field(default=None, alias="chartRepository")
    chart_version: str | None = Field(default=None, alias="chartVersion")
    extra_values: dict[str, Any] = Field(default_factory=dict, alias="extraValues")

    def as_runtime(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "type": "sdwebui",
            "dynamicModel": True,
            "chartRepository": self.chart_repository,
            "chartVersion": self.chart_version,
            "extraValues": self.extra_values,
        }


class QueueConfig(_Model):
    # The agent extends visibility while it holds a message (heartbeat), so this only bounds how long a crashed
    # worker's message stays invisible before another worker retries it.
    visibility_timeout: Annotated[int, Field(ge=30, le=43_200)] = Field(default=300, alias="visibilityTimeout")
    max_receive_count: Annotated[int, Field(ge=1, le=1_000)] = Field(default=3, alias="maxReceiveCount")
    retention_days: Annotated[int, Field(ge=1, le=14)] = Field(default=4, alias="retentionDays")
    dlq_retention_days: Annotated[int, Field(ge=1, le=14)] = Field(default=14, alias="dlqRetentionDays")
    # Use a customer-managed KMS key (rotated) instead of SQS-managed SSE for queues and topics.
    kms_encryption: bool = Field(default=False, alias="kmsEncryption")


class OutputsConfig(_Model):
    # Default: statusTtlDays. Results never outlive their status record: once the record is gone its id can be
    # submitted again, and results still lying under that id must not become the new holder's.
    expire_after_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(default=None, alias="expireAfterDays")
    status_ttl_days: Annotated[int, Field(ge=1, le=3650)] = Field(default=30, alias="statusTtlDays")

    @model_validator(mode="after")
    def _outputs_expire_with_records(self) -> OutputsConfig:
        if self.expire_after_days is not None and self.expire_after_days > self.status_ttl_days:
            raise ValueError(
                f"expireAfterDays ({self.expire_after_days}) must not exceed statusTtlDays ({self.status_ttl_days}): "
                "results may not outlive the record that says whose they are"
            )
        return self

    @property
    def output_expiry_days(self) -> int:
        return self.expire_after_days if self.expire_after_days is not None else self.status_ttl_days


class NetworkConfig(_Model):
    # The stack is environment-agnostic (synth needs no account), so the VPC spans two AZs: one NAT each at most.
    nat_gateways: Annotated[int, Field(ge=1, le=2)] = Field(default=1, alias="natGateways")
    vpc_cidr: str = Field(default="10.0.0.0/16", alias="vpcCidr")

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        import ipaddress

        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"must be an IPv4 CIDR block: {exc}") from None
        if not 16 <= net.prefixlen <= 20:
            raise ValueError("must be a /16 to /20 block (room for public and private subnets in every AZ)")
        return value


class Quota(_Model):
    limit: Annotated[int, Field(ge=1)]
    period: Literal["DAY", "WEEK", "MONTH"] = "DAY"


class TenantKey(_Model):
    """One named API key (a tenant): its own usage plan; it sees only the tasks it submitted."""

    name: str
    # Default: the APIGW.throttle of the whole API.
    throttle: Throttle | None = None
    quota: Quota | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TENANT_NAME.match(value):
            raise ValueError("must be 1-40 lower-case letters, digits or '-', starting with a letter")
        return value


class ApiConfig(_Model):
    key_name: str | None = Field(default=None, alias="keyName")
    # Several tenants, each with a key and a usage plan. Empty: one key (keyName) on the APIGW.throttle plan.
    keys: list[TenantKey] = Field(default_factory=list)
    access_log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = (
        Field(default=30, alias="accessLogRetentionDays")
    )

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str | None) -> str | None:
        if value is not None and not _API_KEY_NAME.match(value):
            raise ValueError("must be 1-128 characters of letters, digits, space, '.', '_' or '-'")
        return value

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, value: list[TenantKey]) -> list[TenantKey]:
        names = [k.name for k in value]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"key names must be unique; repeated: {', '.join(dupes)}")
        return value


class ObservabilityConfig(_Model):
    alarm_email: str | None = Field(default=None, alias="alarmEmail")
    oldest_message_alarm_seconds: Annotated[int, Field(ge=60, le=1_209_600)] = Field(
        default=900, alias="oldestMessageAlarmSeconds"
    )

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("must be an e-mail address")
        return value


class DeploymentConfig(_Model):
    stack_name: str = Field(alias="stackName")
    model_bucket_arn: str = Field(alias="modelBucketArn")
    cluster_components: ClusterComponents = Field(default_factory=ClusterComponents, alias="clusterComponents")
    apigw: ApiGatewayConfig = Field(default_factory=ApiGatewayConfig, alias="APIGW")
    models_runtime: list[RuntimeConfig] = Field(alias="modelsRuntime", min_length=1)
    dynamic_model_runtime: DynamicModelRuntime | None = Field(default=None, alias="dynamicModelRuntime")
    # Ours, all optional.
    kubernetes_version: str = Field(default=DEFAULT_KUBERNETES_VERSION, alias="kubernetesVersion")
    job_timeout_seconds: Annotated[int, Field(ge=30, le=43_200)] = Field(default=1800, alias="jobTimeoutSeconds")
    queue: QueueConfig = Field(default_factory=QueueConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    tags: dict[str, str] = Field(default_factory=dict)
    # Buckets whose objects any tenant may name as s3:// inputs (besides its own results in the output bucket).
    input_buckets: list[str] = Field(default_factory=list, alias="inputBuckets")
    # IAM roles that get cluster-admin access entries (operators running kubectl); the deploying role does not.
    cluster_admin_role_arns: list[str] = Field(default_factory=list, alias="clusterAdminRoleArns")
    # Create the account-wide AWSServiceRoleForEC2Spot service-linked role, which spot launches need and the
    # Karpenter controller may not create. Off by default: creating it fails where the account already has it
    # (`sdq doctor` tells which case applies).
    create_spot_service_linked_role: bool = Field(default=False, alias="createSpotServiceLinkedRole")

    @model_validator(mode="before")
    @classmethod
    def _fold_dynamic_runtime(cls, data: Any) -> Any:
        # The older sample spelled a dynamic-model runtime as its own block; it is just one more runtime.
        if not isinstance(data, dict):
            return data
        block = data.get("dynamicModelRuntime")
        runtimes = data.get("modelsRuntime")
        if isinstance(block, dict) and block.get("enabled") is True and isinstance(runtimes, list):
            try:
                extra = DynamicModelRuntime.model_validate(block).as_runtime()
            except ValidationError:
                return data  # reported against dynamicModelRuntime by normal validation
            return {**data, "modelsRuntime": [*runtimes, extra]}
        return data

    @field_validator("stack_name")
    @classmethod
    def _stack_name(cls, value: str) -> str:
        if len(value) > _MAX_STACK_NAME or not _STACK_NAME.match(value):
            raise ValueError(
                f"must be 1-{_MAX_STACK_NAME} letters, digits or '-', starting with a letter "
                "(it prefixes every resource name)"
            )
        return value

    @field_validator("cluster_admin_role_arns")
    @classmethod
    def _admin_roles(cls, value: list[str]) -> list[str]:
        bad = [arn for arn in value if not _ROLE_ARN.match(arn)]
        if bad:
            raise ValueError(f"must be IAM role ARNs (arn:aws:iam::123456789012:role/name); not: {', '.join(bad)}")
        return value

    @field_validator("input_buckets")
    @classmethod
    def _input_buckets(cls, value: list[str]) -> list[str]:
        bad = [b for b in value if not _BUCKET_NAME.match(b)]
        if bad:
            raise ValueError(f"must be S3 bucket names (not ARNs or URIs); not: {', '.join(bad)}")
        return value

    @field_validator("model_bucket_arn")
    @classmethod
    def _bucket_arn(cls, value: str) -> str:
        if not _BUCKET_ARN.match(value):
            raise ValueError("must be an S3 bucket ARN such as 'arn:aws:s3:::my-model-bucket'")
        return value

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _k8s_version(cls, value: Any) -> Any:
        # `kubernetesVersion: 1.35` reads as a float in YAML.
        value = str(value) if isinstance(value, float | int) and not isinstance(value, bool) else value
        if isinstance(value, str) and value not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)} (kubectl layer installed)")
        return value

    @property
    def model_bucket_name(self) -> str:
        match = _BUCKET_ARN.match(self.model_bucket_arn)
        assert match is not None  # validated above
        return match.group("bucket")

    @property
    def partition(self) -> str:
        return self.model_bucket_arn.split(":", 2)[1]


def _check_cross_fields(cfg: DeploymentConfig) -> list[FieldIssue]:
    """Rules that span several keys; each issue still names the key a user should change."""
    issues: list[FieldIssue] = []
    seen: dict[str, int] = {}
    for index, runtime in enumerate(cfg.models_runtime):
        key = f"modelsRuntime[{index}].name"
        if runtime.name in seen:
            issues.append(
                FieldIssue(
                    key, "unique", f"duplicate runtime name {runtime.name!r} (also modelsRuntime[{seen[runtime.name]}])"
                )
            )
        seen.setdefault(runtime.name, index)
        longest = max(
            len(naming.runtime_queue(cfg.stack_name, runtime.name)),
            len(naming.runtime_dlq(cfg.stack_name, runtime.name)),
        )
        if longest > _MAX_QUEUE_NAME:
            issues.append(
                FieldIssue(
                    key,
                    "length",
                    f"stackName + runtime name too long: derived queue name has {longest} characters, SQS allows "
                    f"{_MAX_QUEUE_NAME}",
                )
            )
        issues.extend(_chart_value_rules(index, runtime))
        if runtime.type == "comfyui" and runtime.dynamic_model:
            issues.append(
                FieldIssue(
                    f"modelsRuntime[{index}].dynamicModel",
                    "unsupported",
                    f"dynamicModel is not supported by runtime type {runtime.type!r} (the workflow picks the model)",
                )
            )
    return issues


def _chart_value_rules(index: int, runtime: RuntimeConfig) -> list[FieldIssue]:
    """extraValues that the chart schema refuses too, explained here in deployment terms."""
    issues = []
    extra = f"modelsRuntime[{index}].extraValues"
    if runtime.extra_value("karpenter", "nodeTemplate", "amiFamily") == "AL2":
        issues.append(
            FieldIssue(
                f"{extra}.karpenter.nodeTemplate.amiFamily",
                "unsupported",
                "AL2 is not supported: EKS publishes no AL2 AMIs for Kubernetes 1.33 and later; use Bottlerocket "
                "(the default) or AL2023",
            )
        )
    if runtime.extra_value("runtime", "scaling", "auth", "identityOwner") == "workload":
        issues.append(
            FieldIssue(
                f"{extra}.runtime.scaling.auth.identityOwner",
                "unsupported",
                "'workload' cannot work here: KEDA reads a workload's identity only through IRSA, and this "
                "deployment uses EKS Pod Identity; leave it empty (KEDA's own identity) or set 'keda'",
            )
        )
    return issues


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def _issues_from_validation(exc: ValidationError, data: Any) -> list[FieldIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        # pydantic appends the failing union/validator branch to the location; drop those synthetic parts.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or not p.startswith(("function-", "literal[")))
        rule = err["type"]
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if rule == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}{_known_keys_hint(loc[:-1], data)}"
        elif rule == "missing":
            message = "required key is missing"
        issues.append(FieldIssue(_key_path(loc), rule, message))
    return issues


def _known_keys_hint(parent: tuple[int | str, ...], data: Any) -> str:
    model: type[BaseModel] | None = DeploymentConfig
    for part in parent:
        if model is None:
            return ""
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_of(field.annotation) if field is not None else None
    if model is None:
        return ""
    known = sorted(f.alias or n for n, f in model.model_fields.items())
    return f" (known keys: {', '.join(known)})"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def parse_config(data: Any, *, source: str | None = None) -> DeploymentConfig:
    """Validate an already-parsed mapping; raises ConfigError naming every bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError([FieldIssue("(root)", "type", "the config must be a YAML mapping")], source=source)
    try:
        cfg = DeploymentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, data), source=source) from None
    issues = _check_cross_fields(cfg)
    if issues:
        raise ConfigError(issues, source=source)
    return cfg


def load_config(path: str | os.PathLike[str] | None = None) -> DeploymentConfig:
    """Read and validate a config file (default: $CDK_CONFIG_PATH, else ./config.yaml)."""
    resolved = Path(path) if path is not None else config_path()
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([FieldIssue("(file)", "readable", f"cannot read {resolved}: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([FieldIssue("(file)", "yaml", f"not valid YAML: {exc}")], source=str(resolved)) from None
    return parse_config(data, source=str(resolved))


def config_path() -> Path:
    """The config file the CDK app and the local stack use, honouring the sample's CDK_CONFIG_PATH."""
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


# Helpers shared with the local stack: it creates the same resources, named the same way, from the same config.


def runtime_names(cfg: DeploymentConfig) -> list[str]:
    return [r.name for r in cfg.models_runtime]


def runtime_catalog(cfg: DeploymentConfig, names: list[str] | None = None) -> str:
    """``RUNTIME_CATALOG`` of the submit function: each runtime's type and model, in configuration order
    (it refuses tasks a runtime's type cannot run and routes v1alpha1 tasks on the model)."""
    return json.dumps(
        {
            r.name: {
                "type": r.type,
                "modelFilename": r.model_filename,
                "dynamicModel": r.dynamic_model,
                **({"ttlSeconds": r.ttl_seconds} if r.ttl_seconds else {}),
            }
            for r in cfg.models_runtime
            if names is None or r.name in names
        },
        separators=(",", ":"),
    )


def runtime_by_name(cfg: DeploymentConfig, name: str) -> RuntimeConfig:
    for runtime in cfg.models_runtime:
        if runtime.name == name:
            return runtime
    raise KeyError(f"no runtime {name!r}; configured: {', '.join(runtime_names(cfg))}")


def runtime_filter_policy(cfg: DeploymentConfig, runtime: RuntimeConfig, *, high: bool = False) -> dict[str, Any]:
    """The SNS filter policy of a runtime's normal or high-priority subscription.

    High-priority tasks are published with the attribute ``runtime_high`` instead of ``runtime`` (see
    ``QueueMessage.message_attributes``), so the normal policy stays what it always was: tasks for the runtime,
    and with ``legacyModelRouting`` the ones routed on ``sd_model_checkpoint``, whoever published them.
    """
    if high:
        return {"runtime_high": [runtime.name]}
    by_runtime: dict[str, Any] = dict(naming.runtime_filter_policy(runtime.name))
    if not runtime.legacy_model_routing:
        return by_runtime
    return {"$or": [by_runtime, {"sd_model_checkpoint": [runtime.model_filename]}]}


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge mappings left to right; nested mappings merge, anything else (lists included) is replaced."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            current = result.get(key)
            if isinstance(value, Mapping) and isinstance(current, Mapping):
                result[key] = deep_merge(current, value)
            elif isinstance(value, Mapping):
                result[key] = deep_merge(value)
            else:
                result[key] = value
    return result
