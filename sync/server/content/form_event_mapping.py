"""`content=formEventMapping`: which instruments each event holds (longitudinal only)."""
from __future__ import annotations

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.content.arms import require_longitudinal
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import is_number
from sync.server.store import MANAGE

HEADER = ["arm_num", "unique_event_name", "form"]


def export(api: ApiRequest) -> Reply:
    require_longitudinal(api, "export instrument-event mappings")
    design = api.project
    wanted = {int(a) for a in api.list("arms") if is_number(a)}
    rows = [{"arm_num": e.arm_num, "unique_event_name": e.unique_event_name, "form": form}
            for e in design.events if not wanted or e.arm_num in wanted
            for form in design.form_events.get(e.event_id, [])]
    return render.table(rows, api.fmt, HEADER, root="items")


def import_mapping(api: ApiRequest) -> Reply:
    """Replace the whole mapping with the uploaded pairs; returns how many were given."""
    require_longitudinal(api, "import instrument-event mappings")
    design = api.project
    pairs = []
    for row in parse_rows(api.get("data"), api.fmt):
        event = design.event_by_name(row.get("unique_event_name", "").strip())
        form = row.get("form", "").strip()
        if event is None:
            raise ApiError(400, f"The unique event name '{row.get('unique_event_name', '')}' is "
                                "not valid.")
        if form not in design.form_names:
            raise ApiError(400, f"The form '{form}' does not exist in the project.")
        pairs.append((event.event_id, form))
    with api.store.write() as db:
        api.store.replace_form_events(db, design.project_id, pairs, None)
        api.store.log(db, design.project_id, MANAGE,
                      "Import instrument-event mappings (API)", logtype="manage", username=api.username)
    return render.count(len(pairs), api.return_format)
