"""Open-ended inputs: any record name REDCap accepts and any text value come back unchanged."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redcap import Project

from sync.server.rows import natural_key

NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="+'&#<>,\"")
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"),
               min_size=1, max_size=40).filter(lambda t: t.strip() == t and t != "")


@pytest.fixture(scope="module")
def notes_project(redcap_server):
    project = Project(redcap_server.url, redcap_server.create_project())
    project.import_metadata([
        {"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"},
        {"field_name": "note", "form_name": "f", "field_type": "notes", "field_label": "Note"}])
    return project


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=st.text(NAME_CHARS, min_size=1, max_size=20).filter(lambda t: t.strip() == t),
       note=TEXT)
def test_record_name_and_text_round_trip(notes_project, record, note):
    notes_project.import_records([{"record_id": record, "note": note}], overwrite="overwrite")
    rows = notes_project.export_records(records=[record])
    assert [(r["record_id"], r["note"]) for r in rows] == [(record, note)]
    notes_project.delete_records([record])


@given(st.lists(st.from_regex(r"[0-9]{1,3}|[a-zA-Z]{1,3}", fullmatch=True), min_size=2,
                max_size=8))
def test_natural_order_puts_numbers_by_value_before_text(names):
    ordered = sorted(names, key=natural_key)
    numbers = [n for n in ordered if n.isdigit()]
    assert numbers == sorted(numbers, key=int)
    assert ordered[:len(numbers)] == numbers
    texts = [n for n in ordered if not n.isdigit()]
    assert [t.lower() for t in texts] == sorted(t.lower() for t in texts)
