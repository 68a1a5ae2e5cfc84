"""`content=record`: export (flat and eav) and delete; import lives in `record_import` (§6).

Filters, column order, row order and cell values follow redcap-semantics.md §6.1-§6.3.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from sync.errors import LogicSyntaxError
from sync.logic import evaluate
from sync.crf.redcap_spec import checkbox_export_name
from sync.server import render
from sync.server.access import exported_fields, visible_records
from sync.server.app import ApiRequest
from sync.server.render import ApiError, Reply
from sync.server.rows import (
    DAG_FIELD, CellOptions, RowKey, choices_of, data_columns, event_label, flat_header, flat_table,
    gather_places, natural_key, row_key, unique_event,
)
from sync.server.store import Design

FIXED_LABELS = {"redcap_event_name": "Event Name", "redcap_repeat_instrument": "Repeat Instrument",
                "redcap_repeat_instance": "Repeat Instance",
                "redcap_data_access_group": "Data Access Group"}


def _invalid(parameter: str, values: list[str]) -> ApiError:
    listed = ", ".join(f"'{v}'" for v in values)
    return ApiError(400, f'The following values in the parameter "{parameter}" are not valid: '
                         f"{listed}")


def wanted_fields(api: ApiRequest) -> set[str] | None:
    """The union of `fields` and `forms`; None means every field (§6.1)."""
    design = api.project
    fields, forms = api.list("fields"), api.list("forms")
    if not fields and not forms:
        return None
    statuses = {f"{form}_complete" for form in design.form_names}
    unknown = [f for f in fields if f not in design.by_name and f not in statuses]
    if unknown:
        raise _invalid("fields", unknown)
    unknown_forms = [f for f in forms if f not in design.form_names]
    if unknown_forms:
        raise _invalid("forms", unknown_forms)
    wanted = set(fields)
    for form in forms:
        wanted |= {f["field_name"] for f in design.fields if f["form_name"] == form}
        wanted.add(f"{form}_complete")
    return wanted


def _date_window(api: ApiRequest) -> tuple[str, str] | None:
    """dateRangeBegin/End, parsed leniently; invalid strings count as unset (§6.1)."""
    def parse(text: str, end: bool) -> str:
        text = text.strip().replace("/", "-").replace("T", " ")
        for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                moment = datetime.strptime(text, pattern)
            except ValueError:
                continue
            if pattern == "%Y-%m-%d" and end:
                moment = moment.replace(hour=23, minute=59, second=59)
            return moment.strftime("%Y-%m-%d %H:%M:%S")
        return ""
    begin, end = parse(api.get("dateRangeBegin"), False), parse(api.get("dateRangeEnd"), True)
    if not begin and not end:
        return None
    return begin or "2004-08-01 00:00:00", end or datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _records_in_window(api: ApiRequest, window: tuple[str, str]) -> set[str]:
    return {r["record"] for r in api.store.log_rows(api.project.project_id, *window)
            if r["logtype"] == "record" and r["record"]}


def selected_records(api: ApiRequest) -> list[str] | None:
    records = api.list("records") or None
    window = _date_window(api)
    if window is not None:
        in_window = _records_in_window(api, window)
        records = [r for r in (records or list(in_window)) if r in in_window]
    return visible_records(api, records)


def _event_ids(api: ApiRequest) -> set[int] | None:
    design = api.project
    names = api.list("events")
    if not names or not design.is_longitudinal:
        return None
    unknown = [n for n in names if design.event_by_name(n) is None]
    if unknown:
        raise _invalid("events", unknown)
    return {e.event_id for e in design.events if e.unique_event_name in names}


def flat_rows(api: ApiRequest, wanted: set[str] | None, labels: bool = False
              ) -> tuple[list[str], list[tuple[RowKey, dict[str, Any]]]]:
    """Header and (key, row) pairs of the flat export, before filterLogic."""
    design = api.project
    columns = data_columns(design, wanted)
    with_dag = (api.flag("exportDataAccessGroups")
                and bool(api.store.items(design.project_id, "dag")))
    header = flat_header(design, columns, with_dag)
    if not (wanted is None or design.record_id_field in wanted):
        header = header[header.index(columns[0].name):] if columns else []
    records, events = selected_records(api), _event_ids(api)
    grouped = None
    if wanted is None:
        data = api.store.data_rows(design.project_id, records)
    else:  # a narrow export reads the wanted values, and where any value is for its rows
        fields = sorted(wanted | ({DAG_FIELD} if with_dag else set()))
        data = api.store.data_rows(design.project_id, records, fields)
        places = api.store.value_places(design.project_id, records, _field_forms(design),
                                        design.record_id_field, DAG_FIELD)
        grouped = gather_places(design, [p for p in places if events is None or p[0] in events],
                                [d for d in data if events is None or d["event_id"] in events])
    data = [d for d in data if events is None or d["event_id"] in events]
    options = CellOptions(labels=labels, checkbox_labels=api.flag("exportCheckboxLabel"),
                          blank_gray_status=api.flag("exportBlankForGrayFormStatus"),
                          doc_names=api.store.document_names(design.project_id))
    rows = flat_table(design, data, columns, header, options, grouped)
    return header, rows


def _field_forms(design: Design) -> dict[str, str]:
    forms = {meta["field_name"]: meta["form_name"] for meta in design.fields}
    forms.update({f"{form}_complete": form for form in design.form_names})
    return forms


def apply_filter_logic(design: Design, logic: str, header: list[str],
                       rows: list[tuple[RowKey, dict[str, Any]]], raw: list[dict[str, Any]]
                       ) -> list[tuple[RowKey, dict[str, Any]]]:
    """Keep the rows where REDCap logic is true, through `sync.logic.evaluate` (§6.1)."""
    frame = pd.DataFrame([{k: str(v) for k, v in r.items()} for r in raw], columns=header,
                         dtype=str)
    metadata = pd.DataFrame(design.fields)
    try:
        mask = evaluate(logic, frame, metadata,
                        missing_data_codes=str(design.info.get("missing_data_codes", "")))
    except LogicSyntaxError as exc:
        raise ApiError(400, f"The logic in the parameter filterLogic is not valid: {logic} "
                            f"({exc})") from None
    keep = pd.Series(mask, dtype="boolean").fillna(False).astype(bool).tolist()
    return [row for row, kept in zip(rows, keep) if kept]


def _eav(api: ApiRequest, wanted: set[str] | None) -> Reply:
    design = api.project
    events = _event_ids(api)
    data = [d for d in api.store.data_rows(design.project_id, selected_records(api))
            if (events is None or d["event_id"] in events) and d["field_name"] != DAG_FIELD
            and (wanted is None or d["field_name"] in wanted) and d["value"] != ""]
    event_order = {e.event_id: i for i, e in enumerate(design.events)}
    field_order: dict[str, float] = {}
    for i, meta in enumerate(design.fields):
        field_order[meta["field_name"]] = i
        field_order[f"{meta['form_name']}_complete"] = i + 0.5
    data.sort(key=lambda d: (natural_key(d["record"]), event_order.get(d["event_id"], 0),
                             d["instance"], field_order.get(d["field_name"], len(field_order))))
    keys = [row_key(design, d["record"], d["event_id"], d["field_name"], d["instance"])
            for d in data]
    repeated = any(key[3] is not None for key in keys)
    out = []
    for d, (_, _, instrument, instance) in zip(data, keys):
        row: dict[str, Any] = {"record": d["record"]}
        if design.is_longitudinal:
            row["redcap_event_name"] = unique_event(design, d["event_id"])
        if repeated:
            row["redcap_repeat_instrument"] = instrument
            row["redcap_repeat_instance"] = instance if instance is not None else ""
        row["field_name"], row["value"] = d["field_name"], d["value"]
        out.append(row)
    header = ["record"] + (["redcap_event_name"] if design.is_longitudinal else []) + (
        ["redcap_repeat_instrument", "redcap_repeat_instance"] if repeated else []) + [
        "field_name", "value"]
    return render.table(out, api.fmt, header)


def export(api: ApiRequest) -> Reply:
    """Export Records (flat or eav) with REDCap's filters."""
    wanted = exported_fields(api, wanted_fields(api))
    if api.get("type") == "eav":
        return _eav(api, wanted)
    labels = api.get("rawOrLabel") == "label"
    header, rows = flat_rows(api, wanted, labels)
    logic = api.get("filterLogic").strip()
    if logic:
        raw_header, raw_rows = flat_rows(api, None, False) if (labels or wanted) else (header, rows)
        keep = {k for k, _ in apply_filter_logic(api.project, logic, raw_header, raw_rows,
                                                 [r for _, r in raw_rows])}
        rows = [(k, r) for k, r in rows if k in keep]
    out = [r for _, r in rows]
    if api.fmt == "csv" and api.get("rawOrLabelHeaders") == "label":
        return Reply(render.csv_text([_header_label(api.project, h) for h in header],
                                     [[r[h] for h in header] for r in out]),
                     media_type="text/csv")
    return render.table(out, api.fmt, header)


def _header_label(design: Design, column: str) -> str:
    if column in FIXED_LABELS:
        return FIXED_LABELS[column]
    if column.endswith("_complete") and column[:-9] in design.form_names:
        return "Complete?"
    if "___" in column and column.split("___")[0] in design.by_name:
        meta = design.by_name[column.split("___")[0]]
        for code, label in choices_of(meta):
            if checkbox_export_name(meta["field_name"], code) == column:
                return f"{meta['field_label']} (choice={label})"
    meta = design.by_name.get(column)
    return meta["field_label"] if meta else column


def delete(api: ApiRequest) -> Reply:
    """Delete Records: whole records, or one arm / event / instrument / instance of them."""
    design = api.project
    records = api.list("records")
    if not records:
        raise ApiError(400, "The parameter 'records' is missing.")
    existing = set(api.store.record_names(design.project_id))
    missing = [r for r in records if r not in existing]
    if missing:
        raise ApiError(400, "One or more of the records provided cannot be deleted because they "
                            f"do not exist in the project. The following records do not exist: "
                            f"{', '.join(missing)}")
    event_ids: list[int | None] = [None]
    if api.get("arm"):
        event_ids = [e.event_id for e in design.events if str(e.arm_num) == api.get("arm")]
    if api.get("event"):
        event = design.event_by_name(api.get("event"))
        if event is None:
            raise _invalid("event", [api.get("event")])
        event_ids = [event.event_id]
    fields = None
    if api.get("instrument"):
        if api.get("instrument") not in design.form_names:
            raise _invalid("instrument", [api.get("instrument")])
        form = api.get("instrument")
        fields = [f["field_name"] for f in design.fields if f["form_name"] == form
                  and f["field_name"] != design.record_id_field] + [f"{form}_complete"]
    instance = api.integer("repeat_instance")
    with api.store.write() as db:
        for record in records:
            for event_id in event_ids:
                api.store.delete_data(db, design.project_id, record, event_id, fields, instance)
            whole = event_ids == [None] and fields is None and instance is None
            where = event_ids[0] if event_ids[0] is not None else design.default_event_id()
            details = f"{design.record_id_field} = '{record}'" if whole else "Delete data"
            api.store.log(db, design.project_id, record_action(
                design, "Delete" if whole else "Update", record, where), details, record,
                username=api.username, ts=api.started)
    return render.bare_count(len(records), api.return_format)


def record_action(design: Design, verb: str, record: str, event_id: int) -> str:
    """A record row's action as REDCap words it (§1): `Update record (API) 01-001 (Day 0)`,
    the event's label added in longitudinal projects."""
    action = f"{verb} record (API) {record}"
    return f"{action} ({event_label(design, event_id)})" if design.is_longitudinal else action


def rename(api: ApiRequest) -> Reply:
    """Rename Record (`action=rename`): answers `1`; logged as an UPDATE on the new name with
    `old_record = 'a', new_record = 'b'` (§1, §2, `API/record/rename.php`)."""
    design = api.project
    old, new = api.get("record").strip(), api.get("new_record_name").strip()
    if not old:
        raise ApiError(400, "The parameter 'record' is missing.")
    if not new:
        raise ApiError(400, "The parameter 'new_record_name' is missing.")
    existing = set(api.store.record_names(design.project_id))
    if old not in existing:
        raise ApiError(400, f"The record '{old}' does not exist.")
    if new in existing and new != old:
        raise ApiError(400, f"The record '{new}' already exists.")
    event_ids = None
    if api.get("arm"):
        event_ids = [e.event_id for e in design.events if str(e.arm_num) == api.get("arm")]
        if not event_ids:
            raise _invalid("arm", [api.get("arm")])
    with api.store.write() as db:
        api.store.rename_record(db, design.project_id, old, new, event_ids)
        event_id = event_ids[0] if event_ids else design.default_event_id()
        api.store.log(db, design.project_id, record_action(design, "Update", new, event_id),
                      f"old_record = '{old}', new_record = '{new}'", new, username=api.username,
                      ts=api.started)
    return Reply("1", media_type="text/plain")
