"""`content=file`: export, import and delete the file stored in a record's file field.

As in REDCap the field's stored value is the document id; exports show the file name.
"""
from __future__ import annotations

import mimetypes

from sync.server.app import ApiRequest
from sync.server.render import ApiError, Reply
from sync.server.rows import is_number
from sync.server.store import Design

EMPTY_JSON = Reply("", media_type="application/json")


def _target(api: ApiRequest) -> tuple[Design, str, int, int, str]:
    """(design, record, event_id, instance, field) named by the request, checked."""
    design = api.project
    field_name, record = api.get("field"), api.get("record")
    meta = design.by_name.get(field_name)
    if meta is None or meta["field_type"] != "file":
        raise ApiError(400, f"The field '{field_name}' is not a file upload field.")
    if record not in api.store.record_names(design.project_id):
        raise ApiError(400, f"The record '{record}' does not exist.")
    event_id = design.default_event_id()
    if design.is_longitudinal:
        event = design.event_by_name(api.get("event"))
        if event is None:
            raise ApiError(400, f"The event '{api.get('event')}' is not valid.")
        event_id = event.event_id
    instance = api.integer("repeat_instance") or 1
    return design, record, event_id, instance, field_name


def _stored_doc(api: ApiRequest, design: Design, record: str, event_id: int, instance: int,
                field_name: str) -> int | None:
    for d in api.store.data_rows(design.project_id, [record]):
        if (d["event_id"], d["instance"], d["field_name"]) == (event_id, instance, field_name):
            return int(d["value"]) if is_number(d["value"]) else None
    return None


def export_file(api: ApiRequest) -> Reply:
    design, record, event_id, instance, field_name = _target(api)
    doc_id = _stored_doc(api, design, record, event_id, instance, field_name)
    doc = api.store.document(design.project_id, doc_id) if doc_id else None
    if doc is None:
        raise ApiError(400, "There is no file to download for this record")
    mime = mimetypes.guess_type(doc["name"])[0] or "application/octet-stream"
    return Reply(bytes(doc["content"]),
                 media_type=f'{mime}; name="{doc["name"]}"; charset=UTF-8')


def import_file(api: ApiRequest) -> Reply:
    design, record, event_id, instance, field_name = _target(api)
    if "file" not in api.files:
        raise ApiError(400, "No valid file was uploaded.")
    name, content = api.files["file"]
    old = _stored_doc(api, design, record, event_id, instance, field_name)
    with api.store.write() as db:
        if old:
            api.store.delete_document(db, design.project_id, old, kind=2)
        doc_id = api.store.add_upload(db, design.project_id, name, content)
        api.store.put_values(db, design.project_id,
                             [(record, event_id, instance, field_name, [str(doc_id)])])
        api.store.log(db, design.project_id, f"Upload document {record} (API)",
                      f"{field_name} = '{doc_id}'", record, username=api.username)
    return EMPTY_JSON


def delete_file(api: ApiRequest) -> Reply:
    design, record, event_id, instance, field_name = _target(api)
    old = _stored_doc(api, design, record, event_id, instance, field_name)
    if old is None:
        raise ApiError(400, "There is no file to delete for this record")
    with api.store.write() as db:
        api.store.delete_document(db, design.project_id, old, kind=2)
        api.store.put_values(db, design.project_id, [(record, event_id, instance, field_name, [])])
        api.store.log(db, design.project_id, f"Delete document {record} (API)",
                      f"{field_name} = ''", record, username=api.username)
    return EMPTY_JSON
