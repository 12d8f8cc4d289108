"""The Lambda asset: ``lambda/task_api`` + ``contract/`` + their few wheels, bundled locally (no Docker).

Dependencies are pip-installed once for the Lambda platform into a cache outside the repo, keyed by the
pinned versions and the platform; later synths only copy files. The asset hash is computed from the sources
and the pins, so CDK skips bundling altogether when an identical asset is already staged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.versions import LAMBDA_PYTHON

ROOT = Path(__file__).resolve().parent.parent
# Everything the handlers import that the Lambda runtime lacks (it ships boto3, botocore and jmespath).
# Installed with --no-deps from this explicit list: resolving dependencies would bundle a botocore that shadows
# the runtime's own and no longer matches its boto3.
LAMBDA_REQUIREMENTS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
    "aws-lambda-powertools",
    "aws-xray-sdk",
    "wrapt",
)
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
_PIP_PLATFORM = "manylinux2014_aarch64"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", "tests")


@dataclass(frozen=True)
class LambdaSources:
    root: Path = ROOT
    packages: tuple[str, ...] = ("lambda/task_api", "contract")
    requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS
    constraints: str = "constraints.txt"

    def files(self) -> Iterable[Path]:
        for package in self.packages:
            base = self.root / package
            if not base.is_dir():
                raise FileNotFoundError(f"Lambda source package {package!r} is missing under {self.root}")
            yield from sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)

    def pinned(self) -> list[str]:
        """The constraint lines that apply to the requirements, part of the cache key."""
        path = self.root / self.constraints
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))

    def deps_key(self) -> str:
        digest = hashlib.sha256()
        for part in (_PIP_PLATFORM, LAMBDA_PYTHON, *self.requirements, *self.pinned()):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:24]

    def asset_hash(self) -> str:
        digest = hashlib.sha256(self.deps_key().encode())
        for path in self.files():
            digest.update(str(path.relative_to(self.root)).encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()


def deps_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sd-async-aws" / "lambda-deps"


def install_deps(sources: LambdaSources, cache: Path | None = None) -> Path:
    """Wheels for the Lambda platform, installed once per pin set; returns the directory holding them."""
    cache = cache or deps_cache_dir()
    target = cache / sources.deps_key()
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Install into a scratch directory and rename: a half-finished install is never mistaken for a cache hit.
    scratch = Path(tempfile.mkdtemp(prefix="deps-", dir=cache))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(scratch),
        "--platform", _PIP_PLATFORM, "--implementation", "cp", "--python-version", LAMBDA_PYTHON,
        "--only-binary=:all:", "--no-deps",
        *(["-c", str(sources.root / sources.constraints)] if (sources.root / sources.constraints).exists() else []),
        *sources.requirements,
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError(f"installing Lambda dependencies failed:\n{exc.stderr.strip()}") from None
    (scratch / ".complete").touch()
    try:
        scratch.rename(target)
    except OSError:  # another process finished the same install first
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def stage(sources: LambdaSources, output_dir: Path, deps: Path) -> None:
    shutil.copytree(deps, output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete", "__pycache__"))
    for package in sources.packages:
        shutil.copytree(sources.root / package, output_dir / Path(package).name, dirs_exist_ok=True, ignore=_IGNORE)


@jsii.implements(ILocalBundling)
class _LocalBundling:
    def __init__(self, sources: LambdaSources) -> None:
        self._sources = sources

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        stage(self._sources, Path(output_dir), install_deps(self._sources))
        return True


def lambda_code(sources: LambdaSources | None = None) -> lambda_.Code:
    """One asset shared by every task API function."""
    sources = sources or LambdaSources()
    return lambda_.Code.from_asset(
        str(sources.root / "lambda"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=sources.asset_hash(),
        bundling=BundlingOptions(
            # Only used if local bundling declined, which it never does; CDK requires an image regardless.
            image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{LAMBDA_PYTHON}"),
            local=_LocalBundling(sources),
        ),
    )
