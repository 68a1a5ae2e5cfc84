"""Blinding: what an allocation-revealing field and everything derived from it may not reach.

A field whose annotation holds `@UNBLINDED` reveals allocation (the unblinded pharmacy record,
the dose prepared, the cell count). A blinded cut, the default, leaves out those fields, every
field derived from them (a calculation, `@CALCTEXT`/`@DEFAULT`, or branching logic naming one:
where such a field shows data says which arm the subject is in), any instrument left with no
field, and every query raised on what it leaves out. REDCap arms never stand for treatment:
when a project has several arms, a blinded cut drops the arm from event names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from sync.export.meta import CutError, CutSchema

UNBLINDED_TAG = "@UNBLINDED"
UNBLINDED_MARK = "UNBLINDED"
"""Put in every file name of an unblinded cut."""
_ARM = re.compile(r"_arm_\d+$")


@dataclass
class Blinding:
    """What the blinded cut left out (for the manifest), or that the cut is unblinded."""

    unblinded: bool
    fields: list[str] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)
    queries: int = 0
    arms_masked: bool = False

    def summary(self) -> dict[str, object]:
        if self.unblinded:
            return {"status": UNBLINDED_MARK, "note": "allocation-revealing fields are included; "
                    "every file name carries " + UNBLINDED_MARK}
        return {"status": "blinded", "tag": UNBLINDED_TAG, "fields_left_out": self.fields,
                "instruments_left_out": self.forms, "queries_left_out": self.queries,
                "arm_dropped_from_event_names": self.arms_masked}


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"\[([a-z][a-z0-9_]*)(?:\(|\])", text))


def allocation_fields(schema: CutSchema) -> list[str]:
    """Fields tagged `@UNBLINDED` and, to a fixed point, every field derived from one."""
    revealing = {f.name for f in schema.fields if UNBLINDED_TAG in f.annotation.upper()}
    grew = bool(revealing)
    while grew:
        grew = False
        for cut_field in schema.fields:
            if cut_field.name in revealing:
                continue
            sources = _names_in(cut_field.calculation) | _names_in(cut_field.branching)
            if re.search(r"@(CALCTEXT|CALCDATE|DEFAULT|SETVALUE)", cut_field.annotation):
                sources |= _names_in(cut_field.annotation)
            if sources & revealing:
                revealing.add(cut_field.name)
                grew = True
    return [f.name for f in schema.fields if f.name in revealing]


def project_arms(dictionary: object) -> set[str] | None:
    """The arms of the project's events (`_arm_N`), or None when the dictionary has no events."""
    events = getattr(dictionary, "events", None)
    if not isinstance(events, pd.DataFrame) or "unique_event_name" not in events:
        return None
    return {m.group(0) for m in map(_ARM.search, events["unique_event_name"].astype(str)) if m}


def blind(raw: pd.DataFrame, schema: CutSchema, arms: set[str] | None = None
          ) -> tuple[pd.DataFrame, CutSchema, Blinding]:
    """The raw export and schema with nothing that reveals allocation; row index unchanged.

    `arms`: the project's arms (`project_arms`), so that a batch of records masks arms as the
    whole project would; else the arms of the events in `raw`.
    """
    names = allocation_fields(schema)
    if schema.record_id in names:
        raise CutError(f"the record ID field {schema.record_id} is marked {UNBLINDED_TAG}")
    gone = set(names)
    left = replace(schema, fields=tuple(f for f in schema.fields if f.name not in gone))
    forms = [form for form in schema.forms if not left.form_fields(form)]
    kept_schema = replace(left, fields=tuple(f for f in left.fields if f.form not in forms))
    columns = {c for f in schema.fields if f.name in gone
               for c in ([x for x, _, _ in f.checkbox_columns()] if f.kind == "checkbox"
                         else [f.name])} | {f"{form}_complete" for form in forms}
    on_forms = raw["redcap_repeat_instrument"].isin(forms).to_numpy()
    queries = np.zeros(len(raw), dtype=bool)
    for column in ("dq_field", "dq_instrument"):
        if column in raw and column not in columns:
            queries |= raw[column].isin(gone | set(forms)).to_numpy()
    queries &= ~on_forms
    kept = raw.iloc[np.flatnonzero(~(on_forms | queries)),
                    [i for i, c in enumerate(raw.columns) if c not in columns]]  # one copy
    if arms is None:
        arms = {m.group(0) for m in map(_ARM.search, kept["redcap_event_name"]) if m}
    if len(arms) > 1:
        kept = kept.assign(redcap_event_name=kept["redcap_event_name"].str.replace(
            _ARM, "", regex=True))
    return kept, kept_schema, Blinding(unblinded=False, fields=names, forms=forms,
                                       queries=int(queries.sum()), arms_masked=len(arms) > 1)
