"""`content=log`: Export Logging as REDCap writes and filters it (redcap-behaviour.md §1).

Every API export leaves a row: a Manage row for design and project reads, a DATA_EXPORT row for
record exports. Rows are dated by their request's start, shown to the minute, newest first.
"""
from __future__ import annotations

from typing import Callable

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.render import Reply
from sync.server.store import MANAGE

HEADER = ["timestamp", "username", "action", "details", "record"]
_RECORD_ACTIONS = {"record_add": "Create record", "record_edit": "Update record",
                   "record_delete": "Delete record"}
_TYPES = ("record", "manage", "user", "export")
EXPORT_DESCRIPTIONS = {
    "project": "Export project information (API)",
    "log": "Export Logging (API)",
    "metadata": "Download data dictionary (API)",
    "event": "Export events (API)",
    "arm": "Export arms (API)",
    "formEventMapping": "Export instrument-event mappings (API)",
    "repeatingFormsEvents": "Export repeating instruments and events (API)",
    "version": "Export REDCap version (API)",
    "user": "Export users (API)",
    "exportFieldNames": "Download export field names (API)",
}
"""The Manage row each API export writes (§1, `API/*/export.php`)."""
DATA_EXPORT = "Export data (API)"


def logged_export(content: str, handler: Callable[[ApiRequest], Reply]
                  ) -> Callable[[ApiRequest], Reply]:
    """`handler`, then the log row REDCap writes for that export (§1: every API export logs)."""
    def export_and_log(api: ApiRequest) -> Reply:
        reply = handler(api)
        if api.design is None or reply.status >= 400:
            return reply
        if content == "record":
            details = (f"export_format: {api.fmt.upper()}, "
                       f"rawOrLabel: {api.get('rawOrLabel') or 'raw'}")
            action, logtype = DATA_EXPORT, "export"
        else:
            action, details, logtype = MANAGE, EXPORT_DESCRIPTIONS[content], "manage"
        with api.store.write() as db:
            api.store.log(db, api.design.project_id, action, details, logtype=logtype,
                          username=api.username, ts=api.started)
        return reply
    return export_and_log


def _wanted(row: dict[str, str], api: ApiRequest) -> bool:
    logtype = api.get("logtype")
    if logtype in _RECORD_ACTIONS and not (row["logtype"] == "record"
                                           and row["action"].startswith(_RECORD_ACTIONS[logtype])):
        return False
    if logtype in _TYPES and row["logtype"] != logtype:
        return False
    if logtype == "manage" and (row["details"].startswith("Download exported")
                                or "PDF (with data)" in row["details"]):
        return False  # §1, Logging.php l.1231
    if logtype and logtype not in _RECORD_ACTIONS and logtype not in _TYPES:
        return False
    begin, end = api.get("beginTime"), api.get("endTime")
    if begin and row["ts"][:16] < begin[:16]:
        return False
    if end and row["ts"][:16] > end[:16]:
        return False
    if api.get("record") and row["record"] != api.get("record"):
        return False
    return not api.get("user") or row["username"] == api.get("user")


def export(api: ApiRequest) -> Reply:
    rows = [{"timestamp": r["ts"][:16], "username": r["username"], "action": r["action"],
             "details": r["details"], "record": r["record"]}
            for r in map(dict, api.store.log_rows(api.project.project_id,
                                                  (api.get("beginTime") or "")[:16]))
            if _wanted(r, api)]
    return render.table(rows, api.fmt, HEADER, root="logs", item="log")
