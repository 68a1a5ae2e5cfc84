"""`sync.crf.dictionary`: the dictionary model read from files or from PyCap's exports."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import requests
from redcap import Project

from sync.crf.dictionary import Dictionary, load_dictionary
from sync.errors import DictionaryError
from sync.crf.redcap_spec import METADATA_KEYS

MINI = Path(__file__).parent / "data" / "mini"


@pytest.fixture(scope="module")
def mini() -> Dictionary:
    return load_dictionary(MINI / "data_dictionary.csv", MINI / "redcap")


def test_metadata_has_the_api_columns_as_strings_in_dictionary_order(mini: Dictionary) -> None:
    assert list(mini.metadata.columns) == list(METADATA_KEYS)
    assert mini.fields[:4] == ["record_id", "initials", "icdat", "brthdat"]
    assert mini.metadata.loc[0].to_dict()["section_header"] == ""
    assert mini.record_id_field == "record_id"


def test_forms_events_and_mapping(mini: Dictionary) -> None:
    assert mini.forms == ["enrolment", "vitals", "adverse_event"]
    assert mini.is_longitudinal
    assert mini.events_of_form("vitals") == ["screening_arm_1", "day_7_arm_1"]
    assert mini.forms_of_event("screening_arm_1") == ["enrolment", "vitals"]
    assert mini.forms_of_event("logs_arm_1") == ["adverse_event"]
    assert mini.repeating_forms("logs_arm_1") == {"adverse_event"}
    assert mini.repeating_forms("screening_arm_1") == set()
    assert mini.window("day_7_arm_1") == (7.0, 1.0, 1.0)


def test_field_questions(mini: Dictionary) -> None:
    assert mini.form_of("pf_ratio") == "vitals"
    assert mini.form_of("vitals_complete") == "vitals"
    assert mini.field_type("oxygen") == "dropdown"
    assert mini.validation("icdat") == "date_ymd"
    assert mini.validation("comfort") == ""
    assert mini.choices("symptoms") == [("1", "Cough"), ("2", "Fever"), ("-1", "None of these")]
    assert mini.choices("pregnant") == [("1", "Yes"), ("0", "No")]
    assert mini.choices("vitals_complete") == [("0", "Incomplete"), ("1", "Unverified"),
                                               ("2", "Complete")]
    assert mini.fields_of_form("enrolment") == [
        "record_id", "initials", "icdat", "brthdat", "age", "sex", "pregnant"]
    assert mini.identifier_fields == ["initials", "brthdat"]
    assert mini.calc_fields == ["pf_ratio"]
    assert mini.readonly_fields == ["age"]


def test_export_columns_follow_redcaps_flat_export_order(mini: Dictionary) -> None:
    # redcap-semantics.md §6.2: keys, then DD order, checkboxes per choice, _complete per form;
    # descriptive fields never export; code -1 exports as symptoms____1 (§4.5).
    assert mini.export_columns(["vitals", "adverse_event"]) == [
        "record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
        "vdat", "rr", "spo2", "spo2_ra", "pao2", "fio2", "pf_ratio",
        "symptoms___1", "symptoms___2", "symptoms____1", "cough_days", "preg_check", "oxygen",
        "comfort", "vit_note", "vitals_complete",
        "ae_term", "ae_stdat", "ae_sttim", "ae_grade", "ae_ser", "ae_aware_dtc",
        "adverse_event_complete",
    ]
    assert mini.export_columns()[4:11] == [
        "initials", "icdat", "brthdat", "age", "sex", "pregnant", "enrolment_complete"]
    assert mini.column_field("symptoms____1") == "symptoms"


def test_missing_data_codes_add_checkbox_columns_unless_nomissing(mini: Dictionary) -> None:
    coded = Dictionary(mini.metadata, mini.events, mini.arms, mini.mapping, mini.repeating,
                       {"missing_data_codes": "UNK, Unknown | NA, Not applicable"})
    assert coded.export_field_names("symptoms") == [
        "symptoms___1", "symptoms___2", "symptoms____1", "symptoms___unk", "symptoms___na"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_from_api_matches_the_files(mini: Dictionary) -> None:
    metadata = [dict(zip(METADATA_KEYS, row.values())) for row in _rows(MINI / "data_dictionary.csv")]
    events = [{"event_name": row["event_name"], "arm_num": int(row["arm_num"]), "event_id": 41,
               "unique_event_name": row["unique_event_name"], "custom_event_label": None,
               "day_offset": float(row["day_offset"]), "offset_min": float(row["offset_min"]),
               "offset_max": float(row["offset_max"])}
              for row in _rows(MINI / "redcap" / "events.csv")]
    built = Dictionary.from_api(
        metadata, events, _rows(MINI / "redcap" / "instrument_event_mapping.csv"),
        _rows(MINI / "redcap" / "repeating_instruments.csv"),
        {"project_title": "Mini", "is_longitudinal": 1, "missing_data_codes": None})
    pd.testing.assert_frame_equal(built.metadata, mini.metadata)
    pd.testing.assert_frame_equal(built.events, mini.events)
    assert built.export_columns() == mini.export_columns()
    assert built.arms.to_dict("records") == [{"arm_num": "1", "name": "Arm 1"}]


def test_a_misnamed_header_names_file_row_and_column(tmp_path: Path) -> None:
    text = (MINI / "data_dictionary.csv").read_text().replace("Field Note", "Notes", 1)
    (tmp_path / "dd.csv").write_text(text)
    with pytest.raises(DictionaryError) as caught:
        load_dictionary(tmp_path / "dd.csv", MINI / "redcap")
    assert str(caught.value) == (
        'dd.csv:1: column 7 is "Notes", expected "Field Note" '
        "(a data dictionary has REDCap's 18 headers in order)")


def test_a_redcap_file_without_a_needed_column_is_named(tmp_path: Path) -> None:
    shutil.copytree(MINI / "redcap", tmp_path / "redcap")
    (tmp_path / "redcap" / "events.csv").write_text("event_name,arm_num\nScreening,1\n")
    with pytest.raises(DictionaryError) as caught:
        load_dictionary(MINI / "data_dictionary.csv", tmp_path / "redcap")
    assert str(caught.value) == 'events.csv:1: missing column "unique_event_name"'


def test_a_missing_dictionary_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError) as caught:
        load_dictionary(tmp_path / "nope.csv", tmp_path)
    assert str(caught.value) == f"nope.csv: file not found ({tmp_path / 'nope.csv'})"


def test_a_classic_project_has_no_event_column(tmp_path: Path) -> None:
    classic = load_dictionary(MINI / "data_dictionary.csv", tmp_path)
    assert not classic.is_longitudinal
    assert classic.export_columns(["enrolment"]) == [
        "record_id", "initials", "icdat", "brthdat", "age", "sex", "pregnant",
        "enrolment_complete"]
    assert classic.forms_of_event("") == ["enrolment", "vitals", "adverse_event"]


def test_unknown_field_is_named(mini: Dictionary) -> None:
    with pytest.raises(DictionaryError) as caught:
        mini.form_of("weight")
    assert str(caught.value) == 'data dictionary: no field named "weight"'


def test_from_api_rebuilds_the_dictionary_a_project_was_given(
        new_project: Callable[..., Project]) -> None:
    local = load_dictionary(MINI / "data_dictionary.csv", MINI / "redcap")
    project = new_project()
    # Export Events lists the offsets only when scheduling is on (sync/server/content/events.py).
    requests.post(project.url, timeout=60, data={
        "token": project.token, "content": "project_settings", "format": "json",
        "data": json.dumps({"is_longitudinal": 1, "scheduling_enabled": 1})}).raise_for_status()
    project.import_arms(local.arms.to_dict("records"))
    project.import_events(local.events.drop(columns=["unique_event_name"]).to_dict("records"),
                          override=1)
    project.import_metadata(local.metadata.to_dict("records"))
    project.import_instrument_event_mappings(local.mapping.to_dict("records"))
    project.import_repeating_instruments_events(local.repeating.to_dict("records"))
    remote = Dictionary.from_api(
        project.export_metadata(), project.export_events(),
        project.export_instrument_event_mappings(), project.export_repeating_instruments_events(),
        project.export_project_info(), project.export_arms())
    pd.testing.assert_frame_equal(remote.metadata, local.metadata)
    pd.testing.assert_frame_equal(remote.mapping, local.mapping)
    assert remote.event_names == local.event_names
    assert remote.export_columns() == local.export_columns()
    assert [remote.window(e) for e in remote.event_names] == [
        local.window(e) for e in local.event_names]
