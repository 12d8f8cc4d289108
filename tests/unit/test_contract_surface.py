"""The contract's public surface: ``contract.__all__`` is exactly what the other packages import, and every
error code that goes on the wire is a member of ``contract.ErrorCode``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import contract
from contract import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
# Every package that ships (or runs the stack); tests may reach into the contract's modules, these may not.
PACKAGES = ["lambda", "queue_agent", "inference_api", "sdq", "local_stack", "infra", "benchmarks", "app.py"]


def _sources() -> list[Path]:
    files: list[Path] = []
    for name in PACKAGES:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def _contract_imports() -> tuple[set[str], list[str]]:
    names: set[str] = set()
    deep: list[str] = []
    for file in _sources():
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                deep += [
                    f"{file.relative_to(ROOT)}: import {a.name}" for a in node.names if a.name.startswith("contract")
                ]
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "contract":
                if node.module != "contract":
                    deep.append(f"{file.relative_to(ROOT)}: from {node.module} import ...")
                names |= {a.name for a in node.names}
    return names, deep


def test_other_packages_import_only_the_contract_package() -> None:
    _, deep = _contract_imports()
    assert deep == [], "import from `contract`, not its modules (add the name to contract.__all__)"


def test_all_is_exactly_what_other_packages_import() -> None:
    names, _ = _contract_imports()
    exported = set(contract.__all__)
    assert len(exported) == len(contract.__all__), "contract.__all__ lists a name twice"
    assert names - exported == set(), "imported from contract but missing from contract.__all__"
    assert exported - names == set(), "in contract.__all__ but no package uses it: drop it"
    for name in exported:
        assert hasattr(contract, name)


# Which positional argument is the error code, per constructor/helper that takes one.
_CODE_ARGUMENT = {"ApiError": 1, "error_body": 0, "_error": 1}


def _string_literals_in_code_positions() -> list[str]:
    """String literals passed as an error ``code`` anywhere in the shipped packages (they must use ErrorCode)."""
    found: list[str] = []
    # sdq is a client: its codes are what it reads off the wire (or its own, never sent anywhere).
    files = sorted((ROOT / "contract").rglob("*.py")) + [f for f in _sources() if f.relative_to(ROOT).parts[0] != "sdq"]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            where = f"{file.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.keyword) and node.arg == "code" and isinstance(node.value, ast.Constant):
                found.append(f"{where} code={node.value.value!r}")
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code" and isinstance(value, ast.Constant):
                        found.append(f"{where} {{'code': {value.value!r}}}")
            if isinstance(node, ast.Call):
                position = _CODE_ARGUMENT.get(getattr(node.func, "id", getattr(node.func, "attr", "")))
                if position is not None and len(node.args) > position:
                    arg = node.args[position]
                    if isinstance(arg, ast.Constant):
                        found.append(f"{where} {arg.value!r}")
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    target = (
                        stmt.target
                        if isinstance(stmt, ast.AnnAssign)
                        else (stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
                    )
                    value = getattr(stmt, "value", None)
                    if getattr(target, "id", None) == "code" and isinstance(value, ast.Constant):
                        found.append(f"{where} class {node.name}.code = {value.value!r}")
    return found


def test_no_error_code_is_a_bare_string() -> None:
    assert _string_literals_in_code_positions() == []


def test_error_codes_are_unique_snake_case() -> None:
    values = [c.value for c in ErrorCode]
    assert len(values) == len(set(values))
    for value in values:
        assert value.isidentifier() and value == value.lower(), value


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_body_carries_the_code_as_plain_text(code: ErrorCode) -> None:
    body = contract.error_body(code, "why")
    assert type(body["error"]["code"]) is str and body["error"]["code"] == code.value
