"""`content=exportFieldNames`: one row per export column of each field (§4.5)."""
from __future__ import annotations

from sync.crf.redcap_spec import checkbox_export_name
from sync.server import render
from sync.server.app import ApiRequest
from sync.server.render import ApiError, Reply
from sync.server.rows import choices_of

HEADER = ["original_field_name", "choice_value", "export_field_name"]


def export(api: ApiRequest) -> Reply:
    """Export List of Export Field Names; `field` narrows to one field.

    File and descriptive fields are left out, calc fields are listed: PyCap's doctest project
    lists no `upload_field`, and its suite counts 16 names for the simple project, which holds
    only with its two calcs (api_docs_115 names calc among the omitted types).
    """
    design = api.project
    only = api.get("field")
    if only and only not in design.by_name:
        raise ApiError(400, f"The field '{only}' does not exist in the project.")
    rows: list[dict[str, str]] = []
    for i, meta in enumerate(design.fields):
        name, form = meta["field_name"], meta["form_name"]
        if meta["field_type"] not in ("descriptive", "file") and (not only or only == name):
            if meta["field_type"] == "checkbox":
                rows += [{"original_field_name": name, "choice_value": code,
                          "export_field_name": checkbox_export_name(name, code)}
                         for code, _ in choices_of(meta)]
            else:
                rows.append({"original_field_name": name, "choice_value": "",
                             "export_field_name": name})
        last = i + 1 == len(design.fields) or design.fields[i + 1]["form_name"] != form
        if last and not only:
            rows.append({"original_field_name": f"{form}_complete", "choice_value": "",
                         "export_field_name": f"{form}_complete"})
    return render.table(rows, api.fmt, HEADER, root="fields", item="field")
