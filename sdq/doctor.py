"""``sdq doctor``: what a first deployment trips over, checked before and after ``cdk deploy``.

Each check reports ok, warn or fail with the fix. Before the stack exists, the queue and endpoint checks say so
(warn) and the account checks still run: the model files, the GPU vCPU quotas, the spot service-linked role.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import DeploymentConfig, RuntimeConfig
from sdq.client import Endpoint
from sdq.endpoints import EndpointError

Status = Literal["ok", "warn", "fail"]
# What the runtime loads (inference_api): single files in these formats, or a diffusers folder.
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
DIFFUSERS_MARKER = "model_index.json"
SPOT_ROLE = "AWSServiceRoleForEC2Spot"
# The chart's defaults (charts/sd-on-eks/values.yaml) where extraValues says nothing.
CHART_INSTANCE_TYPES = ("g6.2xlarge", "g5.2xlarge")
CHART_MAX_REPLICAS = 20
# EC2 vCPU quotas of the G and VT families (Service Quotas codes).
G_VT_QUOTAS = {"on-demand": "L-DB2E81BA", "spot": "L-3819A6DF"}
QUOTA_NAMES = {"on-demand": "Running On-Demand G and VT instances", "spot": "All G and VT Spot Instance Requests"}


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str = ""

    def render(self) -> str:
        line = f"[{self.status}] {self.check}: {self.message}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


@dataclass
class Aws:
    """The clients the checks use (a boto3 session's, or test doubles of the same shape)."""

    session: Any
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# -- model files ---------------------------------------------------------------------------------------------


def check_models(config: DeploymentConfig, aws: Aws) -> Iterator[Finding]:
    s3, bucket = aws.client("s3"), config.model_bucket_name
    for runtime in config.models_runtime:
        check = f"model {runtime.name}"
        key = runtime.model_filename
        if not key:
            yield Finding(check, "ok", "no modelFilename: the runtime picks models per task")
            continue
        where = f"s3://{bucket}/{key}"
        try:
            yield _model_object(s3, bucket, key, check, where)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                yield _model_folder(s3, bucket, key, check, where)
            elif _error_code(exc) in ("NoSuchBucket",):
                yield Finding(check, "fail", f"bucket {bucket} does not exist", "create it or fix modelBucketArn")
            else:
                yield Finding(check, "fail", f"cannot read {where}: {_error_code(exc)}", "check your credentials")


def _model_object(s3: Any, bucket: str, key: str, check: str, where: str) -> Finding:
    head = s3.head_object(Bucket=bucket, Key=key)
    size = int(head["ContentLength"])
    if not key.lower().endswith(SINGLE_FILE_SUFFIXES):
        return Finding(
            check,
            "fail",
            f"{where} is not a format the runtime loads",
            "use a .safetensors or .ckpt single file, or a diffusers folder (with model_index.json)",
        )
    if key.lower().endswith(".safetensors"):
        # The format starts with an 8-byte little-endian header length, then the JSON header.
        start = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-8")["Body"].read()
        length = int.from_bytes(start[:8], "little") if len(start) == 9 else 0
        if not (0 < length < size and start[8:9] == b"{"):
            return Finding(check, "fail", f"{where} is not a safetensors file", "upload the checkpoint again")
    return Finding(check, "ok", f"{where} ({size / 1e9:.1f} GB)")


def _model_folder(s3: Any, bucket: str, key: str, check: str, where: str) -> Finding:
    prefix = key.rstrip("/") + "/"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + DIFFUSERS_MARKER, MaxKeys=1)
    if listed.get("KeyCount", 0):
        return Finding(check, "ok", f"{where}/ (diffusers folder)")
    return Finding(
        check,
        "fail",
        f"{where} not found",
        f"upload it: aws s3 cp {key.rsplit('/', 1)[-1]} {where} (or fix modelsRuntime[].modelFilename)",
    )


# -- vCPU quotas ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuDemand:
    runtime: str
    instance_types: tuple[str, ...]
    max_replicas: int
    capacity_types: tuple[str, ...]


def gpu_demand(runtime: RuntimeConfig) -> GpuDemand | None:
    if runtime.extra_value("karpenter", "enabled", default=True) is False:
        return None
    types = runtime.extra_value("karpenter", "provisioner", "instanceType", default=list(CHART_INSTANCE_TYPES))
    capacity = runtime.extra_value("karpenter", "provisioner", "capacityType", default={}) or {}
    chosen = tuple(name for name, key in (("spot", "spot"), ("on-demand", "onDemand")) if capacity.get(key, True))
    replicas = runtime.extra_value("runtime", "scaling", "maxReplicaCount", default=CHART_MAX_REPLICAS)
    return GpuDemand(runtime.name, tuple(types), int(replicas), chosen)


def check_quotas(config: DeploymentConfig, aws: Aws) -> Iterator[Finding]:
    demands = [d for d in map(gpu_demand, config.models_runtime) if d is not None and d.instance_types]
    g_vt = [d for d in demands if all(t.split(".")[0].startswith(("g", "vt")) for t in d.instance_types)]
    for other in (d for d in demands if d not in g_vt):
        yield Finding(f"quota {other.runtime}", "warn", "instance types outside G/VT are not checked")
    if not g_vt:
        return
    types = sorted({t for d in g_vt for t in d.instance_types})
    described = aws.client("ec2").describe_instance_types(InstanceTypes=types)["InstanceTypes"]
    # vCPUs one replica (one GPU) takes on the largest of its types.
    per_gpu = {
        t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] / max(1, sum(g["Count"] for g in t["GpuInfo"]["Gpus"]))
        for t in described
    }
    values: dict[str, float] = {}
    for capacity, code in G_VT_QUOTAS.items():
        if any(capacity in d.capacity_types for d in g_vt):
            try:
                quota = aws.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]
            except ClientError as exc:
                yield Finding(f"quota {capacity} G/VT", "warn", f"cannot read quota {code}: {_error_code(exc)}")
                continue
            values[capacity] = float(quota["Value"])

    def launches(demand: GpuDemand, capacity: str) -> bool:
        return values.get(capacity, math.inf) >= min(per_gpu[t] for t in demand.instance_types)

    for capacity, value in values.items():
        users = [d for d in g_vt if capacity in d.capacity_types]
        needed = math.ceil(sum(d.max_replicas * max(per_gpu[t] for t in d.instance_types) for d in users))
        runtimes = ", ".join(f"{d.runtime} (max {d.max_replicas} replicas)" for d in users)
        summary = f"{QUOTA_NAMES[capacity]}: {value:g} vCPUs; {runtimes} need {needed}"
        fix = (
            f"aws service-quotas request-service-quota-increase --service-code ec2 "
            f"--quota-code {G_VT_QUOTAS[capacity]} --desired-value {needed}"
        )
        check = f"quota {capacity} G/VT"
        if value >= needed:
            yield Finding(check, "ok", summary)
        elif any(not any(launches(d, c) for c in d.capacity_types) for d in users):
            # A runtime whose every capacity type is short of one node never gets a GPU node.
            yield Finding(check, "fail", f"{summary}: not even one GPU node can launch", fix)
        else:
            yield Finding(check, "warn", f"{summary}: scaling stops short of maxReplicaCount", fix)


# -- spot service-linked role --------------------------------------------------------------------------------


def check_spot_role(config: DeploymentConfig, aws: Aws, *, stack_exists: bool) -> Finding:
    check = "spot service-linked role"
    uses_spot = any(d is not None and "spot" in d.capacity_types for d in map(gpu_demand, config.models_runtime))
    try:
        aws.client("iam").get_role(RoleName=SPOT_ROLE)
        exists = True
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            return Finding(check, "warn", f"cannot read role {SPOT_ROLE}: {_error_code(exc)}")
        exists = False
    if config.create_spot_service_linked_role:
        if exists and not stack_exists:
            return Finding(
                check,
                "fail",
                f"{SPOT_ROLE} already exists, so the stack cannot create it",
                "set createSpotServiceLinkedRole: false in config.yaml",
            )
        return Finding(check, "ok", f"{SPOT_ROLE} {'exists' if exists else 'is created by the stack'}")
    if exists or not uses_spot:
        return Finding(check, "ok", f"{SPOT_ROLE} {'exists' if exists else 'not needed (no spot capacity)'}")
    return Finding(
        check,
        "fail",
        f"{SPOT_ROLE} is missing: spot nodes cannot launch",
        "set createSpotServiceLinkedRole: true in config.yaml, or run "
        "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com",
    )


# -- the deployed stack --------------------------------------------------------------------------------------


def stack_outputs(aws: Aws, stack_name: str) -> dict[str, str] | None:
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def check_queues(outputs: dict[str, str], aws: Aws) -> Iterator[Finding]:
    sqs = aws.client("sqs")
    urls = {k: v for k, v in sorted(outputs.items()) if k.startswith(("QueueUrl", "HighQueueUrl", "DlqUrl"))}
    if not urls:
        yield Finding("queues", "fail", "the stack has no QueueUrl*/DlqUrl* outputs", "redeploy the stack")
    for key, url in urls.items():
        name = url.rstrip("/").rsplit("/", 1)[-1]
        dead_letters = key.startswith("DlqUrl")
        try:
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except ClientError as exc:
            yield Finding(f"queue {name}", "fail", f"cannot read it: {_error_code(exc)}", "redeploy the stack")
            continue
        waiting = int(attributes["ApproximateNumberOfMessages"])
        running = int(attributes["ApproximateNumberOfMessagesNotVisible"])
        depth = f"{waiting} waiting, {running} in flight"
        if dead_letters and waiting:
            yield Finding(
                f"dead letters {name}",
                "warn",
                f"{depth}: tasks exhausted their retries",
                f"look at them: aws sqs receive-message --queue-url {url} --max-number-of-messages 10",
            )
        else:
            yield Finding(f"{'dead letters' if dead_letters else 'queue'} {name}", "ok", depth)


def check_endpoint(endpoint: Endpoint, transport: httpx.BaseTransport | None = None) -> Finding:
    """A status read of a task that cannot exist: 404 means the API answered and took the key."""
    check = "endpoint"
    if not endpoint.api_key:
        return Finding(check, "fail", f"no API key for {endpoint.url}", "the stack's ApiKeyCommand output prints it")
    url = endpoint.url.rstrip("/") + "/tasks/sdq-doctor-probe"
    try:
        with httpx.Client(transport=transport, timeout=15) as client:
            response = client.get(url, headers={"x-api-key": endpoint.api_key})
    except httpx.HTTPError as exc:
        return Finding(check, "fail", f"{endpoint.url} unreachable: {type(exc).__name__}", "check the ApiEndpoint")
    if response.status_code == 404:
        return Finding(check, "ok", f"{endpoint.url} answers with the key")
    if response.status_code == 403:
        return Finding(check, "fail", f"{endpoint.url} refused the key (403)", "use the stack's ApiKeyCommand output")
    return Finding(check, "fail", f"{endpoint.url} answered {response.status_code}", "see the API's logs")


def run(
    config: DeploymentConfig,
    aws: Aws,
    *,
    stack_name: str,
    endpoint_of: Callable[[str], Endpoint],
    transport: httpx.BaseTransport | None = None,
) -> list[Finding]:
    findings = list(_guard("models", lambda: check_models(config, aws)))
    findings += _guard("quotas", lambda: check_quotas(config, aws))
    outputs = None
    try:
        outputs = stack_outputs(aws, stack_name)
    except (ClientError, BotoCoreError) as exc:
        findings.append(Finding("stack", "fail", f"cannot read stack {stack_name}: {exc}", "check your credentials"))
    findings += _guard("spot service-linked role", lambda: [check_spot_role(config, aws, stack_exists=bool(outputs))])
    if outputs is None:
        findings.append(Finding("stack", "warn", f"stack {stack_name} is not deployed: queues and endpoint unchecked"))
        return findings
    findings += _guard("queues", lambda: check_queues(outputs, aws))
    findings += _guard("endpoint", lambda: [check_endpoint(endpoint_of(stack_name), transport)])
    return findings


def _guard(check: str, produce: Callable[[], Iterable[Finding]]) -> list[Finding]:
    """A check that cannot talk to AWS at all is one failed finding, not a crash of the whole report."""
    try:
        return list(produce())
    except (ClientError, BotoCoreError) as exc:
        return [Finding(check, "fail", f"AWS call failed: {exc}", "check your credentials and region")]
    except EndpointError as exc:
        return [Finding(check, "fail", str(exc), "deploy the stack, or pass --stack with its name")]


def report(findings: list[Finding]) -> str:
    counts = {s: sum(f.status == s for f in findings) for s in ("ok", "warn", "fail")}
    lines = [f.render() for f in findings]
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"
