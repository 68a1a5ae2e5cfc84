"""The sync's state file: lock, cursor per project, append-only ledger, owner-only access."""
from __future__ import annotations

import sqlite3
import stat

import pandas as pd
import pytest

from sync.errors import LockHeld
from sync.ledger import LEDGER_COLUMNS, Ledger, ProjectKey

PROJECT = ProjectKey("http://127.0.0.1:8080/api/", "1", "2026-11-01 10:00:00")


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger(tmp_path / "state" / "state.sqlite")
    yield opened
    opened.close()


def one_cell(**overrides: str) -> pd.DataFrame:
    row = dict(zip(LEDGER_COLUMNS, ["01-001", "screening_arm_1", "", "", "elig_calc", "", "1",
                                    "ELIG_CALC"]))
    row.update(overrides)
    return pd.DataFrame([row])


def test_state_file_is_readable_by_its_owner_only(ledger):
    mode = stat.S_IMODE(ledger.path.stat().st_mode)
    assert mode == 0o600


def test_second_run_cannot_take_the_lock_while_the_first_holds_it(tmp_path):
    first, second = Ledger(tmp_path / "s.sqlite"), Ledger(tmp_path / "s.sqlite")
    with first.lock(PROJECT):
        with pytest.raises(LockHeld, match="another ecrf sync is running"):
            with second.lock(PROJECT):
                pass
    with second.lock(PROJECT):
        pass


def test_cursor_comes_from_the_last_successful_write_run_of_the_same_project(ledger):
    assert ledger.last_cursor(PROJECT) is None
    ok = ledger.start_run(PROJECT, "write", None)
    ledger.finish_run(ok, "succeeded", "2026-11-24 02:00", {"records_pulled": 3})
    failed = ledger.start_run(PROJECT, "write", "2026-11-24 02:00")
    ledger.finish_run(failed, "failed", None, {})
    dry = ledger.start_run(PROJECT, "dry-run", "2026-11-24 02:00")
    ledger.finish_run(dry, "succeeded", "2026-11-25 02:00", {})
    assert ledger.last_cursor(PROJECT) == "2026-11-24 02:00"


def test_a_recreated_project_has_no_cursor(ledger):
    run = ledger.start_run(PROJECT, "write", None)
    ledger.finish_run(run, "succeeded", "2026-11-24 02:00", {})
    recreated = ProjectKey(PROJECT.url, "2", "2026-11-24 09:00:00")
    assert ledger.last_cursor(recreated) is None


def test_ledger_keeps_old_and_new_value_and_rule_of_every_written_cell(ledger):
    run = ledger.start_run(PROJECT, "write", None)
    ledger.record_writes(run, one_cell())
    written = ledger.writes(run)
    assert written[LEDGER_COLUMNS].to_dict(orient="records") == one_cell().to_dict(orient="records")


def test_ledger_rows_cannot_be_changed_or_deleted(ledger):
    run = ledger.start_run(PROJECT, "write", None)
    ledger.record_writes(run, one_cell())
    db = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE writes SET new_value = '0'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM writes")
    db.close()


def test_a_night_reads_back_one_records_cells_from_the_runs_since_the_cursor(ledger):
    """The log is matched to the ledger one record at a time (#17): a record's cells of the
    cursor's run and later, not another record's and not an older run's."""
    older = ledger.start_run(PROJECT, "write", None)
    ledger.record_writes(older, one_cell(field="elig_calc", new_value="0"))
    ledger.finish_run(older, "succeeded", "2026-11-23 02:00", {})
    run = ledger.start_run(PROJECT, "write", "2026-11-23 02:00")
    ledger.record_writes(run, pd.concat([one_cell(), one_cell(record_id="01-002"),
                                         one_cell(redcap_repeat_instance="2", field="ae_flag")]))
    ledger.finish_run(run, "succeeded", "2026-11-24 02:00", {})
    runs = ledger.runs_since(PROJECT, run)
    assert runs == (run,)
    assert ledger.wrote_any(runs) and not ledger.wrote_any(())
    assert ledger.cells_of_record(runs, "01-001") == [("", "elig_calc", "1"), ("2", "ae_flag", "1")]
    assert ledger.cells_of_record(ledger.runs_since(PROJECT, older), "01-001")[0] == (
        "", "elig_calc", "0")
