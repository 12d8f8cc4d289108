"""The Makefile's set-up split: ``make demo`` needs only Python and make; ``make test`` still installs all."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from install_torch import CPU_INDEX, TORCH, install_commands  # noqa: E402


def _dry_run(tmp_path: Path, target: str) -> str:
    """``make -n TARGET`` in a fresh copy of what the Makefile reads: no venv, no stamps, no node_modules."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt", "package.json", "package-lock.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    for script in (ROOT / "scripts").iterdir():
        if script.is_file():
            shutil.copy(script, tmp_path / "scripts" / script.name)
    result = subprocess.run(
        ["make", "-n", target, "CHROMIUM=/nonexistent/chromium"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_on_a_fresh_clone_installs_only_python_parts(tmp_path: Path):
    plan = _dry_run(tmp_path, "demo")
    assert "apt-get" not in plan and "npm" not in plan and "cdk" not in plan
    assert "scripts/install_torch.py" in plan
    assert "lambda,agent,runtime,cli,local" in plan
    assert "-m local_stack demo" in plan


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_still_installs_everything(tmp_path: Path):
    plan = _dry_run(tmp_path, "test")
    assert "npm ci" in plan and "apt-get install" in plan
    assert "scripts/install_torch.py" in plan
    assert "lambda,agent,runtime,infra,cli,plan,dev" in plan


def test_linux_without_nvidia_tries_the_cpu_index_then_the_default_one():
    first, fallback = install_commands("Linux", nvidia=False)
    assert TORCH in first and first[first.index("--index-url") + 1] == CPU_INDEX
    assert TORCH in fallback and "--index-url" not in fallback


@pytest.mark.parametrize(("system", "nvidia"), [("Linux", True), ("Darwin", False), ("Windows", False)])
def test_elsewhere_torch_comes_from_the_default_index(system: str, nvidia: bool):
    (only,) = install_commands(system, nvidia)
    assert TORCH in only and "--index-url" not in only
