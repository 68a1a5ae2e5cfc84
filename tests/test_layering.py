"""The embedded server is a sibling of the pipeline: neither imports the other.

Only `sync.cli` (for `ecrf serve`) may import `sync.server`; the server may use the foundation
(errors, REDCap vocabulary, dictionary, logic) but no pipeline stage.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sync"
PIPELINE = {"sync.pull", "sync.typed", "sync.rules", "sync.eligibility", "sync.diff",
            "sync.queries", "sync.write", "sync.ledger", "sync.job", "sync.digest",
            "sync.export", "sync.deploy", "sync.demo", "sync.connection"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_layers_do_not_cross(path):
    name = module_name(path)
    imports = imported_modules(path)
    if name.startswith("sync.server"):
        crossing = {m for m in imports if any(m == p or m.startswith(p + ".") for p in PIPELINE)}
        assert not crossing, f"{name} (server) imports pipeline modules {sorted(crossing)}"
    elif name != "sync.cli":
        crossing = {m for m in imports if m == "sync.server" or m.startswith("sync.server.")}
        assert not crossing, f"{name} imports the embedded server {sorted(crossing)}"


def test_redcap_folder_is_never_a_python_package():
    redcap_dir = PACKAGE.parent / "redcap"
    assert not list(redcap_dir.rglob("*.py")), "redcap/ holds REDCap files only (PyCap is `redcap`)"
