"""Query text kept current (CRF contract, "Data queries"; #15.7): over real HTTP.

When a finding persists but the values that fired it change, the sync rewrites `dq_text` to
name the new values and stamps `dq_updated`, never touching the status a site user or a
monitor set. Unchanged values write nothing.
"""
from __future__ import annotations

import pytest
from redcap import Project

from sync.job import run_sync
from tests.test_sync import queries, synced_subject

SAE_LATE = "01-036"  # a serious AE reported 30.5 h after the site became aware


@pytest.fixture
def sae_late(redcap_server, tmp_path):
    return synced_subject(redcap_server, tmp_path, SAE_LATE)


def project_of(settings) -> Project:
    return Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())


def the_query(settings) -> dict[str, str]:
    rows = queries(settings)
    rows = rows[rows["dq_rule"] == "SAE_LATE"]
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()


def set_query_status(settings, status: str) -> None:
    query = the_query(settings)
    project_of(settings).import_records([{
        "record_id": SAE_LATE, "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query",
        "redcap_repeat_instance": query["redcap_repeat_instance"], "dq_status": status}])


def report_time(settings) -> tuple[str, str]:
    """(instance, ae_rpt_dtc) of the adverse event the query is about."""
    instance = the_query(settings)["dq_instance"]
    rows = project_of(settings).export_records(records=[SAE_LATE], fields=[
        "record_id", "ae_rpt_dtc"])
    row = next(r for r in rows if r["redcap_repeat_instrument"] == "adverse_event"
               and str(r["redcap_repeat_instance"]) == instance)
    return instance, row["ae_rpt_dtc"]


def move_report(settings, hours_earlier: int) -> str:
    """The site corrects the report time to `hours_earlier` hours earlier; returns it."""
    from datetime import datetime, timedelta
    instance, reported = report_time(settings)
    new = (datetime.strptime(reported, "%Y-%m-%d %H:%M")
           - timedelta(hours=hours_earlier)).strftime("%Y-%m-%d %H:%M")
    project_of(settings).import_records([{
        "record_id": SAE_LATE, "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": instance,
        "ae_rpt_dtc": new}])
    return new


def test_a_new_query_has_no_update_stamp(sae_late):
    query = the_query(sae_late)
    assert (query["dq_status"], query["dq_updated"]) == ("1", "")
    assert "30.5" in query["dq_text"]


@pytest.mark.parametrize(("status", "label"), [("1", "Open"), ("2", "Answered"),
                                               ("3", "Closed")])
def test_changed_values_rewrite_the_text_and_stamp_it_keeping_the_status(sae_late, status,
                                                                         label):
    set_query_status(sae_late, status)
    before = the_query(sae_late)
    reported = move_report(sae_late, 4)  # 30.5 h -> 26.5 h: still late
    summary = run_sync(sae_late)
    after = the_query(sae_late)
    assert after["redcap_repeat_instance"] == before["redcap_repeat_instance"]
    assert after["dq_status"] == status, f"a {label} query must stay {label}"
    assert after["dq_text"] != before["dq_text"]
    assert "26.5" in after["dq_text"] and reported in after["dq_text"]
    assert after["dq_updated"] != "" and after["dq_opened"] == before["dq_opened"]
    assert summary.queries_updated == 1
    assert (summary.queries_opened, summary.queries_resolved, summary.queries_reopened) == (
        0, 0, 0)


def test_unchanged_values_write_nothing(sae_late):
    before = the_query(sae_late)
    summary = run_sync(sae_late, full=True)
    assert (summary.cells_written, summary.queries_updated) == (0, 0)
    assert the_query(sae_late) == before


def test_a_rewritten_text_is_not_rewritten_again(sae_late):
    move_report(sae_late, 4)
    run_sync(sae_late)
    stamped = the_query(sae_late)
    summary = run_sync(sae_late, full=True)
    assert summary.cells_written == 0 and the_query(sae_late) == stamped


def test_a_blank_answered_with_a_missing_data_code_rewrites_the_eligibility_query(
        redcap_server, tmp_path):
    """ELIG_MISSING asks the site to enter the value or mark it with a missing-data code; a
    site that enters UNK sees the text name it and the monitor sees `dq_updated`, while the
    criterion (still undetermined) keeps the query open."""
    settings = synced_subject(redcap_server, tmp_path, "01-028")  # brthdat blank

    def asked() -> dict[str, str]:
        rows = queries(settings)
        rows = rows[(rows["dq_rule"] == "ELIG_MISSING") & (rows["dq_field"] == "brthdat")]
        assert len(rows) == 1, rows
        return rows.iloc[0].to_dict()

    before = asked()
    assert "is blank or not valid" in before["dq_text"] and before["dq_updated"] == ""
    project_of(settings).import_records([{
        "record_id": "01-028", "redcap_event_name": "screening_arm_1", "brthdat": "UNK"}])
    summary = run_sync(settings)
    after = asked()
    assert after["redcap_repeat_instance"] == before["redcap_repeat_instance"]
    assert "is marked UNK (Unknown)" in after["dq_text"]
    assert (after["dq_status"], after["dq_updated"] != "") == ("1", True)
    assert summary.queries_updated == 1
