"""`content=generateNextRecordName`: the next auto-number (max numeric record + 1)."""
from __future__ import annotations

from sync.server.app import ApiRequest
from sync.server.render import Reply


def generate_next_record_name(api: ApiRequest) -> Reply:
    design = api.project
    numbers = [int(r) for r in api.store.record_names(design.project_id) if r.isdigit()]
    return Reply(str(max(numbers + [design.next_record - 1, 0]) + 1), media_type="text/plain")
