"""A saved calc value against its recomputed one, judged as REDCap's Data Quality rule H judges
it (`Calculate::calculateMultipleFields`: a loose PHP comparison, then both numbers rounded to
the fewer decimals of the two). A browser saves a calc as JavaScript writes the number, an API
import as PHP does; CALC_STALE must not call either stale when rule H would leave it as it is."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.logic import calc_values_agree
from sync.logic.php import float_to_str


@pytest.mark.parametrize(("saved", "calculated"), [
    ("200.0", "200"),                               # PHP 8: numeric strings compare as numbers
    ("380.95238095238096", "380.95238095238"),      # a browser's 17 digits, PHP's 14
    ("380.95", "380.95238095238"),                  # both rounded to 2 decimals
    ("200", "200.04"),                              # no point counts as one decimal
    ("0", "0.03125"),
    ("1e+22", "1.0E+22"),
    ("", ""),
])
def test_rule_h_leaves_these_saved_values_alone(saved: str, calculated: str) -> None:
    assert calc_values_agree(saved, calculated)


@pytest.mark.parametrize(("saved", "calculated"), [
    ("50", "25"), ("200", "200.06"), ("380.9", "380.95238095238"), ("", "200"), ("200", ""),
    ("abc", "200"), ("NAN", "200"),
])
def test_rule_h_calls_these_saved_values_wrong(saved: str, calculated: str) -> None:
    assert not calc_values_agree(saved, calculated)


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(finite)
def test_a_value_written_by_a_browser_agrees_with_phps_text_of_it(number: float) -> None:
    """JavaScript's number text is the shortest that reads back (Python's `repr`)."""
    assert calc_values_agree(repr(number), float_to_str(number))
