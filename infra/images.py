"""Container images built from this repository's Dockerfiles at deploy time (``cdk deploy``, not synth).

Synth only stages the build context into cdk.out and records it in the asset manifest; Docker runs when the
assets are published. The context is the repository root filtered down to what each Dockerfile copies, so
the asset hash (and the image tag) changes only when the image's inputs do.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parent.parent

# Per image: its Dockerfile and the paths it copies (everything else is excluded from the context).
IMAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "queue-agent": ("docker/queue-agent.Dockerfile", ("contract", "queue_agent")),
    "inference-api": ("docker/inference-api.Dockerfile", ("contract", "inference_api")),
}
_COMMON = ("pyproject.toml", "constraints.txt", "docker")


def context_excludes(packages: tuple[str, ...]) -> list[str]:
    """.dockerignore-style patterns: exclude everything, re-include the image's inputs, drop caches."""
    return [
        "*",
        *(f"!{path}" for path in (*_COMMON, *packages)),
        "**/__pycache__",
        "**/*.pyc",
        "**/tests",
    ]


def build_image(scope: Construct, construct_id: str, name: str) -> ecr_assets.DockerImageAsset:
    dockerfile, packages = IMAGES[name]
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(ROOT),
        file=dockerfile,
        exclude=context_excludes(packages),
        ignore_mode=IgnoreMode.DOCKER,
        # GPU nodes (g5/g6) and the default instance types are x86_64.
        platform=ecr_assets.Platform.LINUX_AMD64,
        display_name=name,
    )
