"""Calculated fields are checked, never written (CRF contract; #12.8), over real HTTP.

REDCap ignores calc values sent through its API and recomputes on import only the calcs the
payload's first row triggers (redcap-behaviour.md §2). A pf_ratio left stale that way is one
CALC_STALE query on the calc field, telling the data manager to run Data Quality rule H; when
the value is put right in REDCap the query resolves. The sync itself never imports a calc.
"""
from __future__ import annotations

import pytest
from redcap import Project

from sync.demo.data import demo_records
from sync.job import owned_fields, run_sync
from sync.ledger import Ledger
from tests.test_sync import DICTIONARY, queries, trial

STALE, OTHER = "01-001", "01-002"


def project_of(settings) -> Project:
    return Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())


def screening_value(settings, record: str, field: str) -> str:
    rows = project_of(settings).export_records(records=[record], fields=["record_id", field],
                                               events=["screening_arm_1"])
    return next(r[field] for r in rows if r["redcap_repeat_instrument"] == "")


@pytest.fixture
def two_subjects(redcap_server, tmp_path):
    records = demo_records(40)
    settings = trial(redcap_server, tmp_path / "state.sqlite",
                     records[records["record_id"].isin([STALE, OTHER])])
    run_sync(settings)
    return settings


def leave_pf_ratio_stale(settings) -> None:
    """A PaO2 correction in the second row of an import, behind a row that triggers no calc."""
    project_of(settings).import_records([
        {"record_id": OTHER, "redcap_event_name": "screening_arm_1", "rr": "31"},
        {"record_id": STALE, "redcap_event_name": "screening_arm_1", "pao2": "90",
         "fio2": "50"}])


def calc_queries(settings):
    rows = queries(settings)
    return rows[rows["dq_rule"] == "CALC_STALE"]


def test_the_server_leaves_pf_ratio_stale_as_redcap_does(two_subjects):
    before = screening_value(two_subjects, STALE, "pf_ratio")
    leave_pf_ratio_stale(two_subjects)
    assert screening_value(two_subjects, STALE, "pao2") == "90"
    assert screening_value(two_subjects, STALE, "pf_ratio") == before


def test_a_stale_calc_opens_one_calc_stale_query_naming_rule_h(two_subjects):
    assert calc_queries(two_subjects).empty
    stored = screening_value(two_subjects, STALE, "pf_ratio")
    leave_pf_ratio_stale(two_subjects)
    summary = run_sync(two_subjects)
    found = calc_queries(two_subjects)
    assert len(found) == 1
    query = found.iloc[0]
    assert (query["record_id"], query["dq_event"], query["dq_field"], query["dq_instrument"],
            query["dq_instance"], query["dq_status"]) == (
        STALE, "screening_arm_1", "pf_ratio", "", "", "1")
    fio2 = float(screening_value(two_subjects, STALE, "fio2"))
    assert stored in query["dq_text"] and f"{90 / (fio2 / 100):g}" in query["dq_text"]
    assert "rule H" in query["dq_text"]
    ledger = Ledger(two_subjects.state_path)
    written = ledger.writes(summary.run_id)
    ledger.close()
    assert "dq_status" in set(written["field"]) and "pf_ratio" not in set(written["field"])
    assert screening_value(two_subjects, STALE, "pf_ratio") == stored
    assert run_sync(two_subjects).cells_written == 0


def conmed(instance: int, **values: str) -> dict[str, str]:
    return {"record_id": STALE, "redcap_event_name": "logs_arm_1",
            "redcap_repeat_instrument": "conmed", "redcap_repeat_instance": str(instance),
            **values}


def test_a_stale_calc_on_a_repeating_instrument_is_queried_on_its_instance(two_subjects):
    """The contract's CALC_STALE sits on "that calc field, on its event and instance": a
    prednisolone-equivalent dose (conmed, repeating on the logs event) left stale by a dose
    correction in an import's second row (§2)."""
    project = project_of(two_subjects)
    project.import_records([conmed(10, cm_trt="Methylprednisolone", cm_class="3",
                                   cm_immuno="0", cm_dosnum="40", cm_dosu="1", cm_dosfrq="1",
                                   cm_steroid="2", cm_stdat="2024-03-05")])
    run_sync(two_subjects)
    assert calc_queries(two_subjects).empty
    project.import_records([conmed(11, cm_trt="Oseltamivir"), conmed(10, cm_dosnum="20")])
    stored = next(r["cm_pred_eq"] for r in project.export_records(
        records=[STALE], fields=["record_id", "cm_dosnum", "cm_pred_eq"], events=["logs_arm_1"])
        if str(r["redcap_repeat_instance"]) == "10")
    run_sync(two_subjects)
    found = calc_queries(two_subjects)
    assert [(q.dq_event, q.dq_instrument, q.dq_instance, q.dq_field)
            for q in found.itertuples()] == [("logs_arm_1", "conmed", "10", "cm_pred_eq")]
    assert stored in found.iloc[0]["dq_text"] and "rule H" in found.iloc[0]["dq_text"]


def test_a_calc_a_browser_saved_in_full_is_not_stale(redcap_server, two_subjects):
    """A form saved in a browser stores JavaScript's text of the result (17 digits), an API
    import PHP's (14); REDCap's rule H takes them as the same value, and so does the sync."""
    import sqlite3
    project_of(two_subjects).import_records([
        {"record_id": STALE, "redcap_event_name": "screening_arm_1", "pao2": "80",
         "fio2": "21"}])
    assert screening_value(two_subjects, STALE, "pf_ratio") == "380.95238095238"
    with sqlite3.connect(redcap_server.db_path) as db:  # what the browser's save leaves
        db.execute("UPDATE data SET value = ? WHERE record = ? AND field_name = 'pf_ratio' "
                   "AND project_id = (SELECT project_id FROM projects WHERE token = ?)",
                   (repr(80 / 0.21), STALE, two_subjects.redcap_api_token.get_secret_value()))
    assert screening_value(two_subjects, STALE, "pf_ratio") == "380.95238095238096"
    summary = run_sync(two_subjects, full=True)
    assert summary.full_pull and calc_queries(two_subjects).empty


def test_putting_the_calc_right_in_redcap_resolves_the_query(two_subjects):
    leave_pf_ratio_stale(two_subjects)
    run_sync(two_subjects)
    project_of(two_subjects).import_records([  # the form saved again: pao2 in the first row
        {"record_id": STALE, "redcap_event_name": "screening_arm_1", "pao2": "90"}])
    fio2 = float(screening_value(two_subjects, STALE, "fio2"))
    assert screening_value(two_subjects, STALE, "pf_ratio") == f"{90 / (fio2 / 100):g}"
    run_sync(two_subjects)
    query = calc_queries(two_subjects).iloc[0]
    assert (query["dq_status"], query["dq_resolved"] != "") == ("4", True)


def test_the_sync_never_writes_a_calculated_field(two_subjects):
    leave_pf_ratio_stale(two_subjects)
    run_sync(two_subjects)
    ledger = Ledger(two_subjects.state_path)
    written = set(ledger.writes()["field"])
    ledger.close()
    assert not written & set(DICTIONARY.calc_fields)
    assert not owned_fields(DICTIONARY) & set(DICTIONARY.calc_fields)


def test_the_run_summary_no_longer_counts_calcs_fixed(two_subjects):
    summary = run_sync(two_subjects)
    assert "calcs" not in summary.describe() and "calcs_fixed" not in summary.counts()
