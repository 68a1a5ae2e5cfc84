"""PyCap's own integration suite against our server (optional: needs a PyCap checkout).

Enable with `PYCAP_CHECKOUT=/path/to/PyCap .venv/bin/python -m pytest tests/server`, e.g. after
`git --git-dir=PYCAP_GIT_DIR archive 2.7.0 tests pytest.ini | tar -x -C DIR`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pycap_suite.py"


def test_runner_without_a_checkout_exits_2():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pycap_suite.py PATH_TO_PYCAP_CHECKOUT [--doctests]")


@pytest.mark.skipif(not os.environ.get("PYCAP_CHECKOUT"),
                    reason="set PYCAP_CHECKOUT to a PyCap 2.7.0 checkout to run its suite")
def test_pycap_integration_suite_passes():
    result = subprocess.run([sys.executable, str(SCRIPT), os.environ["PYCAP_CHECKOUT"]],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith("passed, 0 failed")
