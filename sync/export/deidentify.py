"""De-identification of the raw export before the cut is built from it.

Identifier fields (dictionary `Identifier? = y`) are dropped; every date in the record's data,
typed dates and datetimes and dates quoted in free text (a query message names the values that
fired it), moves back by a per-subject number of days. The offset is an HMAC of the record ID
under a secret salt the caller keeps: the same subject always moves the same way, intervals
within a subject are kept, and nothing in the cut lets anyone undo it.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd

from sync.export.meta import CutError, CutSchema

MAX_SHIFT_DAYS = 365
_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
SHIFTED_KINDS = frozenset({"date", "datetime", "string"})
METHOD = (f"dates moved back by a per-subject offset of 1-{MAX_SHIFT_DAYS} days "
          "(HMAC-SHA256 of the record ID under a secret salt kept out of the cut)")


def shift_days(record: str, salt: bytes) -> int:
    """Days this subject's dates move back: 1..365, fixed by the salt and the record ID."""
    digest = hmac.new(salt, record.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS + 1


def shift_text(text: str, days: int) -> str:
    """Every valid `YYYY-MM-DD` in `text` moved back by `days`; other text unchanged."""
    def moved(match: re.Match[str]) -> str:
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return match.group(0)
        return (day - timedelta(days=days)).isoformat()

    return _DATE.sub(moved, text) if text else text


def shifted_columns(raw: pd.DataFrame, schema: CutSchema) -> list[str]:
    """Raw columns whose dates move: dates, datetimes and free text (not the record ID)."""
    names = [f.name for f in schema.fields
             if f.kind in SHIFTED_KINDS and f.name != schema.record_id and f.name in raw]
    return names


def deidentify_raw(raw: pd.DataFrame, schema: CutSchema,
                   salt: bytes | None) -> tuple[pd.DataFrame, CutSchema]:
    """The raw export and schema without identifier fields, every subject's dates shifted."""
    if not salt:
        raise CutError("a de-identified cut needs a secret salt (secret_salt) to shift dates")
    if schema.record_id in schema.identifier_fields:
        raise CutError(f"the record ID field {schema.record_id} is marked as an identifier; "
                       "a cut cannot drop it")
    dropped = set(schema.identifier_fields)
    kept = raw.drop(columns=[c for c in raw.columns if c in dropped])
    days = kept[schema.record_id].map(lambda r: shift_days(r, salt))
    for column in shifted_columns(kept, schema):
        kept[column] = [shift_text(v, d) for v, d in zip(kept[column], days)]
    fields = tuple(f for f in schema.fields if f.name not in dropped)
    return kept, replace(schema, fields=fields)
