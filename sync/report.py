"""Stage 6, report: the monitor's digest of open and answered data queries.

One HTML page, grouped by site and form, oldest first, each query with its age in days and a
link to the record's home page in REDCap, so a monitor can work through it from top to bottom.
The site is the record's data access group when the project has them, else the part of the
subject id before the first dash (`01-007` is site `01`).
"""
from __future__ import annotations

import html
from datetime import datetime
from urllib.parse import urlencode

import pandas as pd

from sync.connection import Connection
from sync.queries import ANSWERED, OPEN, QUERY_EVENT, QUERY_INSTRUMENT, STATUS_LABELS

COLUMNS = ["site", "form", "record_id", "dq_field", "dq_event", "dq_rule", "status", "age_days",
           "dq_opened", "dq_text", "dq_response", "link"]


def record_link(api_url: str, redcap_version: str, project_id: str, record: str) -> str:
    """REDCap's Record Home page of one record, built from the API URL like REDCap builds it."""
    base = api_url[: -len("api/")] if api_url.endswith("api/") else api_url
    query = urlencode({"pid": project_id, "id": record})
    return f"{base}redcap_v{redcap_version}/DataEntry/record_home.php?{query}"


def open_queries(queries: pd.DataFrame, form_of: dict[str, str], now: datetime,
                 link: callable) -> pd.DataFrame:
    """Open and Answered queries with site, form, age and link, oldest first."""
    rows = queries[queries["dq_status"].isin([OPEN, ANSWERED])].copy()
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    groups = rows.get("redcap_data_access_group", pd.Series("", index=rows.index)).fillna("")
    rows["site"] = groups.where(groups != "", rows["record_id"].str.split("-").str[0])
    rows["form"] = rows["dq_field"].map(form_of).fillna("")
    opened = pd.to_datetime(rows["dq_opened"], errors="coerce", format="%Y-%m-%d %H:%M")
    rows["age_days"] = (now - opened).dt.days.astype("Int64")
    rows["status"] = rows["dq_status"].map(STATUS_LABELS)
    rows["link"] = rows["record_id"].map(link)
    return rows.sort_values(["site", "form", "dq_opened", "record_id"])[COLUMNS]


def render_html(digest: pd.DataFrame, title: str, generated: datetime) -> str:
    """The digest as a self-contained HTML page, one table per site and form."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(digest)} open or answered queries, generated {generated:%Y-%m-%d %H:%M}.</p>"]
    for (site, form), group in digest.groupby(["site", "form"], sort=True):
        parts.append(f"<h2>Site {html.escape(str(site))}, form {html.escape(str(form) or '(none)')}"
                     f" ({len(group)})</h2><table><tr><th>Record</th><th>Field</th><th>Event</th>"
                     "<th>Rule</th><th>Status</th><th>Age (days)</th><th>Query</th>"
                     "<th>Site response</th></tr>")
        for row in group.itertuples(index=False):
            parts.append(
                f"<tr><td><a href='{html.escape(row.link)}'>{html.escape(row.record_id)}</a></td>"
                f"<td>{html.escape(row.dq_field)}</td><td>{html.escape(row.dq_event)}</td>"
                f"<td>{html.escape(row.dq_rule)}</td><td>{html.escape(str(row.status))}</td>"
                f"<td>{'' if pd.isna(row.age_days) else row.age_days}</td>"
                f"<td>{html.escape(row.dq_text)}</td><td>{html.escape(row.dq_response)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def queries_report(conn: Connection, now: datetime | None = None) -> tuple[str, int]:
    """Pull every dq_query row and render the monitor's digest; returns (html, query count)."""
    now = now or datetime.now()
    project = conn.project
    info = conn.call("export project info", project.export_project_info)
    version = conn.call("export version", project.export_version)
    metadata = conn.call("export metadata", project.export_metadata)
    pk = metadata[0]["field_name"]
    rows = conn.call("export queries", project.export_records, format_type="json",
                     forms=[QUERY_INSTRUMENT], fields=[pk], events=[QUERY_EVENT])
    frame = pd.DataFrame.from_records(rows).fillna("").astype(str) if rows else pd.DataFrame()
    if frame.empty or "dq_status" not in frame:
        frame = pd.DataFrame(columns=["record_id", "dq_status", "dq_field", "dq_opened"])
    frame = frame.rename(columns={pk: "record_id"})
    frame = frame[frame.get("redcap_repeat_instrument", "") == QUERY_INSTRUMENT] if len(frame) else frame
    form_of = {m["field_name"]: m["form_name"] for m in metadata}
    digest = open_queries(frame, form_of, now, lambda record: record_link(
        project.url, str(version), str(info["project_id"]), record))
    title = f"Data queries: {info.get('project_title', '')}"
    return render_html(digest, title, now), len(digest)
