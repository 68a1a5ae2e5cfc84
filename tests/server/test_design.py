"""Arms, events, instrument-event mapping and repeating setup (`arm`, `event`, `formEventMapping`,
`repeatingFormsEvents`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from redcap import RedcapError

LONG = (Path(__file__).resolve().parents[1] / "data" / "longitudinal_project.xml").read_text()


def test_classic_project_has_no_arms_events_or_mapping(new_project):
    project = new_project()
    for export in (project.export_arms, project.export_events,
                   project.export_instrument_event_mappings):
        with pytest.raises(RedcapError, match="for classic projects"):
            export()
    assert project.is_longitudinal is False


def test_new_event_gets_a_unique_name_and_can_be_deleted(new_project):
    project = new_project(LONG)
    assert project.import_events([{"event_name": "Follow up visit day 90", "arm_num": "2"}]) == 1
    names = [e["unique_event_name"] for e in project.export_events()]
    assert "follow_up_visit_da_arm_2" in names
    assert project.delete_events(["follow_up_visit_da_arm_2"]) == 1
    assert len(project.export_events()) == 8


def test_mapping_import_replaces_the_whole_mapping(new_project):
    project = new_project(LONG)
    assert len(project.export_instrument_event_mappings()) == 14
    project.import_instrument_event_mappings(
        [{"arm_num": "1", "unique_event_name": "enrollment_arm_1", "form": "demographics"}])
    assert project.export_instrument_event_mappings() == [
        {"arm_num": 1, "unique_event_name": "enrollment_arm_1", "form": "demographics"}]


def test_repeating_setup_round_trips_in_csv(new_project):
    project = new_project(LONG)
    text = project.export_repeating_instruments_events(format_type="csv")
    assert text == "event_name,form_name,custom_form_label\nenrollment_arm_1,baseline_data,\n"
    assert project.import_repeating_instruments_events(text, import_format="csv") == 1


def test_arm_override_removes_other_arms(new_project):
    project = new_project(LONG)
    assert project.import_arms([{"arm_num": 1, "name": "Only"}], override=1) == 1
    project.import_events([{"event_name": "Baseline", "arm_num": "1"}])
    assert project.export_arms() == [{"arm_num": 1, "name": "Only"}]


def _settings(project, **values) -> None:
    requests.post(project.url, data={"token": project.token, "content": "project_settings",
                                     "format": "json", "data": json.dumps([values])})


def test_export_events_has_redcaps_keys_in_redcaps_order_offsets_only_with_scheduling(
        new_project):
    # redcap-behaviour.md §3: Export Events keys (Project.php l.1963-1972), `day_offset`.
    project = new_project(LONG)
    assert list(project.export_events()[0]) == ["event_name", "arm_num", "unique_event_name",
                                                "custom_event_label", "event_id"]
    _settings(project, scheduling_enabled="1")
    visit = project.export_events()[2]
    assert list(visit) == ["event_name", "arm_num", "day_offset", "offset_min", "offset_max",
                           "unique_event_name", "custom_event_label", "event_id"]
    assert (visit["unique_event_name"], visit["day_offset"]) == ("visit_1_arm_1", 14)


def test_event_import_updates_by_unique_name_and_adds_rows_without_one(new_project):
    # redcap-behaviour.md §3: override=0 updates only the event its unique_event_name names; a
    # row without one is a new event, a taken name gets a letter suffix (Classes/Event.php).
    project = new_project(LONG)
    _settings(project, scheduling_enabled="1")
    before = {e["unique_event_name"]: e for e in project.export_events()}
    assert project.import_events([{"event_name": "Visit 1", "arm_num": "1",
                                   "unique_event_name": "visit_1_arm_1", "day_offset": "15",
                                   "offset_min": "2", "offset_max": "3"}]) == 1
    after = {e["unique_event_name"]: e for e in project.export_events()}
    assert list(after) == list(before)
    assert (after["visit_1_arm_1"]["event_id"], after["visit_1_arm_1"]["day_offset"],
            after["visit_1_arm_1"]["offset_min"], after["visit_1_arm_1"]["offset_max"]) == (
        before["visit_1_arm_1"]["event_id"], 15, 2, 3)
    project.import_events([{"event_name": "Visit 1", "arm_num": "1", "day_offset": "15"}])
    names = [e["unique_event_name"] for e in project.export_events()]
    assert names.count("visit_1_arm_1") == 1 and "visit_1_arm_1b" in names
    assert len(names) == len(before) + 1
    rows = project.export_records(records=["1"], events=["enrollment_arm_1"],
                                  fields=["study_id", "first_name"])
    assert rows[0]["first_name"] == "Kofi"


def test_event_import_keeps_the_default_event(new_project):
    # redcap-behaviour.md §3: "The default `event_1_arm_1` stays" under override=0.
    project = new_project()
    _settings(project, is_longitudinal="1")
    project.import_events([{"event_name": "Screening", "arm_num": "1"}])
    assert [e["unique_event_name"] for e in project.export_events()] == [
        "event_1_arm_1", "screening_arm_1"]


def test_event_import_with_override_deletes_every_event_mapping_and_repeating_setup(
        new_project):
    # redcap-behaviour.md §3: override=1 deletes every event first, with its instrument-event
    # mapping and repeating setup; the data of deleted events are orphaned (no longer exported).
    project = new_project(LONG)
    assert project.import_events([{"event_name": "Enrollment", "arm_num": "1"}],
                                 override=1) == 1
    assert [e["unique_event_name"] for e in project.export_events()] == ["enrollment_arm_1"]
    assert project.export_instrument_event_mappings() == []
    assert project.export_repeating_instruments_events() == []
    project.import_instrument_event_mappings(
        [{"arm_num": "1", "unique_event_name": "enrollment_arm_1", "form": "demographics"}])
    assert project.export_records(fields=["study_id", "first_name"]) == []
