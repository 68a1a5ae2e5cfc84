"""`content=user`, `userRole`, `userRoleMapping`: project users and roles, stored as items."""
from __future__ import annotations

import re
import secrets
from typing import Any

from sync.crf.redcap_spec import USER_RIGHTS as RIGHTS
from sync.crf.redcap_spec import parse_form_rights
from sync.server import render
from sync.server.app import ApiRequest
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import is_number
from sync.server.store import API_USER

USER_KEYS = ("username", "email", "firstname", "lastname", "expiration", "data_access_group",
             "data_access_group_id") + RIGHTS + ("forms", "forms_export")


ODM_RIGHTS = {"graphical": "stats_and_charts", "participants": "manage_survey_participants",
              "data_logging": "logging", "data_quality_design": "data_quality_create",
              "lock_record_customize": "lock_records_customization", "lock_record": "lock_records",
              "lock_record_multiform": "lock_records_all_forms", "role_name": "role_label"}
"""Project XML role attributes -> the API's names for the same rights (`UserRights.php`)."""


def form_rights(text: Any, forms: list[str], default: int) -> dict[str, int]:
    """`[form_1,2][form_2,0]` (project XML), `form_1:2,form_2:0` (the API's CSV, as REDCap
    exports and imports it) or a dict (API JSON) -> {form: right}."""
    if isinstance(text, dict):
        return {str(k): int(v) for k, v in text.items()}
    pairs = re.findall(r"\[([a-z0-9_]+),(\d+)\]", str(text or ""))
    found = ({form: int(right) for form, right in pairs} if pairs else
             {form: int(right) for form, right in parse_form_rights(str(text or "")).items()
              if right.isdigit()})
    return {form: found.get(form, default) for form in forms}


def _rights(body: dict[str, Any], default: int, forms: list[str]) -> dict[str, Any]:
    named = {ODM_RIGHTS.get(k, k): v for k, v in body.items()}
    rights: dict[str, Any] = {k: named.get(k, default) for k in RIGHTS}
    rights["forms"] = form_rights(named.get("forms", named.get("data_entry")), forms, default)
    rights["forms_export"] = form_rights(named.get("forms_export",
                                                   named.get("data_export_instruments")),
                                         forms, default)
    return rights


def _flat_forms(rows: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """JSON keeps the form rights as objects; csv and xml write `form:right` lists."""
    if fmt == "json":
        return rows
    return [{k: ",".join(f"{f}:{r}" for f, r in v.items()) if isinstance(v, dict) else v
             for k, v in row.items()} for row in rows]


def _users(api: ApiRequest) -> list[dict[str, Any]]:
    forms = api.project.form_names
    users = []
    for body in api.store.items(api.project.project_id, "user"):
        user: dict[str, Any] = {k: body.get(k, "") for k in USER_KEYS[:7]}
        user["email"] = user["email"] or f"{body['username']}@example.org"
        user.update(_rights(body, 1 if body["username"] == API_USER else 0, forms))
        for key in RIGHTS:
            text = str(user[key])
            user[key] = int(text) if is_number(text.lstrip("-")) else user[key]
        users.append(user)
    return sorted(users, key=lambda u: u["username"].lower())


def export_users(api: ApiRequest) -> Reply:
    return render.table(_flat_forms(_users(api), api.fmt), api.fmt, list(USER_KEYS),
                        root="users")


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
            api.store.log(db, api.project.project_id, "Add user " if name not in stored else
                          "Edit user ", f"user = '{name}'", logtype="user", username=api.username)
    return render.count(len(rows), api.return_format)


def delete_named(api: ApiRequest, kind: str, parameter: str) -> Reply:
    """Delete the stored `kind` items named in the `parameter` list; REDCap answers a bare count."""
    names = api.list(parameter)
    with api.store.write() as db:
        deleted = sum(api.store.delete_item(db, api.project.project_id, kind, n) for n in names)
    return render.bare_count(deleted, api.return_format)


def delete_users(api: ApiRequest) -> Reply:
    return delete_named(api, "user", "users")


def export_roles(api: ApiRequest) -> Reply:
    forms = api.project.form_names
    rows = []
    for role in api.store.items(api.project.project_id, "role"):
        rights = {k: str(v) if not isinstance(v, dict) else v
                  for k, v in _rights(role, 0, forms).items()}
        rows.append({"unique_role_name": role.get("unique_role_name", ""),
                     "role_label": role.get("role_label") or role.get("role_name", ""),
                     **rights})
    header = ["unique_role_name", "role_label", *RIGHTS, "forms", "forms_export"]
    return render.table(_flat_forms(rows, api.fmt), api.fmt, header, root="roles")


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
    return delete_named(api, "role", "roles")


def export_role_mapping(api: ApiRequest) -> Reply:
    rows = [{"username": u["username"], "unique_role_name": u.get("unique_role_name", ""),
             "data_access_group": u.get("redcap_data_access_group", "")}
            for u in sorted(api.store.items(api.project.project_id, "user"),
                            key=lambda u: u["username"].lower())]
    return render.table(rows, api.fmt, ["username", "unique_role_name", "data_access_group"],
                        root="items")


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
