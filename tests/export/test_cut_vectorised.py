"""The cut's column-at-a-time text work gives what the value-at-a-time rules give (#17).

XPT character values, CSV cells and REDCap's natural record order are worked out once per
distinct value and applied to a whole column; on any text they must agree with the rule
applied to each value by itself, or a file's bytes would change with the data's repetition.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.export.annotations import ascii_text
from sync.export.files import arrow_table, format_number, raw_csv, text_array, text_column
from sync.export.tables import CutTable, natural_key, natural_ranks
from sync.export.xpt import MAX_VALUE, CharacterColumn, XptColumn, xpt_records

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=260)
CELLS = st.lists(st.one_of(TEXT, st.sampled_from(["", " a  b ", "µg/L", "x" * 201]),
                           st.none(), st.floats(allow_nan=True), st.integers()), max_size=30)


def value_by_value(values: pd.Series) -> list[str]:
    """The XPT rule one value at a time, as the cut applied it before: blank for missing, text of
    anything else, ASCII (cut to 200 by the caller)."""
    text = values.fillna("").astype(str)
    return text.map(lambda v: v if v.isascii() and v.isprintable() and "  " not in v
                    else ascii_text(v)).tolist()


@pytest.mark.filterwarnings("ignore:Downcasting object dtype:FutureWarning")
@settings(max_examples=300, deadline=None)
@given(CELLS)
def test_xpt_character_values_match_the_value_by_value_rule(cells):
    column = CharacterColumn.of(pd.Series(cells, dtype=object))
    expected = value_by_value(pd.Series(cells, dtype=object))
    assert column.series(pd.RangeIndex(len(cells))).tolist() == [v[:MAX_VALUE] for v in expected]
    assert column.too_long == sum(len(v) > MAX_VALUE for v in expected)
    width = max([1] + [len(v[:MAX_VALUE]) for v in expected])
    records = xpt_records(len(cells), [XptColumn("V", "V", False, width)],
                          lambda _: column)
    by_value = b"".join(np.char.ljust(np.array([v[:MAX_VALUE].encode("ascii")],
                                               dtype=f"S{width}"), width)[0].ljust(width)
                        for v in expected)
    assert records == by_value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[0-9A-Za-z\-]{0,8}", fullmatch=True), max_size=40),
       st.lists(st.integers(0, 3), max_size=40))
def test_natural_ranks_sort_as_natural_key_does(records, visits):
    visits = (visits + [0] * len(records))[:len(records)]
    by_key = sorted(range(len(records)), key=lambda i: (natural_key(records[i]), visits[i], i))
    ranks = natural_ranks(pd.Series(records, dtype=object))
    assert list(np.lexsort((np.array(visits, dtype=float), ranks))) == by_key


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_infinity=False)), max_size=20))
def test_csv_cells_of_numbers_match_the_value_by_value_rule(values):
    series = pd.Series(values, dtype="float64")
    assert text_column(series, "number") == [
        "" if v is None or v != v else format_number(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), max_size=20))
def test_csv_cells_of_text_match_the_value_by_value_rule(values):
    series = pd.Series(values, dtype="string")
    assert text_column(series, "string") == ["" if v is None else v for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), max_size=20),
       st.lists(st.one_of(st.none(), st.integers(-2**62, 2**62)), min_size=20, max_size=20))
def test_csv_text_taken_from_arrow_matches_the_cells_rule(texts, numbers):
    frame = pd.DataFrame({"t": pd.Series(texts, dtype="string"),
                          "n": pd.Series(numbers[:len(texts)], dtype="Int64")})
    table = CutTable(name="x", frame=frame, kinds={"t": "string", "n": "integer"})
    typed = arrow_table(table)
    for i, (column, kind) in enumerate((("t", "string"), ("n", "integer"), ("n", "checkbox"))):
        found = text_array(frame[column], kind, typed.column(i if i < 2 else 1))
        assert found.to_pylist() == text_column(frame[column], kind)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(TEXT, min_size=3, max_size=3), max_size=12), st.booleans())
def test_raw_csv_is_what_pandas_writes(rows, header):
    frame = pd.DataFrame(rows, columns=["record_id", "a,b", 'say "x"'], dtype=object)
    assert raw_csv(frame, header) == frame.to_csv(index=False, header=header,
                                                  lineterminator="\n").encode("utf-8")


def representative_by_pandas(frame: pd.DataFrame, code: str, numeric: set[str]) -> list[int]:
    """The representative rows as the cut chose them before, with pandas' groupings."""
    frame = frame.reset_index(drop=True)
    keep: set[int] = {0} if len(frame) else set()
    categories = [c for c in frame.columns if c.endswith("TESTCD") or (
        c.endswith("TEST") and f"{c}CD" in frame)] + [
        c for c in [f"{code}{s}" for s in ("ORRESU", "STRESU", "CAT")] + [
            "EPOCH", "AGEU", "ARMNRS", "QNAM"] if c in frame]
    if categories:
        keep |= set(frame.drop_duplicates(categories).index)
    for column in numeric & set(frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        fractional = values.notna() & (values != values.round())
        keep |= set(fractional[fractional].index[:1])
    testcd, results = (("QNAM", ("QVAL",)) if "QNAM" in frame
                       else (f"{code}TESTCD", (f"{code}ORRES", f"{code}STRESC")))
    if testcd in frame and len(frame):
        for column in results:
            if column not in frame:
                continue
            text = frame[column].fillna("").astype(str)
            number = pd.to_numeric(text.replace("", pd.NA), errors="coerce").astype("float64")
            marks = pd.DataFrame({"test": frame[testcd], "length": text.str.len(),
                                  "text": number.isna(),
                                  "fraction": number.notna() & (number != number.round())})
            keep |= set(marks.groupby("test", sort=False)["length"].idxmax())
            for flag in ("text", "fraction"):
                keep |= set(marks[marks[flag]].drop_duplicates("test").index)
    return sorted(keep)


RESULT = st.one_of(st.sampled_from(["", "1", "1.5", "-2", "abc", "NEG", "10.25", "1e3", " 7"]),
                   st.none())


@pytest.mark.filterwarnings("ignore::FutureWarning")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["HGB", "WBC", "PLT", None]), RESULT,
                          st.sampled_from(["g/L", "", None]), st.sampled_from(["A", "B", ""]),
                          st.one_of(st.floats(-5, 5), st.none())), max_size=40),
       st.booleans())
def test_representative_rows_match_the_pandas_rule(rows, supplemental):
    from sync.export.spool import representative_rows
    from sync.export.tables import text_codes
    names = (["QNAM", "QVAL", "LBORRESU", "EPOCH", "LBSTRESN"] if supplemental else
             ["LBTESTCD", "LBORRES", "LBORRESU", "EPOCH", "LBSTRESN"])
    frame = pd.DataFrame(rows or None, columns=names, dtype=object)
    frame["LBSTRESN"] = pd.to_numeric(frame["LBSTRESN"]).astype("float64")
    frame.index = frame.index * 3 + 5
    encoded = {c: text_codes(frame[c]) for c in names[:4]}
    chosen = representative_rows(frame, "LB", {"LBSTRESN"}, encoded)
    assert list(frame.index.get_indexer(chosen.index)) == representative_by_pandas(
        frame, "LB", {"LBSTRESN"})
