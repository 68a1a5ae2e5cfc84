"""Calculated fields on API import, as REDCap 15.7.6 does them (redcap-behaviour.md §2, #11.8).

REDCap recomputes calcs on import (`performAutoCalc`), but only those triggered by the fields of
the payload's FIRST row; an imported calc field counts as its own trigger; imported calc values
are ignored with a warning the API caller never sees. A calc depending only on fields absent
from the first row stays stale.
"""
from __future__ import annotations

import pytest
import requests

METADATA = [
    {"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"},
    {"field_name": "a", "form_name": "f", "field_type": "text", "field_label": "A"},
    {"field_name": "b", "form_name": "f", "field_type": "text", "field_label": "B"},
    {"field_name": "twice_a", "form_name": "f", "field_type": "calc", "field_label": "2a",
     "select_choices_or_calculations": "[a] * 2"},
    {"field_name": "b_plus", "form_name": "f", "field_type": "calc", "field_label": "b+1",
     "select_choices_or_calculations": "[b] + 1"},
    {"field_name": "chained", "form_name": "f", "field_type": "calc", "field_label": "2a+1",
     "select_choices_or_calculations": "[twice_a] + 1"},
    {"field_name": "tag", "form_name": "f", "field_type": "text", "field_label": "Tag",
     "field_annotation": "@CALCTEXT(concat('B-', [b]))"},
]
CALCS = ["twice_a", "b_plus", "chained", "tag"]


@pytest.fixture
def project(new_project):
    project = new_project()
    project.import_metadata(METADATA)
    project.import_records([{"record_id": "1", "a": "1", "b": "1"},
                            {"record_id": "2", "a": "1", "b": "1"}])
    return project


def calcs(project) -> dict[str, dict[str, str]]:
    rows = project.export_records(fields=["record_id", *CALCS])
    return {r["record_id"]: {c: r[c] for c in CALCS} for r in rows}


def test_a_first_row_naming_every_input_recomputes_every_calc(project):
    assert calcs(project) == {
        "1": {"twice_a": "2", "b_plus": "2", "chained": "3", "tag": "B-1"},
        "2": {"twice_a": "2", "b_plus": "2", "chained": "3", "tag": "B-1"}}


def test_calcs_triggered_only_by_a_later_row_stay_stale_redcap_behaviour_s2(project):
    project.import_records([{"record_id": "1", "a": "5"}, {"record_id": "2", "b": "7"}])
    assert calcs(project) == {
        "1": {"twice_a": "10", "b_plus": "2", "chained": "11", "tag": "B-1"},
        "2": {"twice_a": "2", "b_plus": "2", "chained": "3", "tag": "B-1"}}


def test_the_first_rows_fields_trigger_their_calcs_on_every_record_of_the_import(project):
    project.import_records([{"record_id": "2", "b": "7"}, {"record_id": "1", "b": "4"}])
    assert {r: c["b_plus"] for r, c in calcs(project).items()} == {"1": "5", "2": "8"}


def test_an_imported_calc_is_its_own_trigger_and_its_value_is_ignored_s2(project, redcap_server):
    project.import_records([{"record_id": "2", "b": "7"}, {"record_id": "1", "a": "5"}])
    assert calcs(project)["1"]["twice_a"] == "2"  # stale: `a` was not in the first row
    project.import_records([{"record_id": "1", "twice_a": "999"}])
    assert calcs(project)["1"] == {"twice_a": "10", "b_plus": "2", "chained": "11",
                                   "tag": "B-1"}
    assert "imported values of calculated fields ignored" in redcap_server.log()


def test_the_caller_never_sees_the_ignored_calc_warning_s2(project):
    reply = requests.post(project.url, data={
        "token": project.token, "content": "record", "format": "json", "type": "flat",
        "data": '[{"record_id": "1", "twice_a": "999"}]'})
    assert (reply.status_code, reply.json()) == (200, {"count": 1})


def test_an_eav_payloads_first_row_is_one_field_s2(project):
    requests.post(project.url, data={
        "token": project.token, "content": "record", "format": "json", "type": "eav",
        "data": '[{"record": "2", "field_name": "b", "value": "9"},'
                ' {"record": "2", "field_name": "a", "value": "6"}]'}).raise_for_status()
    assert calcs(project)["2"] == {"twice_a": "2", "b_plus": "10", "chained": "3",
                                   "tag": "B-9"}


def test_a_csv_payloads_first_row_has_every_column(project):
    project.import_records("record_id,a,b\n1,5,\n2,,7\n", import_format="csv")
    assert calcs(project) == {
        "1": {"twice_a": "10", "b_plus": "2", "chained": "11", "tag": "B-1"},
        "2": {"twice_a": "2", "b_plus": "8", "chained": "3", "tag": "B-7"}}
