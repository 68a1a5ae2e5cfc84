"""The data-query lifecycle: every transition, and what is (not) written for each."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.queries import QUERY_FIELDS, finding_key, plan_queries

NOW = datetime(2025, 3, 12, 2, 30)
EARLIER = "2025-03-01 02:30"
FINDING_COLUMNS = ["rule_id", "category", "severity", "record_id", "redcap_event_name",
                   "redcap_repeat_instrument", "redcap_repeat_instance", "field", "message"]
SAE = ("SAE_LATE", "safety", "critical", "01-004", "logs_arm_1", "adverse_event", "2",
       "ae_rpt_dtc", "Serious AE reported 30 h after awareness.")
MISMATCH = ("IE_MISMATCH", "eligibility", "major", "01-004", "screening_arm_1", "", "",
            "ie_yn", "Investigator says eligible (ie_yn = 1) but the criteria say not eligible.")
SAE_KEY = "SAE_LATE|01-004|logs_arm_1|adverse_event|2|ae_rpt_dtc"
MISMATCH_KEY = "IE_MISMATCH|01-004|screening_arm_1|||ie_yn"


def findings(*rows: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=FINDING_COLUMNS, dtype="string")


def query(instance: int, key: str, status: str, *, record: str = "01-004",
          text: str = "old text", resolved: str = "", response: str = "") -> dict[str, str]:
    rule, _, event, instrument, repeat, field = key.split("|")
    return {"record_id": record, "redcap_event_name": "logs_arm_1",
            "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": str(instance),
            "dq_key": key, "dq_rule": rule, "dq_event": event, "dq_instrument": instrument,
            "dq_instance": repeat, "dq_field": field, "dq_text": text, "dq_status": status,
            "dq_response": response, "dq_opened": EARLIER, "dq_resolved": resolved}


def existing(*queries: dict[str, str]) -> pd.DataFrame:
    columns = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
               "redcap_repeat_instance", *QUERY_FIELDS, "dq_response"]
    return pd.DataFrame(list(queries), columns=columns)


def test_finding_key_is_readable_and_stable() -> None:
    assert finding_key("SAE_LATE", "01-004", "logs_arm_1", "adverse_event", 2,
                       "ae_rpt_dtc") == SAE_KEY
    assert finding_key("IE_MISMATCH", "01-004", "screening_arm_1", "", "", "ie_yn") \
        == MISMATCH_KEY


PART = st.text(st.characters(blacklist_characters="|", blacklist_categories=("Cs",)),
               max_size=8).map(str.strip)


@given(st.tuples(PART, PART, PART, PART, PART, PART), st.tuples(PART, PART, PART, PART, PART, PART))
def test_finding_keys_differ_exactly_when_the_places_differ(a: tuple[str, ...],
                                                            b: tuple[str, ...]) -> None:
    assert (finding_key(*a) == finding_key(*b)) == (a == b)


def test_new_finding_opens_a_new_instance_after_the_records_highest() -> None:
    plan = plan_queries(findings(SAE), existing(query(3, MISMATCH_KEY, "3")), NOW)
    assert plan.rows.to_dict("records") == [{
        "record_id": "01-004", "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": "4",
        "dq_key": SAE_KEY, "dq_rule": "SAE_LATE", "dq_event": "logs_arm_1",
        "dq_instrument": "adverse_event", "dq_instance": "2", "dq_field": "ae_rpt_dtc",
        "dq_text": "Serious AE reported 30 h after awareness.", "dq_status": "1",
        "dq_opened": "2025-03-12 02:30"}]
    assert plan.transitions.to_dict("records") == [{
        "record_id": "01-004", "instance": 4, "dq_key": SAE_KEY, "rule_id": "SAE_LATE",
        "from_status": "", "to_status": "1", "reason": "new finding"}]
    assert plan.counts == {"opened": 1, "resolved": 0, "reopened": 0, "updated": 0,
                           "unchanged": 1}
    assert plan.blank_rows.empty


def test_new_findings_of_one_record_get_successive_instances() -> None:
    plan = plan_queries(findings(MISMATCH, SAE), existing(), NOW)
    assert plan.rows[["record_id", "redcap_repeat_instance", "dq_key"]].values.tolist() == [
        ["01-004", "1", MISMATCH_KEY], ["01-004", "2", SAE_KEY]]
    assert plan.rows["dq_instance"].tolist() == ["", "2"]


def test_instance_numbers_are_per_record() -> None:
    other = tuple(v if v != "01-004" else "02-001" for v in SAE)
    current = existing(query(5, MISMATCH_KEY, "1", text=MISMATCH[-1]))
    plan = plan_queries(findings(SAE, other, MISMATCH), current, NOW)
    assert plan.rows[["record_id", "redcap_repeat_instance"]].values.tolist() == [
        ["01-004", "6"], ["02-001", "1"]]


def test_duplicate_findings_open_one_query() -> None:
    plan = plan_queries(findings(SAE, SAE), existing(), NOW)
    assert len(plan.rows) == 1


@pytest.mark.parametrize("status", ["1", "2", "3"])
def test_persisting_finding_with_the_same_text_writes_nothing(status: str) -> None:
    same = query(1, SAE_KEY, status, text=SAE[-1])
    plan = plan_queries(findings(SAE), existing(same), NOW)
    assert plan.is_empty and plan.transitions.empty
    assert plan.counts == {"opened": 0, "resolved": 0, "reopened": 0, "updated": 0,
                           "unchanged": 1}


@pytest.mark.parametrize("status", ["1", "2", "3"])
def test_persisting_finding_whose_values_changed_rewrites_the_text_and_keeps_the_status(
        status: str) -> None:
    older = query(1, SAE_KEY, status, text="Serious AE reported 40 h after awareness.")
    plan = plan_queries(findings(SAE), existing(older), NOW)
    assert plan.rows.to_dict("records") == [{
        "record_id": "01-004", "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": "1",
        "dq_text": "Serious AE reported 30 h after awareness.",
        "dq_updated": "2025-03-12 02:30"}]
    assert plan.blank_rows.empty
    assert plan.transitions[["from_status", "to_status", "reason"]].values.tolist() == [
        [status, status, "values changed"]]
    assert plan.counts == {"opened": 0, "resolved": 0, "reopened": 0, "updated": 1,
                           "unchanged": 0}


@pytest.mark.parametrize(("status", "label"), [("1", "Open"), ("2", "Answered")])
def test_vanished_finding_resolves_open_or_answered_query(status: str, label: str) -> None:
    plan = plan_queries(findings(), existing(query(2, SAE_KEY, status)), NOW)
    assert plan.rows.to_dict("records") == [{
        "record_id": "01-004", "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": "2",
        "dq_status": "4", "dq_resolved": "2025-03-12 02:30"}]
    assert plan.transitions[["from_status", "to_status", "reason"]].values.tolist() == [
        [status, "4", "finding no longer present"]]
    assert plan.counts["resolved"] == 1


@pytest.mark.parametrize("status", ["3", "4"])
def test_vanished_finding_leaves_closed_and_resolved_queries_alone(status: str) -> None:
    plan = plan_queries(findings(), existing(query(2, SAE_KEY, status)), NOW)
    assert plan.is_empty and plan.transitions.empty and plan.counts["unchanged"] == 1


def test_finding_back_after_resolved_reopens_the_same_instance() -> None:
    resolved = query(2, SAE_KEY, "4", text="Serious AE reported 30 h after awareness.",
                     resolved="2025-03-05 02:30", response="reported late, see note")
    plan = plan_queries(findings(SAE), existing(resolved), NOW)
    assert plan.rows.to_dict("records") == [{
        "record_id": "01-004", "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": "2",
        "dq_status": "1"}]
    assert plan.blank_rows.to_dict("records") == [{
        "record_id": "01-004", "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": "2",
        "dq_resolved": ""}]
    assert plan.transitions[["instance", "from_status", "to_status", "reason"]].values.tolist() \
        == [[2, "4", "1", "finding is back"]]
    assert plan.counts == {"opened": 0, "resolved": 0, "reopened": 1, "updated": 0,
                           "unchanged": 0}


def test_reopened_query_gets_the_current_message() -> None:
    plan = plan_queries(findings(SAE), existing(query(2, SAE_KEY, "4", text="older")), NOW)
    assert plan.rows["dq_text"].tolist() == ["Serious AE reported 30 h after awareness."]
    assert plan.rows["dq_updated"].tolist() == ["2025-03-12 02:30"]


def test_response_is_never_written() -> None:
    plan = plan_queries(findings(MISMATCH), existing(query(1, SAE_KEY, "2", response="ok")),
                        NOW)
    assert "dq_response" not in plan.rows.columns
    assert "dq_response" not in plan.blank_rows.columns


def test_checked_rules_limit_what_can_be_resolved() -> None:
    current = existing(query(1, SAE_KEY, "1"), query(2, MISMATCH_KEY, "1"))
    plan = plan_queries(findings(), current, NOW, checked_rules={"IE_MISMATCH"})
    assert plan.rows["redcap_repeat_instance"].tolist() == ["2"]


def test_rerun_after_applying_a_plan_writes_nothing() -> None:
    first = plan_queries(findings(SAE, MISMATCH), existing(), NOW)
    applied = first.rows.assign(dq_response="", dq_resolved="")
    assert plan_queries(findings(SAE, MISMATCH), applied, NOW).is_empty


STATUS = st.sampled_from(["1", "2", "3", "4"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), STATUS), min_size=1, max_size=8))
def test_lifecycle_never_reverts_answered_or_closed_and_never_deletes(
        cases: list[tuple[bool, bool, str]]) -> None:
    """Each case: does a query exist, is the finding present today, the query's status."""
    rows, queries = [], []
    for n, (exists, present, status) in enumerate(cases):
        finding = ("R", "safety", "minor", f"r{n}", "day_0_arm_1", "", "", "f", "m")
        if present:
            rows.append(finding)
        if exists:
            queries.append(query(1, finding_key("R", f"r{n}", "day_0_arm_1", "", "", "f"),
                                 status, record=f"r{n}", text="m"))
    plan = plan_queries(findings(*rows), existing(*queries), NOW)
    moves = set(zip(plan.transitions["from_status"], plan.transitions["to_status"]))
    assert moves <= {("", "1"), ("1", "4"), ("2", "4"), ("4", "1"), ("1", "1"), ("2", "2"),
                     ("3", "3")}
    assert sum(plan.counts.values()) == len({c for c in range(len(cases))
                                             if cases[c][0] or cases[c][1]})


def test_new_instance_follows_every_existing_instance_even_without_a_key() -> None:
    manual = query(7, SAE_KEY, "1") | {"dq_key": "", "dq_rule": ""}
    plan = plan_queries(findings(SAE), existing(manual), NOW)
    assert plan.rows["redcap_repeat_instance"].tolist() == ["8"]


def test_missing_values_in_findings_read_as_blank() -> None:
    frame = findings(MISMATCH)
    frame.loc[0, ["redcap_repeat_instrument", "redcap_repeat_instance"]] = pd.NA
    plan = plan_queries(frame, existing(), NOW)
    assert plan.rows["dq_key"].tolist() == [MISMATCH_KEY]
    assert "dq_instrument" not in plan.rows.columns


@pytest.mark.parametrize("status", ["1", "2"])
def test_a_reopen_that_died_between_its_imports_is_finished(status: str) -> None:
    half = query(2, SAE_KEY, status, text=SAE[-1], resolved="2025-03-05 02:30")
    plan = plan_queries(findings(SAE), existing(half), NOW)
    assert plan.rows.empty
    assert plan.blank_rows.to_dict("records") == [{
        "record_id": "01-004", "redcap_event_name": "logs_arm_1",
        "redcap_repeat_instrument": "dq_query", "redcap_repeat_instance": "2",
        "dq_resolved": ""}]


def test_a_closed_query_keeps_its_resolved_stamp() -> None:
    closed = query(2, SAE_KEY, "3", text=SAE[-1], resolved="2025-03-05 02:30")
    assert plan_queries(findings(SAE), existing(closed), NOW).is_empty
