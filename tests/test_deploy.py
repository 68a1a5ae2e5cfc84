"""`ecrf deploy`: the project's files land in REDCap exactly, once, and never orphan data."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from redcap import Project

from sync.cli import cli
from sync.config import Settings
from sync.connection import connect
from sync.demo.data import demo_records
from sync.crf.deploy import DeployRefused, deploy
from sync.crf.dictionary import load_dictionary
from sync.crf.redcap_spec import METADATA_KEYS

ROOT = Path(__file__).resolve().parents[1]
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


@pytest.fixture
def fresh(redcap_server):
    token = redcap_server.create_project()
    settings = Settings(REDCAP_API_URL=redcap_server.url, REDCAP_API_TOKEN=SecretStr(token))
    return settings, Project(redcap_server.url, token)


def as_strings(rows: list[dict], columns: list[str]) -> list[dict]:
    return [{c: "" if row.get(c) is None else str(row.get(c)) for c in columns} for row in rows]


def test_deploy_then_pycap_exports_return_exactly_the_project_files(fresh):
    settings, project = fresh
    deploy(connect(settings), DICTIONARY)
    assert as_strings(project.export_metadata(), list(METADATA_KEYS)) == \
        DICTIONARY.metadata[list(METADATA_KEYS)].to_dict(orient="records")
    mapping = ["arm_num", "unique_event_name", "form"]
    assert sorted(map(tuple, (r.values() for r in as_strings(
        project.export_instrument_event_mappings(), mapping)))) == \
        sorted(DICTIONARY.mapping[mapping].astype(str).itertuples(index=False, name=None))
    repeating = ["event_name", "form_name", "custom_form_label"]
    assert as_strings(project.export_repeating_instruments_events(), repeating) == \
        DICTIONARY.repeating[repeating].astype(str).to_dict(orient="records")
    events = ["unique_event_name", "day_offset", "offset_min", "offset_max"]
    exported = pd.DataFrame(project.export_events())
    as_numbers = {c: float for c in events[1:]}
    assert exported[events].astype(as_numbers).values.tolist() == \
        DICTIONARY.events[events].astype(as_numbers).values.tolist()


def test_second_deploy_finds_nothing_to_send(fresh):
    settings, _ = fresh
    deploy(connect(settings), DICTIONARY)
    assert deploy(connect(settings), DICTIONARY).empty


def test_deploy_refuses_to_orphan_entered_data_unless_forced(fresh):
    settings, project = fresh
    deploy(connect(settings), DICTIONARY)
    project.import_records([{"record_id": "01-001", "redcap_event_name": "screening_arm_1",
                             "othvir_spec": "RSV", "sex": "2"}])
    shrunk = DICTIONARY.metadata[DICTIONARY.metadata["field_name"] != "othvir_spec"].copy()
    shrunk.loc[shrunk["field_name"] == "sex", "select_choices_or_calculations"] = "1, Male | 3, Other"
    smaller = type(DICTIONARY)(shrunk, DICTIONARY.events, DICTIONARY.arms, DICTIONARY.mapping,
                               DICTIONARY.repeating, DICTIONARY.project)
    with pytest.raises(DeployRefused) as refused:
        deploy(connect(settings), smaller)
    assert "field othvir_spec is removed but holds data" in str(refused.value)
    assert "field sex: choice codes ['2'] are removed but in use" in str(refused.value)
    assert [r["field_name"] for r in project.export_metadata()].count("othvir_spec") == 1
    deploy(connect(settings), smaller, force=True)
    assert "othvir_spec" not in [r["field_name"] for r in project.export_metadata()]


def test_deploy_command_dry_run_shows_the_plan_and_changes_nothing(fresh, monkeypatch):
    settings, project = fresh
    monkeypatch.setenv("REDCAP_API_URL", settings.redcap_api_url)
    monkeypatch.setenv("REDCAP_API_TOKEN", settings.redcap_api_token.get_secret_value())
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["deploy", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "add field icdat" in result.output and "(dry run: nothing was changed)" in result.output
    assert [r["field_name"] for r in project.export_metadata()] == ["record_id"]


def _with_events(events: pd.DataFrame, mapping: pd.DataFrame | None = None):
    return type(DICTIONARY)(DICTIONARY.metadata, events, DICTIONARY.arms,
                            DICTIONARY.mapping if mapping is None else mapping,
                            DICTIONARY.repeating, DICTIONARY.project)


@pytest.fixture
def with_records(fresh):
    """The CRF deployed and six demo subjects entered on every event."""
    settings, project = fresh
    deploy(connect(settings), DICTIONARY)
    project.import_records(demo_records(6).to_dict(orient="records"))
    return settings, project


def _events_by_name(project) -> dict[str, dict]:
    return {e["unique_event_name"]: e for e in project.export_events()}


def test_deploy_adding_an_event_adds_one_and_keeps_every_records_data(with_records):
    # redcap-behaviour.md §3: a row without unique_event_name is a new event; the mapping import
    # replaces the whole mapping, so the full mapping is sent.
    settings, project = with_records
    before_data, before_events = project.export_records(), _events_by_name(project)
    extra = pd.DataFrame([{"event_name": "Day 180", "arm_num": "1",
                           "unique_event_name": "day_180_arm_1", "custom_event_label": "Day 180",
                           "day_offset": "180", "offset_min": "14", "offset_max": "14"}])
    mapping = pd.concat([DICTIONARY.mapping, pd.DataFrame(
        [{"arm_num": "1", "unique_event_name": "day_180_arm_1", "form": "vital_signs"}])],
        ignore_index=True)
    plan = deploy(connect(settings), _with_events(
        pd.concat([DICTIONARY.events, extra], ignore_index=True), mapping))
    assert plan.changes["events"] == ["add event day_180_arm_1"]
    after_events = _events_by_name(project)
    assert len(after_events) == len(before_events) + 1
    assert all(after_events[name]["event_id"] == e["event_id"]
               for name, e in before_events.items())
    assert project.export_records() == before_data


def test_deploy_changing_a_window_updates_the_event_in_place(with_records):
    settings, project = with_records
    before_data, before_events = project.export_records(), _events_by_name(project)
    events = DICTIONARY.events.copy()
    events.loc[events["unique_event_name"] == "day_14_arm_1", ["offset_min", "offset_max"]] = "3"
    plan = deploy(connect(settings), _with_events(events))
    assert plan.changes["events"] == [
        "update event day_14_arm_1: offset_min '2' -> '3', offset_max '2' -> '3'"]
    after_events = _events_by_name(project)
    assert list(after_events) == list(before_events)
    assert (after_events["day_14_arm_1"]["event_id"], after_events["day_14_arm_1"]["offset_min"],
            after_events["day_14_arm_1"]["offset_max"]) == (
        before_events["day_14_arm_1"]["event_id"], 3, 3)
    assert project.export_records() == before_data
    assert deploy(connect(settings), _with_events(events)).empty


def test_deploy_never_removes_an_event_or_a_mapped_form_holding_data_even_forced(with_records):
    settings, project = with_records
    before_events = _events_by_name(project)
    fewer = DICTIONARY.events[DICTIONARY.events["unique_event_name"] != "day_90_arm_1"]
    unmapped = DICTIONARY.mapping[~((DICTIONARY.mapping["unique_event_name"] == "day_3_arm_1")
                                    & (DICTIONARY.mapping["form"] == "vital_signs"))]
    for smaller in (_with_events(fewer, DICTIONARY.mapping[
            DICTIONARY.mapping["unique_event_name"] != "day_90_arm_1"]),
                    _with_events(DICTIONARY.events, unmapped)):
        with pytest.raises(DeployRefused) as refused:
            deploy(connect(settings), smaller, force=True)
        assert "--force" not in str(refused.value)
    dry_run = deploy(connect(settings), _with_events(fewer), dry_run=True)
    assert "remove event day_90_arm_1 while the project holds records" in dry_run.describe()
    assert "form vital_signs is unmapped from event day_3_arm_1 but holds data there" in str(
        refused.value)
    assert _events_by_name(project) == before_events
    assert len(project.export_instrument_event_mappings()) == len(DICTIONARY.mapping)


def _set_production(server, project) -> None:
    """Production status as REDCap's Project Setup sets it: `ecrf server status`."""
    result = CliRunner().invoke(cli, ["server", "status", "--db", str(server.db_path),
                                      "--project", str(project.export_project_info()["project_id"]),
                                      "production"])
    assert result.exit_code == 0, result.output


def test_deploy_in_production_status_sends_nothing_and_lists_draft_mode_changes(
        with_records, redcap_server):
    # redcap-behaviour.md §3: in production the API refuses metadata, mapping, event and arm
    # imports; design changes go through draft mode.
    settings, project = with_records
    _set_production(redcap_server, project)
    metadata = DICTIONARY.metadata.copy()
    metadata.loc[metadata["field_name"] == "vsdat", "field_label"] = "Date vitals were taken"
    events = DICTIONARY.events.copy()
    events.loc[events["unique_event_name"] == "day_14_arm_1", "offset_max"] = "4"
    changed = type(DICTIONARY)(metadata, events, DICTIONARY.arms, DICTIONARY.mapping,
                               DICTIONARY.repeating, DICTIONARY.project)
    with pytest.raises(DeployRefused) as refused:
        deploy(connect(settings), changed, force=True)
    message = str(refused.value)
    assert "production status: events, metadata need REDCap's draft mode" in message
    assert "change field vsdat: field_label" in message and "--force" not in message
    labels = {r["field_name"]: r["field_label"] for r in project.export_metadata()}
    assert labels["vsdat"] == "Date of vital signs"
    assert _events_by_name(project)["day_14_arm_1"]["offset_max"] == 2


def test_deploy_runs_the_check_first_and_sends_nothing_on_an_error(fresh, monkeypatch, tmp_path):
    settings, project = fresh
    monkeypatch.setenv("REDCAP_API_URL", settings.redcap_api_url)
    monkeypatch.setenv("REDCAP_API_TOKEN", settings.redcap_api_token.get_secret_value())
    shutil.copytree(ROOT / "redcap", tmp_path / "redcap")
    rules = tmp_path / "redcap" / "rules.csv"
    rules.write_text(rules.read_text(encoding="utf-8").replace("[hgb] < 30", "[hgbb] < 30"),
                     encoding="utf-8")
    result = CliRunner().invoke(cli, ["deploy", str(ROOT / "data_dictionary.csv"),
                                      "--redcap-dir", str(tmp_path / "redcap")])
    assert result.exit_code == 2, result.output
    assert "`ecrf check` finds errors in the files; nothing was sent" in result.output
    assert 'names field "hgbb", which is not in the dictionary' in result.output
    assert "--force" not in result.output
    assert [r["field_name"] for r in project.export_metadata()] == ["record_id"]


def test_deploy_in_production_status_still_sends_the_repeating_setup(with_records, redcap_server):
    # redcap-behaviour.md §3: the repeating setup stays importable in production.
    settings, project = with_records
    _set_production(redcap_server, project)
    repeating = DICTIONARY.repeating.copy()
    repeating["custom_form_label"] = repeating["custom_form_label"].where(
        repeating["form_name"] != "adverse_event", "[ae_term]")
    changed = type(DICTIONARY)(DICTIONARY.metadata, DICTIONARY.events, DICTIONARY.arms,
                               DICTIONARY.mapping, repeating, DICTIONARY.project)
    plan = deploy(connect(settings), changed)
    assert [p for p, items in plan.changes.items() if items] == ["repeating instruments"]
    labels = {r["form_name"]: r["custom_form_label"]
              for r in project.export_repeating_instruments_events()}
    assert labels["adverse_event"] == "[ae_term]"


def test_deploy_onto_a_classic_project_holding_records_keeps_its_event(fresh):
    # redcap-behaviour.md §3: a classic project's data live in its default event; replacing it
    # (override=1) would orphan them, so the deploy stops after the settings.
    settings, project = fresh
    project.import_records([{"record_id": "01-001"}])
    with pytest.raises(DeployRefused, match="Only the project settings were sent"):
        deploy(connect(settings), DICTIONARY)
    assert [e["unique_event_name"] for e in project.export_events()] == ["event_1_arm_1"]
    assert [r["record_id"] for r in project.export_records()] == ["01-001"]
