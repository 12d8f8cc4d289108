"""What the rendered objects promise: drain order, wiring between objects, scaling, nodes, storage, security."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.harness import CONFIG_SET_NAMES, Helm, RenderCache, Rendered, ValueSet, iter_containers, tolerates

# The replaced sample's agent environment plus ours (the conventions every engineer codes against).
AGENT_ENV = {
    "SQS_QUEUE_URL", "SNS_TOPIC_ARN", "S3_BUCKET", "RUNTIME_TYPE", "RUNTIME_NAME", "API_BASE_URL",
    "DYNAMIC_SD_MODEL", "LOGLEVEL", "DISABLE_XRAY", "METRICS_PORT", "JOB_TIMEOUT_SECONDS", "PREFETCH",
}  # fmt: skip


def _subset(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(out: Rendered) -> dict[str, str]:
    labels: dict[str, str] = out.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


# --- every value set ---------------------------------------------------------------------------------------


def test_agent_drains_before_the_runtime_stops(rendered: Rendered) -> None:
    """The agent is the only main container; the runtime is a native sidecar, so Kubernetes stops it only after
    the agent has exited, and the grace period outlasts the longest job."""
    spec = rendered.pod_spec
    assert [c["name"] for c in spec["containers"]] == ["queue-agent"]
    sidecars = spec["initContainers"]
    assert "runtime" in [c["name"] for c in sidecars]
    # Every init container is a sidecar: a plain one would run to completion before the agent even starts.
    assert all(c.get("restartPolicy") == "Always" for c in sidecars)
    job_timeout = int(rendered.env("queue-agent")["JOB_TIMEOUT_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > job_timeout


def test_agent_environment(rendered: Rendered) -> None:
    env = rendered.env("queue-agent")
    assert set(env) >= AGENT_ENV
    agent, runtime = rendered.container("queue-agent"), rendered.container("runtime")
    http_port = next(p["containerPort"] for p in runtime["ports"] if p["name"] == "http")
    assert re.fullmatch(rf"http://localhost:{http_port}/(sdapi/v1/)?", env["API_BASE_URL"])
    assert int(env["METRICS_PORT"]) == next(p["containerPort"] for p in agent["ports"] if p["name"] == "metrics")
    assert env["RUNTIME_TYPE"] == rendered.one("Deployment")["metadata"]["labels"]["app.kubernetes.io/component"]
    assert env["DYNAMIC_SD_MODEL"] in ("true", "false") and env["DISABLE_XRAY"] in ("true", "false")
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"]
    if env["DISABLE_XRAY"] == "false":
        assert env["AWS_XRAY_DAEMON_ADDRESS"]
    if rendered.value_set.name == "required":
        # Optional: one queue and no webhook signing unless the values name a high queue and a secret.
        assert "SQS_HIGH_QUEUE_URL" not in env and "WEBHOOK_SECRET_ARN" not in env


def test_probes(rendered: Rendered) -> None:
    runtime, agent = rendered.container("runtime"), rendered.container("queue-agent")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if rendered.env("queue-agent")["RUNTIME_TYPE"] == "diffusers":
            # Bound to loopback, so probed from inside its container.
            assert runtime[probe]["exec"]["command"][:2] == ["python", "-c"]
            assert "http://127.0.0.1:" in runtime[probe]["exec"]["command"][2]
        else:
            assert runtime[probe]["httpGet"]["port"] == "http"
    # The startup probe must allow a slow model load before liveness starts counting.
    startup = runtime["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    for probe in ("readinessProbe", "livenessProbe"):
        assert agent[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_runtime_gets_a_gpu_and_read_only_models(rendered: Rendered) -> None:
    runtime = rendered.container("runtime")
    assert int(runtime["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    models = next(m for m in runtime["volumeMounts"] if m["name"] == "models")
    assert models["readOnly"] is True
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"]["readOnly"] is True


def test_containers_are_locked_down(rendered: Rendered) -> None:
    spec = rendered.pod_spec
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"] for v in spec["volumes"]}
    for c in iter_containers(spec):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes
        if sc.get("readOnlyRootFilesystem"):
            assert sc["runAsNonRoot"] is True
            if c["name"] != "xray-daemon":  # a static binary that writes nothing
                assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, c["name"]
    agent = rendered.container("queue-agent")["securityContext"]
    assert agent["readOnlyRootFilesystem"] is True and agent["runAsNonRoot"] is True


def test_selectors_match_the_pod(rendered: Rendered) -> None:
    labels = _pod_labels(rendered)
    deployment = rendered.one("Deployment")
    assert _subset(deployment["spec"]["selector"]["matchLabels"], labels)
    assert "helm.sh/chart" not in labels  # a chart bump alone must not roll every pod
    assert _subset(rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    service = rendered.one("Service")
    assert _subset(service["spec"]["selector"], labels)
    agent_ports = {p["name"] for p in rendered.container("queue-agent")["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= agent_ports
    accounts = rendered.of_kind("ServiceAccount")
    if accounts:
        assert rendered.pod_spec["serviceAccountName"] == accounts[0]["metadata"]["name"]


def test_namespaced_objects_live_in_the_release_namespace(rendered: Rendered) -> None:
    cluster_scoped = {"PersistentVolume", "NodePool", "EC2NodeClass"}
    for doc in rendered.docs:
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"]
            assert doc["metadata"]["name"].startswith(f"{rendered.value_set.namespace}-")
        else:
            assert doc["metadata"]["namespace"] == rendered.value_set.namespace


def test_keda_scales_the_deployment_on_its_queues(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    scaled = rendered.of_kind("ScaledObject")
    if not scaled:
        assert rendered.value_set.name == "comfyui"
        assert deployment["spec"]["replicas"] == 2
        return
    spec = scaled[0]["spec"]
    # KEDA owns the replica count: a fresh install starts at minReplicaCount (0: no GPU node before the first task),
    # an upgrade keeps the live count (looked up in the cluster, so `helm template` shows the install value).
    assert deployment["spec"]["replicas"] == spec.get("minReplicaCount", 0)
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    env = rendered.env("queue-agent")
    high = env.get("SQS_HIGH_QUEUE_URL")
    if rendered.value_set.name.startswith("config-"):
        assert high, "the CDK always gives a runtime its high-priority queue"
    triggers = spec["triggers"]
    # One trigger per queue the agent reads, in the order it names them.
    assert [t["metadata"]["queueURL"] for t in triggers] == [env["SQS_QUEUE_URL"], *([high] if high else [])]
    auth = rendered.one("TriggerAuthentication")
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    for trigger in triggers:
        assert trigger["type"] == "aws-sqs-queue"
        meta = trigger["metadata"]
        assert meta["scaleOnInFlight"] == "true"
        assert meta["queueLength"].isdigit() and meta["activationQueueLength"].isdigit()
        assert meta["awsRegion"] == env["AWS_REGION"]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    modifiers = spec.get("advanced", {}).get("scalingModifiers")
    if not high:
        assert modifiers is None and "name" not in triggers[0]
        return
    # Two queues, one metric: KEDA compares the sum of both with the per-replica target, and wakes the runtime when
    # the sum passes the activation length (a task in either queue).
    assert [t["name"] for t in triggers] == ["normal", "high"]
    meta = triggers[0]["metadata"]
    assert modifiers == {
        "formula": "normal + high",
        "target": meta["queueLength"],
        "activationTarget": meta["activationQueueLength"],
        "metricType": "AverageValue",
    }


def test_pods_land_on_their_own_gpu_nodes(rendered: Rendered) -> None:
    spec = rendered.pod_spec
    assert rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == (
        "true"
    )
    pools = rendered.of_kind("NodePool")
    if not pools:
        assert rendered.value_set.name == "comfyui"
        assert "karpenter.sh/nodepool" not in spec.get("nodeSelector", {})
        return
    pool, node_class = pools[0], rendered.one("EC2NodeClass")
    template = pool["spec"]["template"]["spec"]
    assert spec["nodeSelector"]["karpenter.sh/nodepool"] == pool["metadata"]["name"]
    assert template["nodeClassRef"] == {
        "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class["metadata"]["name"]
    }  # fmt: skip
    taints = template["taints"]
    assert {"key": "nvidia.com/gpu", "effect": "NoSchedule"} in taints
    assert any(t["key"] == "runtime" and t["value"] == rendered.env("queue-agent")["RUNTIME_NAME"] for t in taints)
    for taint in taints:
        assert tolerates(spec["tolerations"], taint), taint
    requirements = {r["key"]: r for r in template["requirements"]}
    assert requirements["karpenter.sh/capacity-type"]["values"]
    assert requirements["karpenter.k8s.aws/instance-gpu-manufacturer"]["values"] == ["nvidia"]
    assert "node.kubernetes.io/instance-type" in requirements or "karpenter.k8s.aws/instance-family" in requirements
    disruption = pool["spec"]["disruption"]
    assert disruption["consolidationPolicy"] in ("WhenEmpty", "WhenEmptyOrUnderutilized")
    assert disruption["budgets"]
    # A draining node waits for the running job at least as long as the pod may take to stop.
    assert _seconds(template["terminationGracePeriod"]) > spec["terminationGracePeriodSeconds"]
    # Pods use Pod Identity; the instance metadata service stays out of their reach.
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"
    assert node_class["spec"]["metadataOptions"]["httpPutResponseHopLimit"] == 1
    root_volumes = [m for m in node_class["spec"]["blockDeviceMappings"] if m.get("rootVolume")]
    assert len(root_volumes) == 1 and root_volumes[0]["ebs"]["encrypted"] is True


def test_model_volume_is_a_read_only_s3_mount(rendered: Rendered) -> None:
    claim_name = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "models")["persistentVolumeClaim"][
        "claimName"
    ]
    volumes = rendered.of_kind("PersistentVolume")
    if not volumes:
        assert rendered.value_set.name == "existing-claim"
        assert claim_name == "shared-models" and not rendered.of_kind("PersistentVolumeClaim")
        return
    pv, pvc = volumes[0], rendered.one("PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim_name
    assert pv["spec"]["claimRef"] == {"namespace": rendered.value_set.namespace, "name": claim_name}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""
    csi = pv["spec"]["csi"]
    assert csi["driver"] == "s3.csi.aws.com"
    assert csi["volumeHandle"] == pv["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", csi["volumeAttributes"]["bucketName"])
    assert "read-only" in pv["spec"]["mountOptions"]
    assert set(pv["spec"]["accessModes"]) == {"ReadOnlyMany"}


def test_no_other_pod_is_admitted_to_the_runtime(rendered: Rendered) -> None:
    """The default NetworkPolicy selects the runtime's pods and admits ingress to the agent's metrics port only:
    the runtime's API port is reachable from no other pod (and the diffusers runtime listens on loopback)."""
    [policy] = rendered.of_kind("NetworkPolicy")
    spec = policy["spec"]
    assert _subset(spec["podSelector"]["matchLabels"], _pod_labels(rendered)) and spec["podSelector"]["matchLabels"]
    assert "Ingress" in spec["policyTypes"]
    agent, runtime = rendered.container("queue-agent"), rendered.container("runtime")
    metrics = {p["name"]: p["containerPort"] for p in agent["ports"]}
    runtime_ports = {p["name"] for p in runtime["ports"]} | {p["containerPort"] for p in runtime["ports"]}
    admitted = [port["port"] for rule in spec["ingress"] for port in rule.get("ports", [])]
    # Every rule names ports (a rule without ports admits every port), and only the agent's metrics port.
    assert all(rule.get("ports") for rule in spec["ingress"])
    assert admitted and all(p in metrics or p in metrics.values() for p in admitted)
    assert not set(admitted) & runtime_ports
    service_ports = {p["targetPort"] for s in rendered.of_kind("Service") for p in s["spec"]["ports"]}
    assert not service_ports & runtime_ports
    if rendered.env("queue-agent")["RUNTIME_TYPE"] == "diffusers":
        assert runtime["command"][runtime["command"].index("--host") + 1] == "127.0.0.1"


# --- particular value sets ---------------------------------------------------------------------------------


def test_diffusers_runtime_defaults(rendered_sets: RenderCache) -> None:
    out = rendered_sets("required")
    runtime = out.container("runtime")
    assert runtime["command"] == [
        "python", "-m", "inference_api", "serve", "--models", "/models", "--port", "8080", "--host", "127.0.0.1"
    ]  # fmt: skip
    assert "'http://127.0.0.1:8080/ready'" in runtime["startupProbe"]["exec"]["command"][2]
    assert "'http://127.0.0.1:8080/ready'" in runtime["readinessProbe"]["exec"]["command"][2]
    assert "'http://127.0.0.1:8080/health'" in runtime["livenessProbe"]["exec"]["command"][2]
    assert runtime["securityContext"]["readOnlyRootFilesystem"] is True
    assert out.env("queue-agent")["API_BASE_URL"] == "http://localhost:8080/sdapi/v1/"
    assert out.env("runtime")["HF_HUB_OFFLINE"] == "1"
    # X-Ray daemon as a sidecar that outlives the agent, so the last traces still get out.
    assert [c["name"] for c in out.pod_spec["initContainers"]] == ["xray-daemon", "runtime"]
    assert out.one("PersistentVolume")["spec"]["csi"]["volumeAttributes"]["bucketName"] == "sdoneks-model-bucket-51a6"
    pool = out.one("NodePool")["spec"]
    assert pool["disruption"]["consolidationPolicy"] == "WhenEmpty"
    node_class = out.one("EC2NodeClass")["spec"]
    assert node_class["amiSelectorTerms"] == [{"alias": "bottlerocket@latest"}]
    assert node_class["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "sdoneks"}}]
    devices = {m["deviceName"]: m for m in node_class["blockDeviceMappings"]}
    assert set(devices) == {"/dev/xvda", "/dev/xvdb"} and devices["/dev/xvdb"]["rootVolume"] is True
    assert "snapshotID" not in devices["/dev/xvdb"]["ebs"]
    assert devices["/dev/xvda"]["ebs"]["volumeSize"] == "20Gi"
    # Bottlerocket's NVIDIA variants run their own device plugin: the cluster's DaemonSet must stay off.
    assert "sd-async/device-plugin" not in pool["template"]["metadata"]["labels"]
    # Headroom for converting a 7 GB SDXL single file (weights held twice during conversion).
    assert _gib(runtime["resources"]["limits"]["memory"]) >= 24
    # The X-Ray daemon reads EKS Pod Identity credentials from 3.6.0 on (AWS SDK for Go v2).
    xray = out.container("xray-daemon")["image"]
    assert tuple(int(p) for p in xray.rsplit(":", 1)[1].split(".")) >= (3, 6, 0)


def _gib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Gi|Mi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) / (1024 if unit == "Mi" else 1)


@pytest.mark.parametrize(
    ("extra", "size"), [((), "150Gi"), (("--set", "karpenter.nodeTemplate.osVolume.volumeSize=120Gi"), "120Gi")]
)
def test_other_node_families_get_a_large_root_and_the_device_plugin_label(
    helm: Helm, value_sets: dict[str, ValueSet], extra: tuple[str, ...], size: str
) -> None:
    out = helm.render(value_sets["required"], "--set", "karpenter.nodeTemplate.amiFamily=AL2023", *extra)
    labels = out.one("NodePool")["spec"]["template"]["metadata"]["labels"]
    # The CDK installs NVIDIA's device plugin onto nodes with this label (infra/cluster.py).
    assert labels["sd-async/device-plugin"] == "nvidia"
    (root,) = out.one("EC2NodeClass")["spec"]["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda" and root["rootVolume"] is True
    assert root["ebs"]["volumeSize"] == size


def test_spot_only(rendered_sets: RenderCache) -> None:
    out = rendered_sets("spot-only")
    pool = out.one("NodePool")["spec"]
    requirements = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
    assert requirements["karpenter.sh/capacity-type"] == ["spot"]
    assert requirements["karpenter.k8s.aws/instance-family"] == ["g6", "g6e"]
    assert "node.kubernetes.io/instance-type" not in requirements
    assert pool["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert pool["disruption"]["budgets"][1] == {"nodes": "0", "schedule": "0 9 * * mon-fri", "duration": "8h"}
    assert pool["template"]["spec"]["expireAfter"] == "Never"
    assert pool["weight"] == 50
    node_class = out.one("EC2NodeClass")["spec"]
    assert node_class["amiSelectorTerms"] == [{"alias": "al2023@v20250715"}]
    assert node_class["instanceStorePolicy"] == "RAID0"
    (root,) = node_class["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda" and root["rootVolume"] is True and root["ebs"]["volumeSize"] == "200Gi"
    assert pool["template"]["metadata"]["labels"]["sd-async/device-plugin"] == "nvidia"


def test_dynamic_model(rendered_sets: RenderCache) -> None:
    out = rendered_sets("dynamic-model")
    agent = out.env("queue-agent")
    assert agent["DYNAMIC_SD_MODEL"] == out.env("runtime")["DYNAMIC_SD_MODEL"] == "true"
    assert agent["JOB_TIMEOUT_SECONDS"] == "3600"
    assert out.pod_spec["terminationGracePeriodSeconds"] == 3900
    assert agent["STATUS_TABLE"] == "sdoneks-task-status"
    assert agent["PREFETCH"] == "2" and agent["LOGLEVEL"] == "DEBUG"
    assert agent["ALLOWED_INPUT_BUCKETS"] == "sdoneks-inputs,shared-assets"
    assert agent["RUNTIME_READY_TIMEOUT_SECONDS"] == "900"
    assert agent["AWS_MAX_ATTEMPTS"] == "5"
    assert out.env("runtime")["SD_MODEL_CHECKPOINT"] == "sd_xl_base_1.0.safetensors"
    assert out.container("runtime")["command"][-2:] == ["--default-model", "sd_xl_base_1.0.safetensors"]
    assert out.env("runtime")["LOGLEVEL"] == "DEBUG"
    assert out.env("runtime")["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert agent["SQS_HIGH_QUEUE_URL"] == "https://sqs.us-west-2.amazonaws.com/123456789012/sdoneks-sdruntime-high"
    assert agent["WEBHOOK_SECRET_ARN"] == "arn:aws:secretsmanager:us-west-2:123456789012:secret:sdoneks-webhooks-AbCdEf"
    scaled = out.one("ScaledObject")["spec"]
    assert [t["metadata"]["queueLength"] for t in scaled["triggers"]] == ["2", "2"]
    assert [t["metadata"]["activationQueueLength"] for t in scaled["triggers"]] == ["1", "1"]
    # The HPA behavior and the scaling modifiers share `advanced`.
    advanced = scaled["advanced"]
    assert set(advanced) == {"horizontalPodAutoscalerConfig", "scalingModifiers"}
    assert advanced["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert advanced["scalingModifiers"]["formula"] == "normal + high"
    assert advanced["scalingModifiers"]["target"] == "2" and advanced["scalingModifiers"]["activationTarget"] == "1"
    assert out.one("TriggerAuthentication")["spec"]["podIdentity"] == {
        "provider": "aws", "roleArn": "arn:aws:iam::123456789012:role/sdoneks-keda-sqs"
    }  # fmt: skip


def test_existing_claim(rendered_sets: RenderCache) -> None:
    out = rendered_sets("existing-claim")
    assert not out.of_kind("ServiceAccount")
    assert out.pod_spec["serviceAccountName"] == "runtime-sa"
    # An existing trace collector: no daemon sidecar.
    assert [c["name"] for c in out.pod_spec["initContainers"]] == ["runtime"]
    assert out.env("queue-agent")["AWS_XRAY_DAEMON_ADDRESS"] == "cloudwatch-agent.amazon-cloudwatch:2000"
    monitor, service = out.one("ServiceMonitor"), out.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert _subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    policy = out.one("NetworkPolicy")["spec"]
    assert _subset(policy["podSelector"]["matchLabels"], _pod_labels(out))
    assert policy["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]


def test_user_provided_comfyui(rendered_sets: RenderCache) -> None:
    out = rendered_sets("comfyui")
    runtime = out.container("runtime")
    assert runtime["image"].endswith("/comfyui@sha256:" + "0123456789abcdef" * 4)
    assert "command" not in runtime and runtime["args"] == ["--listen", "0.0.0.0", "--port", "8188"]
    assert runtime["ports"][0]["containerPort"] == 8188
    assert runtime["livenessProbe"]["httpGet"]["path"] == "/system_stats"
    assert out.env("queue-agent")["API_BASE_URL"] == "http://localhost:8188/"
    assert out.env("queue-agent")["DISABLE_XRAY"] == "true"
    assert [c["name"] for c in out.pod_spec["initContainers"]] == ["runtime"]
    # Community images write beside their code and may run as root; the rest of the hardening stays.
    assert "readOnlyRootFilesystem" not in runtime["securityContext"]
    assert next(m for m in runtime["volumeMounts"] if m["name"] == "models")["mountPath"] == "/opt/ml/code/models"
    assert not out.of_kind("ScaledObject") and not out.of_kind("NodePool") and not out.of_kind("EC2NodeClass")
    # The agent's ComfyUI guards: the node allowlist, and ComfyUI's folders shared so it removes each task's files.
    env = out.env("queue-agent")
    assert env["COMFYUI_ALLOWED_NODES"] == "@default,VHS_VideoCombine"
    agent_io = {m["name"]: m["mountPath"] for m in out.container("queue-agent")["volumeMounts"]}
    runtime_io = {m["name"]: m["mountPath"] for m in runtime["volumeMounts"]}
    for folder in ("input", "output"):
        volume = f"comfyui-{folder}"
        assert env[f"COMFYUI_{folder.upper()}_DIR"] == agent_io[volume]
        assert runtime_io[volume] == f"/opt/ComfyUI/{folder}"
        assert "emptyDir" in next(v for v in out.pod_spec["volumes"] if v["name"] == volume)


def _extra(runtime: dict[str, Any], *path: str) -> Any:
    node: Any = runtime.get("extraValues") or {}
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node


@pytest.mark.parametrize("name", CONFIG_SET_NAMES)
def test_config_extra_values_apply(rendered_sets: RenderCache, name: str) -> None:
    """A runtime's extraValues from a config in the replaced sample's shape reach the objects they name."""
    out = rendered_sets(name)
    runtime = dict(out.value_set.runtime)
    agent = out.env("queue-agent")
    assert agent["RUNTIME_NAME"] == runtime["name"]
    assert agent["RUNTIME_TYPE"] == runtime["type"]
    assert agent["DYNAMIC_SD_MODEL"] == ("true" if runtime.get("dynamicModel") else "false")
    assert out.env("runtime")["SD_MODEL_CHECKPOINT"] == runtime.get("modelFilename", "")
    scaled = out.one("ScaledObject")["spec"]
    for key, value in _extra(runtime, "runtime", "scaling").items():
        got = scaled["triggers"][0]["metadata"][key] if key == "queueLength" else scaled[key]
        assert str(got) == str(value), key
    pool = out.one("NodePool")["spec"]["template"]["spec"]
    requirements = {r["key"]: r["values"] for r in pool["requirements"]}
    if types := _extra(runtime, "karpenter", "provisioner", "instanceType"):
        assert requirements["node.kubernetes.io/instance-type"] == types
    if capacity := _extra(runtime, "karpenter", "provisioner", "capacityType"):
        wanted = [t for t, on in (("spot", capacity.get("spot")), ("on-demand", capacity.get("onDemand"))) if on]
        assert requirements["karpenter.sh/capacity-type"] == wanted
    family = _extra(runtime, "karpenter", "nodeTemplate", "amiFamily") or "Bottlerocket"
    alias = out.one("EC2NodeClass")["spec"]["amiSelectorTerms"][0]["alias"]
    assert alias == f"{family.lower()}@latest"


def test_sample_shaped_values_keep_their_meaning(rendered_sets: RenderCache) -> None:
    out = rendered_sets("sample-shaped")
    runtime, env = out.container("runtime"), out.env("runtime")
    assert runtime["image"] == "123456789012.dkr.ecr.us-west-2.amazonaws.com/sdwebui:v1.10.1"
    assert env["API_ONLY"] == "true" and env["EXTRA_CMD_ARG"] == "--xformers"
    assert env["SD_MODEL_CHECKPOINT"] == "v1-5-pruned-emaonly.safetensors"
    assert runtime["startupProbe"]["httpGet"]["path"] == "/sdapi/v1/memory"
    assert out.env("queue-agent")["API_BASE_URL"] == "http://localhost:8080/sdapi/v1/"
    assert _pod_labels(out)["cost-center"] == "42"
    annotations = out.one("Deployment")["metadata"]["annotations"]
    # The user's annotation, beside the checkov suppressions (each with its reason).
    assert {k: v for k, v in annotations.items() if not k.startswith("checkov.io/")} == {"owner": "imaging"}
    pool = out.one("NodePool")["spec"]
    assert pool["template"]["metadata"]["labels"] == {"runtime": "sdruntime", "team": "imaging"}
    assert pool["limits"] == {"nvidia.com/gpu": 16}
    assert pool["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt", "values": ["20000"]} in pool["template"][
        "spec"
    ]["requirements"]
    node_class = out.one("EC2NodeClass")["spec"]
    assert node_class["subnetSelectorTerms"] == [{"tags": {"aws-cdk:subnet-type": "Private"}}]
    assert node_class["tags"]["owner"] == "imaging"
    data = next(m for m in node_class["blockDeviceMappings"] if m["deviceName"] == "/dev/xvdb")["ebs"]
    assert data["snapshotID"] == "snap-0123456789abcdef0" and data["volumeSize"] == "80Gi"
    assert node_class["userData"] == "[settings.kubernetes]\nmax-pods = 16\n"
    assert out.one("PersistentVolume")["metadata"]["labels"]["tier"] == "models"
    assert out.one("ScaledObject")["spec"]["pollingInterval"] == 1
