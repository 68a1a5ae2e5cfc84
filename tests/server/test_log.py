"""`content=log`: record adds, edits and deletes, newest first, REDCap-style details (§6.4).

The action wording (`Create record 1 (API)`) follows REDCap's Logging page [K: not checked
against a live API export]."""
from __future__ import annotations

from datetime import datetime


def test_log_lists_record_changes_newest_first(new_project):
    project = new_project()
    project.import_records([{"record_id": "1"}])
    project.import_records([{"record_id": "1", "my_first_instrument_complete": "2"}])
    project.delete_records(["1"])
    rows = project.export_logging(log_type="record")
    assert [(r["action"], r["details"], r["record"]) for r in rows] == [
        ("Delete record 1 (API)", "record_id = '1'", "1"),
        ("Update record 1 (API)", "my_first_instrument_complete = '2'", "1"),
        ("Create record 1 (API)", "record_id = '1'", "1")]
    assert list(rows[0]) == ["timestamp", "username", "action", "details", "record"]


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
        "Create record 1 (API)"]
