"""checkov over what we ship: the synthesized template, the chart rendered with every value set, the Dockerfiles.

    python scripts/checkov_lint.py [--checkov PATH] [--only template|chart|docker ...]

checkov lives in its own virtual environment (it pins a boto3 older than the project's): `make setup` installs
it under .tools/checkov-venv at the version pinned in the Makefile. Every suppression sits beside its resource
with its reason (template: Metadata.checkov.skip via infra/checkov.py; chart: checkov.io/skipN annotations;
Dockerfiles: #checkov:skip comments), so the goal is simple: zero failed checks. Exit status 1 on any.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"
CONFIGS = (ROOT / "config.yaml", ROOT / "tests" / "fixtures" / "configs" / "two-runtimes.yaml")
PARTS = ("template", "chart", "docker")


@dataclass(frozen=True)
class Failure:
    part: str
    check: str
    resource: str
    where: str

    def __str__(self) -> str:
        return f"{self.part}: {self.check} {self.resource} ({self.where})"


def run_checkov(checkov: Path, framework: str, target: Path) -> tuple[list[Failure], int]:
    """checkov on one file or directory; returns the failed checks and the number of passed ones."""
    flag = "-d" if target.is_dir() else "-f"
    command = [str(checkov), flag, str(target), "--framework", framework, "--output", "json", "--quiet"]
    command += ["--skip-download", "--compact"]  # offline: no platform calls, no guideline downloads
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"checkov failed on {target}:\n{proc.stderr[-2000:]}")
    reports = json.loads(proc.stdout)
    failures, passed = [], 0
    for report in reports if isinstance(reports, list) else [reports]:
        if not isinstance(report, dict) or "results" not in report:
            continue
        passed += report["summary"]["passed"]
        for check in report["results"]["failed_checks"]:
            where = f"{Path(check['file_path']).name}:{check['file_line_range'][0]}"
            failures.append(Failure(framework, check["check_id"], check["resource"], where))
    return failures, passed


def synthesize(outdir: Path) -> Iterator[Path]:
    """One template per config (the default and the two-runtime config with most options on)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "lambda")]
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    from infra.app import build_app
    from infra.config import load_config

    for config_path in CONFIGS:
        out = outdir / config_path.stem
        app, stack = build_app(load_config(config_path), outdir=str(out))
        app.synth()
        yield out / f"{stack.artifact_id}.template.json"


def render_chart(outdir: Path) -> Path:
    """The chart rendered with every value set the chart tests use (tests/chart/harness.py)."""
    sys.path[:0] = [str(ROOT)]
    from tests.chart.harness import CONFIG_RUNTIMES, REQUIRED, STATIC_SETS, VALUES_DIR, Helm, ValueSet, cdk_values

    helm = Helm(ROOT / ".tools" / "bin" / "helm")
    value_sets = [ValueSet("required", (REQUIRED,))]
    value_sets += [ValueSet(name, (REQUIRED, VALUES_DIR / f"{name}.yaml")) for name in STATIC_SETS]
    for name, config, runtime in CONFIG_RUNTIMES:
        values = outdir / f"{name}.values.json"
        values.write_text(json.dumps(cdk_values(config, runtime)))
        value_sets.append(
            ValueSet(name, (values,), release=runtime["name"], namespace=runtime.get("namespace", "default"))
        )
    rendered = outdir / "rendered"
    rendered.mkdir()
    for value_set in value_sets:
        proc = helm.template(value_set)
        if proc.returncode != 0:
            raise RuntimeError(f"helm template {value_set.name} failed:\n{proc.stderr}")
        (rendered / f"{value_set.name}.yaml").write_text(proc.stdout)
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV)
    parser.add_argument("--only", choices=PARTS, action="append")
    args = parser.parse_args(argv)
    if not args.checkov.exists():
        print(f"checkov not found at {args.checkov}: run `make setup`", file=sys.stderr)
        return 2
    parts = args.only or list(PARTS)
    failures: list[Failure] = []
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        work = Path(tmp)
        targets: list[tuple[str, str, Path]] = []
        if "template" in parts:
            targets += [("template", "cloudformation", t) for t in synthesize(work / "cdk")]
        if "chart" in parts:
            (work / "chart").mkdir()
            targets.append(("chart", "kubernetes", render_chart(work / "chart")))
        if "docker" in parts:
            targets.append(("docker", "dockerfile", ROOT / "docker"))
        for part, framework, target in targets:
            found, passed = run_checkov(args.checkov, framework, target)
            print(f"checkov {part} ({target.name}): {passed} passed, {len(found)} failed")
            failures += found
    for failure in failures:
        print(f"  FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
