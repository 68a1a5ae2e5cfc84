"""The right project, reached or not: `ecrf sync` refuses a project without the trial's CRF,
a REDCap that cannot be reached fails at once naming the host, a slow one keeps its retry
budget, and every retry is a line on stderr (#15.5)."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from sync.cli import cli
from sync.config import Settings
from sync.connection import connect
from sync.errors import RedcapApiError
from sync.crf.trial_crf import missing_crf
from tests.conftest import free_port
from tests.test_faults import fault_server, faults_now, set_faults  # noqa: F401 - fixture
from tests.test_sync import DICTIONARY

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = (ROOT / "tests" / "data" / "longitudinal_project.xml").read_text()


def _sync(url: str, token: str, tmp_path: Path, monkeypatch, budget: float = 300):
    monkeypatch.setenv("REDCAP_API_URL", url)
    monkeypatch.setenv("REDCAP_API_TOKEN", token)
    monkeypatch.chdir(ROOT)
    config = tmp_path / "ecrf.toml"
    config.write_text(f'state_path = "{tmp_path / "state.sqlite"}"\n'
                      f"retry_budget_seconds = {budget}\n")
    return CliRunner().invoke(cli, ["sync", "--config", str(config)])


def test_sync_refuses_a_project_without_the_trials_crf(redcap_server, tmp_path, monkeypatch):
    token = redcap_server.create_project(FIXTURE)
    result = _sync(redcap_server.url, token, tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "does not hold the trial's CRF: it lacks events screening_arm_1, day_0_arm_1" in \
        result.output
    assert "Nothing was synced" in result.output and "`ecrf deploy`" in result.output


def test_a_missing_form_is_named_with_its_fields():
    metadata = DICTIONARY.metadata[DICTIONARY.metadata["form_name"] != "adverse_event"]
    partial = type(DICTIONARY)(metadata.reset_index(drop=True), DICTIONARY.events,
                               DICTIONARY.arms, DICTIONARY.mapping, DICTIONARY.repeating,
                               DICTIONARY.project)
    missing = missing_crf(partial)
    assert (missing["events"], missing["forms"]) == ([], ["adverse_event"])
    assert "ae_term" in missing["fields"] and "icdat" not in missing["fields"]
    assert missing_crf(DICTIONARY) == {"events": [], "forms": [], "fields": []}


def test_a_redcap_that_cannot_be_reached_fails_at_once_naming_the_host(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/api/"
    settings = Settings(REDCAP_API_URL=url, REDCAP_API_TOKEN=SecretStr("A" * 32),
                        retry_budget_seconds=300)
    conn = connect(settings)
    conn.sleep = lambda seconds: pytest.fail(f"retried after {seconds} s")
    with pytest.raises(RedcapApiError, match=r"cannot connect to 127\.0\.0\.1:\d+ \(connection "
                                             r"refused, connect timeout 10 s\)"):
        conn.call("export project info", conn.project.export_project_info)
    result = _sync(url, "A" * 32, tmp_path, monkeypatch)
    assert result.exit_code == 3 and "cannot connect to 127.0.0.1:" in result.output


def test_a_slow_redcap_keeps_its_retry_budget(fault_server):  # noqa: F811
    token = fault_server.create_project()
    settings = Settings(REDCAP_API_URL=fault_server.url, REDCAP_API_TOKEN=SecretStr(token),
                        timeout_seconds=1.0, retry_budget_seconds=30)
    conn = connect(settings)
    slept: list[float] = []
    conn.sleep = slept.append
    set_faults(fault_server, [{"content": "project", "kind": "slow", "delay": 2.5}])
    try:
        info = conn.call("export project info", conn.project.export_project_info)
        fired = faults_now(fault_server)[0]["fired"]
    finally:
        set_faults(fault_server, [])
    assert "project_id" in info and fired == 1 and len(slept) == 1


def test_every_retry_is_a_line_on_stderr(fault_server, tmp_path, monkeypatch):  # noqa: F811
    token = fault_server.create_project()
    set_faults(fault_server, [{"content": "project", "status": 503, "count": 2}])
    try:
        result = _sync(fault_server.url, token, tmp_path, monkeypatch, budget=30)
    finally:
        set_faults(fault_server, [])
    host = fault_server.url.split("/")[2]
    retries = [line for line in result.stderr.splitlines()
               if "export project info: HTTP 503; retrying in" in line and host in line]
    assert len(retries) == 2, result.stderr
    assert result.exit_code == 2
