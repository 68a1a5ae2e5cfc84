"""The next batch is exported while the run works on this one (`sync.pull.read_ahead`, #17):
same batches in the same order, an export's failure surfaces where its batch would have, and a
run that stops early leaves no export running behind it."""
from __future__ import annotations

import threading
import time

import pytest

from sync.errors import PullIncomplete
from sync.pull import read_ahead


def numbered(count: int, produced: list[int]):
    """Batches 0..count-1, each noted in `produced` as it is made."""
    for number in range(count):
        produced.append(number)
        yield number


def test_batches_arrive_in_order_and_the_next_is_ready_while_this_one_is_worked_on():
    produced: list[int] = []
    taken = []
    for number in read_ahead(numbered(5, produced)):
        deadline = time.monotonic() + 5
        while len(produced) < min(number + 2, 5) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(produced) <= number + 3, "more than one batch held ahead"
        taken.append((number, len(produced)))
    assert [n for n, _ in taken] == [0, 1, 2, 3, 4]
    assert all(seen >= min(n + 2, 5) for n, seen in taken[:-1])


def test_a_read_ahead_one_deep_holds_only_the_next_batch_beside_the_one_worked_on():
    """The cut holds one batch's export ahead, no more: its peak memory is a batch's work
    plus one answer's text."""
    produced: list[int] = []
    taken = []
    for number in read_ahead(numbered(6, produced), depth=1):
        deadline = time.monotonic() + 5
        while len(produced) < min(number + 2, 6) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert len(produced) <= number + 2, "more than one batch held ahead"
        taken.append((number, len(produced)))
    assert [n for n, _ in taken] == list(range(6))
    assert all(seen == n + 2 for n, seen in taken[:-1])


def test_a_failed_export_is_raised_after_the_batches_before_it():
    def batches():
        yield "first"
        raise PullIncomplete("REDCap returned an incomplete batch")

    taken = []
    with pytest.raises(PullIncomplete, match="incomplete batch"):
        for batch in read_ahead(batches()):
            taken.append(batch)
    assert taken == ["first"]


def test_a_run_that_stops_early_stops_the_exports_behind_it():
    produced: list[int] = []
    before = threading.active_count()
    reader = read_ahead(numbered(1000, produced))
    assert next(reader) == 0
    reader.close()
    assert threading.active_count() == before
    assert len(produced) <= 3
