"""`content=fileRepository`: folders and files kept in the server's SQLite file."""
from __future__ import annotations

import mimetypes

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.render import ApiError, Reply


def _folder(api: ApiRequest) -> int | None:
    return api.integer("folder_id") or None


def create_folder(api: ApiRequest) -> Reply:
    name = api.get("name").strip()
    if not name:
        raise ApiError(400, "The parameter 'name' is missing.")
    with api.store.write() as db:
        folder_id = api.store.add_document(db, api.project.project_id, name, None, _folder(api))
    return render.table([{"folder_id": folder_id}], api.fmt, ["folder_id"], root="items")


def list_files(api: ApiRequest) -> Reply:
    rows = [{"folder_id": d["doc_id"], "name": d["name"]} if d["is_folder"]
            else {"doc_id": d["doc_id"], "name": d["name"]}
            for d in api.store.documents(api.project.project_id, _folder(api))]
    return render.table(rows, api.fmt, ["folder_id", "doc_id", "name"], root="items")


def export_file(api: ApiRequest) -> Reply:
    doc = api.store.document(api.project.project_id, api.integer("doc_id") or 0)
    if doc is None or doc["is_folder"]:
        raise ApiError(400, "The doc_id provided does not exist in the File Repository.")
    mime = mimetypes.guess_type(doc["name"])[0] or "application/octet-stream"
    return Reply(bytes(doc["content"]), media_type=f'{mime}; name="{doc["name"]}"; charset=UTF-8')


def import_file(api: ApiRequest) -> Reply:
    if "file" not in api.files:
        raise ApiError(400, "No file was uploaded.")
    name, content = api.files["file"]
    with api.store.write() as db:
        api.store.add_document(db, api.project.project_id, name, content, _folder(api))
    return Reply("", media_type="text/plain")


def delete_file(api: ApiRequest) -> Reply:
    with api.store.write() as db:
        if not api.store.delete_document(db, api.project.project_id,
                                         api.integer("doc_id") or 0):
            raise ApiError(400, "The doc_id provided does not exist in the File Repository.")
    return Reply("", media_type="text/plain")
