"""What the simulation needs to know about one deployment, read from ``config.yaml`` as ``cdk deploy`` reads it.

The runtime's Helm values are merged exactly as the CDK app merges them (chart ``values.yaml`` under our
defaults, the runtime's ``extraValues`` and the values the deployment owns), so a plan sees the same
``queueLength``, replica bounds, instance types and NodePool limits as the cluster would.

Things no config holds (how long a GPU node takes to boot, how long the image pull takes, how often spot
capacity is reclaimed) are ``Timings`` with documented defaults, each settable from the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from infra.chart_values import chart_values, image_overridden, placeholder_wiring
from infra.config import DeploymentConfig, RuntimeConfig, deep_merge, parse_config, runtime_by_name

CHART_DEFAULTS = Path(__file__).resolve().parent.parent / "charts" / "sd-on-eks" / "values.yaml"
HPA_SYNC_SECONDS = 15.0


@dataclass(frozen=True)
class HpaPolicy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_seconds: float


@dataclass(frozen=True)
class HpaRules:
    """One direction of the HPA's ``behavior`` (Kubernetes defaults unless extraHPAConfig says otherwise)."""

    stabilization_seconds: float
    policies: tuple[HpaPolicy, ...]
    select: str = "Max"  # Max, Min or Disabled


DEFAULT_SCALE_UP = HpaRules(0.0, (HpaPolicy("Percent", 100, 15.0), HpaPolicy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN = HpaRules(300.0, (HpaPolicy("Percent", 100, 15.0),))


@dataclass(frozen=True)
class Scaling:
    queue_length: int
    activation_queue_length: int
    min_replicas: int
    max_replicas: int
    cooldown_seconds: float
    polling_seconds: float
    count_in_flight: bool
    scale_up: HpaRules = DEFAULT_SCALE_UP
    scale_down: HpaRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class Fleet:
    """Karpenter's NodePool for the runtime: one GPU pod per node."""

    instance_types: tuple[str, ...]
    spot: bool
    on_demand: bool
    gpu_limit: int
    consolidate_after_seconds: float
    snapshot_cache: bool


@dataclass(frozen=True)
class Timings:
    """Durations no config holds. Defaults are typical figures; each is a command-line setting."""

    node_launch_seconds: float = 75.0  # EC2 GPU instance to Ready (Bottlerocket, device plugin up)
    image_pull_seconds: float = 150.0  # runtime + agent images (~10 GB) from ECR through the NAT
    image_pull_cached_seconds: float = 5.0  # the same with the data-volume snapshot (images already there)
    model_load_seconds: float = 25.0  # checkpoint from the Mountpoint volume into GPU memory, pipeline warm
    agent_gap_seconds: float = 0.006  # runtime idle between jobs with one call in flight (benchmark median)
    notify_seconds: float = 0.15  # upload, status write and SNS publish after the image is ready
    interruptions_per_hour: float = 0.0  # spot reclaims per spot node-hour
    spot_availability: float = 1.0  # chance that a launch finds spot capacity
    node_shutdown_seconds: float = 30.0  # billed after Karpenter deletes the node
    image_gb: float = 10.0  # runtime image size: through the NAT when it comes from a public registry


@dataclass(frozen=True)
class Workload:
    model: str
    seconds_per_image: float | None  # None: look up the per-image time table
    images_per_task: int = 1
    batching_gain: float = 1.0  # throughput factor when the runtime merges queued requests (K >= 2)


@dataclass(frozen=True)
class PlanSettings:
    stack_name: str
    runtime: str
    runtime_type: str
    scaling: Scaling
    fleet: Fleet
    in_flight: int  # calls the agent keeps at the runtime
    prefetch: int  # messages held beyond those
    visibility_timeout: float
    max_receive_count: int
    rate_limit: float
    burst_limit: int
    system_instance_type: str
    system_nodes: int
    nat_gateways: int
    workload: Workload
    timings: Timings = field(default_factory=Timings)
    # Community runtime images come from public.ecr.aws through the NAT; images built into the stack's own ECR
    # pull their layers from S3 through the free gateway endpoint.
    pulls_through_nat: bool = False

    @property
    def held_per_pod(self) -> int:
        return self.in_flight + self.prefetch


def model_family(filename: str | None) -> str:
    """The per-image time table's model key, guessed from the checkpoint's file name."""
    name = (filename or "").lower()
    if "turbo" in name or "lightning" in name:
        return "sdxl-turbo"
    if re.search(r"xl|sdxl", name):
        return "sdxl"
    return "sd15"


def _seconds(value: Any, default: float) -> float:
    """Kubernetes durations as Karpenter writes them (``60s``, ``5m``, ``1h``) or plain numbers."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def _hpa_rules(block: Any, default: HpaRules) -> HpaRules:
    if not isinstance(block, dict):
        return default
    policies = tuple(
        HpaPolicy(str(p["type"]), int(p["value"]), float(p.get("periodSeconds", 15)))
        for p in block.get("policies", [])
    ) or default.policies
    return HpaRules(
        float(block.get("stabilizationWindowSeconds", default.stabilization_seconds)),
        policies,
        str(block.get("selectPolicy", default.select)),
    )


def effective_values(config: DeploymentConfig, runtime: RuntimeConfig) -> dict[str, Any]:
    """The Helm values one runtime's release is installed with (chart defaults included)."""
    chart_defaults = yaml.safe_load(CHART_DEFAULTS.read_text(encoding="utf-8"))
    return deep_merge(chart_defaults, chart_values(config, runtime, placeholder_wiring(config, runtime)))


def settings_from_config(
    config: DeploymentConfig,
    runtime_name: str | None = None,
    *,
    seconds_per_image: float | None = None,
    images_per_task: int = 1,
    timings: Timings | None = None,
) -> PlanSettings:
    runtime = runtime_by_name(config, runtime_name) if runtime_name else config.models_runtime[0]
    values = effective_values(config, runtime)
    s = values["runtime"]["scaling"]
    prov = values["karpenter"]["provisioner"]
    node_template = values["karpenter"]["nodeTemplate"]
    agent = values["runtime"]["queueAgent"]
    behavior = s.get("extraHPAConfig") or {}
    scaling = Scaling(
        queue_length=int(s["queueLength"]),
        activation_queue_length=int(s.get("activationQueueLength", 0)),
        min_replicas=int(s["minReplicaCount"]),
        max_replicas=int(s["maxReplicaCount"]),
        cooldown_seconds=float(s["cooldownPeriod"]),
        polling_seconds=float(s["pollingInterval"]),
        count_in_flight=bool(s.get("scaleOnInFlight", True)),
        scale_up=_hpa_rules(behavior.get("scaleUp"), DEFAULT_SCALE_UP),
        scale_down=_hpa_rules(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN),
    )
    if not s.get("enabled", True):
        fixed = int(values["runtime"].get("replicas", 1))
        scaling = replace(scaling, min_replicas=fixed, max_replicas=fixed)
    gpu_limit = prov.get("resourceLimits", {}).get("nvidia.com/gpu")
    capacity = prov.get("capacityType", {})
    fleet = Fleet(
        instance_types=tuple(prov.get("instanceType") or ()),
        spot=bool(capacity.get("spot", True)),
        on_demand=bool(capacity.get("onDemand", True)),
        gpu_limit=int(gpu_limit) if gpu_limit is not None else 10**6,
        consolidate_after_seconds=_seconds(prov.get("disruption", {}).get("consolidateAfter"), 60.0),
        snapshot_cache=bool(node_template.get("dataVolume", {}).get("snapshotID")),
    )
    # One call in flight for ComfyUI (it queues the next prompt itself); A1111-compatible runtimes take two.
    default_in_flight = 1 if runtime.type == "comfyui" else 2
    in_flight = agent.get("runtimeInflight") or agent.get("inflight") or default_in_flight
    return PlanSettings(
        stack_name=config.stack_name,
        runtime=runtime.name,
        runtime_type=runtime.type,
        scaling=scaling,
        fleet=fleet,
        in_flight=int(in_flight),
        prefetch=int(agent.get("prefetch", 1)),
        visibility_timeout=float(config.queue.visibility_timeout),
        max_receive_count=int(config.queue.max_receive_count),
        rate_limit=float(config.apigw.throttle.rate_limit),
        burst_limit=int(config.apigw.throttle.burst_limit),
        system_instance_type=config.cluster_components.instance_type,
        system_nodes=int(config.cluster_components.desired_count),
        nat_gateways=int(config.network.nat_gateways),
        workload=Workload(model_family(runtime.model_filename), seconds_per_image, images_per_task),
        timings=timings or Timings(),
        pulls_through_nat=runtime.type != "diffusers" or image_overridden(runtime, "inferenceApi"),
    )


def apply_override(raw: dict[str, Any], key: str, value: Any, runtime_index: int = 0) -> dict[str, Any]:
    """``config.yaml`` with one key set: ``runtime.…``/``karpenter.…`` paths go to the runtime's extraValues.

    Returns a new mapping; the input is not changed.
    """
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"--sweep/--set key {key!r} is not a dotted path")
    if parts[0] in ("runtime", "karpenter"):
        runtimes = [dict(r) for r in raw["modelsRuntime"]]
        target = runtimes[runtime_index]
        patch: Any = value
        for part in reversed(parts):
            patch = {part: patch}
        target["extraValues"] = deep_merge(target.get("extraValues") or {}, patch)
        return {**raw, "modelsRuntime": runtimes}
    patch = value
    for part in reversed(parts):
        patch = {part: patch}
    return deep_merge(raw, patch)


def parse_value(text: str) -> Any:
    """A sweep value as YAML reads it: ``10`` is a number, ``true`` a bool, ``60s`` a string."""
    return yaml.safe_load(text)


def load_raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a YAML mapping")
    parse_config(data, source=str(path))  # report every bad key before planning
    return data

