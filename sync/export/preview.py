"""The sync's pending writes laid over the records, so the cut describes the data it holds.

`ecrf export` evaluates the rule catalogue on exactly the records it pulled, as
`ecrf sync --dry-run` would; the cells that run would write (eligibility flags, query rows) are
applied here before the cut is built, so data status and the query listing match the data.
"""
from __future__ import annotations

import pandas as pd

from sync.diff import KEY_COLUMNS


def apply_cells(records: pd.DataFrame, cells: pd.DataFrame | None,
                record_id: str) -> tuple[pd.DataFrame, int]:
    """`records` with each cell's `new_value` set (rows added where the cell's row is new)."""
    if cells is None or cells.empty:
        return records, 0
    frame = records.reset_index() if record_id not in records.columns else records
    frame = frame.astype(object).where(frame.notna(), "").astype(str)
    for column in KEY_COLUMNS[1:]:
        if column not in frame:
            frame[column] = ""
    frame["redcap_repeat_instance"] = frame["redcap_repeat_instance"].str.replace(
        r"\.0$", "", regex=True)
    keys = [record_id] + KEY_COLUMNS[1:]
    keyed = frame.set_index(keys)
    wide = cells.assign(redcap_repeat_instance=cells["redcap_repeat_instance"].astype(str)
                        .str.replace(r"\.0$", "", regex=True)).pivot_table(
        index=KEY_COLUMNS, columns="field", values="new_value", aggfunc="last")
    wide.index = wide.index.set_names(keys)
    for column in wide.columns:
        if column not in keyed:
            keyed[column] = ""
    new_rows = wide.index.difference(keyed.index)
    if len(new_rows):
        keyed = pd.concat([keyed, pd.DataFrame("", index=new_rows, columns=keyed.columns)])
    present = wide.notna()
    for column in wide.columns:
        rows = present.index[present[column]]
        keyed.loc[rows, column] = wide.loc[rows, column].astype(str)
    return keyed.reset_index(), int(present.to_numpy().sum())
