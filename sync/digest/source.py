"""What the digest reads from REDCap: the queries, the values behind them, the labels, the links.

Every query is listed, whatever its status, with its site (data access group when the project
has them), the project's own labels, and the value the query is about as REDCap holds it now.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd

from sync.connection import Connection
from sync.digest.links import data_entry_link
from sync.digest.page import render_page
from sync.digest.table import ACTIVE, ROW_KEY, Labels, digest_rows
from sync.errors import EcrfError
from sync.queries import QUERY_EVENT, QUERY_INSTRUMENT

log = logging.getLogger(__name__)


@dataclass
class Digest:
    """The rendered page and the rows behind it."""

    html: str
    rows: pd.DataFrame

    @property
    def active(self) -> int:
        """Open or answered queries: what a monitor has to act on."""
        return int(self.rows["status"].isin(ACTIVE).sum())


def rule_severities(rules_path: Path | None) -> dict[str, str]:
    """Each rule's severity from the catalogue; an unreadable catalogue leaves them blank."""
    if rules_path is None:
        return {}
    from sync.rules import load_rules
    try:
        return {rule.rule_id: rule.severity for rule in load_rules(rules_path)}
    except EcrfError as exc:
        log.warning("severities left blank: %s", exc)
        return {}


def queries_report(conn: Connection, rules_path: Path | None = None,
                   now: datetime | None = None) -> Digest:
    """Pull every dq_query row, the values behind them and the labels; render the digest."""
    now = now or datetime.now()
    project = conn.project
    info = conn.call("export project info", project.export_project_info)
    version = conn.call("export version", project.export_version)
    metadata = conn.call("export metadata", project.export_metadata)
    longitudinal = str(info.get("is_longitudinal", "0")) == "1"
    events = conn.call("export events", project.export_events) if longitudinal else []
    instruments = conn.call("export instruments", project.export_instruments)
    pk = metadata[0]["field_name"]
    rows = conn.call("export queries", project.export_records, format_type="json",
                     forms=[QUERY_INSTRUMENT], fields=[pk],
                     events=[QUERY_EVENT] if longitudinal else None,
                     export_data_access_groups=True)
    queries = _query_frame(rows, pk)
    link = partial(data_entry_link, project.url, str(version), str(info["project_id"]))
    digest = digest_rows(queries, _data_rows(conn, queries, pk, longitudinal),
                         Labels.from_redcap(metadata, instruments, events),
                         rule_severities(rules_path), link, now)
    title = f"Data queries: {info.get('project_title', '')}"
    return Digest(render_page(digest, title, now), digest)


def _query_frame(rows: list[dict], pk: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows).fillna("").astype(str) if rows else pd.DataFrame()
    if frame.empty or "redcap_repeat_instrument" not in frame:
        return pd.DataFrame(columns=["record_id", "dq_status"])
    frame = frame.rename(columns={pk: "record_id"})
    if "redcap_data_access_group" in frame:
        group = frame.groupby("record_id")["redcap_data_access_group"].transform("max")
        frame["redcap_data_access_group"] = group
    return frame[frame["redcap_repeat_instrument"] == QUERY_INSTRUMENT].reset_index(drop=True)


def _data_rows(conn: Connection, queries: pd.DataFrame, pk: str,
               longitudinal: bool) -> dict[ROW_KEY, dict[str, str]]:
    """The rows the queries point at, keyed by (record, event, instrument, instance)."""
    if queries.empty:
        return {}
    fields = sorted({f for f in queries.get("dq_field", pd.Series(dtype=str)) if f})
    events = sorted({e for e in queries.get("dq_event", pd.Series(dtype=str)) if e})
    records = sorted(set(queries["record_id"]))
    rows = conn.call("export queried values", conn.project.export_records, format_type="json",
                     records=records, fields=[pk, *fields],
                     events=events if longitudinal and events else None)
    keyed: dict[ROW_KEY, dict[str, str]] = {}
    for row in rows:
        row = {k: str(v) for k, v in row.items()}
        keyed[(row[pk], row.get("redcap_event_name", ""), row.get("redcap_repeat_instrument", ""),
               row.get("redcap_repeat_instance", ""))] = row
    return keyed
