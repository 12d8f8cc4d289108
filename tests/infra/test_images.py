"""The Dockerfiles agree with the build contexts the stack stages and with the chart's pod security context."""

from __future__ import annotations

import re
from pathlib import Path

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
