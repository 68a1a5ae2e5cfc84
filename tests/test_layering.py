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
            "sync.export", "sync.crf.deploy", "sync.demo", "sync.connection",
            "sync.run_history", "sync.changes", "sync.readback", "sync.gap",
            "sync.rule_guard"}
CRF_FOUNDATION = ("sync.crf.dictionary", "sync.crf.redcap_spec", "sync.crf.contract",
                  "sync.crf.trial_crf")


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


@pytest.mark.parametrize("name", CRF_FOUNDATION)
def test_the_crf_foundation_needs_no_pipeline_stage(name):
    """The dictionary and REDCap's vocabulary serve the server and the pipeline alike."""
    path = PACKAGE.parent / (name.replace(".", "/") + ".py")
    crossing = {m for m in imported_modules(path)
                if any(m == p or m.startswith(p + ".") for p in PIPELINE)}
    assert not crossing, f"{name} imports pipeline modules {sorted(crossing)}"


def test_sync_root_holds_pipeline_stages_and_subpackages_only():
    """#15.9: the CRF tooling and the demo live in their own subpackages, not beside the stages."""
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    misplaced = {m for m in flat if m.startswith(("demo", "check", "deploy", "dictionary",
                                                 "redcap_spec", "contract", "project_access"))}
    assert not misplaced, f"sync/ holds CRF tooling or demo modules at its root: {sorted(misplaced)}"


def test_redcap_folder_is_never_a_python_package():
    redcap_dir = PACKAGE.parent / "redcap"
    assert not list(redcap_dir.rglob("*.py")), "redcap/ holds REDCap files only (PyCap is `redcap`)"
