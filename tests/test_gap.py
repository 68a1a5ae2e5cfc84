"""A person's save between the read-back and the import is given back (`sync.gap`).

The contract: "A change made by a person while the sync runs (a status, a response, a new
instance) is never overwritten by that run." The read-back sees what was saved before it; what
a monitor saves after it, while the import is on its way, only REDCap's log shows (§1: one
entry per record, event and instance, newest first by insertion). Real HTTP against the
embedded server; the monitor is a second REDCap user acting through the API at the moment the
read-back has answered, which a real monitor hits by chance (2 of 91 in a bad-night drill).
"""
from __future__ import annotations

import re

import pandas as pd
from hypothesis import given, strategies as st
from pydantic import SecretStr

import sync.job
from sync import gap, readback
from sync.demo.data import demo_records
from sync.errors import EXIT_NOT_WRITTEN
from sync.job import EXIT_RECREATED, run_sync
from sync.ledger import Ledger
from tests.test_sync import (  # noqa: F401 (mismatch is a fixture)
    MISMATCH, mismatch, queries, set_cells, the_query, trial,
)
from tests.test_sync_refusals import SCREENING, admin, project_id

FIELDS = frozenset({"dq_rule", "dq_text", "dq_status", "dq_response", "record_id"})


def monitor_of(settings, server):
    """Settings with the token of a second user, a monitor, on the same project."""
    output = admin(server, "user", "--project", project_id(settings), "monitor")
    token = output.strip().rsplit("API token: ", 1)[1]
    return settings.model_copy(update={"redcap_api_token": SecretStr(token)})


def after_the_read_back(monkeypatch, act) -> list[bool]:
    """`act` runs once, just after the run's first read-back answered (before its import)."""
    acted: list[bool] = []
    original = readback.moved_records

    def read_back_then_act(*args, **kwargs):
        moved = original(*args, **kwargs)
        if not acted:
            acted.append(True)
            act()
        return moved

    monkeypatch.setattr(sync.readback, "moved_records", read_back_then_act)
    return acted


def test_a_query_the_monitor_closes_after_the_read_back_stays_closed(
        mismatch, redcap_server, monkeypatch):
    """Without the log check the import set Resolved over the monitor's Closed."""
    monitor = monitor_of(mismatch, redcap_server)
    instance = the_query(mismatch)["redcap_repeat_instance"]
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})  # the site corrects: the sync would resolve
    acted = after_the_read_back(monkeypatch, lambda: set_cells(
        monitor, "logs_arm_1", {"dq_status": "3"}, instance, "dq_query"))
    summary = run_sync(mismatch)
    assert acted and summary.records_replanned == 0, "the monitor acted before the read-back"
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"]) == ("3", "")
    assert (summary.queries_given_back, summary.queries_resolved) == (1, 0)
    assert "queries given back 1" in " ".join(summary.describe().split())
    monkeypatch.undo()
    run_sync(mismatch)  # the log names the record: a Closed query stays Closed
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"]) == ("3", "")
    assert run_sync(mismatch).records_written == 0


def test_a_closed_status_redcap_refuses_to_give_back_is_listed_for_a_person_to_enter_again(
        mismatch, redcap_server, monkeypatch):
    """The import resolved the query the monitor had just closed; the monitor's form was then
    locked, so REDCap refuses the give-back. No later run restores a person's value: it is
    listed apart from the sync's refused cells (which the next run retries), kept in the
    ledger, and the run exits 5."""
    monitor = monitor_of(mismatch, redcap_server)
    instance = the_query(mismatch)["redcap_repeat_instance"]
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})
    after_the_read_back(monkeypatch, lambda: set_cells(
        monitor, "logs_arm_1", {"dq_status": "3"}, instance, "dq_query"))
    read_log = gap.read_log

    def read_then_lock(*args, **kwargs):
        entries = read_log(*args, **kwargs)
        admin(redcap_server, "lock", "--project", project_id(mismatch), "--record", MISMATCH,
              "--event", "logs_arm_1", "--form", "dq_query", "--instance", instance)
        return entries

    monkeypatch.setattr(sync.gap, "read_log", read_then_lock)
    summary = run_sync(mismatch)
    assert the_query(mismatch)["dq_status"] == "4", "the import's Resolved stayed"
    lost = summary.not_given_back
    assert set(zip(lost["field"], lost["new_value"])) >= {("dq_status", "3")}
    assert (summary.values_not_given_back, summary.records_not_written) == (len(lost), 0)
    assert summary.exit_code == EXIT_NOT_WRITTEN
    text = summary.describe()
    assert (f"{MISMATCH} dq_query instance {instance} dq_status = '3': the person's value "
            "could not be given back") in text
    assert "enter them again in REDCap" in text and "the next run tries them again" not in text
    ledger = Ledger(summary.state_path)
    try:
        kept, sent = ledger.refused(summary.run_id), ledger.writes(summary.run_id)
    finally:
        ledger.close()
    assert ("dq_status", "3") in set(zip(kept["field"], kept["new_value"]))
    assert ("dq_status", "4", "3") in set(zip(sent["field"], sent["old_value"],
                                              sent["new_value"])), "the give-back is audited"


def test_an_instance_the_monitor_adds_after_the_read_back_keeps_its_number_and_text(
        redcap_server, tmp_path, monkeypatch):
    """The sync planned its new query at the number the monitor's instance took meanwhile:
    the monitor's instance is given back whole (cells the monitor did not set blank again),
    and the next run opens the sync's query after it."""
    records = demo_records(40)
    subject = records[records["record_id"] == MISMATCH].copy()
    base = ((subject["redcap_event_name"] == SCREENING)
            & (subject["redcap_repeat_instrument"] == ""))
    subject.loc[base, "ie_yn"] = "1"  # consistent at first: no IE_MISMATCH query
    settings = trial(redcap_server, tmp_path / "state.sqlite", subject)
    run_sync(settings)
    monitor = monitor_of(settings, redcap_server)
    existing = queries(settings)["redcap_repeat_instance"].astype(int)
    new = str(int(existing.max()) + 1 if len(existing) else 1)
    set_cells(settings, SCREENING, {"ie_yn": "0"})  # the sync will open a query at `new`
    manual = {"dq_rule": "MONITOR", "dq_text": "Please send the source document.",
              "dq_status": "1"}
    acted = after_the_read_back(monkeypatch, lambda: set_cells(
        monitor, "logs_arm_1", manual, new, "dq_query"))
    summary = run_sync(settings)
    assert acted and (summary.queries_given_back, summary.queries_opened) == (1, 0)
    mine = queries(settings).set_index("redcap_repeat_instance").loc[new]
    assert (mine["dq_rule"], mine["dq_text"], mine["dq_status"]) == (
        "MONITOR", "Please send the source document.", "1")
    assert (mine["dq_field"], mine["dq_opened"]) == ("", "")
    monkeypatch.undo()
    run_sync(settings)
    after = queries(settings).set_index("redcap_repeat_instance")
    assert after.loc[new, "dq_rule"] == "MONITOR"
    opened = after[after["dq_rule"] == "IE_MISMATCH"]
    assert len(opened) == 1 and int(opened.index[0]) > int(new)
    assert run_sync(settings).records_written == 0


def test_an_instance_added_while_kept_back_queries_are_opened_keeps_its_number(
        redcap_server, tmp_path, monkeypatch):
    """A full run keeps its new queries back until the rule guard has seen every batch, then
    reads the records' queries and opens them: the same gap, after that read."""
    records = demo_records(40)
    base = ((records["record_id"] == MISMATCH) & (records["redcap_event_name"] == SCREENING)
            & (records["redcap_repeat_instrument"] == ""))
    records.loc[base, "ie_yn"] = "1"
    settings = trial(redcap_server, tmp_path / "state.sqlite", records)
    run_sync(settings)
    monitor = monitor_of(settings, redcap_server)

    def of_subject() -> pd.DataFrame:
        rows = queries(settings)
        return rows[rows["record_id"] == MISMATCH].set_index("redcap_repeat_instance")

    new = str(max([0, *of_subject().index.astype(int)]) + 1)
    set_cells(settings, SCREENING, {"ie_yn": "0"})
    acted: list[bool] = []
    original = readback.query_rows

    def read_then_act(conn, dictionary, wanted):
        rows = original(conn, dictionary, wanted)
        if MISMATCH in wanted and not acted:
            acted.append(True)
            set_cells(monitor, "logs_arm_1", {"dq_rule": "MONITOR", "dq_text": "Source?",
                                              "dq_status": "1"}, new, "dq_query")
        return rows

    monkeypatch.setattr(sync.readback, "query_rows", read_then_act)
    summary = run_sync(settings, full=True)
    assert acted and summary.queries_given_back == 1
    assert tuple(of_subject().loc[new, ["dq_rule", "dq_text", "dq_field"]]) == (
        "MONITOR", "Source?", "")
    monkeypatch.undo()
    run_sync(settings)
    opened = of_subject()
    opened = opened[opened["dq_rule"] == "IE_MISMATCH"]
    assert len(opened) == 1 and int(opened.index[0]) > int(new)


def test_a_record_deleted_after_the_read_back_is_named_for_a_person_to_delete(
        mismatch, redcap_server, monkeypatch):
    monitor = monitor_of(mismatch, redcap_server)
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})  # the sync will resolve the query

    def delete() -> None:
        from tests.test_sync_refusals import project_of
        project_of(monitor).delete_records([MISMATCH])

    acted = after_the_read_back(monkeypatch, delete)
    summary = run_sync(mismatch)
    assert acted and summary.recreated == {MISMATCH: "deleted"}
    assert f"RE-CREATED: record {MISMATCH} was deleted in REDCap" in summary.describe()
    assert summary.exit_code == EXIT_RECREATED, "a person must act: the scheduler is told"
    monkeypatch.undo()
    later = run_sync(mismatch)
    assert later.recreated_before == {
        MISMATCH: f"deleted in REDCap while run {summary.run_id} imported it"}
    assert (f"RE-CREATED, STILL THERE: record {MISMATCH} was deleted in REDCap while run "
            f"{summary.run_id}") in later.describe()
    assert later.exit_code == EXIT_RECREATED
    delete()
    after = run_sync(mismatch)
    assert (after.recreated_before, after.exit_code) == ({}, 0)


def entry(user: str, record: str, details: str, action: str = "Update record (API)") -> dict:
    return {"timestamp": "2026-12-01 10:00", "username": user, "record": record,
            "action": f"{action} {record} (Logs)", "details": details}


def found_in(log: list[dict], written: pd.DataFrame, read: pd.DataFrame) -> gap.Overwritten:
    """`gap.overwritten` for a sync user `sync` on the trial's query event."""
    return gap.overwritten(log, written, read, user="sync", record_id_field="record_id",
                           query_fields=FIELDS, field_names=FIELDS,
                           labels={"logs_arm_1": "Logs"})


def status_import(old: str, new: str, instance: str = "2") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sync's import of one `dq_status` (record 1, dq_query `instance`: `old` -> `new`),
    and the read before it, which saw `old`."""
    written = pd.DataFrame({"record_id": ["1"], "redcap_event_name": ["logs_arm_1"],
                            "redcap_repeat_instrument": ["dq_query"],
                            "redcap_repeat_instance": [instance], "field": ["dq_status"],
                            "old_value": [old], "new_value": [new], "rule_id": [""]})
    read = written.rename(columns={"old_value": "dq_status"})[
        ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
         "dq_status"]]
    return written, read


def test_a_save_before_the_read_is_not_given_back():
    """The read saw the monitor's value: the sync's import after it overwrote nothing."""
    written, read = status_import("2", "4")
    log = [entry("sync", "1", "[instance = 2], dq_status = '4'"),
           entry("monitor", "1", "[instance = 2], dq_status = '2'")]
    found = found_in(log, written, read)
    assert found.cells.empty
    log[1] = entry("monitor", "1", "[instance = 2], dq_status = '3'")
    found = found_in(log, written, read)
    assert found.cells[["field", "new_value"]].values.tolist() == [["dq_status", "3"]]
    log.insert(0, entry("monitor", "1", "[instance = 2], dq_status = '1'"))
    found = found_in(log, written, read)
    assert found.cells.empty, "the monitor's later save already stands"


def test_a_save_an_earlier_sync_write_replaced_before_the_read_is_not_given_back():
    """A monitor's save in the same minute as the previous run, which that run then replaced:
    the log window holds it, but it is not the value REDCap held before this import."""
    written, read = status_import("4", "1")
    log = [entry("sync", "1", "[instance = 2], dq_status = '1'"),
           entry("sync", "1", "[instance = 2], dq_status = '4'"),
           entry("monitor", "1", "[instance = 2], dq_status = '2'")]
    found = found_in(log, written, read)
    assert found.cells.empty


def test_a_record_renamed_in_the_gap_is_named_and_one_renamed_before_is_not():
    written = status_import("1", "4", instance="1")[0]
    read = pd.DataFrame(columns=["record_id", "redcap_event_name"])
    rename = entry("monitor", "9", "old_record = '1', new_record = '9'")
    log = [entry("sync", "1", "dq_status = '4'"), rename]
    found = found_in(log, written, read)
    assert found.recreated == {"1": "renamed to 9"}
    log = [entry("sync", "1", "dq_status = '4'"), entry("monitor", "1", "record_id = '1'"),
           rename]
    found = found_in(log, written, read)
    assert found.recreated == {}, "a person created record 1 again before the import"


def test_a_save_before_the_run_started_is_never_a_gap_save():
    """Seen in an audit: a site's answer in the same minute as the run's start, read as a save
    in the gap, undid the run's resolve. What the log holds before the run's first call is
    before every read."""
    written, read = status_import("1", "4")
    run_start = {**entry("sync", "", "Export project information (API)"), "record": ""}
    log = [entry("sync", "1", "[instance = 2], dq_status = '4'"), run_start,
           entry("site", "1", "[instance = 2], dq_status = '2'")]
    found = found_in(log, written, read)
    assert found.cells.empty
    log[1], log[2] = log[2], log[1]
    found = found_in(log, written, read)
    assert found.cells["new_value"].tolist() == ["2"]


def test_a_response_spelling_out_an_item_is_not_taken_for_one():
    """Seen in an audit: these responses were read as a status `1', fixed`, and as a second
    response, and the run gave back what no one had saved."""
    assert gap.logged_items("[instance = 2], dq_response = 'end time = 10:30, dq_status = '1', "
                            "fixed', dq_status = '2'", FIELDS) == (
        "2", {"dq_response": "end time = 10:30, dq_status = '1', fixed", "dq_status": "2"})
    assert gap.logged_items("dq_response = 'see note', dq_response = 'x', dq_status = '2'",
                            FIELDS) == ("1", {})


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(text=texts, response=texts)
def test_logged_items_read_values_holding_commas_quotes_and_equals_signs(text, response):
    """§1: REDCap does not escape values in a log entry's details."""
    details = (f"[instance = 3], dq_text = '{text}', dq_response = '{response}', "
               "dq_status = '1', dq_query_complete = '0'")
    instance, items = gap.logged_items(details, FIELDS)
    if any(re.search(r", [a-z][a-z0-9_]*(\([^)]*\))? = ", value) for value in (text, response)):
        return  # a value that spells out another item cannot be told apart
    assert (instance, items) == ("3", {"dq_text": text, "dq_response": response,
                                       "dq_status": "1"})


def test_event_labels_as_the_log_writes_them():
    events = pd.DataFrame({"unique_event_name": ["day_0_arm_1", "day_0_arm_2"],
                           "event_name": ["Day 0", "Day 0"], "arm_num": ["1", "2"]})
    arms = pd.DataFrame({"arm_num": ["1", "2"], "name": ["MSC", "Placebo"]})
    assert gap.log_labels(events, arms) == {"day_0_arm_1": "Day 0 (Arm 1: MSC)",
                                            "day_0_arm_2": "Day 0 (Arm 2: Placebo)"}
    assert gap.log_labels(events.iloc[:1], arms.iloc[:1]) == {"day_0_arm_1": "Day 0"}
    assert gap.event_label("Update record (API) 01-001 (Day 0 (Arm 1: MSC))", "01-001") == \
        "Day 0 (Arm 1: MSC)"
    assert gap.event_label("Update record 01-001", "01-001") == ""
