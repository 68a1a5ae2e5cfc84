"""The nightly sync end to end: the embedded server over real HTTP, real PyCap, no mocks.

The demo trial (40 subjects, every eligibility outcome and every contract rule) is deployed once
per module and synced; each test then reads back through the API what a monitor, a site user
or the sponsor would see.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from redcap import Project

from sync.config import Settings
from sync.connection import connect
from sync.demo import load_records
from sync.demo.cases import DEMO_CASES
from sync.demo.data import demo_records
from sync.crf.deploy import deploy
from sync.crf.dictionary import load_dictionary
from sync.errors import LockHeld, RedcapApiError
from sync.job import ELIGIBILITY_RULES, owned_fields, run_sync
from sync.ledger import Ledger
from sync.pull import project_key


ROOT = Path(__file__).resolve().parents[1]
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


def settings_for(server, token: str, state: Path) -> Settings:
    return Settings(REDCAP_API_URL=server.url, REDCAP_API_TOKEN=SecretStr(token),
                    state_path=state, redcap_dir=ROOT / "redcap",
                    dictionary_path=ROOT / "data_dictionary.csv", batch_size=7)


def trial(server, state: Path, records: pd.DataFrame | None) -> Settings:
    """A fresh project with the CRF deployed and `records` loaded."""
    settings = settings_for(server, server.create_project(), state)
    deploy(connect(settings), DICTIONARY)
    if records is not None and len(records):
        load_records(settings, records)
    return settings


def export(settings: Settings) -> pd.DataFrame:
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    rows = project.export_records(format_type="json")
    return pd.DataFrame.from_records(rows).fillna("").astype(str)


def queries(settings: Settings) -> pd.DataFrame:
    frame = export(settings)
    return frame[frame["redcap_repeat_instrument"] == "dq_query"].reset_index(drop=True)


@pytest.fixture(scope="module")
def demo_trial(redcap_server, tmp_path_factory):
    """The 40-subject demo trial after one sync: (settings, records before, first summary)."""
    state = tmp_path_factory.mktemp("demo_state") / "state.sqlite"
    settings = trial(redcap_server, state, demo_records(40))
    before = export(settings)
    summary = run_sync(settings)
    return settings, before, summary


def screening(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["redcap_event_name"] == "screening_arm_1")
                 & (frame["redcap_repeat_instrument"] == "")]
    return rows.set_index("record_id")


def test_eligibility_written_for_every_demo_subject_exactly_as_the_contract_decides(demo_trial):
    settings, _, _ = demo_trial
    written = screening(export(settings))
    got = {record: (row["elig_calc"], row["elig_fail"], row["elig_missing"])
           for record, row in written.iterrows()}
    want = {record: (case.elig_calc, case.elig_fail, case.elig_missing)
            for record, case in DEMO_CASES.items()}
    assert got == want


def test_every_contract_rule_fires_where_the_demo_trial_expects_it(demo_trial):
    settings, _, _ = demo_trial
    found = queries(settings).groupby("record_id")["dq_rule"].agg(set).to_dict()
    contract = {"ELIG_MISSING", "IE_MISMATCH", "DOSE_INELIGIBLE", "SAE_LATE", "AE_FATAL_GRADE",
                "CM_IMMUNO"}
    got = {record: found.get(record, set()) & contract for record in DEMO_CASES}
    want = {record: set(case.rules) for record, case in DEMO_CASES.items()}
    assert got == want


def test_every_rule_of_the_catalogue_opens_a_query_in_the_demo_trial(demo_trial):
    from sync.rules import load_rules
    settings, _, _ = demo_trial
    catalogue = {rule.rule_id for rule in load_rules(ROOT / "redcap" / "rules.csv", DICTIONARY)}
    assert catalogue - set(queries(settings)["dq_rule"]) == set()


def test_second_sync_imports_nothing_and_ledger_explains_every_first_run_write(demo_trial):
    settings, _, first = demo_trial
    second = run_sync(settings)
    assert (second.cells_written, second.records_written) == (0, 0)
    ledger = Ledger(settings.state_path)
    writes = ledger.writes(first.run_id)
    ledger.close()
    assert len(writes) == first.cells_written > 0
    assert (writes["rule_id"] != "").all()


def test_sync_never_changes_a_value_the_site_entered(demo_trial):
    settings, before, _ = demo_trial
    after = export(settings)
    owned = owned_fields(DICTIONARY) | {"dq_query_complete"}
    site_columns = [c for c in before.columns if c not in owned]
    keys = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]
    merged = before[site_columns].merge(after[site_columns], on=keys, how="left",
                                        suffixes=("", "_after"), indicator=True)
    assert (merged["_merge"] == "both").all()
    changed = [c for c in site_columns if c not in keys
               and not merged[c].equals(merged[f"{c}_after"])]
    assert changed == []


def test_dry_run_reports_the_changes_and_writes_nothing(redcap_server, tmp_path):
    records = demo_records(40)
    records = records[records["record_id"].isin(["01-033", "01-036"])]
    settings = trial(redcap_server, tmp_path / "state.sqlite", records)
    before = export(settings)
    summary = run_sync(settings, dry_run=True)
    assert summary.cells_written > 0 and summary.records_written == 0
    assert set(summary.changes["field"]) >= {"elig_calc", "dq_rule"}
    assert export(settings).equals(before)


def test_incremental_run_pulls_only_the_changed_record(demo_trial):
    settings, _, _ = demo_trial
    run_sync(settings)
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": "01-039", "redcap_event_name": "screening_arm_1",
                             "rr": "31"}])
    summary = run_sync(settings)
    assert (summary.full_pull, summary.records_pulled) == (False, 1)


def test_a_second_run_while_one_holds_the_lock_does_nothing(demo_trial):
    settings, _, _ = demo_trial
    holder = Ledger(settings.state_path)
    with holder.lock(project_key(connect(settings))[0]):
        with pytest.raises(LockHeld):
            run_sync(settings)
    holder.close()


def test_a_revoked_token_stops_the_run_with_a_clear_message(redcap_server, tmp_path):
    settings = settings_for(redcap_server, "0" * 32, tmp_path / "state.sqlite")
    with pytest.raises(RedcapApiError, match="REDCap refused the API token"):
        run_sync(settings)


def test_state_belongs_to_one_project_so_another_project_starts_with_a_full_pull(demo_trial,
                                                                                 redcap_server):
    settings, _, _ = demo_trial
    other = trial(redcap_server, settings.state_path, demo_records(2))
    summary = run_sync(other)
    assert (summary.full_pull, summary.records_pulled) == (True, 2)



def synced_subject(server, folder: Path, record_id: str) -> Settings:
    """A trial holding one subject of the 40-subject demo trial, synced once."""
    records = demo_records(40)
    settings = trial(server, folder / "state.sqlite", records[records["record_id"] == record_id])
    run_sync(settings)
    return settings

# -- the query lifecycle, one transition at a time -------------------------------------------

MISMATCH = "01-033"  # eligible by the data, but the investigator answered ie_yn = 0


@pytest.fixture
def mismatch(redcap_server, tmp_path):
    return synced_subject(redcap_server, tmp_path, MISMATCH)


def set_cells(settings: Settings, event: str, cells: dict[str, str], instance: str = "",
              instrument: str = "", overwrite: bool = False) -> None:
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    row = {"record_id": MISMATCH, "redcap_event_name": event, **cells}
    if instance:
        row.update(redcap_repeat_instrument=instrument, redcap_repeat_instance=instance)
    project.import_records([row], overwrite="overwrite" if overwrite else "normal")


def the_query(settings: Settings) -> dict[str, str]:
    rows = queries(settings)
    rows = rows[rows["dq_rule"] == "IE_MISMATCH"]
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()


def answer(settings: Settings, status: str, response: str = "") -> None:
    cells = {"dq_status": status, **({"dq_response": response} if response else {})}
    set_cells(settings, "logs_arm_1", cells, the_query(settings)["redcap_repeat_instance"],
              "dq_query")


def test_new_finding_opens_a_query_naming_its_place(mismatch):
    query = the_query(mismatch)
    assert {k: query[k] for k in ("dq_status", "dq_event", "dq_field", "dq_instrument",
                                  "dq_instance", "dq_resolved")} == {
        "dq_status": "1", "dq_event": "screening_arm_1", "dq_field": "ie_yn",
        "dq_instrument": "", "dq_instance": "", "dq_resolved": ""}
    assert query["dq_opened"] != "" and query["dq_key"] != ""


def test_answered_query_stays_answered_and_response_kept_while_finding_persists(mismatch):
    answer(mismatch, "2", "Investigator re-checked the source; will correct.")
    run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_response"]) == (
        "2", "Investigator re-checked the source; will correct.")


def test_open_query_is_resolved_when_the_data_are_corrected(mismatch):
    set_cells(mismatch, "screening_arm_1", {"ie_yn": "1"})
    run_sync(mismatch)
    query = the_query(mismatch)
    assert query["dq_status"] == "4" and query["dq_resolved"] != ""


def test_answered_query_is_resolved_when_the_data_are_corrected(mismatch):
    answer(mismatch, "2")
    set_cells(mismatch, "screening_arm_1", {"ie_yn": "1"})
    run_sync(mismatch)
    assert the_query(mismatch)["dq_status"] == "4"


def test_closed_query_stays_closed_while_the_finding_persists_and_after_it_goes(mismatch):
    answer(mismatch, "3")
    run_sync(mismatch)
    assert the_query(mismatch)["dq_status"] == "3"
    set_cells(mismatch, "screening_arm_1", {"ie_yn": "1"})
    run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"]) == ("3", "")


def test_finding_that_comes_back_reopens_the_same_instance(mismatch):
    instance = the_query(mismatch)["redcap_repeat_instance"]
    set_cells(mismatch, "screening_arm_1", {"ie_yn": "1"})
    run_sync(mismatch)
    set_cells(mismatch, "screening_arm_1", {"ie_yn": "0"})
    run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["redcap_repeat_instance"], query["dq_status"], query["dq_resolved"]) == (
        instance, "1", "")


def test_eligibility_outputs_are_the_only_screening_cells_the_sync_writes(mismatch):
    ledger = Ledger(mismatch.state_path)
    fields = set(ledger.writes()["field"])
    ledger.close()
    assert fields <= owned_fields(DICTIONARY)
    assert {"elig_calc", "inc1", "exc9", "age"} <= fields & set(ELIGIBILITY_RULES)


def cli_config(settings: Settings, tmp_path: Path) -> Path:
    config = tmp_path / "ecrf.toml"
    config.write_text(f'state_path = "{settings.state_path}"\nredcap_dir = "{settings.redcap_dir}"\n')
    return config


def test_sync_command_prints_the_summary_a_data_manager_reads(demo_trial, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from sync.cli import cli
    settings, _, _ = demo_trial
    monkeypatch.setenv("REDCAP_API_URL", settings.redcap_api_url)
    monkeypatch.setenv("REDCAP_API_TOKEN", settings.redcap_api_token.get_secret_value())
    result = CliRunner().invoke(cli, ["sync", "--config", str(cli_config(settings, tmp_path))])
    assert result.exit_code == 0, result.output
    assert "incremental pull" in result.output and "records written" in result.output
    assert settings.redcap_api_token.get_secret_value() not in result.output


def test_sync_command_names_an_unknown_record_and_exits_non_zero(demo_trial, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from sync.cli import cli
    settings, _, _ = demo_trial
    monkeypatch.setenv("REDCAP_API_URL", settings.redcap_api_url)
    monkeypatch.setenv("REDCAP_API_TOKEN", settings.redcap_api_token.get_secret_value())
    result = CliRunner().invoke(cli, ["sync", "--record", "99-999", "--config",
                                      str(cli_config(settings, tmp_path))])
    assert result.exit_code == 1
    assert result.output == ("Error: no such record in the project: 99-999 (check the --record "
                             "values); nothing was written\n")


@pytest.fixture
def small_trial(redcap_server, tmp_path):
    settings = trial(redcap_server, tmp_path / "state.sqlite", demo_records(2))
    run_sync(settings)
    return settings


def test_a_design_change_in_redcap_makes_the_next_run_pull_everything(small_trial):
    assert run_sync(small_trial).full_pull is False
    project = Project(small_trial.redcap_api_url, small_trial.redcap_api_token.get_secret_value())
    metadata = project.export_metadata()
    project.import_metadata(metadata)
    same = run_sync(small_trial)
    assert (same.full_pull, same.records_pulled) == (False, 0)
    metadata[-1]["field_label"] += " (v2)"
    project.import_metadata(metadata)
    summary = run_sync(small_trial)
    assert (summary.full_pull, summary.records_pulled) == (True, 2)
    assert summary.full_reason == "the project's design changed in REDCap"
    assert run_sync(small_trial).full_pull is False


def test_a_changed_rule_catalogue_makes_the_next_run_pull_everything(small_trial, tmp_path):
    import shutil
    rules_dir = tmp_path / "redcap"
    shutil.copytree(small_trial.redcap_dir, rules_dir)
    with open(rules_dir / "rules.csv", "a", encoding="utf-8") as rules:
        rules.write("")
    (rules_dir / "rules.csv").write_text((rules_dir / "rules.csv").read_text() + "\n")
    changed = small_trial.model_copy(update={"redcap_dir": rules_dir})
    summary = run_sync(changed)
    assert (summary.full_pull, summary.records_pulled) == (True, 2)


def test_an_unchanged_night_costs_at_most_4_api_calls_though_redcap_logs_every_export(
        small_trial):
    """redcap-behaviour.md §1: every API export, the sync's own included, writes a Manage or
    DATA_EXPORT row; none of them may look like a change."""
    project = Project(small_trial.redcap_api_url, small_trial.redcap_api_token.get_secret_value())
    project.export_metadata()
    project.export_records()
    summary = run_sync(small_trial)
    assert summary.api_calls <= 4
    assert (summary.full_pull, summary.records_written, summary.records_pulled) == (False, 0, 0)
    logged = {r["details"] for r in project.export_logging(log_type="manage")}
    assert {"Export project information (API)", "Export Logging (API)"} <= logged
