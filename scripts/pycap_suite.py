"""Run PyCap 2.7.0's integration suite against our embedded server; print passes per group.

Usage: .venv/bin/python scripts/pycap_suite.py PATH_TO_PYCAP_CHECKOUT [--doctests]

The suite's `tests/` and `pytest.ini` are copied to a temp dir (not its `redcap/` package, so the
installed PyCap is what runs), our server is started with a super token, and each file of
`tests/integration/` runs in its own pytest process through scripts/pycap_suite_plugin.py.
With `--doctests` the docstring examples of the installed PyCap run too, on a project made from
the checkout's tests/data/doctest_project.xml, as PyCap's `redcap/conftest.py` makes it.

Decisions where a PyCap assertion states a fact of one live server rather than of REDCap:
- survey links must start with https://redcapdemo.vumc.org/surveys/: the server is started with
  `--public-url https://redcapdemo.vumc.org/`, the base REDCap builds links from.
- `export_field_names()` == 16 for the simple project counts its two calc fields; our server
  lists calc fields (see sync/server/content/field_names.py).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
SUPER_TOKEN = "5" * 64
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("surveys", ("survey",)),
    ("user roles", ("user_role",)),
    ("DAGs", ("dag",)),
    ("users", ("user",)),
    ("logging", ("logging",)),
    ("file repository", ("repository", "folder")),
    ("instrument-event mapping", ("fem_", "instrument_event_mapping")),
    ("repeating instruments", ("repeating",)),
    ("arms", ("arms_", "export_arms")),
    ("events", ("events_", "export_events")),
    ("field names", ("field_name",)),
    ("instruments", ("instruments", "pdf")),
    ("metadata", ("metadata",)),
    ("project info", ("project_info", "is_longitudinal", "is_not_longitudinal", "version")),
    ("records", ("record", "df_no_index")),
)
"""Test-name fragments of each group, first match wins (PyCap's own test names)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/"
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "serve", "--db", str(work / "suite.sqlite"),
         "--port", str(port), "--log-file", str(work / "server.log"),
         "--public-url", "https://redcapdemo.vumc.org/"],
        env={**os.environ, "ECRF_SERVE_SUPER_TOKEN": SUPER_TOKEN})
    for _ in range(300):
        try:
            requests.post(url, data={"content": "version"}, timeout=2)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("our server did not start; see " + str(work / "server.log"))


def group_of(test_id: str) -> str:
    name = test_id.split("::")[-1]
    return next((group for group, parts in GROUPS if any(p in name for p in parts)), "other")


def _pytest(copy: Path, url: str, args: list[str], doctests: bool = False
            ) -> tuple[int, int, str]:
    env = {**os.environ, "REDCAPDEMO_SUPERUSER_TOKEN": SUPER_TOKEN, "ECRF_SUITE_URL": url,
           "PYTHONPATH": os.pathsep.join([str(HERE), str(copy)])}
    if doctests:
        env["ECRF_SUITE_DOCTESTS"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-o", "addopts=", "-p", "pycap_suite_plugin",
         "-q", "-rA", "--tb=line", "-p", "no:cacheprovider"],
        cwd=copy, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", out)) else 0
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|error)", out))
    return passed, failed, out


def _tally(out: str, groups: dict[str, list[int]]) -> None:
    for line in out.splitlines():
        outcome, _, rest = line.partition(" ")
        if outcome in ("PASSED", "FAILED", "ERROR"):
            tally = groups.setdefault(group_of(rest.split(" ")[0]), [0, 0])
            tally[outcome != "PASSED"] += 1
        if outcome in ("FAILED", "ERROR"):
            print("   ", line[:300])


def run_integration(copy: Path, url: str) -> tuple[int, int]:
    """Each file of tests/integration/ in its own pytest run; prints files and groups."""
    total_passed = total_failed = 0
    groups: dict[str, list[int]] = {}
    for test_file in sorted((copy / "tests" / "integration").glob("test_*.py")):
        rel = str(test_file.relative_to(copy))
        passed, failed, out = _pytest(copy, url, [rel])
        total_passed, total_failed = total_passed + passed, total_failed + failed
        print(f"{rel}: {passed} passed, {failed} failed")
        _tally(out, groups)
    for group, (passed, failed) in sorted(groups.items()):
        print(f"  {group}: {passed} passed, {failed} failed")
    return total_passed, total_failed


def run_doctests(copy: Path, url: str) -> tuple[int, int]:
    """The docstring examples of the installed PyCap's methods, on its doctest project.

    They record one live redcapdemo project, so some failures are facts of that server
    (its superuser's name and user count); they are reported, not counted as ours.
    """
    import redcap

    methods = Path(redcap.__file__).parent / "methods"
    passed, failed, out = _pytest(copy, url, [
        "--doctest-modules", str(methods), "--rootdir", str(copy), "-c",
        str(copy / "pytest.ini"), "-o", "doctest_optionflags=NORMALIZE_WHITESPACE ELLIPSIS"],
        doctests=True)
    print(f"doctests of {methods}: {passed} passed, {failed} failed")
    _tally(out, {})
    return passed, failed


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--doctests"]
    if not args or not (Path(args[0]) / "tests" / "integration").is_dir():
        print("usage: pycap_suite.py PATH_TO_PYCAP_CHECKOUT [--doctests] (a copy of "
              "redcap-tools/PyCap with tests/integration/)", file=sys.stderr)
        return 2
    source = Path(args[0])
    with tempfile.TemporaryDirectory(prefix="pycap-suite-") as tmp:
        work = Path(tmp)
        copy = work / "pycap"
        shutil.copytree(source / "tests", copy / "tests")
        shutil.copy(source / "pytest.ini", copy / "pytest.ini")
        process, url = _start_server(work)
        try:
            passed, failed = run_integration(copy, url)
            print(f"total: {passed} passed, {failed} failed")
            if "--doctests" in argv:
                run_doctests(copy, url)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
