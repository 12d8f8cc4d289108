"""Helpers for the chart tests: the real helm binary, value sets, rendered objects, offline validators.

Value sets: the chart's defaults plus what the CDK always sets (`required`), four variations, and one per
runtime of each deployment config in the replaced sample's shape (ours, and the sample's own when the
workspace provides it), built the way the CDK builds them: the runtime's extraValues with generated values
merged on top.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from infra import naming
from tests.conftest import SHARED_FIXTURES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sd-on-eks"
HERE = Path(__file__).resolve().parent
VALUES_DIR = HERE / "values"
OWN_CONFIG = HERE / "fixtures" / "config.yaml"
CRD_VALIDATOR = ROOT / "scripts" / "validate_k8s_crds.mjs"

# The target Kubernetes versions: EKS's current range; native sidecars are GA from 1.33.
KUBE_VERSIONS = ("1.33.0", "1.35.0")
HELM_KUBE_VERSION = KUBE_VERSIONS[-1]
CRD_GROUPS = ("keda.sh", "karpenter.sh", "karpenter.k8s.aws")
# Kinds whose schema neither kubernetes-validate nor the npm models carry; their tests check them directly.
UNSCHEMED_GROUPS = ("monitoring.coreos.com",)

ACCOUNT = "123456789012"
REGION = "us-west-2"
REQUIRED = VALUES_DIR / "required.yaml"
STATIC_SETS = ("spot-only", "dynamic-model", "existing-claim", "comfyui", "sample-shaped")


@dataclass(frozen=True)
class ValueSet:
    name: str
    files: tuple[Path, ...]
    release: str = "sdruntime"
    namespace: str = "default"
    # The config runtime the set was built from (config-derived sets only).
    runtime: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    value_set: ValueSet
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"{self.value_set.name}: expected one {kind}, got {len(found)}"
        return found[0]

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        spec = self.pod_spec
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] == name:
                return dict(c)
        raise AssertionError(f"{self.value_set.name}: no container {name}")

    def env(self, container: str) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in self.container(container).get("env", [])}


class Helm:
    """The real helm binary; every call is a subprocess with a fixed argument list (no shell)."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False)

    def _value_args(self, value_set: ValueSet | None, extra: tuple[str, ...]) -> list[str]:
        args: list[str] = []
        for f in value_set.files if value_set else ():
            args += ["--values", str(f)]
        return args + list(extra)

    def template(self, value_set: ValueSet | None, *extra: str) -> subprocess.CompletedProcess[str]:
        release = value_set.release if value_set else "sdruntime"
        namespace = value_set.namespace if value_set else "default"
        return self.run(
            "template", release, str(CHART), "--namespace", namespace, "--kube-version", HELM_KUBE_VERSION,
            *self._value_args(value_set, extra),
        )  # fmt: skip

    def render(self, value_set: ValueSet, *extra: str) -> Rendered:
        proc = self.template(value_set, *extra)
        assert proc.returncode == 0, f"helm template {value_set.name} failed:\n{proc.stderr}"
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return Rendered(value_set, docs)

    def notes(self, value_set: ValueSet) -> str:
        """NOTES.txt as `helm install` prints it; a client-side dry run needs no cluster."""
        proc = self.run(
            "install", value_set.release, str(CHART), "--namespace", value_set.namespace, "--dry-run=client",
            *self._value_args(value_set, ()),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "NOTES:" in proc.stdout
        return proc.stdout.split("NOTES:", 1)[1]

    def lint(self, value_set: ValueSet | None, *extra: str) -> subprocess.CompletedProcess[str]:
        namespace = value_set.namespace if value_set else "default"
        return self.run(
            "lint", "--strict", str(CHART), "--namespace", namespace, "--kube-version", HELM_KUBE_VERSION,
            *self._value_args(value_set, extra),
        )  # fmt: skip


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Maps merge key by key, anything else from `top` replaces: how the CDK layers values."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def cdk_values(config: Mapping[str, Any], runtime: Mapping[str, Any]) -> dict[str, Any]:
    """The values the CDK hands the chart for one runtime: extraValues under the generated identity values."""
    stack, name = config["stackName"], runtime["name"]
    inference_api: dict[str, Any] = {"modelFilename": runtime.get("modelFilename", "")}
    if runtime.get("type", "diffusers") != "diffusers":
        # sdwebui and comfyui images are the user's; the CDK passes the one it built or was given.
        inference_api["image"] = {"repository": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{stack}-{runtime['type']}"}
    generated = {
        "global": {"awsRegion": REGION, "stackName": stack, "runtime": name},
        "runtime": {
            "type": runtime.get("type", "diffusers"),
            "queueAgent": {
                "sqsQueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{naming.runtime_queue(stack, name)}",
                "sqsHighQueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/"
                + naming.runtime_high_queue(stack, name),
                "webhookSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{stack}-webhooks-AbCdEf",
                "snsTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{naming.results_topic(stack)}",
                "s3Bucket": naming.output_bucket(stack, ACCOUNT, REGION),
                "statusTable": naming.status_table(stack),
                "dynamicModel": bool(runtime.get("dynamicModel", False)),
            },
            "inferenceApi": inference_api,
            "persistence": {"s3": {"modelBucketArn": config["modelBucketArn"]}},
        },
        "karpenter": {"nodeTemplate": {"iamRole": f"KarpenterNodeRole-{stack}"}},
    }
    return deep_merge(runtime.get("extraValues") or {}, generated)


def config_sources() -> dict[str, Path]:
    sources = {"own": OWN_CONFIG}
    shared = SHARED_FIXTURES / "config.yaml"
    if shared.is_file():
        sources["sample"] = shared
    return sources


def _config_runtimes() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for source, path in config_sources().items():
        config = yaml.safe_load(path.read_text())
        for runtime in config["modelsRuntime"]:
            found.append((f"config-{source}-{runtime['name']}", config, runtime))
    return found


CONFIG_RUNTIMES = _config_runtimes()
CONFIG_SET_NAMES = [name for name, _, _ in CONFIG_RUNTIMES]
VALUE_SET_NAMES = ["required", *STATIC_SETS, *CONFIG_SET_NAMES]


class RenderCache:
    """Each value set rendered at most once per session."""

    def __init__(self, helm: Helm, value_sets: dict[str, ValueSet]) -> None:
        self._helm = helm
        self._sets = value_sets
        self._cache: dict[str, Rendered] = {}

    def __call__(self, name: str) -> Rendered:
        if name not in self._cache:
            self._cache[name] = self._helm.render(self._sets[name])
        return self._cache[name]


def is_builtin(doc: Mapping[str, Any]) -> bool:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return group not in CRD_GROUPS and group not in UNSCHEMED_GROUPS


def validate_builtin(doc: Mapping[str, Any], kube_version: str) -> None:
    """kubernetes-validate's strict schemas: unknown fields are errors too."""
    kubernetes_validate.validate(dict(doc), kube_version, strict=True)


def validate_crds(docs: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Run the npm-model validator; returns its exit status and per-document results."""
    proc = subprocess.run(
        ["node", str(CRD_VALIDATOR)], input=json.dumps(docs), capture_output=True, text=True, timeout=60,
        cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), f"validator failed to run: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)["results"]


# What the KEDA 2.19 CRD (keda.sh_scaledobjects.yaml, which versions.KEDA_VERSION installs) says of the fields the
# npm models do not know yet: @kubernetes-models/keda 0.4 predates `advanced.scalingModifiers` and `triggers[].name`
# (KEDA 2.12) and lets unknown fields through, so these are checked here against the CRD's own types.
KEDA_SCALING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "advanced": {
            "type": "object",
            "properties": {
                "scalingModifiers": {
                    "type": "object",
                    "properties": {
                        "activationTarget": {"type": "string"},
                        "formula": {"type": "string"},
                        "metricType": {"type": "string"},
                        "target": {"type": "string"},
                    },
                    "additionalProperties": False,
                }
            },
        },
        "triggers": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["type", "metadata"]},
        },
    },
}


def scaling_modifier_errors(scaled_object: Mapping[str, Any]) -> list[str]:
    """The CRD's types for the fields above, and what KEDA's admission webhook checks of a formula: it names only
    triggers of this object (each named once), target and activationTarget are numbers (target above zero), and
    the composite metric is an AverageValue or a Value."""
    import jsonschema

    spec = scaled_object["spec"]
    validator = jsonschema.Draft7Validator(KEDA_SCALING_SCHEMA)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec)]
    modifiers = spec.get("advanced", {}).get("scalingModifiers")
    if not modifiers or errors:
        return errors
    names = [t.get("name") for t in spec["triggers"]]
    if len(set(names)) != len(names) or None in names:
        errors.append(f"every trigger needs its own name with a formula: {names}")
    unknown = set(re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", modifiers.get("formula", ""))) - set(names)
    if not modifiers.get("formula") or unknown:
        errors.append(f"formula {modifiers.get('formula')!r} names no trigger or unknown ones: {sorted(unknown)}")
    for key, minimum in (("target", 0.0), ("activationTarget", -1.0)):
        try:
            if key in modifiers and float(modifiers[key]) <= minimum:
                errors.append(f"{key} {modifiers[key]!r} out of range")
        except ValueError:
            errors.append(f"{key} {modifiers[key]!r} is no number")
    if "target" not in modifiers:
        errors.append("a formula needs a target")
    if modifiers.get("metricType", "AverageValue") not in ("AverageValue", "Value"):
        errors.append(f"metricType {modifiers['metricType']!r} is not AverageValue or Value")
    return errors


def tolerates(tolerations: list[dict[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' toleration matching, for checking that pods fit the nodes their NodePool makes."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("key") and t["key"] != taint["key"]:
            continue
        if t.get("operator", "Equal") == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def iter_containers(pod_spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]
