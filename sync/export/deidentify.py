"""De-identification of the raw export before the cut is built from it, so it cannot be undone.

What leaves, what moves (REDCap's de-identified export options are the model:
redcap-behaviour.md, "Export rights ... de-identified rights remove identifiers, unvalidated free
text, notes and dates"):

- identifier fields (`Identifier? = y`), kit numbers, and free text and notes fields are dropped;
  a text field whose annotation holds `@DEID-SAFE` is kept (dates quoted in it still move);
- a date field that holds one value for every subject (a document or protocol version) is
  dropped: shifted per subject, it would hand each subject's offset out;
- every other subject date and datetime, system times such as a query's opened and resolved
  stamps included, moves back by that subject's offset, an HMAC of the record ID under a secret
  salt; intervals are computed only after the move;
- ages of 90 and over read 90; record IDs become pseudonyms (the site prefix, then an HMAC), and
  rows are put in pseudonym order so that order gives no enrolment sequence away.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import pandas as pd

from sync.export.meta import SYNC_ELIGIBILITY_FIELDS, CutError, CutField, CutSchema

MAX_SHIFT_DAYS = 365
TOP_AGE = 90
SAFE_TEXT_TAG = "@DEID-SAFE"
SYSTEM_TEXT_FIELDS: frozenset[str] = SYNC_ELIGIBILITY_FIELDS | {
    "dq_key", "dq_rule", "dq_event", "dq_instrument", "dq_instance", "dq_field"}
"""Text the sync writes from codes, never from what a site typed."""
_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_KIT = re.compile(r"\bkit\b", re.IGNORECASE)
_SITE = re.compile(r"^(\d{1,4})-")
PINNED_STAMP = datetime(1960, 1, 1)
"""What a de-identified cut's XPT headers say instead of the cut time (SAS's day zero)."""
METHOD = (f"dates moved back by a per-subject offset of 1-{MAX_SHIFT_DAYS} days "
          "(HMAC-SHA256 of the record ID under a secret salt kept out of the cut); "
          "record IDs replaced by pseudonyms (site, then HMAC-SHA256 of the record ID)")


@dataclass
class Deidentified:
    """What de-identification removed and changed, for the manifest (no value of any subject)."""

    dropped: dict[str, list[str]] = field(default_factory=dict)
    """Reason -> field names."""
    top_coded: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {"method": METHOD, "fields_dropped": {k: v for k, v in self.dropped.items() if v},
                "ages_top_coded_at": TOP_AGE, "age_fields": self.top_coded,
                "free_text_kept_when_annotated": SAFE_TEXT_TAG}


def shift_days(record: str, salt: bytes) -> int:
    """Days this subject's dates move back: 1..365, fixed by the salt and the record ID."""
    digest = hmac.new(salt, record.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS + 1


def pseudonym(record: str, salt: bytes) -> str:
    """The record's stable pseudonym: its site prefix kept, the rest an HMAC (`01-7F3A09C2D1`)."""
    digest = hmac.new(salt, b"pseudonym:" + record.encode("utf-8"), hashlib.sha256).hexdigest()
    site = _SITE.match(record)
    return f"{site.group(1)}-{digest[:10].upper()}" if site else digest[:12].upper()


def shift_text(text: str, days: int) -> str:
    """Every valid `YYYY-MM-DD` in `text` moved back by `days`; other text unchanged."""
    def moved(match: re.Match[str]) -> str:
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return match.group(0)
        return (day - timedelta(days=days)).isoformat()

    return _DATE.sub(moved, text) if text else text


def is_free_text(cut_field: CutField) -> bool:
    """Notes, and text whose validation is not a date, time or number (REDCap's "free text")."""
    if cut_field.name in SYSTEM_TEXT_FIELDS or SAFE_TEXT_TAG in cut_field.annotation:
        return False
    return cut_field.field_type == "notes" or (
        cut_field.field_type == "text" and cut_field.kind == "string")


def is_kit_number(cut_field: CutField) -> bool:
    """A kit, bag or pack number: it can be matched against the randomisation list."""
    return bool(_KIT.search(cut_field.label)) or "REFID" in cut_field.sdtm


def study_wide_dates(raw: pd.DataFrame, schema: CutSchema) -> list[str]:
    """Date fields with one value for every subject that has one (two subjects or more)."""
    found = []
    for cut_field in schema.fields:
        if cut_field.kind not in ("date", "datetime") or cut_field.name not in raw:
            continue
        filled = raw[raw[cut_field.name] != ""]
        if filled[schema.record_id].nunique() >= 2 and filled[cut_field.name].nunique() == 1:
            found.append(cut_field.name)
    return found


def age_fields(schema: CutSchema) -> list[str]:
    """Fields that hold an age in years (annotated `DM.AGE`, or named `age`)."""
    return [f.name for f in schema.fields
            if f.kind in ("integer", "number") and ("DM.AGE" in f.sdtm.split(";")[0]
                                                    or f.name == "age")]


def _dropped(raw: pd.DataFrame, schema: CutSchema,
             study_wide: list[str] | None) -> dict[str, list[str]]:
    dropped = {"identifier": list(schema.identifier_fields),
               "kit number": [f.name for f in schema.fields if is_kit_number(f)],
               "free text or notes": [f.name for f in schema.fields if is_free_text(f)],
               "study-wide date": (study_wide_dates(raw, schema) if study_wide is None
                                   else list(study_wide))}
    seen: set[str] = set()
    for reason, names in dropped.items():
        dropped[reason] = [n for n in names if n not in seen and n != schema.record_id]
        seen |= set(names)
    return dropped


def _pseudonymise(kept: pd.DataFrame, schema: CutSchema, salt: bytes) -> pd.DataFrame:
    records = pd.Series(list(dict.fromkeys(kept[schema.record_id])))
    names = dict(zip(records, records.map(lambda r: pseudonym(r, salt))))
    if len(set(names.values())) < len(names):
        raise CutError("two record IDs give the same pseudonym; choose another salt")
    kept[schema.record_id] = kept[schema.record_id].map(names)
    if "dq_key" in kept:
        kept["dq_key"] = [_pseudonymous_key(key, names, salt) for key in kept["dq_key"]]
    order = sorted(range(len(kept)), key=lambda i: kept[schema.record_id].iat[i])
    return kept.iloc[order]


def _pseudonymous_key(key: str, names: dict[str, str], salt: bytes) -> str:
    """A query's `rule|record|event|instrument|instance|field` key with the record pseudonymised;
    a key of any other shape is replaced by its HMAC."""
    parts = key.split("|")
    if len(parts) == 6 and parts[1] in names:
        return "|".join([parts[0], names[parts[1]]] + parts[2:])
    return hmac.new(salt, key.encode("utf-8"), hashlib.sha256).hexdigest()[:16] if key else key


def deidentify_raw(raw: pd.DataFrame, schema: CutSchema, salt: bytes | None,
                   study_wide: list[str] | None = None
                   ) -> tuple[pd.DataFrame, CutSchema, Deidentified]:
    """The raw export and schema de-identified; the index of every kept row is unchanged.

    `study_wide`: the study-wide date fields of the whole project when `raw` is one batch of
    it (`records.first_pass`); else found in `raw`.
    """
    if not salt:
        raise CutError("a de-identified cut needs a secret salt (secret_salt) to shift dates")
    if schema.record_id in schema.identifier_fields:
        raise CutError(f"the record ID field {schema.record_id} is marked as an identifier; "
                       "a cut cannot drop it")
    report = Deidentified(dropped=_dropped(raw, schema, study_wide))
    gone = {name for names in report.dropped.values() for name in names}
    gone_columns = {c for f in schema.fields if f.name in gone
                    for c in ([x for x, _, _ in f.checkbox_columns()] if f.kind == "checkbox"
                              else [f.name])}
    kept = raw.drop(columns=[c for c in raw.columns if c in gone_columns])
    fields = tuple(f for f in schema.fields if f.name not in gone)
    kept_schema = replace(schema, fields=fields)
    days = kept[schema.record_id].map(lambda r: shift_days(r, salt))
    for cut_field in fields:
        moves = cut_field.kind in ("date", "datetime", "string") or cut_field.field_type == "notes"
        if moves and cut_field.name != schema.record_id and cut_field.name in kept:
            kept[cut_field.name] = [shift_text(v, d) for v, d in zip(kept[cut_field.name], days)]
    report.top_coded = [name for name in age_fields(kept_schema) if name in kept]
    for name in report.top_coded:
        age = pd.to_numeric(kept[name].replace("", pd.NA), errors="coerce")
        kept[name] = kept[name].where(~(age >= TOP_AGE), str(TOP_AGE))
    return _pseudonymise(kept, schema, salt), kept_schema, report
