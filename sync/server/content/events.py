"""`content=event`: export, import and delete events; unique names made as REDCap makes them."""
from __future__ import annotations

import re

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.content.arms import require_longitudinal
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import is_number
from sync.server.store import Event, MANAGE

HEADER = ["event_name", "arm_num", "day_offset", "offset_min", "offset_max", "unique_event_name",
          "custom_event_label", "event_id"]
"""Export Events keys in REDCap's order (redcap-behaviour.md §3, `Project.php` l.1963-1972)."""
OFFSETS = ("day_offset", "offset_min", "offset_max")


def unique_event_name(name: str, arm: int, taken: set[str]) -> str:
    """`<first 18 chars of the cleaned name>_arm_<n>`; a taken name gets a letter after it,
    from `b` (`screening_arm_1b`, redcap-behaviour.md §3)."""
    stem = re.sub(r"[^a-z0-9_]", "", re.sub(r"\s+", "_", name.strip().lower()))[:18]
    stem = stem.strip("_") or "event"
    candidate = base = f"{stem}_arm_{arm}"
    suffix = ord("b")
    while candidate in taken:
        candidate = f"{base}{chr(suffix)}"
        suffix += 1
    return candidate


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def export(api: ApiRequest) -> Reply:
    """Export Events; the offsets are listed only when the scheduling module is enabled
    (redcap-behaviour.md §3)."""
    require_longitudinal(api, "export events")
    scheduling = str(api.project.info.get("scheduling_enabled", "0")) == "1"
    header = HEADER if scheduling else [k for k in HEADER if k not in OFFSETS]
    wanted = {int(a) for a in api.list("arms") if is_number(a)}
    rows = [{"event_name": e.event_name, "arm_num": e.arm_num,
             "unique_event_name": e.unique_event_name, "custom_event_label": e.custom_event_label,
             "event_id": e.event_id, "day_offset": _number(e.day_offset),
             "offset_min": _number(e.offset_min), "offset_max": _number(e.offset_max)}
            for e in api.project.events if not wanted or e.arm_num in wanted]
    return render.table([{k: r[k] for k in header} for r in rows], api.fmt, header,
                        root="events")


def _event(row: dict[str, str], arms: set[int]) -> Event:
    arm = row.get("arm_num", "")
    if not is_number(arm) or int(arm) not in arms:
        raise ApiError(400, f"The arm_num '{arm}' of event '{row.get('event_name', '')}' does not "
                            "exist in the project.")
    if not row.get("event_name", "").strip():
        raise ApiError(400, "The event_name of each event is required.")
    def num(key: str) -> float:
        text = row.get(key, "")
        return float(text) if text.strip() else 0.0
    return Event(0, int(arm), row["event_name"].strip(), row.get("unique_event_name", "").strip(),
                 num("day_offset"), num("offset_min"), num("offset_max"),
                 row.get("custom_event_label", "") or "")


def import_events(api: ApiRequest) -> Reply:
    """Import Events as REDCap does (redcap-behaviour.md §3, `Classes/Event.php`): with
    `override=0` a row updates the event its `unique_event_name` names, and a row without one (or
    naming no event) adds a new event named from its `event_name`, letter-suffixed when taken;
    `override=1` first deletes every event with its mapping and repeating setup, leaving their
    data orphaned."""
    require_longitudinal(api, "import events")
    design = api.project
    arms = {num for num, _ in design.arms}
    events = [_event(row, arms) for row in parse_rows(api.get("data"), api.fmt)]
    with api.store.write() as db:
        if api.flag("override"):
            api.store.drop_events(db, design.project_id)
            known: dict[str, Event] = {}
        else:
            known = {e.unique_event_name: e for e in design.events}
        taken = set(known)
        for event in events:
            if event.unique_event_name in known:
                event.event_id = known[event.unique_event_name].event_id
                api.store.update_event(db, event)
                continue
            event.unique_event_name = unique_event_name(event.event_name, event.arm_num, taken)
            taken.add(event.unique_event_name)
            api.store.add_event(db, design.project_id, event)
        api.store.log(db, design.project_id, MANAGE, "Import events (API)",
                      logtype="manage", username=api.username)
    return render.count(len(events), api.return_format)


def delete(api: ApiRequest) -> Reply:
    require_longitudinal(api, "delete events")
    design = api.project
    names = api.list("events")
    unknown = [n for n in names if design.event_by_name(n) is None]
    if not names or unknown:
        raise ApiError(400, "The following events do not exist: " + ", ".join(unknown))
    with api.store.write() as db:
        api.store.delete_events(db, design.project_id,
                                [e.event_id for e in design.events if e.unique_event_name in names])
        api.store.log(db, design.project_id, MANAGE, "Delete events (API)",
                      logtype="manage", username=api.username)
    return render.bare_count(len(names), api.return_format)
