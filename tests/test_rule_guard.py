"""A rule firing on most records holds back its new queries (#15.3), over the embedded server."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from redcap import Project

from sync.cli import cli
from sync.config import Settings
from sync.demo import load_records
from sync.demo.data import demo_records
from sync.job import EXIT_RULE_HELD, run_sync
from sync.ledger import Ledger
from sync.rule_guard import Tripped, tripped_rules
from tests.trials import ROOT, deployed_trial
TYPO_RULE = ("CREA_TYPO,consistency,minor,screening_arm_1,screening_labs,crea,[crea] > 20,"
             "Creatinine {crea} looks like mg/dL.,,The unit check written the wrong way round.\n")
SUBJECTS = demo_records(24)
IDS = list(dict.fromkeys(SUBJECTS["record_id"]))


def subjects(ids: list[str]) -> pd.DataFrame:
    return SUBJECTS[SUBJECTS["record_id"].isin(ids)]


@pytest.fixture
def typo_trial(redcap_server, tmp_path):
    """12 demo subjects, and a catalogue with a rule whose comparison is the wrong way round."""
    redcap_dir = tmp_path / "redcap"
    shutil.copytree(ROOT / "redcap", redcap_dir)
    with open(redcap_dir / "rules.csv", "a", encoding="utf-8") as rules:
        rules.write(TYPO_RULE)
    return deployed_trial(redcap_server, tmp_path, subjects(IDS[:12]), redcap_dir)


def queries_of(settings: Settings, rule: str) -> pd.DataFrame:
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    rows = pd.DataFrame(project.export_records(format_type="json")).fillna("").astype(str)
    rows = rows[rows["redcap_repeat_instrument"] == "dq_query"]
    return rows[rows["dq_rule"] == rule].set_index("record_id")


def test_a_rule_firing_on_most_records_writes_none_of_its_queries_and_says_so(typo_trial):
    summary = run_sync(typo_trial)
    [held] = summary.held_rules
    assert held.rule == "CREA_TYPO" and held.evaluated == 12 and held.records > 6
    assert summary.exit_code == EXIT_RULE_HELD == 6
    assert "HELD BACK: rule CREA_TYPO would open queries on" in summary.describe()
    assert "ecrf sync --accept-rule CREA_TYPO" in summary.describe()
    assert queries_of(typo_trial, "CREA_TYPO").empty
    assert summary.records_written == 12, "everything else of the run is written"
    again = run_sync(typo_trial)
    assert [t.rule for t in again.held_rules] == ["CREA_TYPO"], "held until accepted or fixed"
    ledger = Ledger(typo_trial.state_path)
    runs = ledger.runs()
    ledger.close()
    assert list(runs["status"]) == ["held", "held"] and list(runs["exit_code"]) == [6, 6]
    assert json.loads(runs["details"].iloc[0])["held_rules"][0]["rule"] == "CREA_TYPO"


def test_accepting_the_rule_once_writes_its_queries_and_they_keep_their_lifecycle(typo_trial):
    run_sync(typo_trial)
    accepted = run_sync(typo_trial, accept_rules=("CREA_TYPO",))
    assert accepted.exit_code == 0 and accepted.held_rules == []
    assert [t.rule for t in accepted.accepted_rules] == ["CREA_TYPO"]
    opened = queries_of(typo_trial, "CREA_TYPO")
    assert len(opened) == accepted.accepted_rules[0].records
    assert run_sync(typo_trial).exit_code == 0, "its queries exist now: nothing new to hold"

    corrected = opened.index[0]
    project = Project(typo_trial.redcap_api_url, typo_trial.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": corrected, "redcap_event_name": "screening_arm_1",
                             "crea": "15"}])
    load_records(typo_trial, subjects(IDS[12:]))
    held_again = run_sync(typo_trial)
    assert [t.rule for t in held_again.held_rules] == ["CREA_TYPO"], "12 new subjects all fire"
    after = queries_of(typo_trial, "CREA_TYPO")
    assert set(after.index) == set(opened.index), "no new query of the held rule"
    assert after.loc[corrected, "dq_status"] == "4", "an existing query is still resolved"


def test_sync_command_exits_6_and_an_unknown_accepted_rule_is_a_bad_setting(typo_trial, tmp_path):
    config = tmp_path / "ecrf.toml"
    config.write_text(f'state_path = "{typo_trial.state_path}"\n'
                      f'redcap_dir = "{typo_trial.redcap_dir}"\n')
    env = {"REDCAP_API_URL": typo_trial.redcap_api_url,
           "REDCAP_API_TOKEN": typo_trial.redcap_api_token.get_secret_value()}
    held = CliRunner().invoke(cli, ["sync", "--config", str(config), "--json"], env=env)
    assert held.exit_code == 6
    run = json.loads(held.stdout)
    assert run["exit_code"] == 6 and run["outcome"] == "held"
    assert run["held_rules"][0]["rule"] == "CREA_TYPO"
    unknown = CliRunner().invoke(cli, ["sync", "--config", str(config), "--accept-rule", "NOPE"],
                                 env=env)
    assert unknown.exit_code == 2 and "--accept-rule NOPE: no such rule" in unknown.stderr
    listed = CliRunner().invoke(cli, ["runs", "--config", str(config)], env=env).stdout
    assert "rule held back: CREA_TYPO" in listed


def transitions(rule: str, new_records: int) -> pd.DataFrame:
    return pd.DataFrame({"record_id": [f"r{n}" for n in range(new_records)], "rule_id": rule,
                         "reason": "new finding", "dq_key": [f"k{n}" for n in range(new_records)]})


@pytest.mark.parametrize("new,evaluated,held", [
    (9, 9, False),     # fewer than 10 records evaluated: too few to judge
    (5, 10, False),    # exactly half is not more than half
    (6, 10, True),
    (51, 100, True),
    (50, 100, False),
])
def test_share_and_minimum_decide_which_rules_are_held(new, evaluated, held):
    got = tripped_rules(transitions("R", new), {"R": evaluated}, share=0.5, min_records=10)
    assert got == ([Tripped("R", new, evaluated)] if held else [])
