"""Check that each image's pinned dependency set resolves for that image's Python and platform (``make lint``).

A Dockerfile states its inputs as build arguments, read here:

- ``PYTHON_IMAGE`` (``python:X.Y-slim-<debian>``): the Python version, and the glibc of that Debian release,
  hence the manylinux wheel tags the image accepts;
- ``EXTRAS``: the project extras it installs under the lock file (``constraints.txt``);
- ``TORCH_VERSION`` (optional): the torch pin that replaces the lock's (the lock has the CPU build);
- ``NO_DEPS`` (optional): packages installed without their dependencies;
- ``NVIDIA_REQUIRE_CUDA`` (an ``ENV``, optional): the CUDA line the resolved torch must be built for.

The image's Python must be the lock's (the ``# python X.Y`` header of constraints.txt). Then
``pip install --dry-run --only-binary=:all: --platform ... --python-version ...`` resolves the set against
PyPI (``--isolated``: no local wheel folders or mirrors), so an image that cannot build is caught before
``cdk deploy``. Needs PyPI access; ``--offline`` stops after the static checks.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
INDEX_URL = "https://pypi.org/simple"
# The images are built for linux/amd64 (infra/images.py: the GPU and default instance types are x86_64).
ARCH = "x86_64"
# glibc of the Debian releases the official python images are built on.
DEBIAN_GLIBC = {"bullseye": (2, 31), "bookworm": (2, 36), "trixie": (2, 41)}
OLDEST_MANYLINUX = (2, 17)  # manylinux2014
# The CUDA line of torch's default Linux wheels on PyPI, per torch release (the online check confirms it from the
# resolved nvidia-cuda-runtime), and the oldest NVIDIA Linux driver of each CUDA line (NVIDIA's CUDA release notes).
PYPI_TORCH_CUDA = {"2.13": "13.0"}  # verified: torch 2.13.0 resolves nvidia-cuda-runtime 13.0.x
CUDA_MIN_DRIVER = {"13.0": 580}  # CUDA 13.0 GA: Linux driver >= 580.65.06
# The package whose version is the CUDA runtime the torch wheels were built against.
CUDA_RUNTIME_PACKAGES = ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12")


class ImageError(ValueError):
    pass


@dataclass(frozen=True)
class ImageSpec:
    name: str
    python: str
    glibc: tuple[int, int]
    extras: tuple[str, ...]
    overrides: dict[str, str] = field(default_factory=dict)  # package -> pinned version replacing the lock's
    no_deps: tuple[str, ...] = ()
    cuda: str | None = None  # "13.0" from NVIDIA_REQUIRE_CUDA="cuda>=13.0"

    @property
    def platforms(self) -> list[str]:
        """Every manylinux tag the image's glibc accepts, newest first (pip does not expand them itself)."""
        major, newest = self.glibc
        tags = [f"manylinux_{major}_{minor}_{ARCH}" for minor in range(newest, OLDEST_MANYLINUX[1] - 1, -1)]
        return [*tags, f"manylinux2014_{ARCH}"]


def _logical_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def build_args(text: str) -> dict[str, str]:
    """Default values of the Dockerfile's ``ARG NAME=value`` lines (the first definition wins)."""
    found: dict[str, str] = {}
    for line in _logical_lines(text):
        match = re.fullmatch(r"ARG\s+(\w+)=(\S+)", line)
        if match:
            found.setdefault(match.group(1), match.group(2).strip("\"'"))
    return found


def env_values(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in _logical_lines(text):
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", line[4:]):
                found[key] = value.strip('"')
    return found


def image_spec(dockerfile: Path) -> ImageSpec:
    text = dockerfile.read_text()
    args = build_args(text)
    name = dockerfile.name.removesuffix(".Dockerfile")
    image = args.get("PYTHON_IMAGE", "")
    match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-(?:slim-)?([a-z]+)", image)
    if not match:
        raise ImageError(f"{dockerfile.name}: PYTHON_IMAGE must be an official python:X.Y-[slim-]<debian> image")
    python, debian = match.groups()
    if debian not in DEBIAN_GLIBC:
        raise ImageError(f"{dockerfile.name}: unknown Debian release {debian!r} (known: {', '.join(DEBIAN_GLIBC)})")
    if "EXTRAS" not in args:
        raise ImageError(f"{dockerfile.name}: no EXTRAS build argument (the project extras it installs)")
    overrides = {"torch": args["TORCH_VERSION"]} if "TORCH_VERSION" in args else {}
    cuda_requirement = env_values(text).get("NVIDIA_REQUIRE_CUDA", "")
    cuda = re.fullmatch(r"cuda>=(\d+\.\d+)", cuda_requirement)
    if cuda_requirement and not cuda:
        raise ImageError(f"{dockerfile.name}: NVIDIA_REQUIRE_CUDA must read cuda>=X.Y")
    return ImageSpec(
        name=name,
        python=python,
        glibc=DEBIAN_GLIBC[debian],
        extras=tuple(e.strip() for e in args["EXTRAS"].split(",") if e.strip()),
        overrides=overrides,
        no_deps=tuple(args.get("NO_DEPS", "").split()),
        cuda=cuda.group(1) if cuda else None,
    )


def lock_python(constraints: str) -> str:
    match = re.search(r"^# python (\d+\.\d+)\b", constraints, re.MULTILINE)
    if not match:
        raise ImageError("constraints.txt: no '# python X.Y' header naming the Python it is resolved for")
    return match.group(1)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: str, extras: tuple[str, ...]) -> list[str]:
    """The project's dependencies plus those of ``extras``, as pyproject.toml lists them."""
    project = tomllib.loads(pyproject)["project"]
    optional = project.get("optional-dependencies", {})
    missing = [e for e in extras if e not in optional]
    if missing:
        raise ImageError(f"pyproject.toml has no extra {', '.join(missing)}")
    return [*project.get("dependencies", []), *(r for e in extras for r in optional[e])]


def image_constraints(constraints: str, overrides: dict[str, str]) -> str:
    """The lock as the image installs it: overridden pins replaced, the rest as locked."""
    kept = [
        line
        for line in constraints.splitlines()
        if not (line.strip() and not line.startswith("#") and _name(line) in overrides)
    ]
    return "\n".join([*kept, *(f"{name}=={version}" for name, version in overrides.items())]) + "\n"


def pip_command(spec: ImageSpec, requirements_file: Path, constraints_file: Path, report: Path) -> list[str]:
    command = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--dry-run"]
    command += ["--ignore-installed", "--only-binary=:all:", "--index-url", INDEX_URL]
    command += ["--python-version", spec.python, "--implementation", "cp"]
    for platform in spec.platforms:
        command += ["--platform", platform]
    command += ["-c", str(constraints_file), "-r", str(requirements_file), "--report", str(report), "--quiet"]
    return command


def cuda_mismatch(report: dict[str, object], cuda: str) -> str | None:
    """None when the resolved CUDA runtime is of the line the image requires, else what is wrong."""
    installs = report.get("install", [])
    versions = {
        str(item["metadata"]["name"]).lower(): str(item["metadata"]["version"])  # type: ignore[index]
        for item in installs  # type: ignore[attr-defined]
    }
    runtime = next((versions[name] for name in CUDA_RUNTIME_PACKAGES if name in versions), None)
    if runtime is None:
        return f"no CUDA runtime package among the resolved ones, but the image requires CUDA {cuda}"
    major_minor = ".".join(runtime.split(".")[:2])
    if major_minor.split(".")[0] != cuda.split(".")[0] or tuple(map(int, major_minor.split("."))) < tuple(
        map(int, cuda.split("."))
    ):
        return f"the resolved CUDA runtime is {runtime}, but the image declares NVIDIA_REQUIRE_CUDA cuda>={cuda}"
    return None


def check(dockerfile: Path, *, offline: bool) -> list[str]:
    """Problems with one image (empty: it resolves)."""
    constraints = (ROOT / "constraints.txt").read_text()
    try:
        spec = image_spec(dockerfile)
        lock = lock_python(constraints)
        reqs = requirements((ROOT / "pyproject.toml").read_text(), spec.extras)
    except ImageError as exc:
        return [str(exc)]
    if spec.python != lock:
        return [f"{dockerfile.name}: Python {spec.python}, but constraints.txt is resolved for Python {lock}"]
    if offline:
        return []
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "constraints.txt").write_text(image_constraints(constraints, spec.overrides))
        for label, wanted, no_deps in (("pinned set", reqs, False), ("--no-deps packages", list(spec.no_deps), True)):
            if not wanted:
                continue
            (folder / "requirements.txt").write_text("\n".join(wanted) + "\n")
            command = pip_command(spec, folder / "requirements.txt", folder / "constraints.txt", folder / "report.json")
            if no_deps:
                command.append("--no-deps")
            result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
            if result.returncode != 0:
                tail = "\n    ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
                problems.append(f"{dockerfile.name}: the {label} does not resolve:\n    {tail}")
                continue
            if spec.cuda and not no_deps:
                mismatch = cuda_mismatch(json.loads((folder / "report.json").read_text()), spec.cuda)
                if mismatch:
                    problems.append(f"{dockerfile.name}: {mismatch}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dockerfiles", nargs="*", type=Path, default=DOCKERFILES)
    parser.add_argument("--offline", action="store_true", help="static checks only (no PyPI resolution)")
    args = parser.parse_args(argv)
    failed = False
    for dockerfile in args.dockerfiles:
        problems = check(dockerfile, offline=args.offline)
        failed = failed or bool(problems)
        print(f"{dockerfile.name}: {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            print(f"  {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
