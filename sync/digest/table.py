"""The digest's rows and summary: dq_query rows in, what a monitor reads out.

The site is the record's data access group when the project has them, else the part of the
subject id before the first dash (`01-007` is site `01`). Age is whole days since the query
was opened; open and answered queries fall into age bands.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import pandas as pd

from sync.queries import ANSWERED, CLOSED, OPEN, RESOLVED, STATUS_LABELS

STATUSES = [STATUS_LABELS[s] for s in (OPEN, ANSWERED, CLOSED, RESOLVED)]
ACTIVE = (STATUS_LABELS[OPEN], STATUS_LABELS[ANSWERED])
SEVERITIES = ("critical", "major", "minor")
AGE_BANDS: tuple[tuple[int | None, str], ...] = (
    (7, "0-7 days"), (30, "8-30 days"), (90, "31-90 days"), (None, "over 90 days"))
COLUMNS = ["severity", "rule", "site", "subject", "event", "form", "field", "instance", "value",
           "text", "updated", "status", "opened", "age_days", "response", "link", "query_instance"]
ROW_KEY = tuple[str, str, str, str]
"""(record, event, repeat instrument, repeat instance) of a data row."""


@dataclass(frozen=True)
class Labels:
    """What the project calls its fields, forms and events, and its choice labels."""

    fields: dict[str, str] = field(default_factory=dict)
    form_of: dict[str, str] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    event_ids: dict[str, str] = field(default_factory=dict)
    choices: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_redcap(cls, metadata: list[dict], instruments: list[dict],
                    events: list[dict]) -> Labels:
        choices = {m["field_name"]: _choices(m) for m in metadata}
        return cls(fields={m["field_name"]: _plain(m.get("field_label", "")) for m in metadata},
                   form_of={m["field_name"]: m["form_name"] for m in metadata},
                   forms={i["instrument_name"]: _plain(i["instrument_label"]) for i in instruments},
                   events={e["unique_event_name"]: e.get("event_name", "") for e in events},
                   event_ids={e["unique_event_name"]: str(e.get("event_id", "")) for e in events},
                   choices={k: v for k, v in choices.items() if v})


def _plain(label: str) -> str:
    """A label as text: REDCap labels may hold HTML."""
    return html.unescape(re.sub(r"<[^>]+>", "", label or "")).strip()


def _choices(meta: dict) -> dict[str, str]:
    kind = meta.get("field_type", "")
    if kind == "yesno":
        return {"1": "Yes", "0": "No"}
    if kind == "truefalse":
        return {"1": "True", "0": "False"}
    if kind not in ("radio", "dropdown", "checkbox"):
        return {}
    pairs = (part.split(",", 1) for part in (meta.get("select_choices_or_calculations") or "").split("|"))
    return {code.strip(): _plain(label) for code, *rest in pairs for label in rest}


def site_of(record: str, group: str = "") -> str:
    """The record's data access group, else its id up to the first dash.

    Examples:
        >>> site_of("01-007"), site_of("01-007", "lyon")
        ('01', 'lyon')
    """
    return group or record.split("-", 1)[0]


def age_band(days: int | None) -> str:
    """The band of an age in days.

    Examples:
        >>> [age_band(d) for d in (0, 7, 8, 31, 365)]
        ['0-7 days', '0-7 days', '8-30 days', '31-90 days', 'over 90 days']
    """
    for limit, label in AGE_BANDS:
        if limit is None or (days is not None and days <= limit):
            return label
    return AGE_BANDS[-1][1]


def fired_value(row: dict[str, str] | None, field_name: str, labels: Labels) -> str:
    """The value the query is about as REDCap holds it now, with its choice label."""
    if row is None:
        return ""
    choices = labels.choices.get(field_name, {})
    if field_name not in row:
        checked = [code for code in choices if row.get(f"{field_name}___{code}") == "1"]
        return ", ".join(f"{choices[c]} ({c})" for c in checked)
    value = row.get(field_name, "")
    return f"{choices[value]} ({value})" if value in choices else value


def digest_rows(queries: pd.DataFrame, data: dict[ROW_KEY, dict[str, str]], labels: Labels,
                severities: dict[str, str], link: Callable[[str, str, str, str], str],
                now: datetime) -> pd.DataFrame:
    """One row per query with `COLUMNS`, the most urgent first (severity, status, age)."""
    if queries.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for q in queries.fillna("").astype(str).to_dict("records"):
        record, event, field_name = q["record_id"], q.get("dq_event", ""), q.get("dq_field", "")
        instrument, instance = q.get("dq_instrument", ""), q.get("dq_instance", "")
        form = instrument or labels.form_of.get(field_name, "")
        opened = pd.to_datetime(q.get("dq_opened", ""), errors="coerce", format="%Y-%m-%d %H:%M")
        age = None if pd.isna(opened) else int((now - opened).days)
        row = data.get((record, event, instrument, instance)) or data.get((record, event, "", ""))
        rows.append({
            "severity": severities.get(q.get("dq_rule", ""), ""), "rule": q.get("dq_rule", ""),
            "site": site_of(record, q.get("redcap_data_access_group", "")), "subject": record,
            "event": labels.events.get(event, event), "form": labels.forms.get(form, form),
            "field": labels.fields.get(field_name, field_name), "instance": instance,
            "value": fired_value(row, field_name, labels), "text": q.get("dq_text", ""),
            "updated": q.get("dq_updated", ""),
            "status": STATUS_LABELS.get(q.get("dq_status", ""), q.get("dq_status", "")),
            "opened": q.get("dq_opened", ""), "age_days": age,
            "response": q.get("dq_response", ""),
            "link": link(record, labels.event_ids.get(event, ""), form, instance),
            "query_instance": q.get("redcap_repeat_instance", "")})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    order = frame.assign(
        _s=frame["severity"].map({s: i for i, s in enumerate(SEVERITIES)}).fillna(len(SEVERITIES)),
        _t=frame["status"].map({s: i for i, s in enumerate(STATUSES)}).fillna(len(STATUSES)),
        _a=-frame["age_days"].fillna(-1))
    return (order.sort_values(["_t", "_s", "_a", "site", "subject"], kind="stable")[COLUMNS]
            .reset_index(drop=True))


def status_counts(rows: pd.DataFrame, by: str, bands: bool = True) -> pd.DataFrame:
    """Queries per status (and open or answered ones per age band) for each value of `by`."""
    columns = STATUSES + ([label for _, label in AGE_BANDS] if bands else [])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    counts = pd.crosstab(rows[by], rows["status"]).reindex(columns=STATUSES, fill_value=0)
    active = rows[rows["status"].isin(ACTIVE)]
    per_band = (pd.crosstab(active[by], active["age_days"].map(age_band))
                if bands and len(active) else None)
    table = counts if per_band is None else counts.join(per_band, how="left")
    return table.reindex(columns=columns).fillna(0).astype(int).sort_index()
