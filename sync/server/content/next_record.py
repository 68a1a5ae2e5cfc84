"""`content=generateNextRecordName`: the next auto-number, max numeric record + 1 (deleted
records are not remembered: PyCap's doctest gets '3' after deleting record 3)."""
from __future__ import annotations

from sync.server.app import ApiRequest
from sync.server.render import Reply
from sync.server.rows import is_number


def generate_next_record_name(api: ApiRequest) -> Reply:
    design = api.project
    numbers = [int(r) for r in api.store.record_names(design.project_id) if is_number(r)]
    return Reply(str(max(numbers + [0]) + 1), media_type="text/plain")
