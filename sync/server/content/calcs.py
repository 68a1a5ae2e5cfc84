"""Calculated fields recomputed after an import, as REDCap 15.7.6's `performAutoCalc` does.

redcap-behaviour.md §2: imported calc values are ignored with a warning the API caller never
sees, and the calcs recomputed are only those triggered by the fields of the payload's FIRST
row (an imported calc counts as its own trigger), on every record of the import. A calc that
depends only on fields absent from the first row stays stale, as it does in REDCap, until
something triggers it (or REDCap's Data Quality rule H). The equations are evaluated by
`sync.logic.compute_calcs`; without the logic engine no calc is stored.
"""
from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any, Callable

import pandas as pd

from sync.errors import EcrfError
from sync.server.rows import data_columns, flat_header, flat_table, form_applies
from sync.server.store import Design, Store

log = logging.getLogger(__name__)


def _logic() -> Any:
    try:
        import sync.logic
    except ImportError:
        return None
    return sync.logic


def row_fields(design: Design, row: dict[str, str], eav: bool) -> set[str]:
    """The fields one uploaded row names: its keys (checkbox columns as their field), or, for
    an EAV row, its `field_name`."""
    names = [row.get("field_name", "")] if eav else list(row)
    fields = set()
    for name in names:
        base = name.split("___", 1)[0] if name not in design.by_name else name
        if base in design.by_name:
            fields.add(base)
    return fields


def triggered_calcs(design: Design, triggers: set[str]) -> set[str]:
    """The calcs REDCap recomputes for these trigger fields: every calc among them, every calc
    whose equation names one, and, in turn, the calcs that read a triggered calc."""
    logic = _logic()
    if logic is None or not has_calcs(design):
        return set()
    try:
        equations = logic.calc_equations(pd.DataFrame(design.fields))
    except EcrfError as exc:
        log.warning("calculated fields not recomputed: %s", exc)
        return set()
    reads = {name: {ref.field for ref in logic.referenced_fields(tree)}
             for name, (_, tree) in equations.items()}
    found = {name for name in equations if name in triggers or reads[name] & triggers}
    while True:
        more = {name for name in equations if name not in found and reads[name] & found}
        if not more:
            return found
        found |= more


def warn_ignored_calc_values(design: Design, rows: list[dict[str, str]], eav: bool) -> None:
    """REDCap drops imported calc values and says so only in its own log, never to the caller."""
    calcs = {f["field_name"] for f in design.fields if f["field_type"] == "calc"
             or re.search(r"@CALC(TEXT|DATE)\b", f["field_annotation"])}
    if eav:
        named = {row.get("field_name", "") for row in rows if row.get("value", "").strip()}
    else:
        named = {name for row in rows for name, value in row.items() if value.strip()}
    given = sorted(named & calcs)
    if given:
        log.warning("imported values of calculated fields ignored (REDCap recomputes them): %s",
                    ", ".join(given))


def _engine() -> Callable[..., pd.DataFrame] | None:
    logic = _logic()
    return None if logic is None else logic.compute_calcs


def has_calcs(design: Design) -> bool:
    return any(f["field_type"] == "calc" or "@CALC" in f["field_annotation"]
               for f in design.fields)


def _results(design: Design, table: list[tuple[Any, dict[str, Any]]], header: list[str]
             ) -> pd.DataFrame | None:
    compute = _engine()
    if compute is None or not table:
        return None
    frame = pd.DataFrame([{k: str(v) for k, v in row.items()} for _, row in table],
                         columns=header, dtype=object)
    try:
        return compute(frame, pd.DataFrame(design.fields),
                       missing_data_codes=str(design.info.get("missing_data_codes", "")))
    except EcrfError as exc:
        log.warning("calculated fields not recomputed: %s", exc)
    except Exception:  # the import must not fail because an equation could not be computed
        log.exception("calculated fields not recomputed")
    return None


def recalculate(store: Store, db: sqlite3.Connection, design: Design,
                records: list[str], triggers: set[str] | None = None) -> dict[str, list[str]]:
    """Store the new value of every triggered calc that changed (every calc when `triggers`
    is None); returns log details per record."""
    if not records or not has_calcs(design):
        return {}
    wanted = None if triggers is None else triggered_calcs(design, triggers)
    if wanted is not None and not wanted:
        return {}
    columns = data_columns(design, None)
    header = flat_header(design, columns, with_dag=False)
    table = flat_table(design, store.data_rows(design.project_id, records), columns, header)
    results = _results(design, table, header)
    if results is None:
        return {}
    changes, details = [], {}
    for (key, row), (_, calc_row) in zip(table, results.iterrows()):
        for name in results.columns:
            meta = design.by_name.get(name)
            new, old = str(calc_row[name] or ""), str(row.get(name, ""))
            if (meta is None or new == old or (wanted is not None and name not in wanted)
                    or not form_applies(design, key, meta["form_name"])):
                continue
            changes.append((key[0], key[1], key[3] or 1, name, [new] if new else []))
            details.setdefault(key[0], []).append(f"{name} = '{new}'")
    store.put_values(db, design.project_id, changes)
    return details
