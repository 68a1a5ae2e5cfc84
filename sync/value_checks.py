"""Coded rules on stored values as REDCap holds them: CALC_STALE and INVALID_VALUE.

CALC_STALE: REDCap ignores calc values sent through its API and recomputes on import only the
calcs triggered by the payload's first row (redcap-behaviour.md §2), so the sync cannot put a
stale calc right by writing it. It reports the drift instead, on the calc field's own row;
REDCap's Data Quality rule H recomputes and saves such values.

INVALID_VALUE: a stored value its field's type cannot read (`٩٠` in an integer field, a
date-time with a zone suffix) is neither a number nor a date to any check, so it would silently
keep a rule from firing; it gets a query of its own on that field instead.
"""
from __future__ import annotations

import pandas as pd

from sync.crf.dictionary import Dictionary
from sync.logic import calc_values_agree, compute_calcs
from sync.rule_checks import KEY_COLUMNS, RuleData, coded
from sync.typed import form_rows, typing_problems


def recomputed_calcs(records: pd.DataFrame, dictionary: Dictionary) -> pd.DataFrame:
    """Every calculated field recomputed, on `records`' index; NA on rows whose event or
    repeating instrument does not hold the field."""
    names = dictionary.calc_fields
    if not names or records.empty:
        return pd.DataFrame(index=records.index)
    values = compute_calcs(records, dictionary.metadata,
                           missing_data_codes=dictionary.missing_data_codes)
    values = values.reindex(columns=names)
    keys = {column: records[column] for column in ("redcap_event_name",
                                                    "redcap_repeat_instrument")
            if column in records}
    repeating = {event: dictionary.repeating_forms(event) for event in dictionary.event_names}
    holds: dict[str, pd.Series] = {}
    for name in names:
        form = dictionary.form_of(name)
        if form not in holds:
            holds[form] = form_rows(keys, records.index, dictionary, form, repeating)
        values[name] = values[name].where(holds[form])
    return values


@coded("CALC_STALE")
def calc_stale(data: RuleData) -> pd.DataFrame:
    """Rows where a calc's stored value is not what its equation gives from the record."""
    rows = data.records
    computed = recomputed_calcs(rows, data.dictionary)
    frames = []
    for name in computed.columns:
        wanted = computed[name]
        stored = rows[name].fillna("").astype(str) if name in rows else pd.Series(
            "", index=rows.index)
        differs = wanted.notna() & (stored != wanted.fillna(""))
        stale = differs & pd.Series([differ and not calc_values_agree(saved, value)
                                     for differ, saved, value in zip(differs, stored, wanted)],
                                    index=rows.index, dtype=bool)
        if not stale.any():
            continue
        found = rows[stale.to_numpy()]
        frames.append(found[list(KEY_COLUMNS)].assign(
            field=name, field_label=data.field_labels.get(name, name),
            stored=stored[stale].replace("", "blank").to_numpy(),
            computed=wanted[stale].replace("", "blank").to_numpy()))
    if not frames:
        return pd.DataFrame(columns=list(KEY_COLUMNS))
    return pd.concat(frames, ignore_index=True)


@coded("INVALID_VALUE")
def invalid_value(data: RuleData) -> pd.DataFrame:
    """One finding per stored value that does not fit its field's type (missing-data codes
    excepted), on that field's row, naming the value and what the field takes."""
    problems = data.typing_problems
    if problems is None:
        problems = tuple(typing_problems(data.records, data.dictionary))
    if not problems:
        return pd.DataFrame(columns=list(KEY_COLUMNS))
    labels = data.field_labels
    rows = []
    for problem in problems:
        field = data.dictionary.column_field(problem.field)
        rows.append({"record_id": problem.record, "redcap_event_name": problem.event,
                     "redcap_repeat_instrument": problem.instrument,
                     "redcap_repeat_instance": problem.instance, "field": field,
                     "field_label": str(labels.get(field, field)), "value": problem.value,
                     "expected": problem.message[len(f'"{problem.value}" is not '):]})
    return pd.DataFrame(rows)
