"""The sync and the cut pull REDCap's CSV export (`sync.pull.pull_batches`, `pull_groups`, #17):
whatever a site typed, the frame is the one REDCap's JSON export gives, cell for cell; an answer
that is not whole CSV is asked again as JSON; and an incomplete answer stops the cut as it stops
the sync.

REDCap writes CSV as PHP's `fputcsv` does (a cell quoted when it holds a comma, quote, blank or
line break: redcap-behaviour.md, response formats), so quoted commas, doubled quotes and line
breaks inside a value must come back as typed, and `NA`, `null` or `007` stay text.
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redcap import Project

from sync.connection import connect
from sync.errors import PullIncomplete
from sync.pull import (export_table, pull_batches, pull_groups, record_ids_of, records_csv_frame,
                       records_csv_table, records_frame)
from tests.test_sync import DICTIONARY, trial
from sync.demo.data import demo_records

FREE_TEXT = "othvir_spec"
"""A text field without validation on the screening event's etiology form."""

TRICKY = ["a, b", 'say "no"', "two\nlines", "cr\r\nlf", "NA", "null", "007", " padded ",
          "", "é ü 中文 🙂", ",", '"', "=1+1", "line\n\nblank"]


@pytest.fixture(scope="module")
def project(redcap_server, tmp_path_factory):
    settings = trial(redcap_server, tmp_path_factory.mktemp("csv") / "state.sqlite",
                     demo_records(3))
    conn = connect(settings)
    ids = [str(r["record_id"]) for r in conn.project.export_records(
        format_type="json", fields=["record_id"])]
    return settings, conn, list(dict.fromkeys(ids))


def _set(settings, record: str, value: str) -> None:
    Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value()
            ).import_records([{"record_id": record, "redcap_event_name": "screening_arm_1",
                               FREE_TEXT: value}], overwrite="overwrite")


def _json(conn, ids: list[str]) -> pd.DataFrame:
    """The records as REDCap's JSON export gives them: the reference the CSV must match."""
    return records_frame(conn.project.export_records(format_type="json", records=ids),
                         DICTIONARY.export_columns())


def _both(conn, ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The JSON reference, and the cut's CSV pull, after checking the sync's gives the same."""
    as_json = _json(conn, ids)
    as_csv = pd.concat(list(pull_groups(conn, DICTIONARY, [ids])), ignore_index=True)
    in_batches = pd.concat(list(pull_batches(conn, DICTIONARY, ids, 2)), ignore_index=True)
    pd.testing.assert_frame_equal(in_batches, as_csv)
    return as_json, as_csv


@pytest.mark.parametrize("value", TRICKY)
def test_a_typed_value_comes_back_from_csv_as_from_json(project, value):
    settings, conn, ids = project
    _set(settings, ids[0], value)
    as_json, as_csv = _both(conn, ids)
    pd.testing.assert_frame_equal(as_csv, as_json)
    screening = as_csv[(as_csv["record_id"] == ids[0])
                       & (as_csv["redcap_event_name"] == "screening_arm_1")
                       & (as_csv["redcap_repeat_instrument"] == "")]
    assert screening[FREE_TEXT].tolist() == [as_json.loc[screening.index[0], FREE_TEXT]]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=["Cs", "Cc"]) | st.sampled_from(",\"\n"),
               max_size=30))
def test_any_text_comes_back_from_csv_as_from_json(project, value):
    settings, conn, ids = project
    _set(settings, ids[1], value)
    as_json, as_csv = _both(conn, ids)
    pd.testing.assert_frame_equal(as_csv, as_json)


def test_php_style_backslash_quote_is_not_guessed_at():
    php = 'record_id,note\n1,"say \\"hi\\" twice"\n'  # fputcsv with its default escape
    assert records_csv_frame(php) is None
    assert records_csv_frame('record_id,note\n1,"say ""hi"""\n')["note"].tolist() == ['say "hi"']


@pytest.mark.parametrize("text", [
    'record_id,note\n1,"two\nlines"\n2,cut he',    # cut inside a row: pandas would pad it
    'record_id,note\n1,"two\n',                      # cut inside a quoted line break
    'record_id,note\n1,a,b\n',                        # a row longer than the header
], ids=["cut mid-row", "cut in a quoted line break", "row longer than its header"])
def test_an_answer_that_is_not_whole_csv_is_not_read_as_records(text):
    """Read as CSV, a cut-off answer's last row would come back with blanks for what was cut
    (the reader pads short rows): the sync would see values a site never cleared."""
    assert records_csv_frame(text) is None
    assert records_csv_table(text) is None


def test_a_value_with_a_backslash_before_a_quote_is_exported_again_as_json(project, caplog):
    settings, conn, ids = project
    _set(settings, ids[2], 'C:\\temp\\"x"')
    before = conn.calls
    with caplog.at_level("INFO", logger="sync.pull"):
        as_csv = pd.concat(list(pull_groups(conn, DICTIONARY, [ids])), ignore_index=True)
    assert conn.calls - before == 2, "one CSV export, then the same records as JSON"
    assert "asking for the same records as JSON" in caplog.text, "the log says why"
    pd.testing.assert_frame_equal(as_csv, _json(conn, ids))
    assert 'C:\\temp\\"x"' in set(as_csv[FREE_TEXT])


def test_groups_come_back_in_turn_each_whole(project):
    _, conn, ids = project
    frames = list(pull_groups(conn, DICTIONARY, [ids[:1], ids[1:]]))
    assert [sorted(set(f["record_id"])) for f in frames] == [ids[:1], sorted(ids[1:])]


def test_a_record_that_is_not_there_stops_the_pull(project):
    _, conn, ids = project
    with pytest.raises(PullIncomplete,
                       match=r"missing \['no-such-record'\].*cut was not written; run ecrf export"):
        list(pull_groups(conn, DICTIONARY, [ids[:1], ["no-such-record"]]))


def _csv(rows: list[list[str]]) -> str:
    """CSV as PHP's `fputcsv` writes it when no value holds a backslash: a value holding a
    comma, quote, line break, tab or space quoted, its quotes doubled."""
    def cell(value: str) -> str:
        if any(c in value for c in ',"\n\r\t '):
            return '"' + value.replace('"', '""') + '"'
        return value
    return "".join(",".join(cell(v) for v in row) + "\n" for row in rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(blacklist_categories=["Cs", "Cc"],
                                               blacklist_characters="\\")
                                 | st.sampled_from("\r\n\t"), max_size=12)
                         | st.sampled_from(["", "NA", "null", "007", " ", ",", '"', "\n"]),
                         min_size=2, max_size=2), max_size=8))
def test_a_whole_project_export_reads_from_arrow_as_from_pandas(rows):
    """The narrow whole-project exports (record ids, the fields rules compare across records)
    are parsed by Arrow, making no Python object per cell: every cell reads as the batches'
    CSV reader gives it."""
    text = _csv([["record_id", "note"], *rows])
    table = records_csv_table(text)
    pd.testing.assert_frame_equal(table.to_pandas(), records_csv_frame(text))
    assert record_ids_of(table, "record_id") == list(dict.fromkeys(r[0] for r in rows))


def test_a_whole_project_export_with_a_backslash_before_a_quote_is_asked_again_as_json(project):
    settings, conn, ids = project
    _set(settings, ids[2], 'C:\\temp\\"x"')
    before = conn.calls
    table = export_table(conn, "export record ids", ["record_id", FREE_TEXT])
    assert conn.calls - before == 2, "one CSV export, then the same fields as JSON"
    as_json = records_frame(conn.project.export_records(format_type="json",
                                                        fields=["record_id", FREE_TEXT]))
    pd.testing.assert_frame_equal(table.to_pandas(), as_json)
    assert record_ids_of(table, "record_id") == ids


def test_the_sync_and_the_cut_give_arrow_and_large_blocks_back_to_the_system():
    """`ecrf sync` and `ecrf export` run on glibc's heap with a fixed mmap threshold, Arrow
    included (`sync.memory.steady_allocator`); set in a child, being process-wide."""
    done = subprocess.run([sys.executable, "-c", (
        "import pyarrow as pa; from sync.memory import steady_allocator; "
        "before = pa.default_memory_pool().backend_name; steady_allocator(); "
        "print(before, pa.default_memory_pool().backend_name)")],
        capture_output=True, text=True, check=True)
    before, after = done.stdout.split()
    assert before != "system" and after == "system"
