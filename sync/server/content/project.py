"""`content=project`: export and import project information, create projects with a super token.

Key order and value types of the export are REDCap's
(§6.4, `Project::getAttributesApiExportProjectInfo`).
"""
from __future__ import annotations

import sqlite3
from typing import Any

from sync.crf.redcap_spec import checkbox_export_name, parse_choices
from sync.server import render
from sync.server.app import ApiRequest
from sync.server.content.dags import unique_group_name
from sync.server.odm import OdmProject, parse_odm
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import DAG_FIELD, is_number
from sync.server.store import Event, MANAGE, Store, now

INFO_KEYS: tuple[str, ...] = (
    "project_id", "project_title", "creation_time", "production_time", "in_production",
    "project_language", "purpose", "purpose_other", "project_notes", "custom_record_label",
    "secondary_unique_field", "is_longitudinal", "has_repeating_instruments_or_events",
    "surveys_enabled", "scheduling_enabled", "record_autonumbering_enabled",
    "randomization_enabled", "ddp_enabled", "project_irb_number", "project_grant_number",
    "project_pi_firstname", "project_pi_lastname", "display_today_now_button",
    "missing_data_codes", "external_modules", "bypass_branching_erase_field_prompt",
)
IMPORTABLE_KEYS: frozenset[str] = frozenset({
    "project_title", "project_language", "purpose", "purpose_other", "project_notes",
    "custom_record_label", "secondary_unique_field", "is_longitudinal",
    "has_repeating_instruments_or_events", "surveys_enabled", "scheduling_enabled",
    "record_autonumbering_enabled", "randomization_enabled", "project_irb_number",
    "project_grant_number", "project_pi_firstname", "project_pi_lastname",
    "display_today_now_button", "missing_data_codes", "bypass_branching_erase_field_prompt",
})
_ODM_INFO = {"Purpose": "purpose", "PurposeOther": "purpose_other", "ProjectNotes": "project_notes",
             "CustomRecordLabel": "custom_record_label", "SurveysEnabled": "surveys_enabled",
             "SecondaryUniqueField": "secondary_unique_field",
             "SchedulingEnabled": "scheduling_enabled", "MissingDataCodes": "missing_data_codes",
             "RecordAutonumberingEnabled": "record_autonumbering_enabled",
             "RandomizationEnabled": "randomization_enabled",
             "DisplayTodayNowButton": "display_today_now_button"}


def default_info(title: str = "Embedded REDCap project") -> dict[str, Any]:
    info: dict[str, Any] = {key: "" for key in INFO_KEYS}
    info.update(project_title=title, creation_time=now(), in_production=0,
                project_language="English", purpose=0, is_longitudinal=0,
                has_repeating_instruments_or_events=0, surveys_enabled=0, scheduling_enabled=0,
                record_autonumbering_enabled=0, randomization_enabled=0, ddp_enabled=0,
                display_today_now_button=1, bypass_branching_erase_field_prompt=0)
    return info


def _new_project(store: Store, db: sqlite3.Connection, info: dict[str, Any],
                 token: str | None = None) -> tuple[int, str]:
    """A project as REDCap makes one: arm 1 with one event, one instrument, the record ID."""
    project_id, token = store.create_project(db, info, token)
    store.replace_arms(db, project_id, [(1, "Arm 1")], override=True)
    store.add_event(db, project_id, Event(0, 1, "Event 1", "event_1_arm_1"))
    store.replace_metadata(db, project_id, [{
        "field_name": "record_id", "form_name": "my_first_instrument", "field_type": "text",
        "field_label": "Record ID"}], {"my_first_instrument": "My First Instrument"})
    store.log(db, project_id, MANAGE, "Create project (API)", logtype="manage")
    return project_id, token


def ensure_first_project(store: Store, token: str | None) -> str:
    """Open the file: its first project gets `token` if given; an empty file gets a project."""
    existing = store.first_token()
    if existing is None:
        with store.write() as db:
            _, existing = _new_project(store, db, default_info(), token)
    elif token and token != existing:
        first = store.project_id_for(existing)
        store.set_token(int(first or 0), token)
        existing = token
    return existing


def export_info(api: ApiRequest) -> Reply:
    project = api.project
    info = {key: project.info.get(key, "") for key in INFO_KEYS}
    info["project_id"] = project.project_id
    info["is_longitudinal"] = int(project.is_longitudinal)
    info["has_repeating_instruments_or_events"] = int(project.has_repeating)
    for key, value in info.items():
        if isinstance(value, str) and is_number(value) and key not in ("project_title",):
            info[key] = int(value)
    return render.single(info, api.fmt)


def import_info(api: ApiRequest) -> Reply:
    """Import Project Info (`content=project_settings`): returns how many values were given."""
    rows = parse_rows(api.get("data"), api.fmt)
    if not rows:
        raise ApiError(400, "No data was provided.")
    project = api.project
    info = dict(project.info)
    changed = 0
    for key, value in rows[0].items():
        if key in IMPORTABLE_KEYS:
            info[key] = value
            changed += 1
    with api.store.write() as db:
        api.store.save_info(db, project.project_id, info)
        api.store.log(db, project.project_id, MANAGE, "Modify project settings",
                      logtype="manage", username=api.username)
    return render.count(changed, api.return_format)


def create(api: ApiRequest) -> Reply:
    """Create a project from project info (`data`) and, optionally, an ODM XML (`odm`)."""
    if not api.is_super:
        raise ApiError(403, "You do not have permissions to use the API")
    rows = parse_rows(api.get("data"), api.fmt) if api.get("data") else []
    given = rows[0] if rows else {}
    if not given.get("project_title"):
        raise ApiError(400, "The parameter 'project_title' is missing.")
    odm = parse_odm(api.get("odm")) if api.get("odm").strip() else None
    info = default_info(given["project_title"])
    if odm is not None:
        for tag, key in _ODM_INFO.items():
            if tag in odm.info:
                info[key] = odm.info[tag]
    for key, value in given.items():
        if key in IMPORTABLE_KEYS and value != "":
            info[key] = value
    with api.store.write() as db:
        project_id, token = _new_project(api.store, db, info)
        if odm is not None:
            _apply_odm(api.store, db, project_id, odm, info)
    return Reply(token, media_type="text/plain")


def _apply_odm(store: Store, db: sqlite3.Connection, project_id: int, odm: OdmProject,
               info: dict[str, Any]) -> None:
    if odm.fields:
        store.replace_metadata(db, project_id, odm.fields, odm.form_labels)
    event_ids: dict[str, int] = {}
    if odm.events and (len(odm.events) > 1 or len(odm.arms) > 1
                       or odm.events[0][0].unique_event_name != "event_1_arm_1"):
        info["is_longitudinal"] = 1
        store.replace_arms(db, project_id, odm.arms, override=True)
        pairs = []
        for event, forms in odm.events:
            event_ids[event.unique_event_name] = store.add_event(db, project_id, event)
            pairs += [(event_ids[event.unique_event_name], f) for f in forms]
        store.replace_form_events(db, project_id, pairs, None)
    else:
        first = db.execute("SELECT event_id FROM events WHERE project_id=?",
                           (project_id,)).fetchone()[0]
        event_ids = {e.unique_event_name: first for e, _ in odm.events} or {"event_1_arm_1": first}
    default = next(iter(event_ids.values()))
    store.replace_repeating(db, project_id, [
        (event_ids.get(ev, default), form, label) for ev, form, label in odm.repeating])
    info["surveys_enabled"] = int(bool(odm.surveys) or str(info.get("surveys_enabled")) == "1")
    store.save_info(db, project_id, info)
    for name in odm.dags:
        unique = unique_group_name(name)
        store.put_item(db, project_id, "dag", unique,
                       {"data_access_group_name": name, "unique_group_name": unique})
    for role in odm.roles:
        store.put_item(db, project_id, "role", role.get("unique_role_name", ""), role)
    for survey in odm.surveys:
        store.put_item(db, project_id, "survey", survey.get("form_name", ""), survey)
    _odm_data(store, db, project_id, odm, event_ids, default)


def _odm_data(store: Store, db: sqlite3.Connection, project_id: int, odm: OdmProject,
              event_ids: dict[str, int], default: int) -> None:
    """Store ODM ClinicalData; calc values are not stored (REDCap recalculates them)."""
    design = store.design(project_id)
    checkbox: dict[str, tuple[str, str]] = {}
    for f in design.fields:
        if f["field_type"] == "checkbox":
            for code, _ in parse_choices(f["select_choices_or_calculations"]):
                checkbox[checkbox_export_name(f["field_name"], code)] = (f["field_name"], code)
    values: dict[tuple[str, int, int, str], list[str]] = {}
    for record, event_name, form, instance, item, value in odm.data:
        event_id = event_ids.get(event_name, default)
        repeats = design.repeating_form(event_id, form) or design.repeating_event(event_id)
        inst = instance if repeats else 1
        if item in checkbox:
            name, code = checkbox[item]
            values.setdefault((record, event_id, inst, name), [])
            if value == "1":
                values[(record, event_id, inst, name)].append(code)
            continue
        if item == "redcap_data_access_group" and value:
            values[(record, event_id, 1, DAG_FIELD)] = [value]
        meta = design.by_name.get(item)
        is_status = item == f"{form}_complete"
        if (meta is None and not is_status) or (meta and meta["field_type"] == "calc"):
            continue
        if value != "":
            values[(record, event_id, inst, item)] = [value]
        base = inst if design.repeating_event(event_id) else 1
        values.setdefault((record, event_id, base, design.record_id_field), [record])
    for record, event_name, form, instance, item, name, content in odm.files:
        event_id = event_ids.get(event_name, default)
        inst = instance if design.repeating_form(event_id, form) or \
            design.repeating_event(event_id) else 1
        doc_id = store.add_upload(db, project_id, name, content)
        values[(record, event_id, inst, item)] = [str(doc_id)]
    store.put_values(db, project_id, [(r, e, i, f, v) for (r, e, i, f), v in values.items()])
