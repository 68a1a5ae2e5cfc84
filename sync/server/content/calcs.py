"""Calculated fields recomputed after an import, as REDCap's `performAutoCalc` does (§5.3).

The equations are evaluated by `sync.logic.compute_calcs`; imported calc values themselves are
ignored (REDCap warns and drops them). Without the logic engine no calc is stored.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Any, Callable

import pandas as pd

from sync.errors import EcrfError
from sync.server.rows import data_columns, flat_header, flat_table, form_applies
from sync.server.store import Design, Store

log = logging.getLogger(__name__)


def _engine() -> Callable[..., pd.DataFrame] | None:
    try:
        from sync.logic import compute_calcs
    except ImportError:
        return None
    return compute_calcs


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
                records: list[str]) -> dict[str, list[str]]:
    """Store the new value of every calc that changed; returns log details per record."""
    if not records or not has_calcs(design):
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
            if meta is None or new == old or not form_applies(design, key, meta["form_name"]):
                continue
            changes.append((key[0], key[1], key[3] or 1, name, [new] if new else []))
            details.setdefault(key[0], []).append(f"{name} = '{new}'")
    store.put_values(db, design.project_id, changes)
    return details
