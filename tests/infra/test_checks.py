"""cdk-nag and cfn-lint on the synthesized templates, and the CDK entry point's config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.conftest import ROOT, TEST_FIXTURES
from tests.infra.conftest import Synth


def test_no_unacknowledged_findings(any_synth: Synth) -> None:
    # A violation fails app.synth() itself (the fixture would have raised); the report must agree.
    report = json.loads((any_synth.outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert plugin["violations"] == []


def test_every_acknowledgment_states_a_specific_reason(any_synth: Synth) -> None:
    ours = {}
    for res in any_synth.resources.values():
        for rule in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert rule["reason"].strip(), rule
            if "AwsSolutions-" in rule["id"]:
                ours[rule["id"]] = rule["reason"]
    assert len(ours) >= 20
    for rule_id, reason in ours.items():
        assert len(reason) >= 40, (rule_id, reason)
    # Granular findings are acknowledged one by one, never as a blanket rule.
    assert "AwsSolutions-IAM5" not in ours and "AwsSolutions-IAM4" not in ours


def test_nag_is_wired_and_fails_the_synth_on_a_violation(tmp_path: Path) -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_sqs as sqs

    from infra import nag

    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Bad")
    sqs.Queue(stack, "NoDlqNoTls")
    nag.enable(app)
    with pytest.raises(RuntimeError, match=r"Validation ?[Ff]ailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= rules


def test_cfn_lint_reports_no_errors(any_synth: Synth) -> None:
    template = any_synth.outdir / f"{any_synth.stack.artifact_id}.template.json"
    matches = lint_file(template, config=ManualArgs(regions=["us-east-1", "us-west-2"]))
    errors = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.severity == "error"]
    assert errors == []


def run_app(config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDK_CONFIG_PATH": str(config), "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_app_stops_with_the_key_of_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "config.yaml"
    text = (TEST_FIXTURES / "configs" / "aws-sample.yaml").read_text()
    broken.write_text(text.replace("rateLimit: 20", "rateLimit: -5").replace("namespace: default", "namespace: Not_OK"))
    result = run_app(broken)
    assert result.returncode == 2
    assert "APIGW.throttle.rateLimit" in result.stderr
    assert "modelsRuntime[0].namespace" in result.stderr
    assert "Traceback" not in result.stderr
