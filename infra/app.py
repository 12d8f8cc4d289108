"""Builds the CDK app from a config file: what app.py runs and what the synth tests call."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from aws_cdk import App

from infra import nag as nag_checks
from infra.chart_values import chart_value_issues
from infra.config import ConfigError, DeploymentConfig, load_config
from infra.lambda_bundle import LambdaSources
from infra.stack import SdAsyncStack

ROOT = Path(__file__).resolve().parent.parent


def build_app(
    config: DeploymentConfig,
    *,
    outdir: str | None = None,
    nag: bool = True,
    lambda_sources: LambdaSources | None = None,
) -> tuple[App, SdAsyncStack]:
    issues = chart_value_issues(config)
    if issues:
        raise ConfigError(issues)
    # The CLI passes cdk.json's context itself; a synth from Python (tests, tools) reads the same feature flags.
    app = App(outdir=outdir, context=cdk_json_context())
    # Environment-agnostic: synth needs no account, region or AZ lookups (two AZs via Fn::GetAZs).
    stack = SdAsyncStack(app, config.stack_name, config=config, lambda_sources=lambda_sources)
    if nag:
        nag_checks.enable(app)
    return app, stack


def cdk_json_context(path: Path = ROOT / "cdk.json") -> dict[str, Any]:
    context = json.loads(path.read_text(encoding="utf-8")).get("context", {})
    return dict(context) if isinstance(context, dict) else {}


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else None
    try:
        config = load_config(path)
        app, _ = build_app(config, nag=os.environ.get("CDK_NAG", "1") != "0")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0
