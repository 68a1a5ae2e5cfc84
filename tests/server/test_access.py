"""Locks, production status, user rights and the rate limit, as REDCap 15.7.6 has them.

Each test names the fact it follows in redcap-behaviour.md, the REDCap 15.7.6 reference
(§2 records, §3 design, §4 limits). The admin side goes through the `ecrf server` commands, on
the database of the running server, as an administrator would use them.
"""
from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from sync.cli import cli
from sync.server.access import (
    FORM_LOCKED, IN_PRODUCTION, NO_EXPORT_RIGHTS, NO_IMPORT, NO_LOGGING, NOT_YOUR_GROUP,
    OVERRIDE_IN_PRODUCTION, RECORD_LOCKED,
)
from tests.conftest import PROJECT_TOKEN, SUPER_TOKEN, RedcapServer, free_port

FIELDS = [
    ("record_id", "demo", "text", "", "", ""),
    ("name", "demo", "text", "", "y", ""),
    ("dob", "demo", "text", "date_ymd", "", ""),
    ("remark", "demo", "notes", "", "", ""),
    ("score", "demo", "text", "integer", "", ""),
    ("sex", "demo", "radio", "", "", "1, Female | 2, Male"),
    ("weight", "visit", "text", "number", "", ""),
]


def call(server, token: str, **params: str) -> requests.Response:
    return requests.post(server.url, data={"token": token, "format": "json",
                                           "returnFormat": "json", **params}, timeout=30)


def admin(server, *args: str) -> str:
    result = CliRunner().invoke(cli, ["server", *args[:1], "--db", str(server.db_path),
                                      *args[1:]])
    assert result.exit_code == 0, result.output
    return result.output


def project_id(server, token: str) -> str:
    return str(call(server, token, content="project").json()["project_id"])


@pytest.fixture
def small(redcap_server):
    """A classic project with two forms and two records; returns (token, project id)."""
    token = redcap_server.create_project()
    metadata = [{"field_name": n, "form_name": f, "field_type": t, "field_label": n,
                 "text_validation_type_or_show_slider_number": v, "identifier": i,
                 "select_choices_or_calculations": c} for n, f, t, v, i, c in FIELDS]
    assert call(redcap_server, token, content="metadata",
                data=json.dumps(metadata)).status_code == 200
    rows = [{"record_id": r, "name": f"N{r}", "dob": "1970-01-02", "remark": "free",
             "score": "5", "sex": "1", "weight": "70"} for r in ("1", "2")]
    assert call(redcap_server, token, content="record", data=json.dumps(rows)).json() == \
        {"count": 2}
    return token, project_id(redcap_server, token)


def values(server, token: str) -> dict[str, dict[str, str]]:
    rows = call(server, token, content="record").json()
    return {row["record_id"]: row for row in rows}


# -- §2 locking -------------------------------------------------------------------------------

def test_import_into_a_locked_form_fails_whole_with_redcaps_message_records_php_6264(
        redcap_server, small):
    token, pid = small
    admin(redcap_server, "lock", "--project", pid, "--record", "1", "--form", "visit")
    answer = call(redcap_server, token, content="record", data=json.dumps([
        {"record_id": "1", "weight": "71"}, {"record_id": "2", "weight": "72"}]))
    assert answer.status_code == 400
    assert answer.json()["error"] == f'"1","weight","71","{FORM_LOCKED}"'
    assert values(redcap_server, token)["2"]["weight"] == "70"  # all or nothing
    assert call(redcap_server, token, content="record", data=json.dumps([
        {"record_id": "1", "score": "6"}])).json() == {"count": 1}  # other forms stay open
    admin(redcap_server, "unlock", "--project", pid, "--record", "1", "--form", "visit")
    assert call(redcap_server, token, content="record", data=json.dumps([
        {"record_id": "1", "weight": "71"}])).json() == {"count": 1}


def test_a_locked_record_refuses_every_value_and_lock_rows_stay_out_of_record_logs(
        redcap_server, small):
    token, pid = small
    admin(redcap_server, "lock", "--project", pid, "--record", "2")
    answer = call(redcap_server, token, content="record",
                  data=json.dumps([{"record_id": "2", "score": "9"}]))
    assert answer.json()["error"] == f'"2","score","9","{RECORD_LOCKED}"'
    record_log = call(redcap_server, token, content="log", logtype="record").json()
    assert record_log and not any("Lock" in row["action"] for row in record_log)
    everything = call(redcap_server, token, content="log").json()
    assert any(row["action"].startswith("Lock/Unlock Record") for row in everything)


def test_lock_command_names_what_does_not_exist(redcap_server, small):
    _, pid = small
    result = CliRunner().invoke(cli, ["server", "lock", "--db", str(redcap_server.db_path),
                                      "--project", pid, "--record", "9"])
    assert result.exit_code == 2 and "no record '9'" in result.output


# -- §3 production status ---------------------------------------------------------------------

def test_production_refuses_design_imports_but_not_repeating_setup_event_php_8(
        redcap_server, small):
    token, pid = small
    call(redcap_server, token, content="project_settings",
         data=json.dumps({"is_longitudinal": "1"}))
    admin(redcap_server, "status", "--project", pid, "production")
    assert call(redcap_server, token, content="project").json()["in_production"] == 1
    metadata = call(redcap_server, token, content="metadata").json()
    for content, data in (("metadata", metadata), ("formEventMapping", [
            {"arm_num": "1", "unique_event_name": "event_1_arm_1", "form": "demo"}]),
            ("event", [{"event_name": "Week 2", "arm_num": "1"}]),
            ("arm", [{"arm_num": "1", "name": "Arm 1"}])):
        answer = call(redcap_server, token, content=content, data=json.dumps(data))
        assert (answer.status_code, answer.json()["error"]) == (400, IN_PRODUCTION), content
    repeating = [{"event_name": "event_1_arm_1", "form_name": "visit", "custom_form_label": ""}]
    assert call(redcap_server, token, content="repeatingFormsEvents",
                data=json.dumps(repeating)).status_code == 200
    try:
        admin(redcap_server, "status", "--project", pid, "--users-may-edit-events",
              "production")
        event = json.dumps([{"event_name": "Week 2", "arm_num": "1"}])
        assert call(redcap_server, token, content="event", data=event).status_code == 200
        answer = call(redcap_server, token, content="event", data=event, override="1")
        assert answer.json()["error"] == OVERRIDE_IN_PRODUCTION
    finally:
        admin(redcap_server, "status", "--project", pid, "--users-may-not-edit-events",
              "development")
    assert call(redcap_server, token, content="metadata",
                data=json.dumps(metadata)).status_code == 200


# -- §2 user rights, data access groups, de-identified exports -------------------------------

def user_token(server, pid: str, *options: str) -> str:
    output = admin(server, "user", "--project", pid, *options)
    return output.strip().rsplit("API token: ", 1)[1]


def test_a_user_without_import_or_logging_rights_gets_redcaps_403(redcap_server, small):
    token, pid = small
    reader = user_token(redcap_server, pid, "--no-import", "--no-logging", "reader")
    answer = call(redcap_server, reader, content="record",
                  data=json.dumps([{"record_id": "1", "score": "1"}]))
    assert (answer.status_code, answer.json()["error"]) == (403, NO_IMPORT)
    answer = call(redcap_server, reader, content="log")
    assert (answer.status_code, answer.json()["error"]) == (403, NO_LOGGING)
    assert len(call(redcap_server, reader, content="record").json()) == 2
    nobody = user_token(redcap_server, pid, "--export-rights", "none", "nobody")
    assert call(redcap_server, nobody, content="record").json()["error"] == NO_EXPORT_RIGHTS


def test_a_group_user_sees_and_writes_only_its_groups_records(redcap_server, small):
    token, pid = small
    call(redcap_server, token, content="dag",
         data=json.dumps([{"data_access_group_name": "Site A", "unique_group_name": ""}]))
    call(redcap_server, token, content="record", data=json.dumps([
        {"record_id": "1", "redcap_data_access_group": "site_a"}]))
    site = user_token(redcap_server, pid, "--dag", "site_a", "site_a_user")
    assert [row["record_id"] for row in call(redcap_server, site, content="record").json()] \
        == ["1"]
    answer = call(redcap_server, site, content="record",
                  data=json.dumps([{"record_id": "2", "score": "3"}]))
    assert answer.json()["error"] == NOT_YOUR_GROUP + "2"
    assert call(redcap_server, site, content="record",
                data=json.dumps([{"record_id": "3", "score": "3"}])).json() == {"count": 1}
    assert sorted(row["record_id"] for row in call(redcap_server, site,
                                                   content="record").json()) == ["1", "3"]


def test_deidentified_rights_silently_drop_identifiers_free_text_notes_and_dates(
        redcap_server, small):
    _, pid = small
    monitor = user_token(redcap_server, pid, "--export-rights", "deidentified", "monitor")
    row = call(redcap_server, monitor, content="record").json()[0]
    assert set(row) == {"record_id", "score", "sex", "demo_complete", "weight",
                        "visit_complete"}
    eav = call(redcap_server, monitor, content="record", type="eav").json()
    assert {r["field_name"] for r in eav} <= set(row)


# -- §4 rate limit ----------------------------------------------------------------------------

def test_past_the_threshold_the_address_is_banned_for_good_without_retry_after(tmp_path):
    """`Logging.php` l.1426-1461: no Retry-After; the ban outlasts the minute and a restart."""
    server = RedcapServer(f"http://127.0.0.1:{free_port()}/api/", PROJECT_TOKEN, SUPER_TOKEN,
                          tmp_path / "redcap.sqlite", tmp_path / "server.log")
    server.start()
    try:
        admin(server, "rate-limit", "5")
        answers = [call(server, PROJECT_TOKEN, content="version") for _ in range(7)]
        assert [a.status_code for a in answers].count(429) >= 1
        banned = answers[-1]
        assert banned.status_code == 429 and "Retry-After" not in banned.headers
        assert "Your IP address (127.0.0.1) has been banned" in banned.text
        admin(server, "rate-limit", "0")
        assert call(server, PROJECT_TOKEN, content="version").status_code == 429
        assert "ban lifted" in admin(server, "rate-limit", "--unban", "127.0.0.1")
        assert call(server, PROJECT_TOKEN, content="version").status_code == 200
    finally:
        server.stop()
