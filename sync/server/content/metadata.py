"""`content=metadata`: export the data dictionary, import it with REDCap's upload checks (§4)."""
from __future__ import annotations

import re

from sync.crf.redcap_spec import (
    CHOICE_CODE, CHOICE_FIELD_TYPES, FIELD_TYPES, LEGACY_FIELD_TYPES, METADATA_KEYS,
    RESERVED_FIELD_NAMES, VALIDATION_TYPES, canonical_validation, parse_choices,
)
from sync.server import render
from sync.server.app import ApiRequest
from sync.server.parse import parse_rows
from sync.server.render import ApiError, Reply
from sync.server.store import MANAGE

def export(api: ApiRequest) -> Reply:
    """Export Metadata: dictionary rows in field order; `fields` and `forms` are unioned."""
    design = api.project
    fields, forms = api.list("fields"), api.list("forms")
    unknown = [f for f in fields if f not in design.by_name]
    if unknown:
        raise ApiError(400, 'The following values in the parameter "fields" are not valid: '
                            + ", ".join(f"'{f}'" for f in unknown))
    rows = [{k: f.get(k, "") for k in METADATA_KEYS} for f in design.fields
            if (not fields and not forms) or f["field_name"] in fields or f["form_name"] in forms]
    return render.table(rows, api.fmt, list(METADATA_KEYS))


def _name_errors(name: str, row: int, seen: set[str], forms: set[str]) -> list[str]:
    """Field-name errors after REDCap's silent fixes (`MetaData::error_checking`, §4.5)."""
    problems = []
    if not name or name[0] in "0123456789" or name.startswith("_"):
        problems.append("must begin with a letter")
    if name.endswith("_"):
        problems.append("must not end with an underscore")
    if "___" in name:
        problems.append("must not contain three underscores in a row")
    if len(name) > 100:
        problems.append("must be 100 characters or fewer")
    if name in seen:
        problems.append("is used more than once")
    if name in RESERVED_FIELD_NAMES or name in {f"{f}_complete" for f in forms}:
        problems.append("is a name REDCap reserves")
    return [f"Row {row}: the variable name '{name}' {p}." for p in problems]


def _row_errors(row: dict[str, str], i: int) -> list[str]:
    errors = []
    kind, validation = row["field_type"], row["text_validation_type_or_show_slider_number"]
    if kind not in FIELD_TYPES:
        errors.append(f"Row {i}: the field type '{kind}' is not valid.")
    if kind == "text" and validation and validation not in VALIDATION_TYPES:
        errors.append(f"Row {i}: the validation type '{validation}' is not valid.")
    if kind in CHOICE_FIELD_TYPES:
        choices = parse_choices(row["select_choices_or_calculations"])
        if not choices:
            errors.append(f"Row {i}: the multiple choice field '{row['field_name']}' has no "
                          "choices.")
        bad = [code for code, _ in choices if not CHOICE_CODE.match(code)]
        if bad:
            errors.append(f"Row {i}: the choice codes {', '.join(bad)} of field "
                          f"'{row['field_name']}' are not valid.")
    if kind == "calc" and not row["select_choices_or_calculations"].strip():
        errors.append(f"Row {i}: the calculated field '{row['field_name']}' has no equation.")
    if not row["form_name"]:
        errors.append(f"Row {i}: the form name is missing.")
    return errors


def _check(rows: list[dict[str, str]]) -> list[str]:
    """REDCap's blocking dictionary errors, row numbers as in the uploaded file."""
    errors: list[str] = []
    seen: set[str] = set()
    forms: list[str] = []
    for i, row in enumerate(rows, start=2):
        errors += _name_errors(row["field_name"], i, seen, set(forms))
        errors += _row_errors(row, i)
        form = row["form_name"]
        if forms and form != forms[-1] and form in forms:
            errors.append(f"Row {i}: the rows of form '{form}' are not together; forms must be "
                          "sequential.")
        if not forms or forms[-1] != form:
            forms.append(form)
        seen.add(row["field_name"])
    return errors


def _fix_name(name: str) -> str:
    """REDCap's automatic fix of names: lower case, blanks to `_`, other signs dropped."""
    return re.sub(r"[^a-z0-9_]", "", re.sub(r"\s+", "_", name.strip().lower()))


def _clean(row: dict[str, str]) -> dict[str, str]:
    clean = {k: str(row.get(k) or "").strip() for k in METADATA_KEYS}
    clean["field_name"] = _fix_name(clean["field_name"])
    clean["form_name"] = _fix_name(clean["form_name"])
    clean["field_type"] = LEGACY_FIELD_TYPES.get(clean["field_type"], clean["field_type"])
    if clean["field_type"] == "text":
        validation = clean["text_validation_type_or_show_slider_number"]
        clean["text_validation_type_or_show_slider_number"] = canonical_validation(validation)
    for key in ("identifier", "required_field", "matrix_ranking"):
        clean[key] = "y" if clean[key].lower() == "y" else ""
    if clean["field_type"] in ("notes", "file", "yesno", "truefalse", "descriptive"):
        clean["select_choices_or_calculations"] = ""
    return clean


def import_metadata(api: ApiRequest) -> Reply:
    """Import Metadata: the whole dictionary is replaced; returns the number of fields."""
    rows = [_clean(r) for r in parse_rows(api.get("data"), api.fmt)]
    if not rows:
        raise ApiError(400, "No data was provided.")
    errors = _check(rows)
    if errors:
        raise ApiError(400, "\n".join(errors))
    rows[0]["section_header"] = ""
    rows[0]["field_type"] = "text"
    with api.store.write() as db:
        api.store.replace_metadata(db, api.project.project_id, rows, {})
        api.store.log(db, api.project.project_id, MANAGE,
                      "Upload data dictionary (API)", logtype="manage", username=api.username)
    return render.count(len(rows), api.return_format)
