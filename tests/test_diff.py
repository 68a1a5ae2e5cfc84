"""Stage 4: only cells whose desired value differs from REDCap's are written."""
from __future__ import annotations

import pandas as pd

from sync.diff import CELL_COLUMNS, KEY_COLUMNS, diff_cells, keyed

RAW = pd.DataFrame([
    {"record_id": "01-001", "redcap_event_name": "screening_arm_1", "redcap_repeat_instrument": "",
     "redcap_repeat_instance": "", "elig_calc": "1", "elig_fail": ""},
    {"record_id": "01-002", "redcap_event_name": "screening_arm_1", "redcap_repeat_instrument": "",
     "redcap_repeat_instance": "", "elig_calc": "", "elig_fail": ""},
])


def desired(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index(KEY_COLUMNS)


def key(record: str) -> dict:
    return {"record_id": record, "redcap_event_name": "screening_arm_1",
            "redcap_repeat_instrument": "", "redcap_repeat_instance": ""}


def test_unchanged_cells_give_an_empty_change_set():
    want = desired([{**key("01-001"), "elig_calc": "1", "elig_fail": ""}])
    assert diff_cells(want, keyed(RAW, "record_id"), {"elig_calc": "ELIG_CALC"}).empty


def test_changed_cells_carry_old_value_new_value_and_rule():
    want = desired([{**key("01-001"), "elig_calc": "0", "elig_fail": "I1"},
                    {**key("01-002"), "elig_calc": "", "elig_fail": ""}])
    cells = diff_cells(want, keyed(RAW, "record_id"), {"elig_calc": "ELIG_CALC", "elig_fail": "ELIG_CALC"})
    assert cells.to_dict(orient="records") == [
        {**key("01-001"), "field": "elig_calc", "old_value": "1", "new_value": "0", "rule_id": "ELIG_CALC"},
        {**key("01-001"), "field": "elig_fail", "old_value": "", "new_value": "I1", "rule_id": "ELIG_CALC"},
    ]
    assert list(cells.columns) == CELL_COLUMNS


def test_a_cell_without_an_opinion_is_never_compared_or_written():
    want = desired([{**key("01-001"), "elig_calc": pd.NA, "elig_fail": "I2"}])
    cells = diff_cells(want, keyed(RAW, "record_id"), {})
    assert list(cells["field"]) == ["elig_fail"]


def test_rows_redcap_does_not_hold_yet_read_as_blank():
    want = desired([{**key("01-003"), "elig_calc": "1"}])
    cells = diff_cells(want, keyed(RAW, "record_id"), {})
    assert cells[["record_id", "old_value", "new_value"]].to_dict(orient="records") == [
        {"record_id": "01-003", "old_value": "", "new_value": "1"}]
