"""`content=metadata`, `exportFieldNames`, `instrument` (§4.1, §4.5, §6.4)."""
from __future__ import annotations

from pathlib import Path

import pytest
from redcap import RedcapError

from sync.crf.redcap_spec import METADATA_KEYS

SIMPLE = (Path(__file__).resolve().parents[1] / "data" / "classic_project.xml").read_text()


def test_metadata_export_converts_legacy_names_and_joins_choices(new_project):
    rows = {r["field_name"]: r for r in new_project(SIMPLE).export_metadata()}
    assert list(rows["weight"]) == list(METADATA_KEYS)
    assert (rows["weight"]["text_validation_type_or_show_slider_number"],
            rows["weight"]["text_validation_min"], rows["weight"]["text_validation_max"]) == (
        "integer", "35", "200")
    assert rows["address"]["field_type"] == "notes"
    assert rows["race"]["field_type"] == "dropdown"
    assert rows["sex"]["select_choices_or_calculations"] == "0, Female | 1, Male"
    assert "demographics_complete" not in rows


def test_metadata_import_replaces_the_dictionary(new_project):
    project = new_project()
    rows = [{"field_name": "subject_id", "form_name": "screening", "field_type": "text",
             "field_label": "Subject"},
            {"field_name": "consent", "form_name": "screening", "field_type": "yesno",
             "field_label": "Consented?"}]
    assert project.import_metadata(rows) == 2
    assert [r["field_name"] for r in project.export_metadata()] == ["subject_id", "consent"]
    assert project.export_instruments() == [{"instrument_name": "screening",
                                             "instrument_label": "Screening"}]


@pytest.mark.parametrize(("rows", "message"), [
    ([("1abc", "f", "text", "")], "Row 2: the variable name '1abc' must begin with a letter."),
    ([("a", "f", "text", ""), ("b___c", "f", "text", "")],
     "Row 3: the variable name 'b___c' must not contain three underscores in a row."),
    ([("a", "f", "text", ""), ("a", "f", "text", "")],
     "Row 3: the variable name 'a' is used more than once."),
    ([("a", "f", "text", ""), ("event_id", "f", "text", "")],
     "Row 3: the variable name 'event_id' is a name REDCap reserves."),
    ([("a", "f", "text", ""), ("b", "f", "radio", "")],
     "Row 3: the multiple choice field 'b' has no choices."),
    ([("a", "f", "text", ""), ("b", "f", "radio", "1, A | x y, B")],
     "Row 3: the choice codes x y of field 'b' are not valid."),
    ([("a", "f", "text", ""), ("b", "f", "button", "")],
     "Row 3: the field type 'button' is not valid."),
    ([("a", "f", "text", ""), ("b", "g", "text", ""), ("c", "f", "text", "")],
     "Row 4: the rows of form 'f' are not together; forms must be sequential."),
])
def test_metadata_import_errors_name_the_row(new_project, rows, message):
    project = new_project()
    upload = [{"field_name": n, "form_name": f, "field_type": t, "field_label": n,
               "select_choices_or_calculations": c} for n, f, t, c in rows]
    with pytest.raises(RedcapError) as raised:
        project.import_metadata(upload)
    assert raised.value.args[0] == {"error": message}
    assert [r["field_name"] for r in project.export_metadata()] == ["record_id"]


def test_metadata_import_fixes_names_as_redcap_does(new_project):
    project = new_project()
    project.import_metadata([{"field_name": "Subject ID", "form_name": "Screening Form",
                              "field_type": "text", "field_label": "ID"}])
    assert [(r["field_name"], r["form_name"]) for r in project.export_metadata()] == [
        ("subject_id", "screening_form")]


def test_export_field_names_expand_checkboxes(new_project):
    project = new_project()
    project.import_metadata([
        {"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"},
        {"field_name": "cb", "form_name": "f", "field_type": "checkbox", "field_label": "CB",
         "select_choices_or_calculations": "1, A | -1, B"}])
    assert project.export_field_names() == [
        {"original_field_name": "record_id", "choice_value": "", "export_field_name": "record_id"},
        {"original_field_name": "cb", "choice_value": "1", "export_field_name": "cb___1"},
        {"original_field_name": "cb", "choice_value": "-1", "export_field_name": "cb____1"},
        {"original_field_name": "f_complete", "choice_value": "",
         "export_field_name": "f_complete"}]
