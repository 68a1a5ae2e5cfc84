"""Import Records: every structural and value error REDCap answers with (§5.3 tables)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from redcap import Project


DATA = Path(__file__).resolve().parents[1] / "data"
SIMPLE = (DATA / "classic_project.xml").read_text()
LONG = (DATA / "longitudinal_project.xml").read_text()


def _import(project, rows, **extra):
    return requests.post(project.url, data={"token": project.token, "content": "record",
                                            "format": "json", "data": json.dumps(rows), **extra})


@pytest.fixture(scope="module")
def simple_token(redcap_server):
    return redcap_server.create_project(SIMPLE)


@pytest.fixture
def simple(redcap_server, simple_token):
    return Project(redcap_server.url, simple_token)


@pytest.fixture(scope="module")
def long_token(redcap_server):
    return redcap_server.create_project(LONG)


@pytest.fixture
def long(redcap_server, long_token):
    return Project(redcap_server.url, long_token)


@pytest.mark.parametrize(("rows", "message"), [
    ([{"first_name": "x"}], "The record id field (record_id) is missing."),
    ([{"record_id": ""}], "The record id field (record_id) is missing."),
    ([{"record_id": "a+b"}], "The record name (a+b) cannot contain a plus sign (+), ampersand "
                             "(&), pound sign (#), or apostrophe."),
    ([{"record_id": "x" * 101}], "Record names must be 100 characters or less in length. The "
                                 "following record name is too long and thus cannot be imported: "
                                 + "x" * 101),
    ([{"record_id": "1", "nope": "1", "": "2"}],
     "The following fields were not found in the project as real data fields: nope, "
     "[variable name was left blank]"),
    ([{"record_id": "1", "redcap_repeat_instance": "2"}],
     "ERROR: Trying to import repeat instance/instrument fields! The fields "
     "'redcap_repeat_instrument' and 'redcap_repeat_instance' are reserved for projects with "
     "repeating instruments or events, and this project has none."),
    ([{"record_id": "1"}, {"record_id": "1"}],
     "The records listed below occur more than once. Please remove any duplicates and try "
     "again: 1"),
    ([{"record_id": "1", "redcap_data_access_group": "nowhere"}],
     "The following Data Access Group are invalid for the redcap_data_access_group field: "
     "nowhere"),
])
def test_structural_errors_are_one_message(simple, rows, message):
    reply = _import(simple, rows)
    assert (reply.status_code, reply.json()) == (400, {"error": message})


def test_no_data_and_bad_json(simple):
    reply = requests.post(simple.url, data={"token": simple.token, "content": "record",
                                            "format": "json", "data": ""})
    assert reply.json() == {"error": "No data was provided."}
    reply = requests.post(simple.url, data={"token": simple.token, "content": "record",
                                            "format": "json", "data": "{oops"})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("The data being imported is not formatted correctly. "
                                            "PHP error from JSON decoder:")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("height", "1,5", "The value you provided could not be validated because it does not "
                      "follow the expected format. Please try again."),
    ("weight", "5.0", "The value you provided could not be validated because it does not "
                      "follow the expected format. Please try again."),
    ("race", "x", "The value is not a valid category for race"),
    ("demographics_complete", "3", "The value is not a valid category for demographics_complete"),
])
def test_value_errors_are_csv_lines(simple, field, value, message):
    reply = _import(simple, [{"record_id": "1", field: value}], returnFormat="csv")
    assert (reply.status_code, reply.text) == (400, f'ERROR: "1","{field}","{value}","{message}"')


def test_all_value_errors_are_listed_together(simple):
    reply = _import(simple, [{"record_id": "1", "sex": "5", "weight": "heavy"}])
    assert reply.json()["error"].split("\n") == [
        '"1","sex","5","The value is not a valid category for sex"',
        '"1","weight","heavy","The value you provided could not be validated because it does '
        'not follow the expected format. Please try again."']


def test_soft_range_is_a_warning_and_the_value_is_saved(simple):
    # weight has a soft range 35-200 (ODM RangeCheck SoftHard="Soft"): REDCap saves and warns.
    assert _import(simple, [{"record_id": "1", "weight": "900"}]).json() == {"count": 1}
    assert simple.export_records(records=["1"], fields=["record_id", "weight"]) == [
        {"record_id": "1", "weight": "900"}]


def test_dates_are_padded_before_validation(simple):
    assert _import(simple, [{"record_id": "1", "dob": "2020-1-5"}]).json() == {"count": 1}
    assert simple.export_records(records=["1"], fields=["record_id", "dob"]) == [
        {"record_id": "1", "dob": "2020-01-05"}]


def test_checkbox_value_must_be_0_or_1(long):
    reply = _import(long, [{"study_id": "1", "redcap_event_name": "enrollment_arm_1",
                            "gym___1": "yes"}])
    assert reply.json() == {"error": '"1","gym___1","yes","gym___1 is a checkbox field and thus '
                                     "can only have a value of '1' (checked) or '0' "
                                     '(unchecked)."'}


def test_slider_must_be_an_integer_within_0_to_100(long):
    reply = _import(long, [{"study_id": "1", "redcap_event_name": "enrollment_arm_1",
                            "specify_mood": "101"}, {"study_id": "2",
                            "redcap_event_name": "enrollment_arm_2", "specify_mood": "x"}])
    assert reply.json()["error"].split("\n") == [
        '"1","specify_mood","101","specify_mood should not be greater than the field maximum '
        '(100)"',
        '"2","specify_mood","x","specify_mood must be an integer"']


def test_repeating_rules(long):
    base = {"study_id": "1", "redcap_event_name": "enrollment_arm_1"}
    reply = _import(long, [{**base, "height2": "170"}])
    assert reply.json() == {"error": '"1","height2","170","This field (\'height2\') exists on a '
                                     "Repeating Instrument named 'baseline_data'. However, the "
                                     "fields 'redcap_repeat_instance' and/or "
                                     "'redcap_repeat_instrument' were not provided or were left "
                                     'blank, so the value cannot be imported."'}
    reply = _import(long, [{**base, "redcap_repeat_instrument": "baseline_data",
                            "redcap_repeat_instance": "1", "first_name": "x"}])
    assert reply.json() == {"error": '"1","first_name","x","This field (\'first_name\') does not '
                                     "exist on the Repeating Instrument named 'baseline_data'. "
                                     'Only fields of that instrument may be imported on this '
                                     'row."'}
    reply = _import(long, [{**base, "redcap_repeat_instrument": "baseline_data",
                            "redcap_repeat_instance": "x", "height2": "1"}])
    assert reply.json() == {"error": "The record name (1) has an invalid value for "
                                     "'redcap_repeat_instance'. The value must either be a "
                                     "positive integer or the value 'new'. Value provided: x"}


def test_dag_is_assigned_and_exported_on_request(simple):
    assert _import(simple, [{"record_id": "1", "redcap_data_access_group": "site_02_lyon"}]).json() \
        == {"count": 1}
    rows = simple.export_records(fields=["record_id"], export_data_access_groups=True)
    assert [(r["record_id"], r["redcap_data_access_group"]) for r in rows] == [
        ("1", "site_02_lyon"), ("2", ""), ("3", "site_02_lyon")]


def test_eav_import_of_checkbox_base_name(long):
    reply = requests.post(long.url, data={
        "token": long.token, "content": "record", "format": "json", "type": "eav",
        "data": json.dumps([{"record": "1", "redcap_event_name": "enrollment_arm_1",
                             "field_name": "meds", "value": "3"}])})
    assert reply.json() == {"count": 1}
    row = long.export_records(records=["1"], events=["enrollment_arm_1"])[0]
    assert [row[f"meds___{i}"] for i in range(1, 6)] == ["0", "0", "1", "0", "0"]


def test_mdy_dates_are_converted_when_date_format_says_so(simple):
    assert _import(simple, [{"record_id": "1", "dob": "02/03/2001"}],
                   dateFormat="MDY").json() == {"count": 1}
    assert simple.export_records(records=["1"], fields=["record_id", "dob"]) == [
        {"record_id": "1", "dob": "2001-02-03"}]
    reply = _import(simple, [{"record_id": "1", "dob": "31-12-2001"}], dateFormat="DMY")
    assert reply.json() == {"error": '"1","dob","31-12-2001","Invalid date format. (NOTE: Dates '
                                     "must be imported here only in D/M/Y format or Y-M-D "
                                     "format, regardless of the specific date format designated "
                                     'for this field.)"'}


def test_phone_numbers_are_reformatted(simple):
    assert _import(simple, [{"record_id": "1", "telephone": "415.555.1212"}]).json() == {
        "count": 1}
    assert simple.export_records(records=["1"], fields=["record_id", "telephone"]) == [
        {"record_id": "1", "telephone": "(415) 555-1212"}]


def test_missing_data_codes_skip_validation(simple):
    requests.post(simple.url, data={"token": simple.token, "content": "project_settings",
                                    "format": "json",
                                    "data": json.dumps([{"missing_data_codes": "UNK, Unknown"}])})
    assert _import(simple, [{"record_id": "1", "weight": "UNK", "sex": "UNK"}]).json() == {
        "count": 1}
