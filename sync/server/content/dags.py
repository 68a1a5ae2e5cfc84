"""`content=dag` and `userDagMapping`: data access groups and who belongs to which."""
from __future__ import annotations

import re

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.content.users import assign_user_attribute, delete_named
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply


def unique_group_name(label: str) -> str:
    """REDCap's unique DAG name: lower case, `_` for blanks, other signs dropped, 18 chars."""
    return re.sub(r"[^a-z0-9_]", "", label.strip().lower().replace(" ", "_"))[:18]


def export(api: ApiRequest) -> Reply:
    rows = [{"data_access_group_name": d["data_access_group_name"],
             "unique_group_name": d["unique_group_name"], "data_access_group_id": i}
            for i, d in enumerate(api.store.items(api.project.project_id, "dag"), start=1)]
    return render.table(rows, api.fmt, ["data_access_group_name", "unique_group_name",
                                        "data_access_group_id"], root="dags")


def import_dags(api: ApiRequest) -> Reply:
    rows = parse_rows(api.get("data"), api.fmt)
    with api.store.write() as db:
        for row in rows:
            label = row.get("data_access_group_name", "").strip()
            if not label:
                raise ApiError(400, "The data_access_group_name is missing.")
            unique = row.get("unique_group_name", "").strip() or unique_group_name(label)
            api.store.put_item(db, api.project.project_id, "dag", unique,
                               {"data_access_group_name": label, "unique_group_name": unique})
    return render.count(len(rows), api.return_format)


def delete(api: ApiRequest) -> Reply:
    return delete_named(api, "dag", "dags")


def export_mapping(api: ApiRequest) -> Reply:
    rows = [{"username": u["username"],
             "redcap_data_access_group": u.get("redcap_data_access_group", "")}
            for u in api.store.items(api.project.project_id, "user")]
    return render.table(rows, api.fmt, ["username", "redcap_data_access_group"], root="items")


def import_mapping(api: ApiRequest) -> Reply:
    return assign_user_attribute(api, "redcap_data_access_group")
