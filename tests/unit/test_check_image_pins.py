"""scripts/check_image_pins.py without the network: what it reads from a Dockerfile and what it asks pip."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_image_pins", ROOT / "scripts" / "check_image_pins.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


pins = _load()

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG PYTHON_IMAGE=python:3.12.4-slim-trixie
ARG TORCH_VERSION="2.13.0"
ARG EXTRAS=runtime,cli
ARG NO_DEPS=clip-anytorch
# ARG PYTHON_IMAGE=python:3.9-slim-bullseye (a comment, ignored)
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
RUN pip install ".[${EXTRAS}]"
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \\
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"
"""


def _write(tmp_path: Path, text: str, name: str = "x.Dockerfile") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_spec_comes_from_build_arguments_and_env(tmp_path: Path) -> None:
    spec = pins.image_spec(_write(tmp_path, DOCKERFILE))
    assert (spec.name, spec.python, spec.glibc) == ("x", "3.12", (2, 41))
    assert spec.extras == ("runtime", "cli") and spec.no_deps == ("clip-anytorch",)
    assert spec.overrides == {"torch": "2.13.0"} and spec.cuda == "13.0"
    # pip does not widen a manylinux tag to older glibc versions: every accepted tag is listed.
    assert spec.platforms[0] == "manylinux_2_41_x86_64" and spec.platforms[-2:] == [
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ]
    assert len(spec.platforms) == 41 - 17 + 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("python:3.12.4-slim-trixie", "nvidia/cuda:13.0.0-base-ubuntu24.04"), "official python"),
        (("slim-trixie", "slim-buster"), "unknown Debian release 'buster'"),
        (("ARG EXTRAS=runtime,cli\n", ""), "no EXTRAS"),
        (('"cuda>=13.0"', '"cuda>=13.0 brand=tesla"'), "cuda>=X.Y"),
    ],
)
def test_unreadable_dockerfiles_are_refused_with_the_rule(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(pins.ImageError, match=message):
        pins.image_spec(_write(tmp_path, DOCKERFILE.replace(*change)))


def test_the_image_constraints_swap_only_the_overridden_pins() -> None:
    lock = "# python 3.11\naccelerate==1.15.0\ntorch==2.13.0+cpu\ntorchsde==0.2.6\n"
    assert pins.lock_python(lock) == "3.11"
    assert pins.image_constraints(lock, {"torch": "2.13.0"}).splitlines() == [
        "# python 3.11",
        "accelerate==1.15.0",
        "torchsde==0.2.6",
        "torch==2.13.0",
    ]
    with pytest.raises(pins.ImageError, match=r"# python X\.Y"):
        pins.lock_python("torch==2.13.0\n")


def test_requirements_are_the_dependencies_plus_the_extras() -> None:
    pyproject = '[project]\ndependencies = ["pydantic>=2"]\n[project.optional-dependencies]\na = ["x==1"]\nb = ["y"]\n'
    assert pins.requirements(pyproject, ("a", "b")) == ["pydantic>=2", "x==1", "y"]
    with pytest.raises(pins.ImageError, match="no extra c"):
        pins.requirements(pyproject, ("c",))


def test_the_pip_command_resolves_binaries_for_the_image_against_pypi_only(tmp_path: Path) -> None:
    spec = pins.image_spec(_write(tmp_path, DOCKERFILE))
    command = pins.pip_command(spec, Path("r.txt"), Path("c.txt"), Path("report.json"))
    assert command[1:4] == ["-m", "pip", "--isolated"]  # no local wheel folders, mirrors or config
    for option in ("--dry-run", "--ignore-installed", "--only-binary=:all:"):
        assert option in command
    pairs = list(itertools.pairwise(command))
    assert ("--index-url", "https://pypi.org/simple") in pairs and ("--python-version", "3.12") in pairs
    assert ("-c", "c.txt") in pairs and ("-r", "r.txt") in pairs and ("--report", "report.json") in pairs
    assert [b for a, b in pairs if a == "--platform"] == spec.platforms


def _report(**packages: str) -> dict[str, object]:
    return {"install": [{"metadata": {"name": name, "version": version}} for name, version in packages.items()]}


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        (_report(**{"nvidia-cuda-runtime": "13.0.96", "torch": "2.13.0"}), None),
        (_report(**{"nvidia-cuda-runtime": "13.2.1"}), None),
        (_report(**{"nvidia-cuda-runtime-cu12": "12.9.79"}), "resolved CUDA runtime is 12.9.79"),
        (_report(torch="2.13.0"), "no CUDA runtime package"),
    ],
)
def test_the_resolved_cuda_runtime_must_be_the_declared_line(report: dict[str, object], problem: str | None) -> None:
    found = pins.cuda_mismatch(report, "13.0")
    assert found is None if problem is None else problem in (found or "")


def test_an_image_on_another_python_than_the_lock_fails_before_any_resolution(tmp_path: Path) -> None:
    # check() would need PyPI for the resolution; the Python mismatch is reported first, offline or not.
    dockerfile = _write(tmp_path, DOCKERFILE)
    (problem,) = pins.check(dockerfile, offline=False)
    assert problem == "x.Dockerfile: Python 3.12, but constraints.txt is resolved for Python 3.11"
    assert pins.check(ROOT / "docker" / "queue-agent.Dockerfile", offline=True) == []
