"""Arms, events, instrument-event mapping and repeating setup (`arm`, `event`, `formEventMapping`,
`repeatingFormsEvents`)."""
from __future__ import annotations

from pathlib import Path

import pytest
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
