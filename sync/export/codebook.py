"""The codebook: every variable of the cut's tables with its form, label, type, unit and choices.

Derived variables say how they were made: a calc field its REDCap expression, a field the sync
writes `sync: eligibility` / `sync: queries` (or the rule id that writes it), and a column the
cut adds (labels, checkbox states, data status) its recipe.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sync.export.meta import QUERY_FORM, SYNC_ELIGIBILITY_FIELDS, CutField, CutSchema
from sync.export.tables import CutTable

CODEBOOK_COLUMNS: tuple[str, ...] = (
    "table", "variable", "form", "field", "label", "field_type", "validation", "kind", "unit",
    "choices", "derivation", "branching_logic", "identifier", "sdtm")
SITE_ENTERED_QUERY_FIELDS: frozenset[str] = frozenset({"dq_response"})


def rule_written_fields(rules_path: Path | None) -> dict[str, str]:
    """Field -> rule id, for catalogue rules that write a flag field (a `writes` column)."""
    if rules_path is None or not rules_path.exists():
        return {}
    rules = pd.read_csv(rules_path, dtype=str, keep_default_na=False)
    target = next((c for c in ("writes", "flag_field", "target_field") if c in rules), None)
    if target is None or "rule_id" not in rules:
        return {}
    return {row[target]: row["rule_id"] for _, row in rules.iterrows() if row[target]}


def derivation(cut_field: CutField, rule_fields: dict[str, str]) -> str:
    """How a dictionary field gets its value when no site user enters it; blank if entered."""
    if cut_field.name in rule_fields:
        return f"rule: {rule_fields[cut_field.name]}"
    if cut_field.field_type == "calc":
        return f"calc: {cut_field.calculation}"
    if cut_field.name in SYNC_ELIGIBILITY_FIELDS:
        return "sync: eligibility"
    if cut_field.form == QUERY_FORM and cut_field.name not in SITE_ENTERED_QUERY_FIELDS:
        return "sync: queries"
    if "@CODED" in cut_field.annotation:
        return "coding file: the verbatim term's dictionary entry (blank when uncoded)"
    if "@READONLY" in cut_field.annotation:
        return "sync: written by the sync (@READONLY)"
    return ""


def _choices_text(cut_field: CutField) -> str:
    return " | ".join(f"{code}, {label}" for code, label in cut_field.choices)


def _field_row(table: CutTable, column: str, cut_field: CutField,
               rule_fields: dict[str, str]) -> dict[str, str]:
    return {
        "table": table.name, "variable": column, "form": cut_field.form,
        "field": cut_field.name, "label": table.labels.get(column, cut_field.label),
        "field_type": cut_field.field_type, "validation": cut_field.validation,
        "kind": table.kinds.get(column, ""), "unit": cut_field.unit,
        "choices": _choices_text(cut_field),
        "derivation": table.sources.get(column, "") or derivation(cut_field, rule_fields),
        "branching_logic": cut_field.branching, "identifier": "y" if cut_field.identifier else "",
        "sdtm": cut_field.sdtm,
    }


def _source_field(column: str, schema: CutSchema, checkboxes: dict[str, str]) -> CutField | None:
    for suffix in ("_label", "_state"):
        base = column[: -len(suffix)] if column.endswith(suffix) else ""
        if base and (schema.field(base) is not None or base in checkboxes):
            column = base
    return schema.field(checkboxes.get(column, column))


def codebook(tables: list[CutTable], schema: CutSchema, rule_fields: dict[str, str]) -> CutTable:
    """One row per column of each table, in table then column order."""
    checkboxes = {column: f.name for f in schema.fields if f.kind == "checkbox"
                  for column, _, _ in f.checkbox_columns()}
    rows: list[dict[str, str]] = []
    for table in tables:
        for column in table.frame.columns:
            cut_field = _source_field(column, schema, checkboxes)
            if cut_field is not None:
                rows.append(_field_row(table, column, cut_field, rule_fields))
                continue
            rows.append({key: "" for key in CODEBOOK_COLUMNS} | {
                "table": table.name, "variable": column, "form": table.name,
                "label": table.labels.get(column, ""), "kind": table.kinds.get(column, ""),
                "derivation": table.sources.get(column, "")})
    frame = pd.DataFrame(rows, columns=list(CODEBOOK_COLUMNS), dtype="string")
    return CutTable(name="codebook", frame=frame,
                    kinds={c: "string" for c in CODEBOOK_COLUMNS},
                    labels={c: c.replace("_", " ").capitalize() for c in CODEBOOK_COLUMNS})
