"""The digest as one HTML file: summary on top, one query table, filter and sort inlined.

Nothing is fetched when the page opens (no fonts, scripts or styles from elsewhere), so it
works offline and as a mail attachment. Every value from REDCap is HTML-escaped.
"""
from __future__ import annotations

from datetime import datetime
from html import escape
from importlib.resources import files

import pandas as pd

from sync.digest.table import (ACTIVE, AGE_BANDS, SEVERITIES, STATUSES, age_band,
                               status_counts)

HERE = files("sync.digest")
TABLE_HEADERS: tuple[tuple[str, str, str], ...] = (
    # (column, header, sort type)
    ("severity", "Severity", "number"), ("site", "Site", "text"), ("subject", "Subject", "text"),
    ("event", "Event", "text"), ("form", "Form", "text"), ("field", "Field", "text"),
    ("instance", "Instance", "number"), ("value", "Value now", "text"),
    ("text", "Query", "text"), ("status", "Status", "number"), ("age_days", "Age (days)", "number"),
    ("response", "Site response", "text"))


def _cell(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _count_table(table: pd.DataFrame, caption: str, label: str, table_id: str,
                 severities: dict[str, str] | None = None) -> str:
    heads = "".join(f"<th class='n'>{escape(c)}</th>" for c in table.columns)
    extra = "<th>Severity</th>" if severities is not None else ""
    lines = [f"<table id='{table_id}'><caption>{escape(caption)}</caption><thead><tr>"
             f"<th>{escape(label)}</th>{extra}{heads}</tr></thead><tbody>"]
    for name, counts in table.iterrows():
        sev = ""
        if severities is not None:
            level = severities.get(str(name), "")
            sev = f"<td><span class='badge sev-{escape(level)}'>{escape(level)}</span></td>"
        cells = "".join(f"<td class='n{' zero' if v == 0 else ''}'>{v}</td>" for v in counts)
        lines.append(f"<tr><td>{escape(str(name))}</td>{sev}{cells}</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def _options(values: list[str], everything: str = "All") -> str:
    return (f"<option value=''>{everything}</option>"
            + "".join(f"<option value='{escape(v)}'>{escape(v)}</option>" for v in values))


def _filters(rows: pd.DataFrame) -> str:
    sites = sorted(set(rows["site"]))
    rules = sorted(set(rows["rule"]))
    severities = [s for s in SEVERITIES if s in set(rows["severity"])]
    statuses = ("<option value='Open|Answered' selected>Open or answered</option>"
                + _options(STATUSES))
    return ("<form class='filters' onsubmit='return false'>"
            f"<label>Site<select data-filter='site' id='filter-site'>{_options(sites)}</select></label>"
            f"<label>Rule<select data-filter='rule' id='filter-rule'>{_options(rules)}</select></label>"
            f"<label>Severity<select data-filter='severity' id='filter-severity'>{_options(severities)}</select></label>"
            f"<label>Status<select data-filter='status' id='filter-status'>{statuses}</select></label>"
            "<label>Search<input id='search' type='search' placeholder='subject, text, value'></label>"
            f"<span class='note'><b id='shown'>{len(rows)}</b> of {len(rows)} queries shown</span>"
            "</form>")


def _row(row: dict) -> str:
    severity, status = _cell(row["severity"]), _cell(row["status"])
    order = {s: i for i, s in enumerate(SEVERITIES)}
    attributes = "".join(f" data-{k}='{escape(_cell(row[k]))}'"
                         for k in ("site", "rule", "status", "severity"))
    updated = (f"<span class='updated'>text updated {escape(_cell(row['updated']))}</span>"
               if _cell(row["updated"]) else "")
    form = (f"<a class='entry' href='{escape(row['link'])}' target='_blank' rel='noopener'>"
            f"{escape(_cell(row['form']) or '(form)')}</a>")
    cells = {
        "severity": f"<td data-sort='{order.get(severity, len(order))}'>"
                    f"<span class='badge sev-{escape(severity)}'>{escape(severity)}</span>"
                    f"<br><small>{escape(_cell(row['rule']))}</small></td>",
        "form": f"<td>{form}</td>",
        "value": f"<td class='value'>{escape(_cell(row['value']))}</td>",
        "text": f"<td class='text'>{escape(_cell(row['text']))}{updated}</td>",
        "status": f"<td data-sort='{STATUSES.index(status) if status in STATUSES else 9}'>"
                  f"<span class='badge st-{escape(status)}'>{escape(status)}</span></td>",
        "age_days": f"<td class='n' data-sort='{_cell(row['age_days'])}' "
                    f"title='opened {escape(_cell(row['opened']))}'>{_cell(row['age_days'])}</td>",
    }
    tds = "".join(cells.get(column, f"<td>{escape(_cell(row[column]))}</td>")
                  for column, _, _ in TABLE_HEADERS)
    return f"<tr{attributes}>{tds}</tr>"


def render_page(rows: pd.DataFrame, title: str, generated: datetime) -> str:
    """The whole digest page."""
    totals = rows["status"].value_counts() if len(rows) else pd.Series(dtype=int)
    active = rows[rows["status"].isin(ACTIVE)] if len(rows) else rows
    bands = active["age_days"].map(age_band).value_counts() if len(active) else pd.Series(dtype=int)
    cards = "".join(f"<div class='card' id='total-{s.lower()}'>{s}<b>{int(totals.get(s, 0))}</b></div>"
                    for s in STATUSES)
    band_text = "; ".join(f"{label}: {int(bands.get(label, 0))}" for _, label in AGE_BANDS)
    severities = dict(zip(rows["rule"], rows["severity"])) if len(rows) else {}
    head = "".join(f"<th data-type='{kind}'>{escape(label)}</th>" for _, label, kind in TABLE_HEADERS)
    body = "\n".join(_row(row) for row in rows.to_dict("records"))
    css = (HERE / "digest.css").read_text(encoding="utf-8")
    script = (HERE / "digest.js").read_text(encoding="utf-8")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{css}</style></head><body>
<h1>{escape(title)}</h1>
<p class="meta">Generated {generated:%Y-%m-%d %H:%M}. {len(rows)} queries, {len(active)} open or answered.
Each form name opens that form and instance in REDCap (log in first).</p>
<section id="summary"><div class="cards">{cards}</div>
<p class="note" id="age-bands">Open or answered queries by days since opened: {escape(band_text)}.</p>
<div class="grid">{_count_table(status_counts(rows, "site"), "By site", "Site", "by-site")}
<div class="scroll">{_count_table(status_counts(rows, "rule", bands=False), "By rule", "Rule",
                                 "by-rule", severities)}</div></div></section>
<section id="list"><h2>Queries</h2>{_filters(rows)}
<table id="queries"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></section>
<script>{script}</script>
</body></html>
"""
