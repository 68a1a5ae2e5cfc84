"""`content=record` with `data`: Import Records, validated as REDCap validates (§5.3).

Structural errors stop at the first with a plain message; value errors are collected and sent
together as `"record","field","value","message"` lines; either way nothing is saved.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sync.crf.redcap_spec import FORM_STATUS_CHOICES, checkbox_export_name, parse_choices
from sync.server import render
from sync.server.access import refuse_locked_and_foreign
from sync.server.app import ApiRequest
from sync.server.content.calcs import recalculate, row_fields, warn_ignored_calc_values
from sync.server.content.records import record_action
from sync.server.content.values import normalise, validation_error
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.rows import (
    DAG_FIELD, choices_of, event_label, form_of, is_number, natural_key,
)
from sync.server.store import Design

FIXED = {"redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
         "redcap_data_access_group", "redcap_survey_identifier"}
MAX_INSTANCE = 32767
Target = tuple[str, int, int, str]
"""(record, event_id, instance, field) of stored values."""


@dataclass
class Entry:
    """One uploaded row, resolved to its record, event and instance."""

    record: str
    event_id: int
    instrument: str
    instance: int
    values: dict[str, str]


@dataclass
class Plan:
    """The import's options, and what it will change, log and refuse."""

    overwrite: bool = False
    date_format: str = "YMD"
    missing_codes: frozenset[str] = frozenset()
    changes: dict[Target, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    details: dict[tuple[str, int, int], list[str]] = field(default_factory=dict)
    """Per (record, event_id, instance): the `field = 'value'` items of its log row (§1)."""


def error_line(record: str, field_name: str, value: str, message: str) -> str:
    cells = [record, field_name, value, re.sub(r"[\r\n\t]", " ", message)]
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells)


def _columns(design: Design) -> dict[str, tuple[str, str]]:
    """Importable column -> (field, checkbox code)."""
    columns: dict[str, tuple[str, str]] = {}
    for meta in design.fields:
        name = meta["field_name"]
        if meta["field_type"] == "descriptive":
            continue
        if meta["field_type"] == "checkbox":
            for code, _ in choices_of(meta):
                columns[checkbox_export_name(name, code)] = (name, code)
        else:
            columns[name] = (name, "")
    for form in design.form_names:
        columns[f"{form}_complete"] = (f"{form}_complete", "")
    return columns


def _from_eav(design: Design, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """EAV rows (`record, field_name, value`) regrouped into flat rows (§5.3 EAV import)."""
    flat: dict[tuple[str, ...], dict[str, str]] = {}
    pk = design.record_id_field
    for row in rows:
        record = row.get("record", "").strip()
        if not record:
            raise ApiError(400, "The record name cannot be empty.")
        if row.get("redcap_repeat_instance", "").strip().startswith("new"):
            raise ApiError(400, f"The record name ({record}) has a value of 'new' for "
                                "'redcap_repeat_instance', which is not allowed for 'eav' type "
                                "data. Provide the instance number instead.")
        key = (record, row.get("redcap_event_name", ""), row.get("redcap_repeat_instrument", ""),
               row.get("redcap_repeat_instance", ""))
        target = flat.setdefault(key, {pk: record, **{k: v for k, v in zip(
            ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"), key[1:])
            if k in row}})
        name, value = row.get("field_name", ""), row.get("value", "")
        meta = design.by_name.get(name)
        if meta is not None and meta["field_type"] == "checkbox" and "___" not in name:
            name, value = checkbox_export_name(name, value), "1"
        target[name] = value
    return list(flat.values())


def _check_record_names(records: list[str]) -> None:
    for record in records:
        if len(record) > 100:
            raise ApiError(400, "Record names must be 100 characters or less in length. The "
                                "following record name is too long and thus cannot be imported: "
                                f"{record}")
        if re.search(r"[\r\n]|<br", record, re.IGNORECASE):
            raise ApiError(400, "Record names cannot contain BR tags, line breaks, or carriage "
                                "return characters. The following record name is not valid: "
                                f"{record}")
        if re.search(r"[+'&#]", record):
            raise ApiError(400, f"The record name ({record}) cannot contain a plus sign (+), "
                                "ampersand (&), pound sign (#), or apostrophe.")


def _check_structure(design: Design, rows: list[dict[str, str]], columns: dict[str, Any]) -> None:
    pk = design.record_id_field
    header = list(dict.fromkeys(k for row in rows for k in row))
    if pk not in header or any(not row.get(pk, "").strip() for row in rows):
        raise ApiError(400, f"The record id field ({pk}) is missing.")
    _check_record_names([row[pk].strip() for row in rows])
    # Without the column REDCap files the rows under the first event (PyCap's doctests import
    # into a longitudinal project without it); a blank value in the column is an error.
    if design.is_longitudinal and any("redcap_event_name" in row
                                      and not row["redcap_event_name"].strip() for row in rows):
        raise ApiError(400, "The record event name is missing.")
    timestamps = {f"{f}_timestamp" for f in design.form_names}
    unknown = [h or "[variable name was left blank]" for h in header
               if h not in columns and h not in FIXED and h not in timestamps and h != pk]
    if unknown:
        raise ApiError(400, "The following fields were not found in the project as real data "
                            f"fields: {', '.join(unknown)}")
    if design.is_longitudinal:
        bad = sorted({row["redcap_event_name"] for row in rows if "redcap_event_name" in row
                      and design.event_by_name(row["redcap_event_name"].strip()) is None})
        if bad:
            raise ApiError(400, "The following values of redcap_event_name are invalid: "
                                + ", ".join(bad))
    if not design.has_repeating and any(row.get("redcap_repeat_instrument", "").strip()
                                        or row.get("redcap_repeat_instance", "").strip()
                                        for row in rows):
        raise ApiError(400, "ERROR: Trying to import repeat instance/instrument fields! The "
                            "fields 'redcap_repeat_instrument' and 'redcap_repeat_instance' are "
                            "reserved for projects with repeating instruments or events, and this "
                            "project has none.")


def _record_names(api: ApiRequest, rows: list[dict[str, str]]) -> dict[str, str]:
    """Provided name -> stored name: re-cased to an existing record, or auto-numbered."""
    design = api.project
    existing = api.store.record_names(design.project_id)
    by_lower = {r.lower(): r for r in existing}
    provided = list(dict.fromkeys(row[design.record_id_field].strip() for row in rows))
    if api.flag("forceAutoNumber"):
        start = max([int(r) for r in existing if is_number(r)] + [0]) + 1
        return {name: str(start + i) for i, name in enumerate(provided)}
    return {name: by_lower.get(name.lower(), name) for name in provided}


def _instance(design: Design, row: dict[str, str], record: str, event_id: int,
              next_instance: dict[tuple[str, int, str], int]) -> tuple[str, int]:
    instrument = row.get("redcap_repeat_instrument", "").strip()
    raw = row.get("redcap_repeat_instance", "").strip()
    if raw and not raw.startswith("new") and not is_number(raw):
        raise ApiError(400, f"The record name ({record}) has an invalid value for "
                            "'redcap_repeat_instance'. The value must either be a positive "
                            f"integer or the value 'new'. Value provided: {raw}")
    repeats = (instrument and design.repeating_form(event_id, instrument)) or (
        not instrument and design.repeating_event(event_id))
    if not repeats:
        return instrument, 1 if raw in ("", "1") or not is_number(raw) else int(raw)
    if raw.startswith("new") or raw == "":
        key = (record, event_id, instrument)
        next_instance[key] = next_instance.get(key, 0) + 1
        return instrument, next_instance[key]
    return instrument, int(raw)


def _entries(api: ApiRequest, rows: list[dict[str, str]], names: dict[str, str],
             current: dict[Target, list[str]]) -> list[Entry]:
    design = api.project
    next_instance: dict[tuple[str, int, str], int] = {}
    for (record, event_id, instance, name) in current:
        form = form_of(design, name)
        for key in ((record, event_id, form), (record, event_id, "")):
            next_instance[key] = max(next_instance.get(key, 0), instance)
    entries = []
    for row in rows:
        record = names[row[design.record_id_field].strip()]
        event = design.event_by_name(row.get("redcap_event_name", "").strip())
        event_id = event.event_id if design.is_longitudinal and event else \
            design.default_event_id()
        instrument, instance = _instance(design, row, record, event_id, next_instance)
        entries.append(Entry(record, event_id, instrument, instance, row))
    return entries


def _placement_error(design: Design, entry: Entry, name: str, form: str) -> str:
    """REDCap's event and repeating rules for one non-blank value, or ''."""
    if design.is_longitudinal and form not in design.forms_on_event(entry.event_id):
        return (f"This field ('{name}') exists on an instrument that is not designated for the "
                f"event named '{event_label(design, entry.event_id)}'. You are not allowed to "
                "import data for this field into this event.")
    if entry.instrument:
        if not design.repeating_form(entry.event_id, entry.instrument):
            return ("redcap_repeat_instrument must be the unique form name of a Repeating "
                    f"Instrument. '{entry.instrument}' is not a repeating instrument.")
        if form != entry.instrument:
            return (f"This field ('{name}') does not exist on the Repeating Instrument named "
                    f"'{entry.instrument}'. Only fields of that instrument may be imported on "
                    "this row.")
    elif design.repeating_form(entry.event_id, form):
        return (f"This field ('{name}') exists on a Repeating Instrument named '{form}'. However, "
                "the fields 'redcap_repeat_instance' and/or 'redcap_repeat_instrument' were not "
                "provided or were left blank, so the value cannot be imported.")
    if not (entry.instance >= 1 and entry.instance <= MAX_INSTANCE):
        return ("redcap_repeat_instance must have a numeric value between '1' and '32767'.")
    if entry.instance > 1 and not entry.instrument and not design.repeating_event(entry.event_id):
        return ("redcap_repeat_instance cannot have a value since this instrument or event is not "
                "a repeating instrument or repeating event, respectively.")
    return ""


def _plan_value(design: Design, plan: Plan, current: dict[Target, list[str]], entry: Entry,
                column: str, target: tuple[str, str], value: str) -> None:
    name, code = target
    meta = design.by_name.get(name)
    kind = meta["field_type"] if meta else "form_status"
    calculated = meta is not None and re.search(r"@CALC(TEXT|DATE)\b", meta["field_annotation"])
    if kind in ("calc", "file") or calculated or name == design.record_id_field:
        return  # calcs are recomputed, not imported; files go through content=file
    form = form_of(design, name)
    instance = entry.instance
    key = (entry.record, entry.event_id, instance, name)
    stored = plan.changes.get(key, current.get(key, []))
    if value == "":
        if not plan.overwrite:
            return
        value = "0" if code else ""
    if code:
        if value not in ("0", "1"):
            plan.errors.append(error_line(entry.record, column, value, f"{column} is a checkbox "
                               "field and thus can only have a value of '1' (checked) or '0' "
                               "(unchecked)."))
            return
        new = sorted(set(stored) | {code}) if value == "1" else [c for c in stored if c != code]
        shown = f"{name}({code}) = {'checked' if value == '1' else 'unchecked'}"
    else:
        if kind != "form_status":
            value = normalise(meta, value, plan.date_format) if meta else value
        new = [value] if value != "" else []
        shown = f"{name} = '{value}'"
    if sorted(new) == sorted(stored):
        return
    if value != "" and not (code and value == "0"):
        problem = _placement_error(design, entry, name, form) or (
            "" if value in plan.missing_codes else _value_error(meta, name, value,
                                                                plan.date_format))
        if problem:
            plan.errors.append(error_line(entry.record, column, value, problem))
            return
    plan.changes[key] = new
    plan.details.setdefault((entry.record, entry.event_id, instance), []).append(shown)


def _value_error(meta: dict[str, str] | None, name: str, value: str, date_format: str) -> str:
    if meta is None:
        codes = [c for c, _ in FORM_STATUS_CHOICES]
        return "" if value in codes else f"The value is not a valid category for {name}"
    return validation_error(meta, value, date_format)


def _plan_for(api: ApiRequest) -> Plan:
    """Options as REDCap normalises them: unknown values fall back to the defaults (§5.1)."""
    date_format = api.get("dateFormat").upper()
    codes = str(api.project.info.get("missing_data_codes", ""))
    return Plan(overwrite=api.get("overwriteBehavior") == "overwrite",
                date_format=date_format if date_format in ("MDY", "DMY") else "YMD",
                missing_codes=frozenset(code for code, _ in parse_choices(codes)))


def _current(api: ApiRequest, records: list[str]) -> dict[Target, list[str]]:
    current: dict[Target, list[str]] = {}
    for d in api.store.data_rows(api.project.project_id, records):
        current.setdefault((d["record"], d["event_id"], d["instance"], d["field_name"]),
                           []).append(d["value"])
    return current


def _check_dags(api: ApiRequest, rows: list[dict[str, str]]) -> None:
    given = sorted({row["redcap_data_access_group"].strip() for row in rows
                    if row.get("redcap_data_access_group", "").strip()})
    known = {d["unique_group_name"] for d in api.store.items(api.project.project_id, "dag")}
    unknown = [g for g in given if g not in known]
    if unknown:
        raise ApiError(400, "The following Data Access Group are invalid for the "
                            f"redcap_data_access_group field: {', '.join(unknown)}")


def _check_duplicates(design: Design, entries: list[Entry]) -> None:
    """Non-repeating projects: one row per record(-event), compared case-insensitively."""
    if design.has_repeating:
        return
    seen: set[tuple[str, int]] = set()
    duplicates: list[str] = []
    for entry in entries:
        key = (entry.record.lower(), entry.event_id)
        if key in seen and entry.record not in duplicates:
            duplicates.append(entry.record)
        seen.add(key)
    if duplicates:
        raise ApiError(400, "The records listed below occur more than once. Please remove any "
                            f"duplicates and try again: {', '.join(duplicates)}")


def import_records(api: ApiRequest) -> Reply:
    """Import Records: all rows validated first, then saved in one transaction."""
    design = api.project
    rows = parse_rows(api.get("data"), api.fmt)
    eav = api.get("type") == "eav"
    triggers = row_fields(design, rows[0], eav) if rows else set()
    warn_ignored_calc_values(design, rows, eav)
    if eav:
        rows = _from_eav(design, rows)
    if not rows:
        raise ApiError(400, "No data was provided.")
    columns = _columns(design)
    _check_structure(design, rows, columns)
    _check_dags(api, rows)
    with api.store.write() as db:
        names = _record_names(api, rows)
        existing = set(api.store.record_names(design.project_id))
        current = _current(api, list(set(names.values())))
        plan = _plan_for(api)
        entries = _entries(api, rows, names, current)
        _check_duplicates(design, entries)
        for entry in entries:
            for column, value in entry.values.items():
                if column in columns:
                    _plan_value(design, plan, current, entry, column, columns[column],
                                value)
        plan.errors += refuse_locked_and_foreign(api, plan.changes, existing)
        if plan.errors:
            raise ApiError(400, "\n".join(plan.errors))
        _save(api, db, plan, entries, existing, current, triggers)
    return _reply(api, names)


def _save(api: ApiRequest, db: Any, plan: Plan, entries: list[Entry], existing: set[str],
          current: dict[Target, list[str]], triggers: set[str]) -> None:
    design = api.project
    pk = design.record_id_field
    stubs = _record_id_stubs(design, plan, entries, current)
    defaults = _status_defaults(design, plan, current)
    for entry in entries:
        group = entry.values.get("redcap_data_access_group", "").strip()
        if group:
            api.store.delete_data(db, design.project_id, entry.record, fields=[DAG_FIELD])
            plan.changes[(entry.record, entry.event_id, 1, DAG_FIELD)] = [group]
    api.store.put_values(db, design.project_id, [(r, e, i, f, v) for (r, e, i, f), v in
                                                  plan.changes.items()])
    event_order = {e.event_id: i for i, e in enumerate(design.events)}
    places = sorted(set(plan.details) | stubs | set(defaults), key=lambda k: (
        natural_key(k[0]), event_order.get(k[1], 0), k[2]))
    for record, event_id, instance in places:
        items = ([f"{pk} = '{record}'"] if (record, event_id, instance) in stubs else []) + \
            plan.details.get((record, event_id, instance), []) + \
            [f"{status} = '0'" for status in defaults.get((record, event_id, instance), [])]
        if instance > 1:
            items[0] = f"[instance = {instance}], {items[0]}"
        verb = "Update" if record in existing else "Create"
        api.store.log(db, design.project_id, record_action(design, verb, record, event_id),
                      ", ".join(items), record, username=api.username, ts=api.started)
    calculated = recalculate(api.store, db, design, sorted({e.record for e in entries}),
                             triggers)
    for record, details in calculated.items():
        api.store.log(db, design.project_id, f"Update record (API) (Auto calculation) {record}",
                      ", ".join(details), record, username=api.username, ts=api.started)


def _record_id_stubs(design: Design, plan: Plan, entries: list[Entry],
                     current: dict[Target, list[str]]) -> set[tuple[str, int, int]]:
    """Where the import stores the record id anew: a new record or event, and every new
    repeating instance (§1: the record-id stub of a new repeating instance)."""
    pk = design.record_id_field
    stubs = set()
    for entry in entries:
        base = entry.instance if design.repeating_event(entry.event_id) else 1
        places = {base}
        if entry.instrument and any(r == entry.record and e == entry.event_id
                                    and i == entry.instance for r, e, i in plan.details):
            places.add(entry.instance)
        for instance in places:
            key = (entry.record, entry.event_id, instance, pk)
            if key not in current and key not in plan.changes:
                plan.changes[key] = [entry.record]
                stubs.add((entry.record, entry.event_id, instance))
    return stubs


def _status_defaults(design: Design, plan: Plan, current: dict[Target, list[str]]
                     ) -> dict[tuple[str, int, int], list[str]]:
    """`<form>_complete = '0'` on every form the import put values on that had no status
    (§2, Records.php l.7180-7246); a new repeating instance is such a form."""
    defaults: dict[tuple[str, int, int], list[str]] = {}
    touched = sorted({(r, e, i, form_of(design, f)) for (r, e, i, f), values in
                      list(plan.changes.items()) if values and f in design.by_name
                      and f != design.record_id_field})
    for record, event_id, instance, form in touched:
        status = f"{form}_complete"
        key = (record, event_id, instance, status)
        if form and key not in current and key not in plan.changes:
            plan.changes[key] = ["0"]
            defaults.setdefault((record, event_id, instance), []).append(status)
    return defaults


def _reply(api: ApiRequest, names: dict[str, str]) -> Reply:
    fmt = api.return_format
    kind = api.get("returnContent", "count")
    if kind == "auto_ids" and not api.flag("forceAutoNumber"):
        kind = "count"
    ids = list(dict.fromkeys(names.values()))
    if kind == "nothing":
        return Reply("", media_type=render.CONTENT_TYPES[fmt])
    if kind in ("ids", "auto_ids"):
        values = ids if kind == "ids" else [f"{new},{old}" for old, new in names.items()]
        if fmt == "json":
            return Reply(render.php_json(values), media_type="application/json")
        if fmt == "csv":
            head = "id" if kind == "ids" else "id,original_id"
            return Reply("\n".join([head, *values]) + "\n", media_type="text/csv")
        items = "".join(f"<id>{v}</id>" for v in values)
        return Reply(f"{render.XML_HEAD}<ids>{items}</ids>", media_type="text/xml")
    if fmt == "json":
        return Reply(f'{{"count": {len(ids)}}}', media_type="application/json")
    return render.count(len(ids), fmt)

