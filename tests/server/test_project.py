"""`content=project`: info export (§6.4 key order), settings import, creation from ODM, restart."""
from __future__ import annotations

from pathlib import Path

import requests
from redcap import Project

from tests.conftest import PROJECT_TOKEN, SUPER_TOKEN, RedcapServer, free_port

DATA = Path(__file__).resolve().parents[1] / "data"


def test_project_info_keys_in_redcaps_order_with_integer_flags(new_project):
    info = new_project().export_project_info()
    assert list(info)[:6] == ["project_id", "project_title", "creation_time", "production_time",
                              "in_production", "project_language"]
    assert list(info)[-3:] == ["missing_data_codes", "external_modules",
                               "bypass_branching_erase_field_prompt"]
    assert (info["is_longitudinal"], info["purpose"], info["in_production"]) == (0, 0, 0)


def test_import_project_settings_changes_title(new_project):
    project = new_project()
    reply = requests.post(project.url, data={"token": project.token, "content": "project_settings",
                                             "format": "json",
                                             "data": '[{"project_title": "Renamed"}]'})
    assert reply.json() == 1
    assert project.export_project_info()["project_title"] == "Renamed"


def test_odm_longitudinal_project_has_its_arms_events_and_repeating_setup(new_project):
    project = new_project((DATA / "longitudinal_project.xml").read_text())
    info = project.export_project_info()
    assert (info["is_longitudinal"], info["has_repeating_instruments_or_events"]) == (1, 1)
    assert [a["name"] for a in project.export_arms()] == ["Low dose", "High dose"]
    assert len(project.export_events()) == 8
    assert project.export_repeating_instruments_events() == [
        {"event_name": "enrollment_arm_1", "form_name": "baseline_data", "custom_form_label": ""}]


def test_super_token_cannot_read_records(redcap_server):
    reply = requests.post(redcap_server.url, data={"token": redcap_server.super_token,
                                                   "content": "record", "format": "json"})
    assert reply.status_code == 403


def test_data_and_token_survive_a_restart(tmp_path):
    server = RedcapServer(f"http://127.0.0.1:{free_port()}/api/", PROJECT_TOKEN, SUPER_TOKEN,
                          tmp_path / "r.sqlite", tmp_path / "log")
    server.start()
    try:
        Project(server.url, PROJECT_TOKEN).import_records([{"record_id": "7"}])
    finally:
        server.stop()
    server.start()
    try:
        records = Project(server.url, PROJECT_TOKEN).export_records()
    finally:
        server.stop()
    assert records == [{"record_id": "7", "my_first_instrument_complete": "0"}]
