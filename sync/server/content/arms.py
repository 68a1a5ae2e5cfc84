"""`content=arm`: export, import (with override) and delete arms of a longitudinal project."""
from __future__ import annotations

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import is_number
from sync.server.store import MANAGE


def require_longitudinal(api: ApiRequest, what: str) -> None:
    if not api.project.is_longitudinal:
        raise ApiError(400, f"You cannot {what} for classic projects")


def export(api: ApiRequest) -> Reply:
    """Arms that have at least one event, as REDCap lists them; `arms` narrows the list."""
    require_longitudinal(api, "export arms")
    design = api.project
    wanted = {int(a) for a in api.list("arms") if is_number(a)}
    with_events = {e.arm_num for e in design.events}
    rows = [{"arm_num": num, "name": name} for num, name in design.arms
            if num in with_events and (not wanted or num in wanted)]
    return render.table(rows, api.fmt, ["arm_num", "name"], root="arms")


def import_arms(api: ApiRequest) -> Reply:
    require_longitudinal(api, "import arms")
    rows = parse_rows(api.get("data"), api.fmt)
    arms = []
    for row in rows:
        if not is_number(str(row.get("arm_num", ""))) or not row.get("name", "").strip():
            raise ApiError(400, "The arm_num and name of each arm are required.")
        arms.append((int(row["arm_num"]), row["name"].strip()))
    with api.store.write() as db:
        api.store.replace_arms(db, api.project.project_id, arms, override=api.flag("override"))
        api.store.log(db, api.project.project_id, MANAGE, "Import arms (API)",
                      logtype="manage", username=api.username)
    return render.count(len(arms), api.return_format)


def delete(api: ApiRequest) -> Reply:
    require_longitudinal(api, "delete arms")
    design = api.project
    arms = [int(a) for a in api.list("arms") if is_number(a)]
    known = {num for num, _ in design.arms}
    unknown = [str(a) for a in arms if a not in known]
    if not arms or unknown:
        raise ApiError(400, "The following arms do not exist: " + ", ".join(unknown))
    with api.store.write() as db:
        api.store.delete_arms(db, design.project_id, arms)
        api.store.log(db, design.project_id, MANAGE, "Delete arms (API)",
                      logtype="manage", username=api.username)
    return render.bare_count(len(arms), api.return_format)
