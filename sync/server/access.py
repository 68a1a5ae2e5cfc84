"""What a token's user may do: user rights, project status, data access groups and locks.

REDCap checks these before (rights, status) and while (locks, groups) it runs a call; the
handlers stay unaware of them except through three hooks: `check_access` before any handler,
`refuse_locked_and_foreign` before an import saves, and `visible_records` / `exported_fields`
when records are exported. Facts: redcap-behaviour.md §2 (locks, rights, groups) and §3
(production status); messages as redcap-semantics.md §5.1 and §5.3 quote them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sync.server.render import ApiError
from sync.server.rows import DAG_FIELD, form_of
from sync.server.store import API_USER, Design, Store

if TYPE_CHECKING:
    from sync.server.app import ApiRequest

NO_IMPORT = "You do not have API Import/Update privileges"
NO_EXPORT = "You do not have API Export privileges"
NO_LOGGING = ('The API request cannot complete because currently you do not have "Logging" '
              "privileges, which are required for this operation.")
NO_EXPORT_RIGHTS = ('The API request cannot complete because currently you have "No Access" '
                    "data export rights. Higher level data export rights are required for this "
                    "operation.")
FORM_LOCKED = ("This field is located on a form that is locked. You must first unlock this form "
               "for this record.")
RECORD_LOCKED = ("This record has been locked at the record level. No value within this record "
                 "can be modified.")
NOT_YOUR_GROUP = ("The following records cannot be modified because they do not belong to your "
                  "Data Access Group: ")
IN_PRODUCTION = ("This method cannot be used while the project is in production status. Changes "
                 "to the project's design must be made in Draft Mode in the REDCap web pages.")
OVERRIDE_IN_PRODUCTION = ("The 'override' parameter cannot be used while the project is in "
                          "production status.")
EDIT_PROD_EVENTS = "enable_edit_prod_events"
"""REDCap's system setting letting normal users edit events in production (default off)."""

EXPORT_FULL, EXPORT_NONE, EXPORT_DEIDENTIFIED, EXPORT_NO_IDENTIFIERS = 1, 0, 2, 3
"""`forms_export` rights per instrument, as REDCap 15 names them."""
DESIGN_IMPORTS = {"metadata": "metadata", "formEventMapping": "mapping", "event": "events",
                  "arm": "arms"}
IMPORT_ACTIONS = {"import", "delete", "rename", "createFolder"}


def user_of(store: Store, project_id: int, username: str) -> dict[str, Any]:
    """The stored user, with REDCap's rights; the project's own API user has every right."""
    for body in store.items(project_id, "user"):
        if body.get("username") == username:
            return body
    return {"username": username}


def _right(user: dict[str, Any], name: str) -> bool:
    default = 1 if user.get("username") == API_USER else 0
    return str(user.get(name, default)).strip() not in ("0", "")


def export_rights(user: dict[str, Any], forms: list[str]) -> dict[str, int]:
    """Per instrument: 0 no access, 1 full, 2 de-identified, 3 identifiers removed."""
    given = user.get("forms_export")
    if isinstance(given, dict):
        return {form: int(given.get(form, EXPORT_FULL)) for form in forms}
    return {form: EXPORT_FULL for form in forms}


def check_access(api: "ApiRequest", content: str, action: str) -> None:
    """Rights and project status, checked before the call runs (§2 403 causes, §3 production)."""
    design = api.project
    user = user_of(api.store, design.project_id, api.username)
    importing = action in IMPORT_ACTIONS
    if importing and not _right(user, "api_import"):
        raise ApiError(403, NO_IMPORT)
    if not importing and not _right(user, "api_export"):
        raise ApiError(403, NO_EXPORT)
    if content == "log" and not _right(user, "logging"):
        raise ApiError(403, NO_LOGGING)
    if content == "record" and action == "export" and \
            not any(export_rights(user, design.form_names).values()):
        raise ApiError(403, NO_EXPORT_RIGHTS)
    if action == "import" and content in DESIGN_IMPORTS and in_production(design):
        _refuse_in_production(api, content)


def in_production(design: Design) -> bool:
    return str(design.info.get("in_production", 0)) == "1"


def _refuse_in_production(api: "ApiRequest", content: str) -> None:
    """Metadata and mapping never; events and arms only when the setting allows, never override."""
    events_editable = api.store.setting(EDIT_PROD_EVENTS) == "1"
    if content in ("event", "arm") and events_editable:
        if api.flag("override"):
            raise ApiError(400, OVERRIDE_IN_PRODUCTION)
        return
    raise ApiError(400, IN_PRODUCTION)


def _group(api: "ApiRequest") -> str:
    user = user_of(api.store, api.project.project_id, api.username)
    return str(user.get("redcap_data_access_group") or user.get("data_access_group") or "")


def _groups_of(api: "ApiRequest", records: list[str] | None) -> dict[str, str]:
    rows = api.store.data_rows(api.project.project_id, records)
    return {r["record"]: r["value"] for r in rows if r["field_name"] == DAG_FIELD}


def visible_records(api: "ApiRequest", records: list[str] | None) -> list[str] | None:
    """A user in a data access group sees only the group's records (§2)."""
    group = _group(api)
    if not group:
        return records
    mine = [r for r, g in _groups_of(api, None).items() if g == group]
    return mine if records is None else [r for r in records if r in mine]


def exported_fields(api: "ApiRequest", wanted: set[str] | None) -> set[str] | None:
    """The fields the user's export rights let through, silently (§2, `DataExport.php`)."""
    design = api.project
    rights = export_rights(user_of(api.store, design.project_id, api.username), design.form_names)
    if all(right == EXPORT_FULL for right in rights.values()):
        return wanted
    kept = set()
    for meta in design.fields:
        name, right = meta["field_name"], rights.get(meta["form_name"], EXPORT_FULL)
        if name == design.record_id_field or right == EXPORT_FULL:
            kept.add(name)
        elif right == EXPORT_NO_IDENTIFIERS and meta["identifier"] != "y":
            kept.add(name)
        elif right == EXPORT_DEIDENTIFIED and not _deidentified_drops(meta):
            kept.add(name)
    kept |= {f"{form}_complete" for form, right in rights.items() if right != EXPORT_NONE}
    return kept if wanted is None else wanted & kept


def _deidentified_drops(meta: dict[str, str]) -> bool:
    """Identifiers, unvalidated free text, notes and dates go from a de-identified export."""
    validation = meta["text_validation_type_or_show_slider_number"]
    return (meta["identifier"] == "y" or meta["field_type"] == "notes"
            or (meta["field_type"] == "text" and (not validation or validation.startswith(
                ("date", "datetime")))))


def refuse_locked_and_foreign(api: "ApiRequest", changes: dict[tuple[str, int, int, str],
                                                                list[str]],
                              existing: set[str]) -> list[str]:
    """Error lines for changes to locked records or forms (§2: all or nothing); a data access
    group user may not touch other groups' records, and the records it creates join its group."""
    from sync.server.content.record_import import error_line

    design = api.project
    records = sorted({key[0] for key in changes})
    group = _group(api)
    if group:
        groups = _groups_of(api, records)
        foreign = [r for r in records if r in existing and groups.get(r, "") != group]
        if foreign:
            raise ApiError(400, NOT_YOUR_GROUP + ", ".join(foreign))
        for record in records:
            if record not in existing:
                changes[(record, design.default_event_id(), 1, DAG_FIELD)] = [group]
    locks = api.store.locks(design.project_id, records) if records else []
    whole = {row["record"] for row in locks if row["form_name"] == ""}
    forms = {(row["record"], row["event_id"], row["form_name"], row["instance"])
             for row in locks if row["form_name"]}
    errors = []
    for (record, event_id, instance, name), values in changes.items():
        if name == DAG_FIELD:
            continue
        message = ""
        if record in whole:
            message = RECORD_LOCKED
        elif (record, event_id, form_of(design, name), instance) in forms:
            message = FORM_LOCKED
        if message:
            errors.append(error_line(record, name, ",".join(values), message))
    return errors
