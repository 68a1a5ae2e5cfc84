"""`content=user`, `userRole`, `userRoleMapping`: project users and roles, stored as items."""
from __future__ import annotations

import secrets
from typing import Any

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply

RIGHTS: tuple[str, ...] = (
    "design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
    "manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool",
    "logging", "email_logging", "file_repository", "data_quality_create", "data_quality_execute",
    "api_export", "api_import", "api_modules", "mobile_app", "mobile_app_download_data",
    "record_create", "record_rename", "record_delete", "lock_records_customization",
    "lock_records", "lock_records_all_forms",
)
USER_KEYS = ("username", "email", "firstname", "lastname", "expiration", "data_access_group",
             "data_access_group_id") + RIGHTS + ("forms", "forms_export")


def _user(body: dict[str, Any], api_user: bool) -> dict[str, Any]:
    user: dict[str, Any] = {k: "" for k in USER_KEYS}
    user.update({k: 1 if api_user else 0 for k in RIGHTS})
    user["email"] = body.get("email") or f"{body['username']}@example.org"
    user.update({k: v for k, v in body.items() if k in USER_KEYS and v != ""})
    for key in RIGHTS:
        user[key] = int(user[key]) if str(user[key]).lstrip("-").isdigit() else user[key]
    return user


def export_users(api: ApiRequest) -> Reply:
    users = [_user(u, i == 0) for i, u in enumerate(api.store.items(api.project.project_id,
                                                                     "user"))]
    return render.table(users, api.fmt, list(USER_KEYS), root="users")


def import_users(api: ApiRequest) -> Reply:
    rows = parse_rows(api.get("data"), api.fmt)
    stored = {u["username"]: u for u in api.store.items(api.project.project_id, "user")}
    with api.store.write() as db:
        for row in rows:
            name = row.get("username", "").strip()
            if not name:
                raise ApiError(400, "The username is missing.")
            body = {**stored.get(name, {}), **{k: v for k, v in row.items() if v != ""},
                    "username": name}
            api.store.put_item(db, api.project.project_id, "user", name, body)
        api.store.log(db, api.project.project_id, "Manage/Design", "Import users (API)",
                      logtype="user")
    return render.count(len(rows), api.return_format)


def delete_users(api: ApiRequest) -> Reply:
    names = api.list("users")
    with api.store.write() as db:
        deleted = sum(api.store.delete_item(db, api.project.project_id, "user", n) for n in names)
    return render.count(deleted, api.return_format)


def export_roles(api: ApiRequest) -> Reply:
    roles = api.store.items(api.project.project_id, "role")
    rows = [{"unique_role_name": r.get("unique_role_name", ""),
             "role_label": r.get("role_label") or r.get("role_name", ""),
             **{k: r.get(k, 0) for k in RIGHTS}} for r in roles]
    return render.table(rows, api.fmt, ["unique_role_name", "role_label", *RIGHTS], root="roles")


def import_roles(api: ApiRequest) -> Reply:
    rows = parse_rows(api.get("data"), api.fmt)
    with api.store.write() as db:
        for row in rows:
            unique = row.get("unique_role_name", "").strip() or \
                "U-" + secrets.token_hex(5).upper()[:10]
            api.store.put_item(db, api.project.project_id, "role", unique,
                               {**row, "unique_role_name": unique})
    return render.count(len(rows), api.return_format)


def delete_roles(api: ApiRequest) -> Reply:
    names = api.list("roles")
    with api.store.write() as db:
        deleted = sum(api.store.delete_item(db, api.project.project_id, "role", n) for n in names)
    return render.count(deleted, api.return_format)


def export_role_mapping(api: ApiRequest) -> Reply:
    rows = [{"username": u["username"], "unique_role_name": u.get("unique_role_name", "")}
            for u in api.store.items(api.project.project_id, "user")]
    return render.table(rows, api.fmt, ["username", "unique_role_name"], root="items")


def import_role_mapping(api: ApiRequest) -> Reply:
    return assign_user_attribute(api, "unique_role_name")


def assign_user_attribute(api: ApiRequest, key: str) -> Reply:
    """Set one attribute (role, DAG) of existing users."""
    rows = parse_rows(api.get("data"), api.fmt)
    stored = {u["username"]: u for u in api.store.items(api.project.project_id, "user")}
    with api.store.write() as db:
        for row in rows:
            name = row.get("username", "").strip()
            if name not in stored:
                raise ApiError(400, f"The user '{name}' is not a user of this project.")
            api.store.put_item(db, api.project.project_id, "user", name,
                               {**stored[name], key: row.get(key, "")})
    return render.count(len(rows), api.return_format)
