"""The chart lints clean and every object it renders is valid for its schema, for every value set."""

from __future__ import annotations

import pytest
from kubernetes_validate import ValidationError

from tests.chart.harness import (
    KUBE_VERSIONS,
    VALUE_SET_NAMES,
    Helm,
    RenderCache,
    Rendered,
    ValueSet,
    is_builtin,
    scaling_modifier_errors,
    validate_builtin,
    validate_crds,
)


def test_lint_strict_with_chart_defaults_alone(helm: Helm) -> None:
    # helm lint treats `fail` as a no-op, so the bare defaults lint even though rendering them asks for the
    # CDK's identity values (see test_chart_values.py).
    proc = helm.lint(None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("name", VALUE_SET_NAMES)
def test_lint_strict(helm: Helm, value_sets: dict[str, ValueSet], name: str) -> None:
    proc = helm.lint(value_sets[name])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_builtin_kinds_valid_for_target_kubernetes(rendered: Rendered, kube_version: str) -> None:
    builtins = [d for d in rendered.docs if is_builtin(d)]
    assert {"Deployment", "ServiceAccount"} & {d["kind"] for d in builtins}
    for doc in builtins:
        try:
            validate_builtin(doc, kube_version)
        except ValidationError as err:
            pytest.fail(f"{rendered.value_set.name} {doc['kind']}/{doc['metadata']['name']} on {kube_version}: {err}")


def test_keda_and_karpenter_objects_valid_against_their_schemas(rendered: Rendered) -> None:
    crds = [
        d for d in rendered.docs if d["apiVersion"].split("/")[0] in ("keda.sh", "karpenter.sh", "karpenter.k8s.aws")
    ]
    if not crds:
        # A set that turns both KEDA and Karpenter off renders none; every other set is checked below.
        assert rendered.value_set.name == "comfyui"
        return
    status, results = validate_crds(crds)
    invalid = [r for r in results if not r["valid"]]
    assert status == 0 and not invalid, invalid
    assert len(results) == len(crds)


def test_scaled_objects_scaling_modifiers_are_valid_for_keda(rendered: Rendered) -> None:
    for scaled in rendered.of_kind("ScaledObject"):
        assert scaling_modifier_errors(scaled) == []


def test_scaling_modifier_check_rejects_broken_objects(rendered_sets: RenderCache) -> None:
    """The check can fail: an unknown trigger in the formula, an unnamed trigger, a bad type and a zero target."""
    scaled = rendered_sets("dynamic-model").one("ScaledObject")
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == "normal + high"
    unnamed = [{k: v for k, v in t.items() if k != "name"} for t in scaled["spec"]["triggers"]]
    broken = [
        {"advanced": {**scaled["spec"]["advanced"], "scalingModifiers": {**modifiers, "formula": "normal + urgent"}}},
        {"triggers": unnamed},
        {"advanced": {"scalingModifiers": {**modifiers, "target": 2}}},
        {"advanced": {"scalingModifiers": {**modifiers, "target": "0"}}},
        {"advanced": {"scalingModifiers": {**modifiers, "metricType": "Sum"}}},
    ]
    for change in broken:
        errors = scaling_modifier_errors({**scaled, "spec": {**scaled["spec"], **change}})
        assert errors, change


def test_crd_validator_rejects_broken_objects(rendered_sets: RenderCache) -> None:
    """The npm-model check can fail: a wrong enum, a bad duration and a missing required field are caught."""
    docs = rendered_sets("required").docs
    node_pool = next(d for d in docs if d["kind"] == "NodePool")
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    broken_pool = {**node_pool, "spec": {**node_pool["spec"], "disruption": {"consolidationPolicy": "Sometimes"}}}
    broken_pool["spec"]["template"] = {"spec": {**node_pool["spec"]["template"]["spec"], "expireAfter": "soon"}}
    broken_scaled = {**scaled, "spec": {k: v for k, v in scaled["spec"].items() if k != "triggers"}}
    status, results = validate_crds([broken_pool, broken_scaled, {"apiVersion": "v1", "kind": "Pod"}])
    assert status == 1
    pool_errors = " ".join(results[0]["errors"])
    assert "consolidationPolicy" in pool_errors and "expireAfter" in pool_errors
    assert any("triggers" in e for e in results[1]["errors"])
    assert results[2]["errors"] == ["no schema for v1 Pod"]


def test_builtin_validation_rejects_unknown_fields(rendered_sets: RenderCache) -> None:
    deployment = rendered_sets("required").one("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(ValidationError):
        validate_builtin(broken, KUBE_VERSIONS[-1])
