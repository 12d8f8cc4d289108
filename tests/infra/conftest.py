"""Synthesises the CDK app once per config per session (synth takes seconds of jsii work each time)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra.config import DeploymentConfig, load_config
from tests.conftest import ROOT, TEST_FIXTURES

# Node 20 prints a deprecation banner on every jsii start; it says nothing about our code.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


@dataclass
class Synth:
    config: DeploymentConfig
    outdir: Path
    template: dict[str, Any]
    stack: Any = field(repr=False)
    _assertions: Any = field(default=None, repr=False)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]

    def of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == type_name}

    def props(self, type_name: str) -> list[dict[str, Any]]:
        return [r.get("Properties", {}) for r in self.of_type(type_name).values()]

    @property
    def assertions(self) -> Any:
        """aws_cdk.assertions.Template over the synthesized JSON (built once, cheap to query)."""
        if self._assertions is None:
            from aws_cdk.assertions import Template

            self._assertions = Template.from_json(self.template)
        return self._assertions

    def logical_id(self, construct: Any) -> str:
        from aws_cdk import Stack

        return str(Stack.of(construct).resolve(construct.node.default_child.logical_id))


def synthesize(config_path: Path, outdir: Path) -> Synth:
    from infra.app import build_app

    config = load_config(config_path)
    app, stack = build_app(config, outdir=str(outdir))
    app.synth()
    template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    return Synth(config=config, outdir=outdir, template=template, stack=stack)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    """The repository's own config.yaml: one diffusers runtime, defaults everywhere else."""
    yield synthesize(ROOT / "config.yaml", tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def two_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    """Two runtimes (diffusers + sdwebui with legacy routing) and most optional settings."""
    yield synthesize(TEST_FIXTURES / "configs" / "two-runtimes.yaml", tmp_path_factory.mktemp("cdk-two"))


@pytest.fixture(params=["default", "two"])
def any_synth(request: pytest.FixtureRequest) -> Synth:
    return request.getfixturevalue(f"{request.param}_synth")
