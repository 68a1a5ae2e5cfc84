"""A records export with `fields=` or `forms=`: the embedded server gives the full export's rows
with just the selected columns, reading only the selected values and where any value is stored
(#17: the sync's read-backs, its kit summary and the record-id list are narrow exports, and
reading every value for them made each cost as much as a full export).

The rows are what the server gave before that change. REDCap itself (redcap-semantics.md §6.2)
gives only the rows holding a stored value among the exported fields; the sync's narrow exports
read values only, so the extra blank rows change nothing it decides.
"""
from __future__ import annotations

import pandas as pd
import pytest
from redcap import Project

from sync.demo.data import demo_records
from tests.trials import deployed_trial

KEYS = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]


@pytest.fixture(scope="module")
def demo_project(redcap_server, tmp_path_factory) -> Project:
    settings = deployed_trial(redcap_server, tmp_path_factory.mktemp("narrow"), demo_records(12))
    return Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows).fillna("").astype(str)


@pytest.mark.parametrize("fields", [
    ["record_id"],
    ["record_id", "inf_given", "inf_kit"],
    ["record_id", "ae_term", "ae_grade", "dq_rule", "dq_status", "elig_calc"],
    ["ae_term", "adverse_event_complete"],
], ids=["record ids", "kits", "repeating and flags", "without the record id"])
def test_a_narrow_export_has_the_full_exports_rows_with_just_its_columns(demo_project, fields):
    full = frame(demo_project.export_records(format_type="json"))
    narrow = frame(demo_project.export_records(format_type="json", fields=fields))
    columns = [c for c in full.columns if c in KEYS or c in fields]
    assert list(narrow.columns) == columns
    pd.testing.assert_frame_equal(narrow.reset_index(drop=True),
                                  full[columns].reset_index(drop=True))


def test_a_narrow_export_of_some_records_and_events_keeps_their_rows(demo_project):
    ids = list(dict.fromkeys(r["record_id"] for r in demo_project.export_records(
        format_type="json", fields=["record_id"])))[3:7]
    events = ["screening_arm_1", "day_3_arm_1"]
    full = frame(demo_project.export_records(format_type="json", records=ids, events=events))
    narrow = frame(demo_project.export_records(format_type="json", records=ids, events=events,
                                               fields=["record_id", "inf_kit", "ae_term"]))
    assert len(narrow) == len(full) > 0
    pd.testing.assert_frame_equal(narrow, full[list(narrow.columns)])
