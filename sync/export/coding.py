"""Dictionary coding of adverse events and medications from a file the sponsor provides.

MedDRA and WHODrug are licensed, so the cut reads a plain CSV the sponsor keeps:
`domain,verbatim,code,term` (domain AE or CM; verbatim as entered, matched case- and
space-insensitively). Each field annotated `AE.AETERM` or `CM.CMTRT` gets two derived fields
beside it, `<field>_decod` and `<field>_dcd` (AEDECOD/AEPTCD, CMDECOD/CMDCD), which every
table, the SDTM domains and a de-identified cut keep (they hold dictionary terms, not what a
site typed). Terms without a code are left blank and listed in `sdtm/uncoded_terms`.
"""
from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sync.export.meta import CutError, CutField, CutSchema
from sync.export.tables import CutTable

CODED = {"AETERM": ("AEDECOD", "AEPTCD"), "CMTRT": ("CMDECOD", "CMDCD")}
UNCODED_COLUMNS = ("domain", "field", "record_id", "redcap_event_name", "redcap_repeat_instance",
                   "verbatim")


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def read_coding(path: Path | None) -> dict[tuple[str, str], tuple[str, str]]:
    """(domain, verbatim key) -> (code, term) from the sponsor's coding CSV."""
    if path is None:
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise CutError(f"{path}: coding file not found") from None
    needed = {"domain", "verbatim", "code", "term"}
    if rows and not needed <= set(rows[0]):
        raise CutError(f"{path}: a coding file needs the columns {sorted(needed)}")
    return {(r["domain"].strip().upper(), _key(r["verbatim"])): (r["code"].strip(), r["term"].strip())
            for r in rows if r["verbatim"].strip()}


def add_coding(raw: pd.DataFrame, schema: CutSchema,
               coding: dict[tuple[str, str], tuple[str, str]]) -> tuple[pd.DataFrame, CutSchema,
                                                                        list[tuple[str, str, object]]]:
    """Raw frame and schema with the coded fields; the uncoded (domain, field, raw row)."""
    fields: list[CutField] = []
    uncoded: list[tuple[str, str, object]] = []
    raw = raw.copy(deep=False)  # columns are added, never written into
    for cut_field in schema.fields:
        fields.append(cut_field)
        target = next((v for v in CODED if f"{v[:2]}.{v}" in cut_field.sdtm.split(";")[0]), None)
        if target is None or cut_field.name not in raw:
            continue
        domain = target[:2]
        decod, code = CODED[target]
        found = raw[cut_field.name].map(lambda v: coding.get((domain, _key(v))) if v else None)
        raw[f"{cut_field.name}_decod"] = found.map(lambda c: c[1] if c else "")
        raw[f"{cut_field.name}_dcd"] = found.map(lambda c: c[0] if c else "")
        uncoded += [(domain, cut_field.name, label)
                    for label in raw.index[(raw[cut_field.name] != "") & found.isna()]]
        for suffix, variable, label in (("decod", decod, "dictionary term"),
                                        ("dcd", code, "dictionary code")):
            fields.append(replace(cut_field, name=f"{cut_field.name}_{suffix}",
                                  label=f"{cut_field.label}: {label}"[:200], field_type="text",
                                  validation="", choices=(), identifier=False,
                                  annotation=f"@DEID-SAFE @CODED SDTM: {domain}.{variable}"))
    return raw, replace(schema, fields=tuple(fields)), uncoded


def uncoded_listing(uncoded: list[tuple[str, str, object]], raw: pd.DataFrame,
                    source: pd.DataFrame, record_id: str, withhold: bool) -> CutTable:
    """One row per verbatim term without a dictionary code (the verbatim withheld when
    de-identified); `raw` is the cut's frame, `source` the frame the verbatim comes from."""
    rows = [{"domain": domain, "field": name, "record_id": raw.at[label, record_id],
             "redcap_event_name": raw.at[label, "redcap_event_name"],
             "redcap_repeat_instance": raw.at[label, "redcap_repeat_instance"],
             "verbatim": "(withheld)" if withhold else source.at[label, name]}
            for domain, name, label in uncoded if label in raw.index]
    frame = pd.DataFrame(rows, columns=list(UNCODED_COLUMNS), dtype="string")
    return CutTable(name="uncoded_terms", frame=frame,
                    kinds={c: "string" for c in UNCODED_COLUMNS},
                    labels={c: c.replace("_", " ").capitalize() for c in UNCODED_COLUMNS})
