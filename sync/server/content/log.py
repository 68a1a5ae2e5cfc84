"""`content=log`: Export Logging, newest first, with REDCap's filters (§6.4)."""
from __future__ import annotations

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.render import Reply

HEADER = ["timestamp", "username", "action", "details", "record"]
_RECORD_ACTIONS = {"record_add": "Create record", "record_edit": "Update record",
                   "record_delete": "Delete record"}


def _wanted(row: dict[str, str], api: ApiRequest) -> bool:
    logtype = api.get("logtype")
    if logtype in _RECORD_ACTIONS and not row["action"].startswith(_RECORD_ACTIONS[logtype]):
        return False
    if logtype in ("record", "manage", "user") and row["logtype"] != logtype:
        return False
    if logtype and logtype not in _RECORD_ACTIONS and logtype not in ("record", "manage", "user"):
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
            for r in map(dict, api.store.log_rows(api.project.project_id)) if _wanted(r, api)]
    return render.table(rows, api.fmt, HEADER, root="logs", item="log")
