"""`content=record`: export shapes (§6.2, §6.3), import (§5.3), delete, concurrency."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import pandas as pd
import pytest
import requests
from redcap import RedcapError


DATA = Path(__file__).resolve().parents[1] / "data"
SIMPLE = (DATA / "classic_project.xml").read_text()
LONG = (DATA / "longitudinal_project.xml").read_text()


@pytest.fixture
def simple(new_project):
    return new_project(SIMPLE)


@pytest.fixture
def long(new_project):
    return new_project(LONG)


def _post(project, **data):
    return requests.post(project.url, data={"token": project.token, **data})


def test_flat_export_has_redcaps_columns_and_blank_calcs(simple):
    first = simple.export_records(records=["1"])[0]
    assert list(first)[:3] == ["record_id", "first_name", "last_name"]
    assert first["demographics_complete"] == "2"
    assert (first["age"], first["bmi"], first["comments"]) == ("", "", "")


def test_eav_export_has_one_row_per_stored_value(simple):
    # The fixture's ClinicalData holds 32 values: 2 are calcs (age, bmi), not stored because REDCap
    # recalculates them, and 2 are DAG assignments, not field values.
    assert len(simple.export_records(format_type="df", record_type="eav")) == 28


def test_calculated_fields_are_recomputed_on_import(simple):
    simple.import_records([{"record_id": "9", "weight": "80", "height": "200",
                            "bmi": "999"}])
    assert simple.export_records(records=["9"], fields=["record_id", "bmi"]) == [
        {"record_id": "9", "bmi": "20"}]


def test_records_sort_naturally_case_insensitively(new_project):
    project = new_project()
    project.import_records([{"record_id": r} for r in ["b", "10", "A", "2"]])
    assert [r["record_id"] for r in project.export_records()] == ["2", "10", "A", "b"]


def test_json_csv_and_df_round_trips(simple):
    assert simple.import_records(simple.export_records()) == {"count": 3}
    records = simple.export_records()
    csv_text = simple.export_records(format_type="csv")
    assert simple.import_records(csv_text, import_format="csv") == {"count": 3}
    frame = simple.export_records(format_type="df", df_kwargs={"dtype": str})
    assert simple.import_records(frame, import_format="df") == {"count": 3}
    assert simple.export_records() == records


def test_longitudinal_repeating_rows_and_instance_types(long):
    long.import_records([
        {"study_id": "9", "redcap_event_name": "enrollment_arm_1",
         "redcap_repeat_instrument": "baseline_data", "redcap_repeat_instance": "new",
         "height2": "170"},
        {"study_id": "9", "redcap_event_name": "enrollment_arm_1",
         "redcap_repeat_instrument": "baseline_data", "redcap_repeat_instance": "new",
         "height2": "171"}])
    rows = long.export_records(records=["9"], fields=["study_id", "height2"])
    shape = [(r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"],
              r["height2"]) for r in rows]
    assert shape == [("enrollment_arm_1", "", "", ""),
                     ("enrollment_arm_1", "baseline_data", 1, "170"),
                     ("enrollment_arm_1", "baseline_data", 2, "171")]


def test_checkbox_columns_and_form_status_follow_the_event_mapping(long):
    row = long.export_records(records=["1"], events=["dose_1_arm_1"])[0]
    assert (row["gym___0"], row["demographics_complete"], row["pmq3"],
            row["patient_morale_questionnaire_complete"]) == ("", "", "1", "0")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("weight", "abc", "The value you provided could not be validated because it does not follow "
                      "the expected format. Please try again."),
    ("dob", "13/10/2021", "Invalid date format. (NOTE: Dates must be imported here only in Y-M-D "
                          "format, regardless of the specific date format designated for this "
                          "field.)"),
    ("sex", "7", "The value is not a valid category for sex"),
    ("email", "a@b", "Email address is not properly formatted."),
    ("telephone", "123", "telephone must be a 10-digit phone number."),
])
def test_invalid_values_are_rejected_with_redcaps_error_lines(simple, field, value, message):
    reply = _post(simple, content="record", format="json",
                  data=f'[{{"record_id": "1", "{field}": "{value}"}}]')
    assert reply.status_code == 400
    assert reply.json() == {"error": f'"1","{field}","{value}","{message}"'}


def test_one_bad_value_rejects_the_whole_import(simple):
    with pytest.raises(RedcapError):
        simple.import_records([{"record_id": "50", "first_name": "ok"},
                               {"record_id": "51", "sex": "9"}])
    assert [r["record_id"] for r in simple.export_records()] == ["1", "2", "3"]


def test_unknown_fields_and_events_are_named(long):
    reply = _post(long, content="record", format="csv",
                  data="study_id,redcap_event_name,nope\n1,,x\n")
    assert reply.text == ("ERROR: The record event name is missing.")
    reply = _post(long, content="record", format="csv",
                  data="study_id,redcap_event_name,nope\n1,enrollment_arm_1,x\n")
    assert reply.text == ("ERROR: The following fields were not found in the project as real "
                          "data fields: nope")
    reply = _post(long, content="record", format="csv",
                  data="study_id,redcap_event_name\n1,nowhere_arm_1\n")
    assert reply.text == ("ERROR: The following values of redcap_event_name are invalid: "
                          "nowhere_arm_1")


def test_rows_without_an_event_column_go_to_the_first_event(long):
    # PyCap's doctests import into a longitudinal project without redcap_event_name.
    assert long.import_records([{"study_id": "77", "first_name": "Ann"}]) == {"count": 1}
    assert long.export_records(records=["77"], fields=["study_id", "first_name"]) == [
        {"study_id": "77", "redcap_event_name": "enrollment_arm_1",
         "redcap_repeat_instrument": "", "redcap_repeat_instance": "", "first_name": "Ann"}]


def test_field_on_an_undesignated_event_is_rejected(long):
    reply = _post(long, content="record", format="json",
                  data='[{"study_id": "1", "redcap_event_name": "dose_1_arm_1", '
                       '"first_name": "x"}]')
    assert reply.json() == {"error": '"1","first_name","x","This field (\'first_name\') exists on '
                                     "an instrument that is not designated for the event named "
                                     "'Dose 1 (Arm 1: Low dose)'. You are not allowed to import "
                                     'data for this field into this event."'}


def test_overwrite_blanks_values_normal_keeps_them(simple):
    simple.import_records([{"record_id": "1", "first_name": ""}])
    assert simple.export_records(records=["1"])[0]["first_name"] == "Amara"
    simple.import_records([{"record_id": "1", "first_name": ""}], overwrite="overwrite")
    assert simple.export_records(records=["1"])[0]["first_name"] == ""


def test_return_content_ids_and_auto_ids(new_project):
    project = new_project()
    assert project.import_records([{"record_id": "x"}], return_content="ids") == ["x"]
    reply = _post(project, content="record", format="json", returnContent="auto_ids",
                  forceAutoNumber="true", data='[{"record_id": "z"}]')
    assert reply.json() == ["1,z"]


def test_delete_records_and_unknown_record_error(simple):
    assert simple.delete_records(["1", "2"]) == 2
    with pytest.raises(RedcapError, match="The following records do not exist: 9"):
        simple.delete_records(["9"])
    assert [r["record_id"] for r in simple.export_records()] == ["3"]


def test_parallel_imports_all_land(new_project):
    project = new_project()
    def load(start: int) -> None:
        for i in range(start, start + 10):
            project.import_records([{"record_id": str(i)}])
    threads = [threading.Thread(target=load, args=(n * 10,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(project.export_records()) == 40


def test_date_range_returns_records_changed_in_the_window(new_project):
    project = new_project()
    project.import_records([{"record_id": "1"}])
    assert project.export_records(date_begin=pd.Timestamp("2000-01-01").to_pydatetime()) == [
        {"record_id": "1", "my_first_instrument_complete": "0"}]
    assert project.export_records(date_end=pd.Timestamp("2000-01-01").to_pydatetime()) == []


def test_labels_and_label_headers(simple):
    csv_text = simple.export_records(format_type="csv", raw_or_label="label",
                                     raw_or_label_headers="label", records=["1"],
                                     fields=["record_id", "sex"])
    frame = pd.read_csv(io.StringIO(csv_text), dtype=str)
    assert list(frame.columns) == ["Study ID", "Gender"]
    assert frame.iloc[0].tolist() == ["1", "Female"]


def test_fields_filter_rejects_unknown_names(simple):
    reply = _post(simple, content="record", format="json", **{"fields[0]": "nope"})
    assert reply.json() == {"error": 'The following values in the parameter "fields" are not '
                                     "valid: 'nope'"}


def test_filter_logic_names_the_logic_or_filters(simple):
    reply = _post(simple, content="record", format="json", filterLogic="[sex] = '1'")
    assert [r["record_id"] for r in reply.json()] == ["2"]


def test_forms_filter_brings_the_form_fields_and_status_without_the_record_id(long):
    # PyCap adds the record ID to `fields` itself, so the raw API is asked here (§6.1).
    reply = _post(long, content="record", format="csv", **{"records[0]": "1",
                                                          "forms[0]": "baseline_data"})
    header = reply.text.splitlines()[0]
    assert header == "height2,weight2,bmi2,hba1c_b,ldl_b,baseline_data_complete"


def test_checkbox_labels_on_request(long):
    long.import_records([{"study_id": "1", "redcap_event_name": "enrollment_arm_1",
                          "meds___2": "1"}])
    raw = {"token": long.token, "content": "record", "format": "json", "records[0]": "1",
           "events[0]": "enrollment_arm_1", "fields[0]": "study_id", "fields[1]": "meds",
           "rawOrLabel": "label"}
    plain = requests.post(long.url, data=raw).json()[0]
    labelled = requests.post(long.url, data={**raw, "exportCheckboxLabel": "true"}).json()[0]
    assert [plain[f"meds___{i}"] for i in (1, 2)] == ["Unchecked", "Checked"]
    assert [labelled[f"meds___{i}"] for i in (1, 2)] == ["", "Sertraline"]


def test_gray_form_status_exports_blank_on_request(new_project):
    project = new_project()
    project.import_records([{"record_id": "1"}])
    reply = _post(project, content="record", format="json",
                  exportBlankForGrayFormStatus="true")
    assert reply.json() == [{"record_id": "1", "my_first_instrument_complete": ""}]


def test_calctext_fields_are_not_imported_but_computed(new_project):
    project = new_project()
    project.import_metadata([
        {"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"},
        {"field_name": "site", "form_name": "f", "field_type": "text", "field_label": "Site"},
        {"field_name": "tag", "form_name": "f", "field_type": "text", "field_label": "Tag",
         "field_annotation": "@CALCTEXT(concat('S-', [site]))"}])
    project.import_records([{"record_id": "1", "site": "07", "tag": "typed by hand"}])
    assert project.export_records(fields=["record_id", "tag"]) == [
        {"record_id": "1", "tag": "S-07"}]


def test_eav_export_has_repeat_columns_when_the_data_repeat(long):
    frame = long.export_records(format_type="df", record_type="eav", records=["1"],
                                df_kwargs={"dtype": str, "keep_default_na": False})
    assert list(frame.columns) == ["record", "redcap_event_name", "redcap_repeat_instrument",
                                   "redcap_repeat_instance", "field_name", "value"]
    weight = frame[frame["field_name"] == "weight2"]
    columns = ["redcap_repeat_instrument", "redcap_repeat_instance", "value"]
    assert weight[columns].values.tolist() == [["baseline_data", "1", "100"]]


def test_date_range_returns_whole_records(long):
    long.import_records([{"study_id": "1", "redcap_event_name": "dose_1_arm_1", "pmq1": "1"}])
    rows = long.export_records(date_begin=pd.Timestamp("2000-01-01").to_pydatetime())
    assert {r["study_id"] for r in rows} == {"1"}
    assert len(rows) == len(long.export_records(records=["1"]))
