"""`ecrf deploy`: the project's files land in REDCap exactly, once, and never orphan data."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from redcap import Project

from sync.cli import cli
from sync.config import Settings
from sync.connection import connect
from sync.deploy import DeployRefused, deploy
from sync.dictionary import load_dictionary
from sync.redcap_spec import METADATA_KEYS

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
