"""checkov finds nothing unsuppressed in the synthesized template (the full `make lint` run also covers the
two-runtime template, the chart rendered with every value set and the Dockerfiles)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import ROOT
from tests.infra.conftest import Synth


def _lint_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("checkov_lint", ROOT / "scripts" / "checkov_lint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_no_unsuppressed_checkov_finding_in_the_template(default_synth: Synth) -> None:
    lint = _lint_script()
    checkov = Path(lint.DEFAULT_CHECKOV)
    assert checkov.exists(), "checkov is installed by `make setup` (.tools/checkov-venv)"
    template = default_synth.outdir / f"{default_synth.stack.artifact_id}.template.json"
    failures, passed = lint.run_checkov(checkov, "cloudformation", template)
    assert passed > 300
    assert not failures, "\n".join(map(str, failures))


def test_every_template_suppression_states_its_reason(default_synth: Synth) -> None:
    skips = [
        (lid, entry)
        for lid, resource in default_synth.resources.items()
        for entry in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for lid, entry in skips:
        assert entry["id"].startswith(("CKV_", "CKV2_")), (lid, entry)
        assert len(entry["comment"]) > 40, (lid, entry)
