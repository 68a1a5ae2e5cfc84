"""Values that are not data: REDCap missing-data codes, and values not of their field's type.

A missing-data code (`UNK`, `NA`, ... from the project's `missing_data_codes`) is exported as a
missing value with the code kept beside it (`<field>_missing_code`). A value that does not fit
its field (`1975-02-30` in a date) is left blank in the cut and listed in `status/problems`;
one bad value never stops the cut.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sync.export.meta import CutSchema
from sync.export.tables import CutTable, text_codes, typed_array, typed_text
from sync.crf.redcap_spec import parse_choices

PROBLEM_COLUMNS = ("record_id", "redcap_event_name", "redcap_repeat_instance", "field", "value",
                   "problem")


@dataclass
class Screened:
    """The raw frame with codes and bad values blanked, and what was taken out of it."""

    raw: pd.DataFrame
    codes: dict[str, pd.Series] = field(default_factory=dict)
    """Field -> the missing-data code per raw row ("" where none), for fields that hold one."""
    problems: list[tuple[object, str, str, str]] = field(default_factory=list)
    """(raw row label, field, value, what it should have been)."""


def missing_codes(dictionary: object) -> set[str]:
    """The project's missing-data codes (REDCap project setting `missing_data_codes`)."""
    project = getattr(dictionary, "project", None) or {}
    return {code for code, _ in parse_choices(str(project.get("missing_data_codes", "") or ""))}


def screen(raw: pd.DataFrame, schema: CutSchema, codes: set[str]) -> Screened:
    """Blank missing-data codes (kept aside) and values that do not type (listed); each
    distinct value of a column looked at once."""
    out = Screened(raw=raw.copy(deep=False))  # columns are replaced, never written into
    for cut_field in schema.fields:
        name = cut_field.name
        if cut_field.kind == "checkbox" or name not in raw or name == schema.record_id:
            continue
        column = out.raw[name].to_numpy(dtype=object)
        bad = np.zeros(len(column), dtype=bool)
        coded = np.zeros(len(column), dtype=bool)
        if typed_text(cut_field):  # text: no value fails to type
            coded = out.raw[name].isin(codes).to_numpy()
        elif (filled := np.flatnonzero(column != "")).size:  # a blank is neither code nor bad
            places, distinct = text_codes(column[filled])
            known = np.array([value in codes for value in distinct], dtype=bool)
            _, wrong, what = typed_array(
                np.where(known, "", np.array(distinct, dtype=object)), cut_field)
            coded[filled], bad[filled] = known[places], wrong[places]
        if coded.any():
            out.codes[name] = pd.Series(np.where(coded, column, ""), index=raw.index, name=name)
        for at in np.flatnonzero(bad):
            out.problems.append((raw.index[at], name, column[at], what))
        if coded.any() or bad.any():
            out.raw[name] = np.where(coded | bad, "", column)
    return out


def problem_listing(problems: list[tuple[object, str, str, str]], raw: pd.DataFrame,
                    schema: CutSchema, withhold_values: bool) -> CutTable:
    """One row per value left blank because it is not of its field's type.

    `raw` and `schema` are what the cut is written from (pseudonyms in a de-identified cut, no
    dropped field); a de-identified cut withholds the values, which may hold real dates or names.
    """
    record_id = schema.record_id
    rows = [{"record_id": raw.at[label, record_id],
             "redcap_event_name": raw.at[label, "redcap_event_name"],
             "redcap_repeat_instance": raw.at[label, "redcap_repeat_instance"],
             "field": name, "value": "(withheld)" if withhold_values else value,
             "problem": f"not {what}; left blank"}
            for label, name, value, what in problems
            if label in raw.index and schema.field(name) is not None]
    frame = pd.DataFrame(rows, columns=list(PROBLEM_COLUMNS), dtype="string")
    return CutTable(name="problems", frame=frame, kinds={c: "string" for c in PROBLEM_COLUMNS},
                    labels={c: c.replace("_", " ").capitalize() for c in PROBLEM_COLUMNS})
