"""The Dockerfiles agree with the build contexts the stack stages and with the chart's pod security context."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from infra.images import IMAGES, context_excludes
from tests.conftest import ROOT


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_every_copied_path_is_in_the_build_context(name: str) -> None:
    dockerfile, packages = IMAGES[name]
    allowed = {"pyproject.toml", "constraints.txt", "docker", *packages}
    copies = [args for keyword, args in instructions(ROOT / dockerfile) if keyword == "COPY"]
    assert copies
    for args in copies:
        parts = args.split()
        if any(p.startswith("--from=") for p in parts):
            continue
        for source in parts[:-1]:
            assert source.split("/")[0] in allowed, f"{dockerfile}: COPY {source} is excluded from the context"
            assert (ROOT / source).exists(), source
    excludes = context_excludes(packages)
    assert excludes[0] == "*" and all(f"!{p}" in excludes for p in allowed)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_images_run_as_the_charts_non_root_user_with_locked_installs(name: str) -> None:
    dockerfile, _ = IMAGES[name]
    steps = instructions(ROOT / dockerfile)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "the final stage must drop root"
    chart = (ROOT / "charts" / "sd-on-eks" / "templates" / "deployment.yaml").read_text()
    (chart_uid,) = set(re.findall(r"runAsUser: (\d+)", chart))
    assert users[-1].split(":")[0] == chart_uid != "0"
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    installs = re.findall(r"pip install ([^&]*)", runs)
    assert installs
    for install in installs:
        # Every install is pinned: by the lock file, or (torch from its CUDA index) by an exact version.
        assert "-c " in install or "==" in install, install
    assert steps[-1][0] in {"CMD", "ENTRYPOINT"}


def test_runtime_image_listens_where_the_chart_probes() -> None:
    values = yaml.safe_load((ROOT / "charts" / "sd-on-eks" / "values.yaml").read_text())
    steps = instructions(ROOT / IMAGES["inference-api"][0])
    exposed = [args for keyword, args in steps if keyword == "EXPOSE"]
    assert exposed == [str(values["runtime"]["inferenceApi"]["port"])]
    agent = instructions(ROOT / IMAGES["queue-agent"][0])
    assert [args for keyword, args in agent if keyword == "EXPOSE"] == [
        str(values["runtime"]["queueAgent"]["metricsPort"])
    ]


def _image_pins() -> ModuleType:  # scripts/ is not a package: load the lint script by path
    spec = importlib.util.spec_from_file_location("check_image_pins", ROOT / "scripts" / "check_image_pins.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_each_image_runs_the_python_the_lock_is_resolved_for(name: str) -> None:
    pins = _image_pins()
    spec = pins.image_spec(ROOT / IMAGES[name][0])
    lock = pins.lock_python((ROOT / "constraints.txt").read_text())
    assert spec.python == lock == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert pins.check(ROOT / IMAGES[name][0], offline=True) == []


def test_runtime_image_torch_cuda_and_driver_agree() -> None:
    pins = _image_pins()
    dockerfile = ROOT / IMAGES["inference-api"][0]
    spec = pins.image_spec(dockerfile)
    # torch: the version the project pins (pyproject) and locks (constraints.txt, as its CPU build).
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["runtime"]
    (declared,) = [r.split("==")[1] for r in runtime if r.startswith("torch==")]
    (locked,) = re.findall(r"^torch==([^\s+]+)", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert spec.overrides == {"torch": declared} and declared == locked
    # CUDA: the line of that torch's PyPI wheels, required from the node's driver by the container runtime.
    line = ".".join(declared.split(".")[:2])
    assert spec.cuda == pins.PYPI_TORCH_CUDA[line] == "13.0"
    steps = instructions(dockerfile)
    assert all("nvidia/cuda" not in args for keyword, args in steps if keyword in {"FROM", "ARG"})
    env = pins.env_values(dockerfile.read_text())
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",") and env["HF_HUB_OFFLINE"] == "1"
    # The driver: the README states the oldest one of that CUDA line.
    driver = pins.CUDA_MIN_DRIVER[spec.cuda]
    readme = (ROOT / "README.md").read_text()
    assert f"NVIDIA driver {driver} or newer" in readme and f"CUDA {spec.cuda}" in readme
    # The CLIP vocabulary's package is installed (without dependencies), at the locked version.
    assert spec.no_deps == ("clip-anytorch",)
    assert "clip-anytorch==" in (ROOT / "constraints.txt").read_text()
