"""The embedded server's CSV as PHP's `fputcsv` writes it: a cell is quoted when it holds the
delimiter, the enclosure, the escape character (backslash), a line break, a tab or a blank,
quotes doubled (php-src ext/standard/file.c, `php_fputcsv`'s FPUTCSV_FLD_CHK list); a row of
plain cells is written in one join, so it must give the same text."""
from __future__ import annotations

import csv
import io

from hypothesis import given, strategies as st

from sync.server.render import csv_cell, csv_text

cells = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["", "1", "2024-01-05", "a_b"]),
                  st.text(alphabet=st.sampled_from(list('ab1,"\n\r\t \\;é')), max_size=6))


@given(st.lists(st.lists(cells, min_size=3, max_size=3), max_size=6))
def test_csv_text_is_every_cell_written_by_the_fputcsv_rule(rows):
    expected = "\n".join([",".join(["a", "b", "c"])]
                         + [",".join(map(csv_cell, row)) for row in rows]) + "\n"
    assert csv_text(["a", "b", "c"], rows) == expected


@given(st.lists(st.lists(st.text(max_size=5), min_size=2, max_size=2), min_size=1, max_size=5))
def test_a_csv_export_reads_back_cell_for_cell(rows):
    text = csv_text(["x", "y"], rows)
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert back[1:] == rows


def test_plain_and_special_cells():
    assert csv_text(["id", "note"], [["1", "plain"], ["2", "a, b"], ["3", 'say "hi"'],
                                     ["4", "back\\slash"], [None, 7]]) == (
        'id,note\n1,plain\n2,"a, b"\n3,"say ""hi"""\n4,"back\\slash"\n,7\n')
