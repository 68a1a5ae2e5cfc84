"""Stage 4, diff: the desired state of sync-owned cells against what REDCap holds now.

Every stage before this one states what a cell *should* hold; this one keeps only the cells
that differ, each with its old value, its new value and the rule that justified it. A rerun
over unchanged data therefore produces an empty change set and writes nothing.
"""
from __future__ import annotations

import pandas as pd

KEY_COLUMNS = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
               "redcap_repeat_instance"]
CELL_COLUMNS = KEY_COLUMNS + ["field", "old_value", "new_value", "rule_id"]


def empty_cells() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=str) for column in CELL_COLUMNS})


def keyed(records: pd.DataFrame, record_id_field: str) -> pd.DataFrame:
    """The raw records indexed by REDCap's row key (record, event, instrument, instance)."""
    frame = records.rename(columns={record_id_field: "record_id"}, copy=False)
    missing = {column: "" for column in KEY_COLUMNS if column not in frame.columns}
    return (frame.assign(**missing) if missing else frame).set_index(KEY_COLUMNS)


def diff_cells(desired: pd.DataFrame, current: pd.DataFrame,
               rule_ids: dict[str, str] | pd.DataFrame) -> pd.DataFrame:
    """Cells of `desired` that differ from `current`, as a long frame with old and new values.

    `desired` is indexed by `KEY_COLUMNS`; a missing value (NA) in it means "no opinion", so
    only stated cells are compared. `current` is the keyed raw frame; rows or columns it lacks
    read as blank. `rule_ids` names the rule behind each field, or (as a frame shaped like
    `desired`) behind each cell.
    """
    if desired.empty:
        return empty_cells()
    new = desired.stack(future_stack=True).dropna().astype(str)
    if new.empty:
        return empty_cells()
    new.index = new.index.set_names(KEY_COLUMNS + ["field"])
    old_frame = current.reindex(columns=desired.columns)
    old = old_frame.stack(future_stack=True)
    old.index = old.index.set_names(KEY_COLUMNS + ["field"])
    old = old.reindex(new.index).fillna("").astype(str)
    changed = new[new != old]
    cells = pd.DataFrame({"old_value": old[changed.index], "new_value": changed}).reset_index()
    if isinstance(rule_ids, pd.DataFrame):
        rules = rule_ids.stack(future_stack=True)
        rules.index = rules.index.set_names(KEY_COLUMNS + ["field"])
        cells["rule_id"] = rules.reindex(changed.index).fillna("").astype(str).to_numpy()
    else:
        cells["rule_id"] = cells["field"].map(rule_ids).fillna("")
    return cells[CELL_COLUMNS].reset_index(drop=True)
