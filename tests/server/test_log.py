"""`content=log` as REDCap 15.7.6 writes it (redcap-behaviour.md §1).

Each test names the fact of §1 it follows.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from redcap import Project

from tests.conftest import RedcapServer

MINI = Path(__file__).resolve().parents[1] / "data" / "mini"


def mini_project(server: RedcapServer) -> Project:
    """The mini longitudinal project (Screening, Day 7, Logs with repeating adverse_event)."""
    from sync.config import Settings
    from sync.connection import connect
    from sync.crf.deploy import deploy
    from sync.crf.dictionary import load_dictionary
    token = server.create_project()
    settings = Settings(REDCAP_API_URL=server.url, REDCAP_API_TOKEN=SecretStr(token))
    deploy(connect(settings), load_dictionary(MINI / "data_dictionary.csv", MINI / "redcap"))
    return Project(server.url, token)


@pytest.fixture
def mini(redcap_server) -> Project:
    return mini_project(redcap_server)


def record_rows(project: Project, **filters) -> list[tuple[str, str, str]]:
    return [(r["action"], r["details"], r["record"])
            for r in project.export_logging(log_type="record", **filters)]


def test_every_api_export_writes_a_manage_row_with_redcaps_description(mini):
    """§1: every API export writes a MANAGE row ("Export project information (API)", ...)."""
    mini.export_project_info()
    mini.export_metadata()
    mini.export_events()
    mini.export_arms()
    mini.export_instrument_event_mappings()
    mini.export_repeating_instruments_events()
    mini.export_version()
    mini.export_users()
    mini.export_field_names()
    mini.export_logging(log_type="record")
    rows = mini.export_logging(log_type="manage")
    assert {r["action"] for r in rows} == {"Manage/Design "}
    described = [r["details"] for r in rows]
    assert described[:10] == [
        "Export Logging (API)", "Download export field names (API)", "Export users (API)",
        "Export REDCap version (API)", "Export repeating instruments and events (API)",
        "Export instrument-event mappings (API)", "Export arms (API)", "Export events (API)",
        "Download data dictionary (API)", "Export project information (API)"]
    assert {r["username"] for r in rows[:10]} == {"api_user"}


def test_record_exports_write_a_data_export_row_that_logtype_record_leaves_out(mini):
    """§1: record exports write a DATA_EXPORT row; `logtype=record` leaves it out."""
    mini.import_records([{"record_id": "1", "redcap_event_name": "screening_arm_1"}])
    mini.export_records(format_type="csv")
    everything = mini.export_logging()
    exports = [r for r in everything if r["details"].startswith("export_format")]
    assert exports[0]["details"] == "export_format: CSV, rawOrLabel: raw"
    assert mini.export_logging(log_type="export") == exports
    assert [action for action, _, _ in record_rows(mini)] == [
        "Create record (API) 1 (Screening)"]
    assert all(r["details"] != "export_format: CSV, rawOrLabel: raw"
               for r in mini.export_logging(log_type="manage"))


def test_one_row_per_record_event_and_instance_with_redcaps_wording(mini):
    """§1: one row per record, event and instance; `Create record (API) 01-001 (Screening)`;
    `[instance = N], ` above instance 1; the record-id stub of a new repeating instance and
    `<form>_complete = '0'` for touched forms without a status."""
    mini.import_records([
        {"record_id": "01-001", "redcap_event_name": "screening_arm_1", "sex": "2"},
        {"record_id": "01-001", "redcap_event_name": "logs_arm_1",
         "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": "1",
         "ae_term": "Cough"},
        {"record_id": "01-001", "redcap_event_name": "logs_arm_1",
         "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": "2",
         "ae_term": "Rash"}])
    mini.import_records([{"record_id": "01-001", "redcap_event_name": "day_7_arm_1",
                          "rr": "22", "vitals_complete": "1"}])
    assert record_rows(mini) == [
        ("Update record (API) 01-001 (Day 7)",
         "record_id = '01-001', rr = '22', vitals_complete = '1'", "01-001"),
        ("Create record (API) 01-001 (Logs)",
         "[instance = 2], record_id = '01-001', ae_term = 'Rash', adverse_event_complete = '0'",
         "01-001"),
        ("Create record (API) 01-001 (Logs)",
         "record_id = '01-001', ae_term = 'Cough', adverse_event_complete = '0'", "01-001"),
        ("Create record (API) 01-001 (Screening)",
         "record_id = '01-001', sex = '2', enrolment_complete = '0'", "01-001")]


def test_update_and_delete_rows_name_the_event(mini):
    """§1: `Update record (API) ...` / `Delete record (API) ...` with the event label."""
    mini.import_records([{"record_id": "7", "redcap_event_name": "screening_arm_1"}])
    mini.import_records([{"record_id": "7", "redcap_event_name": "screening_arm_1", "sex": "1"}])
    mini.delete_records(["7"])
    assert [action for action, _, _ in record_rows(mini)] == [
        "Delete record (API) 7 (Screening)", "Update record (API) 7 (Screening)",
        "Create record (API) 7 (Screening)"]


def test_classic_project_rows_have_no_event_label_and_unchanged_rows_none(new_project):
    """§1: the event label is added in longitudinal projects only; nothing saved, no row."""
    project = new_project()
    project.import_records([{"record_id": "1"}])
    project.import_records([{"record_id": "1", "my_first_instrument_complete": "2"}])
    project.import_records([{"record_id": "1", "my_first_instrument_complete": "2"}])
    project.delete_records(["1"])
    assert record_rows(project) == [
        ("Delete record (API) 1", "record_id = '1'", "1"),
        ("Update record (API) 1", "my_first_instrument_complete = '2'", "1"),
        ("Create record (API) 1", "record_id = '1'", "1")]


def test_timestamps_are_minutes_newest_first_by_log_order(new_project):
    """§1: `YYYY-MM-DD HH:MM`; newest first (ORDER BY log_event_id DESC), so inside one minute
    the first row is the last action."""
    project = new_project()
    for n in range(3):
        project.import_records([{"record_id": "1", "my_first_instrument_complete": str(n)}])
    rows = project.export_logging(log_type="record")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", r["timestamp"]) for r in rows)
    assert [r["details"] for r in rows] == [
        "my_first_instrument_complete = '2'", "my_first_instrument_complete = '1'",
        "record_id = '1', my_first_instrument_complete = '0'"]


def test_rows_are_dated_by_their_requests_start(redcap_server, new_project):
    """§1: the stored time is the start of the request that wrote the row."""
    import sqlite3
    project = new_project()
    before = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    project.import_records([{"record_id": str(n)} for n in range(1, 40)])
    with sqlite3.connect(redcap_server.db_path) as db:
        stamps = {row[0] for row in db.execute(
            "SELECT ts FROM log WHERE project_id = (SELECT project_id FROM projects "
            "WHERE token = ?) AND logtype = 'record'", (project.token,))}
    assert len(stamps) == 1 and stamps.pop() >= before


def test_log_filters_by_record(new_project):
    project = new_project()
    project.import_records([{"record_id": "1"}, {"record_id": "2"}])
    assert [r["record"] for r in project.export_logging(record="2")] == ["2"]


def test_log_time_window_and_record_add_type(new_project):
    project = new_project()
    project.import_records([{"record_id": "1"}])
    project.import_records([{"record_id": "1", "my_first_instrument_complete": "1"}])
    assert project.export_logging(begin_time=datetime(2999, 1, 1)) == []
    assert project.export_logging(end_time=datetime(2000, 1, 1)) == []
    assert [r["action"] for r in project.export_logging(log_type="record_add")] == [
        "Create record (API) 1"]


def test_a_time_window_starting_at_a_rows_minute_includes_it(new_project):
    """§1: `beginTime` is cut to minutes, so a row written at 10:05:59 is in a window from
    10:05 (the time index compares stored seconds with the minute)."""
    project = new_project()
    project.import_records([{"record_id": "1"}])
    written = project.export_logging(log_type="record")[0]["timestamp"]
    start = datetime.strptime(written, "%Y-%m-%d %H:%M")
    assert [r["record"] for r in project.export_logging(log_type="record", begin_time=start,
                                                        end_time=start)] == ["1"]


def test_a_time_window_reads_the_log_by_its_time_index(tmp_path):
    """A night's read of the log since the last sync costs the same however long the log has
    grown, as REDCap's read by time does: the store's own statement uses the time index."""
    from sync.server.store import Store
    store = Store(tmp_path / "redcap.sqlite")
    statements: list[str] = []
    store.read().set_trace_callback(statements.append)
    store.log_rows(1, "2025-01-01 00:00")
    plan = " ".join(row[-1] for row in store.read().execute(
        "EXPLAIN QUERY PLAN " + statements[-1]))
    assert "USING INDEX log_time" in plan
