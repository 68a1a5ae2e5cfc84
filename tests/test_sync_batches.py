"""The sync batch by batch (#17): a small `batch_size` leaves REDCap exactly as one batch does.

Each batch of whole records is pulled, evaluated and written before the next is pulled; the
one rule comparing records (KIT_REUSED) reads every record's kits from a compact first pass,
so a kit reused across batches is found as if the whole project were one frame. The rule guard
(#15.3) is judged on the whole run: new queries wait until the last batch has been counted.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime

import pandas as pd
import pytest
from redcap import Project

from sync.config import Settings
from sync.demo.data import demo_records
from sync.job import EXIT_RULE_HELD, RunSummary, run_sync
from sync.ledger import LEDGER_COLUMNS, Ledger
from tests.test_rule_guard import TYPO_RULE
from tests.test_sync import export, queries, trial
from tests.trials import ROOT, deployed_trial

NOW = datetime(2026, 11, 30, 1, 0, 0)
SUMMARY_COUNTS = ("records_pulled", "flags_changed", "queries_opened", "queries_resolved",
                  "queries_reopened", "queries_updated", "cells_written", "records_written",
                  "typing_problems", "records_not_written", "cells_not_written")


def demo_with_a_kit_reused_across_batches() -> pd.DataFrame:
    """The demo trial, with subject 01-035 infused at day 3 with 01-001's day-0 kit: with
    batches of 7 records the two uses lie in different batches."""
    records = demo_records(40)
    reuse = (records["record_id"] == "01-035") & (records["redcap_event_name"] == "day_3_arm_1") \
        & (records["inf_given"] == "1")
    assert reuse.sum() == 1
    records.loc[reuse, "inf_kit"] = records.loc[
        (records["record_id"] == "01-001") & (records["redcap_event_name"] == "day_0_arm_1"),
        "inf_kit"].iloc[0]
    return records


def outcome(settings: Settings, summary: RunSummary) -> tuple:
    """What a run leaves behind: its counts, guard decisions and exit code, and the ledger's
    run row and written cells (in a stable order: batches write in another order)."""
    ledger = Ledger(settings.state_path)
    try:
        writes = ledger.writes(summary.run_id)[LEDGER_COLUMNS]
        run = ledger.runs().set_index("run_id").loc[summary.run_id]
    finally:
        ledger.close()
    writes = writes.sort_values(LEDGER_COLUMNS).reset_index(drop=True)
    return ({c: getattr(summary, c) for c in SUMMARY_COUNTS}, summary.held_rules,
            summary.accepted_rules, summary.exit_code, run["status"], run["exit_code"],
            json.loads(run["details"] or "{}"), writes.to_dict("records"))


def assert_same(small: Settings, in_batches: RunSummary, whole: Settings,
                at_once: RunSummary) -> None:
    pd.testing.assert_frame_equal(export(small), export(whole))
    assert outcome(small, in_batches) == outcome(whole, at_once)


@pytest.mark.parametrize("hold_share", [0.5, 1.0], ids=["guard on", "guard holding nothing"])
def test_a_sync_in_batches_of_7_leaves_redcap_exactly_as_one_batch_does(redcap_server,
                                                                         tmp_path, hold_share):
    """With the guard on, new queries wait for the last batch; with a share of 1 it can hold
    nothing, so each batch writes its own at once: either way the same end state."""
    records = demo_with_a_kit_reused_across_batches()
    small = trial(redcap_server, tmp_path / "small.sqlite", records)
    whole = trial(redcap_server, tmp_path / "whole.sqlite", records)
    small = small.model_copy(update={"rule_hold_share": hold_share})
    whole = whole.model_copy(update={"batch_size": 1000, "rule_hold_share": hold_share})
    assert small.batch_size == 7
    in_batches, at_once = run_sync(small, now=NOW), run_sync(whole, now=NOW)
    assert at_once.queries_opened > 40 and at_once.exit_code == 0
    assert_same(small, in_batches, whole, at_once)
    kits = queries(small)
    kits = kits[kits["dq_rule"] == "KIT_REUSED"]
    assert "01-035" in set(kits["record_id"]), "a kit reused across batches went unnoticed"


def test_the_rule_guard_judges_the_whole_run_and_accepting_gives_one_batchs_state(
        redcap_server, tmp_path):
    """24 subjects in batches of 5: no batch alone reaches `rule_hold_min_records` (10), yet
    the run holds the typo rule exactly as one batch does; `--accept-rule` then writes it the
    same way too."""
    redcap_dir = tmp_path / "redcap"
    shutil.copytree(ROOT / "redcap", redcap_dir)
    with open(redcap_dir / "rules.csv", "a", encoding="utf-8") as rules:
        rules.write(TYPO_RULE)
    subjects = demo_records(24)
    small = deployed_trial(redcap_server, tmp_path / "small", subjects, redcap_dir)
    whole = deployed_trial(redcap_server, tmp_path / "whole", subjects, redcap_dir)
    small = small.model_copy(update={"batch_size": 5})
    assert small.batch_size < small.rule_hold_min_records and whole.batch_size > 24

    held = (run_sync(small, now=NOW), run_sync(whole, now=NOW))
    assert [t.rule for t in held[0].held_rules] == ["CREA_TYPO"]
    assert held[0].exit_code == EXIT_RULE_HELD and held[0].queries_opened > 0
    assert_same(small, held[0], whole, held[1])
    assert "CREA_TYPO" not in set(queries(small)["dq_rule"])

    accepted = (run_sync(small, now=NOW, accept_rules=("CREA_TYPO",)),
                run_sync(whole, now=NOW, accept_rules=("CREA_TYPO",)))
    assert [t.rule for t in accepted[0].accepted_rules] == ["CREA_TYPO"]
    assert accepted[0].exit_code == 0
    assert_same(small, accepted[0], whole, accepted[1])
    opened = queries(small)
    assert (opened["dq_rule"] == "CREA_TYPO").sum() == accepted[0].accepted_rules[0].records


def test_an_incremental_run_finds_a_kit_first_used_by_a_record_it_did_not_pull(redcap_server,
                                                                               tmp_path):
    settings = trial(redcap_server, tmp_path / "state.sqlite", demo_records(40))
    run_sync(settings, now=NOW)
    first = export(settings)
    kit = first.loc[(first["record_id"] == "01-001")
                    & (first["redcap_event_name"] == "day_0_arm_1"), "inf_kit"].iloc[0]
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": "01-030", "redcap_event_name": "day_6_arm_1",
                             "inf_given": "1", "inf_kit": kit}])
    summary = run_sync(settings, now=NOW)
    assert summary.records_pulled == 1
    kits = queries(settings)
    kits = kits[(kits["dq_rule"] == "KIT_REUSED") & (kits["record_id"] == "01-030")]
    assert len(kits) == 1 and "01-001" in kits["dq_text"].iloc[0]
