"""A batch is read back and imported while the next is evaluated (`sync.write.WriteBehind`, #17):
writes land in the order handed over, the first failure stops every later write and is raised
to the run, a run that stops early first finishes the writes it handed over and leaves no
thread behind, and a person's edit made after a batch was evaluated but before it was written
is still respected (the read-back happens in the write itself)."""
from __future__ import annotations

import threading

import pytest

import sync.job
from sync.errors import WriteCountMismatch
from sync.job import run_sync
from sync.demo.data import demo_records
from sync.write import WriteBehind
from tests.test_sync import MISMATCH, export, queries, set_cells, trial


def note(written: list[int], number: int, gate: threading.Event | None = None):
    def write() -> None:
        if gate is not None:
            assert gate.wait(10), "the caller never let the write finish"
        written.append(number)
    return write


def test_writes_land_in_order_while_the_caller_goes_on_to_the_next_batch():
    written: list[int] = []
    first_in_flight = threading.Event()
    with WriteBehind() as writer:
        writer.submit(note(written, 1, first_in_flight))
        writer.submit(note(written, 2))  # handed over while batch 1 is still being written
        assert written == [], "the caller waited for a write instead of going on"
        first_in_flight.set()
        writer.submit(note(written, 3))
    assert written == [1, 2, 3]


def test_a_failed_write_is_raised_to_the_run_and_nothing_after_it_is_written():
    written: list[int] = []

    def fail() -> None:
        raise WriteCountMismatch("import batch 2 (values): sent 7 records, REDCap reported 6")

    with pytest.raises(WriteCountMismatch, match=r"^import batch 2 \(values\)"):
        with WriteBehind() as writer:
            writer.submit(note(written, 1))
            writer.submit(fail)
            for number in range(3, 8):
                writer.submit(note(written, number))
    assert written == [1]


def test_a_run_that_stops_early_finishes_the_writes_it_handed_over_and_leaves_no_thread():
    written: list[int] = []
    before = threading.active_count()
    gate = threading.Event()
    with pytest.raises(ValueError, match="batch 3 cannot be typed"):
        with WriteBehind() as writer:
            writer.submit(note(written, 1, gate))
            writer.submit(note(written, 2))
            gate.set()
            raise ValueError("batch 3 cannot be typed")
    assert written == [1, 2], "a batch evaluated before the stop was not written"
    assert threading.active_count() == before


def test_an_earlier_write_failure_is_raised_rather_than_the_later_batch_error():
    def fail() -> None:
        raise WriteCountMismatch("import batch 1 (values): sent 7 records, REDCap reported 6")

    with pytest.raises(WriteCountMismatch, match="import batch 1"):
        with WriteBehind() as writer:
            writer.submit(fail)
            raise ValueError("batch 2 cannot be typed")


def test_a_query_closed_after_its_batch_was_evaluated_and_before_it_was_written_stays_closed(
        redcap_server, tmp_path, monkeypatch):
    """40 subjects in batches of 7: the monitor closes 01-033's query just after its batch (the
    fifth) is evaluated, while earlier batches are still being written behind."""
    settings = trial(redcap_server, tmp_path / "state.sqlite", demo_records(40))
    run_sync(settings)
    query = queries(settings)
    query = query[(query["record_id"] == MISMATCH) & (query["dq_rule"] == "IE_MISMATCH")]
    assert len(query) == 1 and query.iloc[0]["dq_status"] == "1"
    instance = query.iloc[0]["redcap_repeat_instance"]
    set_cells(settings, "screening_arm_1", {"ie_yn": "1"})  # the site corrects: would resolve

    evaluate, closed = sync.job.find, []

    def find_then_close(records, *args, **kwargs):
        found = evaluate(records, *args, **kwargs)
        if not closed and MISMATCH in set(records["record_id"]):
            closed.append(True)
            set_cells(settings, "logs_arm_1", {"dq_status": "3"}, instance, "dq_query")
        return found

    monkeypatch.setattr(sync.job, "find", find_then_close)
    summary = run_sync(settings, full=True)
    assert closed and summary.records_replanned == 1
    after = queries(settings)
    after = after[(after["record_id"] == MISMATCH)
                  & (after["redcap_repeat_instance"] == instance)].iloc[0]
    assert (after["dq_status"], after["dq_resolved"]) == ("3", "")
    monkeypatch.undo()
    assert run_sync(settings).records_written == 0
    keys = export(settings)["dq_key"]
    assert keys[keys != ""].is_unique
