"""`content=repeatingFormsEvents`: the repeating instruments and events of a project."""
from __future__ import annotations

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import unique_event
from sync.server.store import MANAGE


def export(api: ApiRequest) -> Reply:
    design = api.project
    header = (["event_name"] if design.is_longitudinal else []) + ["form_name",
                                                                   "custom_form_label"]
    rows = [{k: v for k, v in (("event_name", unique_event(design, event_id)),
                               ("form_name", form), ("custom_form_label", label))
             if k in header} for event_id, form, label in design.repeating]
    return render.table(rows, api.fmt, header, root="items")


def import_repeating(api: ApiRequest) -> Reply:
    """Replace the repeating setup; a blank form_name makes the whole event repeat."""
    design = api.project
    setup = []
    for row in parse_rows(api.get("data"), api.fmt):
        form = (row.get("form_name") or "").strip()
        if design.is_longitudinal:
            event = design.event_by_name((row.get("event_name") or "").strip())
            if event is None:
                raise ApiError(400, f"The event name '{row.get('event_name', '')}' is not valid.")
            event_id = event.event_id
        else:
            event_id = design.default_event_id()
        if form and form not in design.form_names:
            raise ApiError(400, f"The form name '{form}' is not valid.")
        setup.append((event_id, form, (row.get("custom_form_label") or "").strip()))
    with api.store.write() as db:
        api.store.replace_repeating(db, design.project_id, setup)
        api.store.log(db, design.project_id, MANAGE,
                      "Set up repeating instruments/events (API)", logtype="manage", username=api.username)
    return render.count(len(setup), api.return_format)
