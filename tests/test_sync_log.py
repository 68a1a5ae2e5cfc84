"""Incremental pulls on REDCap's log as REDCap 15.7.6 writes it (issue #12.1-4, #12.7).

The embedded server logs every export, dates rows to the minute and lists them newest first
(redcap-behaviour.md §1); these tests drive the sync against it over HTTP.
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta

import requests
from redcap import Project

from sync.changes import CURSOR_OVERLAP, LOG_TIME_FORMAT, entry_id
from sync.demo.data import demo_records
from sync.job import run_sync
from tests.test_sync import (  # noqa: F401 (fixtures)
    MISMATCH, answer, export, mismatch, queries, small_trial, the_query, trial,
)


def project_of(settings) -> Project:
    return Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())


def screening_row(settings, record: str) -> dict:
    rows = export(settings)
    rows = rows[(rows["record_id"] == record) & (rows["redcap_event_name"] == "screening_arm_1")
                & (rows["redcap_repeat_instrument"] == "")]
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()


def subject(record: str) -> list[dict]:
    """The import rows of one demo subject (its screening data, no sync-owned cells)."""
    frame = demo_records(40)
    frame = frame[frame["record_id"] == MISMATCH].assign(record_id=record)
    return [{k: v for k, v in row.items() if v != ""}
            | {k: row[k] for k in ("redcap_event_name", "redcap_repeat_instrument",
                                   "redcap_repeat_instance")}
            for row in frame.to_dict(orient="records")]


def test_a_night_after_a_few_subjects_changed_pulls_only_those(redcap_server, tmp_path):
    settings = trial(redcap_server, tmp_path / "state.sqlite", demo_records(40))
    run_sync(settings)
    project_of(settings).import_records([
        {"record_id": r, "redcap_event_name": "screening_arm_1", "rr": "31"}
        for r in ("01-002", "01-017")])
    summary = run_sync(settings)
    assert (summary.full_pull, summary.records_pulled) == (False, 2)
    assert run_sync(settings).records_pulled == 0


def test_a_record_deleted_and_re_created_in_one_minute_is_pulled(small_trial):
    """§1: newest first, so inside one minute the first row returned is the last action."""
    project = project_of(small_trial)
    record = sorted(export(small_trial)["record_id"])[0]
    project.delete_records([record])
    project.import_records(subject(record))
    assert screening_row(small_trial, record)["elig_calc"] == ""
    summary = run_sync(small_trial)
    assert (summary.full_pull, summary.records_pulled) == (False, 1)
    assert screening_row(small_trial, record)["elig_calc"] != ""


def test_a_record_updated_then_deleted_counts_as_deleted_and_later_runs_succeed(small_trial):
    project = project_of(small_trial)
    record = sorted(export(small_trial)["record_id"])[0]
    project.import_records([{"record_id": record, "redcap_event_name": "screening_arm_1",
                             "rr": "33"}])
    project.delete_records([record])
    summary = run_sync(small_trial)
    assert (summary.full_pull, summary.records_pulled, summary.records_deleted) == (False, 0, 1)
    assert run_sync(small_trial).records_pulled == 0


def rename(settings, record: str, new: str) -> None:
    reply = requests.post(settings.redcap_api_url, data={
        "token": settings.redcap_api_token.get_secret_value(), "content": "record",
        "action": "rename", "record": record, "new_record_name": new})
    assert reply.text == "1", reply.text


def test_a_renamed_record_keeps_its_answered_query(mismatch):
    """crf-contract.md: a rename neither resolves nor opens a query; §1: REDCap logs the rename
    as an UPDATE on the new name."""
    answer(mismatch, "2", "Checked with the investigator.")
    run_sync(mismatch)
    before = queries(mismatch)
    rename(mismatch, MISMATCH, "01-933")
    summary = run_sync(mismatch)
    assert (summary.full_pull, summary.records_pulled) == (False, 1)
    assert (summary.queries_opened, summary.queries_resolved, summary.cells_written) == (0, 0, 0)
    after = queries(mismatch)
    assert after.drop(columns="record_id").equals(before.drop(columns="record_id"))
    assert set(after["record_id"]) == {"01-933"}
    query = after[after["dq_rule"] == "IE_MISMATCH"].iloc[0]
    assert (query["dq_status"], query["dq_response"]) == ("2", "Checked with the investigator.")


def test_a_renamed_record_keeps_a_closed_query_closed(mismatch):
    answer(mismatch, "3")
    rename(mismatch, MISMATCH, "01-934")
    run_sync(mismatch)
    statuses = queries(mismatch).set_index("dq_rule")["dq_status"]
    assert statuses["IE_MISMATCH"] == "3" and len(queries(mismatch)) == len(statuses)


def test_a_typed_over_elig_calc_is_put_right_by_the_next_run(mismatch):
    """#12.7: only the sync's own writes (matched to its ledger) are skipped in the log."""
    right = screening_row(mismatch, MISMATCH)["elig_calc"]
    wrong = "0" if right == "1" else "1"
    project_of(mismatch).import_records([{"record_id": MISMATCH,
                                          "redcap_event_name": "screening_arm_1",
                                          "elig_calc": wrong}])
    summary = run_sync(mismatch)
    assert (summary.records_pulled, summary.flags_changed) == (1, 1)
    assert screening_row(mismatch, MISMATCH)["elig_calc"] == right


def test_a_blanked_dq_status_is_put_right_by_the_next_run(mismatch):
    instance = the_query(mismatch)["redcap_repeat_instance"]
    project_of(mismatch).import_records([{
        "record_id": MISMATCH, "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": instance,
        "dq_status": ""}], overwrite="overwrite")
    assert run_sync(mismatch).records_pulled == 1
    assert the_query(mismatch)["dq_status"] == "1"


def test_the_syncs_own_writes_do_not_bring_records_back(mismatch):
    project_of(mismatch).import_records([{"record_id": MISMATCH,
                                          "redcap_event_name": "screening_arm_1", "rr": "35"}])
    assert run_sync(mismatch).records_pulled == 1
    assert run_sync(mismatch).records_pulled == 0


# -- safety nets (#12.3) --------------------------------------------------------------------

def server_sql(server, sql: str, *args) -> None:
    with sqlite3.connect(server.db_path) as db:
        db.execute(sql, args)


def ledger_sql(settings, sql: str, *args) -> None:
    with sqlite3.connect(settings.state_path) as db:
        db.execute(sql, args)


def project_id(settings) -> int:
    return int(project_of(settings).export_project_info()["project_id"])


def test_a_project_restored_from_backup_gets_a_full_reconciliation(redcap_server, small_trial):
    """The cursor is later than REDCap's newest log entry: the entries the last run saw are
    gone from the log, so the log cannot say what changed."""
    server_sql(redcap_server, "DELETE FROM log WHERE project_id = ?", project_id(small_trial))
    summary = run_sync(small_trial)
    assert summary.full_pull
    assert summary.full_reason in (  # inside one minute the two look alike
        "REDCap's log no longer holds the entries the last run saw (project restored?)",
        "REDCap's clock went back behind the last run's cursor")
    assert run_sync(small_trial).full_pull is False


def test_records_that_vanish_without_a_delete_entry_bring_a_full_reconciliation(redcap_server,
                                                                                small_trial):
    record = sorted(export(small_trial)["record_id"])[0]
    server_sql(redcap_server, "DELETE FROM data WHERE project_id = ? AND record = ?",
               project_id(small_trial), record)
    summary = run_sync(small_trial)
    assert summary.full_pull and "vanished" in summary.full_reason


def test_a_full_reconciliation_every_n_days_of_redcaps_clock(small_trial):
    assert run_sync(small_trial).full_pull is False
    long_ago = (datetime.now() - timedelta(days=8)).strftime(LOG_TIME_FORMAT)
    ledger_sql(small_trial, "UPDATE pull_state SET last_full = ?", long_ago)
    summary = run_sync(small_trial)
    assert (summary.full_pull, summary.full_reason) == (True, "reconciliation every 7 days")
    assert run_sync(small_trial).full_pull is False
    every_run = small_trial.model_copy(update={"full_reconcile_days": 0})
    assert run_sync(every_run).full_pull is True


def test_a_clock_that_goes_back_never_hides_entries(redcap_server, small_trial):
    """REDCap's clock set back two hours after the last run: new entries are dated before the
    cursor. Simulated by moving the past forward: every log row and the cursor, +2 hours."""
    pid = project_id(small_trial)
    server_sql(redcap_server, "UPDATE log SET ts = datetime(ts, '+2 hours') WHERE project_id = ?",
               pid)
    with sqlite3.connect(small_trial.state_path) as db:
        run_id, cursor = db.execute("SELECT run_id, cursor_to FROM runs WHERE status = "
                                    "'succeeded' ORDER BY rowid DESC LIMIT 1").fetchone()
    ahead = (datetime.strptime(cursor, LOG_TIME_FORMAT) + timedelta(hours=2))
    window = (ahead - CURSOR_OVERLAP).strftime(LOG_TIME_FORMAT)
    seen = sorted(entry_id(r) for r in project_of(small_trial).export_logging()
                  if r["timestamp"] >= window)
    ledger_sql(small_trial, "UPDATE runs SET cursor_to = ?, seen_log = ? WHERE run_id = ?",
               ahead.strftime(LOG_TIME_FORMAT), json.dumps(seen), run_id)
    record = sorted(export(small_trial)["record_id"])[0]
    right = screening_row(small_trial, record)["elig_calc"]
    project_of(small_trial).import_records([{"record_id": record,
                                             "redcap_event_name": "screening_arm_1",
                                             "elig_calc": "0" if right == "1" else "1"}])
    summary = run_sync(small_trial)
    assert summary.full_pull and "clock went back" in summary.full_reason
    assert screening_row(small_trial, record)["elig_calc"] == right
    assert run_sync(small_trial).full_pull is False
