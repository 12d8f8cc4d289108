"""The JSON Schemas in docs/api are generated from the contract models and must not drift."""

from __future__ import annotations

import json

import jsonschema

from contract.schema import render_all
from tests.conftest import ROOT, TEST_FIXTURES

DOCS = ROOT / "docs" / "api"


def test_committed_schemas_match_the_models() -> None:
    for name, text in render_all().items():
        committed = DOCS / name
        assert committed.exists(), f"{committed} missing: run python -m contract.schema docs/api"
        assert committed.read_text() == text, f"{name} drifted: run python -m contract.schema docs/api"


def test_fixtures_satisfy_the_exported_request_schema() -> None:
    schema = json.loads((DOCS / "request.schema.json").read_text())
    for path in (TEST_FIXTURES / "requests-v1alpha2").glob("*.json"):
        jsonschema.validate(json.loads(path.read_text()), schema)
