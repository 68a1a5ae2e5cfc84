"""The sync batch by batch (#17): a small `batch_size` leaves REDCap exactly as one batch does.

Each batch of whole records is pulled, evaluated and written before the next is pulled; the
one rule comparing records (KIT_REUSED) reads every record's kits from a compact first pass,
so a kit reused across batches is found as if the whole project were one frame.
"""
from __future__ import annotations

from datetime import datetime

import pandas as pd

from sync.demo.data import demo_records
from sync.job import run_sync
from tests.test_sync import export, queries, trial

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


def test_a_sync_in_batches_of_7_leaves_redcap_exactly_as_one_batch_does(redcap_server,
                                                                         tmp_path):
    records = demo_with_a_kit_reused_across_batches()
    small = trial(redcap_server, tmp_path / "small.sqlite", records)
    whole = trial(redcap_server, tmp_path / "whole.sqlite", records)
    whole = whole.model_copy(update={"batch_size": 1000})
    assert small.batch_size == 7
    in_batches, at_once = run_sync(small, now=NOW), run_sync(whole, now=NOW)
    after_batches, after_once = export(small), export(whole)
    pd.testing.assert_frame_equal(after_batches, after_once)
    assert {c: getattr(in_batches, c) for c in SUMMARY_COUNTS} \
        == {c: getattr(at_once, c) for c in SUMMARY_COUNTS}
    kits = queries(small)
    kits = kits[kits["dq_rule"] == "KIT_REUSED"]
    assert "01-035" in set(kits["record_id"]), "a kit reused across batches went unnoticed"


def test_an_incremental_run_finds_a_kit_first_used_by_a_record_it_did_not_pull(redcap_server,
                                                                               tmp_path):
    settings = trial(redcap_server, tmp_path / "state.sqlite", demo_records(40))
    run_sync(settings, now=NOW)
    first = export(settings)
    kit = first.loc[(first["record_id"] == "01-001")
                    & (first["redcap_event_name"] == "day_0_arm_1"), "inf_kit"].iloc[0]
    from redcap import Project
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": "01-030", "redcap_event_name": "day_6_arm_1",
                             "inf_given": "1", "inf_kit": kit}])
    summary = run_sync(settings, now=NOW)
    assert summary.records_pulled == 1
    kits = queries(settings)
    kits = kits[(kits["dq_rule"] == "KIT_REUSED") & (kits["record_id"] == "01-030")]
    assert len(kits) == 1 and "01-001" in kits["dq_text"].iloc[0]
