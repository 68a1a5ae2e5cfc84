"""Date parsing for datediff/calcdate: the column-wise path reads dates as the scalar one does."""
from __future__ import annotations

from datetime import date, datetime

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sync.logic.dates import DATE, DATETIME, TIME, convert_literal, moment, moments

TODAY, NOW = date(2024, 6, 15), datetime(2024, 6, 15, 9, 30, 5)

texts = st.one_of(
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(0, 9999),
              st.integers(0, 13), st.integers(0, 32)),
    st.builds(lambda y, m, d, h: f"{y:04d}-{m:02d}-{d:02d} {h:02d}:05", st.integers(1900, 2100),
              st.integers(1, 12), st.integers(1, 31), st.integers(0, 23)),
    st.sampled_from(["", "UNK", "today", "now", "10:30", "2020-1-5", "２０２０-01-01", "2020/01/05"]),
)


@given(st.lists(texts, max_size=12))
def test_column_parse_matches_the_scalar_parse(values):
    seconds, kinds = moments(np.array(values, dtype=object), TODAY, NOW, ("UNK",))
    for text, second, kind in zip(values, seconds, kinds):
        found = None if text in ("", "UNK") else moment(text, TODAY, NOW)
        assert (kind, second) == (found[1], found[0]) if found else kind == 0


def test_impossible_dates_roll_over_like_mktime():
    assert moment("2021-02-29", TODAY, NOW) == moment("2021-03-01", TODAY, NOW)
    assert moment("2020-13-01", TODAY, NOW) == moment("2021-01-01", TODAY, NOW)


def test_kinds_of_moments():
    assert [moment(t, TODAY, NOW)[1] for t in ("2020-01-01", "2020-01-01 10:00", "10:00")] == [
        DATE, DATETIME, TIME]


def test_mdy_and_dmy_literals_become_ymd():
    assert convert_literal("08-31-2020", "mdy") == "2020-08-31"
    assert convert_literal("31-08-2020 10:00", "dmy") == "2020-08-31 10:00"
    assert convert_literal("2020-08-31", "mdy") == "2020-08-31"
