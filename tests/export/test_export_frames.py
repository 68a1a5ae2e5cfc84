"""The cut's building blocks on frames small enough to read: checkbox states, row selection,
annotation parsing, date shifting, XPT names and header stamps.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pandas as pd
import pyreadstat
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.export import write_cut
from sync.export.annotations import Target, targets
from sync.export.deidentify import pseudonym, shift_days, shift_text
from sync.export.files import format_number
from sync.export.meta import schema_of
from sync.export.tables import CutTable, instrument_table, normalise_raw, rows_of_form
from sync.export.xpt import (
    XptColumn, define_document, pin_timestamps, sas_stamp, write_xpt, xpt_header, xpt_name,
)
from sync.crf.redcap_spec import METADATA_KEYS


def metadata(*rows: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{key: row.get(key, "") for key in METADATA_KEYS} for row in rows])


TINY = SimpleNamespace(metadata=metadata(
    {"field_name": "record_id", "form_name": "visit", "field_type": "text", "field_label": "ID"},
    {"field_name": "ill", "form_name": "visit", "field_type": "yesno", "field_label": "Ill?"},
    {"field_name": "symptoms", "form_name": "visit", "field_type": "checkbox",
     "field_label": "Symptoms", "select_choices_or_calculations": "1, Fever | 2, Cough | -1, None",
     "branching_logic": "[ill] = '1'"},
    {"field_name": "seen", "form_name": "visit", "field_type": "text", "field_label": "Seen on",
     "text_validation_type_or_show_slider_number": "date_ymd"},
    {"field_name": "note", "form_name": "extra", "field_type": "notes", "field_label": "Note"},
))
TINY_RAW = pd.DataFrame({
    "record_id": ["007", "010", "008", "011"],
    "ill": ["1", "0", "", "0"],
    "symptoms___1": ["1", "0", "0", "0"], "symptoms___2": ["0", "0", "0", "1"],
    "symptoms____1": ["0", "0", "0", "0"],
    "seen": ["2024-02-29", "2024-03-01", "", ""],
    "visit_complete": ["2", "1", "0", "1"],
    "note": ["", "", "", ""], "extra_complete": ["0", "0", "0", "0"],
})


def test_checkbox_choices_tell_checked_unchecked_and_not_applicable():
    schema = schema_of(TINY)
    raw = normalise_raw(TINY_RAW, schema)
    table = instrument_table(raw, schema, "visit", set(), lambda expression: raw["ill"] == "1")
    frame = table.frame
    assert frame["record_id"].tolist() == ["007", "010", "011"]
    assert frame["symptoms___1"].tolist() == [1, pd.NA, 0]
    assert frame["symptoms____1"].tolist() == [0, pd.NA, 0]
    assert frame["symptoms___1_state"].tolist() == ["checked", "not applicable", "unchecked"]
    assert frame["symptoms___2_state"].tolist() == ["unchecked", "not applicable", "checked"]
    assert frame["seen"].tolist() == [pd.Timestamp("2024-02-29"), pd.Timestamp("2024-03-01"),
                                      pd.NaT]
    assert table.labels["symptoms____1"] == "Symptoms (choice=None)"


def test_padded_checkboxes_and_gray_form_status_are_not_data():
    schema = schema_of(TINY)
    raw = normalise_raw(TINY_RAW, schema)
    assert rows_of_form(raw, schema, "extra", set()).empty
    assert rows_of_form(raw, schema, "visit", set())["record_id"].tolist() == ["007", "010", "011"]


def test_records_come_in_redcaps_natural_order():
    schema = schema_of(TINY)
    raw = normalise_raw(TINY_RAW.assign(record_id=["10", "9", "A-1", "a-0"]), schema)
    assert raw["record_id"].tolist() == ["9", "10", "a-0", "A-1"]


def test_cut_on_tiny_frames_uses_the_logic_engine_for_branching(tmp_path):
    manifest = write_cut(TINY_RAW, TINY, tmp_path / "cut", formats=("csv",),
                         cut_time=datetime(2025, 1, 31, tzinfo=timezone.utc),
                         redcap_version="15.7.6", log_cursor=None, rules_path=None,
                         tool_version="test")
    table = pd.read_csv(tmp_path / "cut" / "tables" / "visit.csv", dtype=str, keep_default_na=False)
    assert table["symptoms___1_state"].tolist() == ["checked", "not applicable", "unchecked"]
    assert table["symptoms___1"].tolist() == ["1", "", "0"]
    assert manifest.notes == []


def test_annotation_targets_read_conditions_constants_and_notes():
    field = schema_of(SimpleNamespace(metadata=metadata(
        {"field_name": "record_id", "form_name": "f", "field_type": "text"},
        {"field_name": "lb_wbc", "form_name": "f", "field_type": "text",
         "text_validation_type_or_show_slider_number": "number",
         "field_annotation": "@READONLY SDTM: LB.LBORRES WHERE LBTESTCD=WBC AND "
                             "LBCAT=HAEMATOLOGY; LBORRESU=10^9/L"},
        {"field_name": "age", "form_name": "f", "field_type": "text",
         "field_annotation": "SDTM: DM.AGE; DM.AGEU=YEARS"},
        {"field_name": "inf_start", "form_name": "f", "field_type": "text",
         "field_annotation": "SDTM: EC.ECSTDTC (time part)"},
    ))).fields
    assert targets(field[1]) == [Target("LB", "LBORRES", {"LBTESTCD": "WBC", "LBCAT": "HAEMATOLOGY"},
                                        {"LBORRESU": "10^9/L"})]
    assert targets(field[2]) == [Target("DM", "AGE", {}, {"AGEU": "YEARS"})]
    assert targets(field[3]) == [Target("EC", "ECSTDTC", note="time part")]
    assert field[1].unit == "10^9/L"


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
       st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
       st.text(alphabet="0123456789-", max_size=12), st.binary(min_size=1, max_size=16))
def test_shifted_dates_move_back_together_and_nothing_else_moves(first, second, noise, salt):
    days = shift_days("01-007", salt)
    assert 1 <= days <= 365
    text = f"{first.isoformat()} to {second.isoformat()} x{noise}"
    moved = re.findall(r"\d{4}-\d{2}-\d{2}", shift_text(text, days))[:2]
    assert moved == [(first - timedelta(days=days)).isoformat(),
                     (second - timedelta(days=days)).isoformat()]
    assert shift_text("no dates, 2024-02-30 is not one", days) == "no dates, 2024-02-30 is not one"


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30))
def test_xpt_names_are_short_unique_and_sas_safe(names):
    taken: set[str] = set()
    made = [xpt_name(name, taken) for name in names]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]{0,7}", name) for name in made)


def test_xpt_header_stamps_are_pinned_to_the_cut_time(tmp_path):
    path = tmp_path / "dm.xpt"
    pyreadstat.write_xport(pd.DataFrame({"A": ["x"]}), str(path), table_name="DM",
                           file_format_version=5)
    pin_timestamps(path, datetime(2025, 1, 31, 12, 0, 5))
    assert sas_stamp(datetime(2025, 1, 31, 12, 0, 5)) == b"31JAN25:12:00:05"
    assert path.read_bytes().count(b"31JAN25:12:00:05") == 4
    _, meta = pyreadstat.read_xport(str(path))
    assert (meta.creation_time, meta.modification_time) == (datetime(2025, 1, 31, 12, 0, 5),) * 2


_COLUMNS = st.lists(st.tuples(st.booleans(), st.integers(1, 200),
                              st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ /()", max_size=40)),
                    min_size=1, max_size=30)


@given(columns=_COLUMNS, name=st.sampled_from(["DM", "SUPPAE", "RELREC"]),
       label=st.sampled_from(["", "Demographics", "Supplemental Qualifiers for AE"]))
def test_xpt_header_is_the_one_pyreadstat_writes(tmp_path_factory, columns, name, label):
    """The streamed XPT's header, written without pyreadstat, has pyreadstat's bytes."""
    declared = [XptColumn(name=f"V{i}", label=text, numeric=numeric,
                          length=8 if numeric else length)
                for i, (numeric, length, text) in enumerate(columns)]
    path = tmp_path_factory.mktemp("xpt") / "header.xpt"
    moment = datetime(2026, 11, 30, 1, 2, 3)
    pyreadstat.write_xport(
        pd.DataFrame({c.name: [0.0] if c.numeric else ["x" * c.length] for c in declared}),
        str(path), file_label=label, table_name=name,
        column_labels={c.name: c.label for c in declared}, file_format_version=5)
    pin_timestamps(path, moment)
    written = path.read_bytes()
    assert written.startswith(xpt_header(name, label, declared, moment))
    assert len(written) == len(xpt_header(name, label, declared, moment)) + 80 * (
        -(-sum(c.length for c in declared) // 80))


@pytest.mark.parametrize("value, text", [(200.0, "200"), (0.1, "0.1"), (73.7, "73.7"),
                                         (1e-07, "1e-07"), (-3.0, "-3")])
def test_numbers_are_written_as_their_shortest_exact_text(value, text):
    assert format_number(value) == text


def test_xpt_renames_long_names_cuts_long_values_and_says_so(tmp_path):
    table = CutTable(
        name="XX", frame=pd.DataFrame({"USUBJID": ["S-1"], "LONGVARIABLE": ["é" + "a" * 250],
                                       "XXSEQ": [1.0]}),
        kinds={"USUBJID": "string", "LONGVARIABLE": "string", "XXSEQ": "number"},
        labels={"LONGVARIABLE": "A label that is far longer than forty characters"},
        sources={"LONGVARIABLE": "CRF: long_field"})
    dataset = write_xpt(table, tmp_path / "xx.xpt", datetime(2025, 1, 31))
    frame, meta = pyreadstat.read_xport(str(tmp_path / "xx.xpt"))
    assert list(frame.columns) == ["USUBJID", "LONGVARI", "XXSEQ"]
    assert frame.loc[0, "LONGVARI"] == "e" + "a" * 199
    assert meta.column_labels == ["Unique Subject Identifier",
                                  "A label that is far longer than forty ch", "Sequence Number"]
    assert [(v.name, v.source_name, v.type, v.length, v.origin, v.truncated)
            for v in dataset.variables] == [
        ("USUBJID", "USUBJID", "Char", 3, "CRF", 0),
        ("LONGVARI", "LONGVARIABLE", "Char", 200, "CRF: long_field", 1),
        ("XXSEQ", "XXSEQ", "Num", 8, "CRF", 0)]
    define = json.loads(define_document([dataset], "2025-01-31T00:00:00Z"))
    assert define["rename_map"] == {"XX.LONGVARIABLE": "LONGVARI"}


def test_pycap_frames_indexed_by_record_give_the_same_table():
    schema = schema_of(TINY)
    flat = normalise_raw(TINY_RAW, schema)
    indexed = normalise_raw(TINY_RAW.set_index("record_id"), schema)
    pd.testing.assert_frame_equal(indexed[list(flat.columns)], flat)


def test_comma_decimal_numbers_are_numbers():
    dictionary = SimpleNamespace(metadata=metadata(
        {"field_name": "record_id", "form_name": "f", "field_type": "text"},
        {"field_name": "dose", "form_name": "f", "field_type": "text",
         "text_validation_type_or_show_slider_number": "number_comma_decimal"}))
    schema = schema_of(dictionary)
    raw = normalise_raw(pd.DataFrame({"record_id": ["1", "2"], "dose": ["1,5", "2"]}), schema)
    table = instrument_table(raw, schema, "f", set(), lambda e: pd.Series(True, index=raw.index))
    assert table.frame["dose"].tolist() == [1.5, 2.0]
    assert table.kinds["dose"] == "number"


DEID = SimpleNamespace(metadata=metadata(
    {"field_name": "record_id", "form_name": "visit", "field_type": "text", "field_label": "ID"},
    {"field_name": "protocol_dat", "form_name": "visit", "field_type": "text",
     "field_label": "Protocol version date", "text_validation_type_or_show_slider_number": "date_ymd"},
    {"field_name": "seen", "form_name": "visit", "field_type": "text", "field_label": "Seen on",
     "text_validation_type_or_show_slider_number": "date_ymd"},
    {"field_name": "age", "form_name": "visit", "field_type": "text", "field_label": "Age",
     "text_validation_type_or_show_slider_number": "integer"},
    {"field_name": "comment", "form_name": "visit", "field_type": "notes", "field_label": "Note"},
    {"field_name": "term", "form_name": "visit", "field_type": "text", "field_label": "Term",
     "field_annotation": "@DEID-SAFE"},
    {"field_name": "pack", "form_name": "visit", "field_type": "text", "field_label": "Kit ID",
     "text_validation_type_or_show_slider_number": "integer"},
))


def test_deidentify_drops_study_wide_dates_free_text_kits_and_tops_ages(tmp_path):
    raw = pd.DataFrame({"record_id": ["01-001", "01-002"], "protocol_dat": ["2024-02-20"] * 2,
                        "seen": ["2024-05-01", "2024-05-03"], "age": ["93", "45"],
                        "comment": ["met Mr Smith 2024-05-01", ""],
                        "term": ["fever since 2024-04-30", "cough"], "pack": ["17", "18"],
                        "visit_complete": ["2", "2"]})
    manifest = write_cut(raw, DEID, tmp_path / "cut", deidentify=True, secret_salt=b"s",
                         formats=("csv",), cut_time=datetime(2025, 1, 1), redcap_version="15.7.6",
                         log_cursor=None, rules_path=None, tool_version="0")
    table = pd.read_csv(tmp_path / "cut" / "tables" / "visit.csv", dtype=str,
                        keep_default_na=False)
    assert list(table.columns[3:7]) == ["seen", "age", "term", "visit_complete"]
    assert manifest.deidentification["fields_dropped"] == {
        "kit number": ["pack"], "free text or notes": ["comment"],
        "study-wide date": ["protocol_dat"]}
    ages = dict(zip(table["record_id"], table["age"]))
    by_real = {r: pseudonym(r, b"s") for r in ("01-001", "01-002")}
    assert ages == {by_real["01-001"]: "90", by_real["01-002"]: "45"}
    first = table[table["record_id"] == by_real["01-001"]].iloc[0]
    days = shift_days("01-001", b"s")
    assert first["term"] == f"fever since {date(2024, 4, 30) - timedelta(days=days)}"
    assert first["seen"] == str(date(2024, 5, 1) - timedelta(days=days))
