"""The sync's state file and lock (#12.9), against the embedded server over real HTTP.

Default state file in the user's state directory, one per project (URL and project id), so runs
from different folders share it; the lock per project whatever the state path; a damaged,
unwritable or full state file is one line naming the file and what to do (exit 2); a re-open
that died between its two imports is finished by the next run. XDG_STATE_HOME points into a
temporary folder for the whole session (tests/conftest.py), never the real home.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from redcap import Project

from sync.cli import cli
from sync.connection import connect
from sync.demo.data import demo_records
from sync.errors import LockHeld, StateFileError
from sync.job import run_sync
from sync.ledger import LEDGER_COLUMNS, Ledger, ProjectKey, project_slug, user_state_dir
from sync.pull import project_key
from tests.test_sync import MISMATCH, queries, synced_subject, trial


@pytest.fixture
def small(redcap_server, tmp_path):
    """Two demo subjects on a fresh project, settings with no state_path (the default)."""
    settings = trial(redcap_server, tmp_path / "unused.sqlite", demo_records(2))
    return settings.model_copy(update={"state_path": None})


def key_of(settings) -> ProjectKey:
    return project_key(connect(settings))[0]


def default_file(settings) -> Path:
    key = key_of(settings)
    return user_state_dir() / f"{project_slug(key.url, key.project_id)}.sqlite"


def test_the_default_state_dir_is_xdg_state_home_else_local_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert user_state_dir() == tmp_path / "xdg" / "ecrf"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_state_dir() == tmp_path / "home" / ".local" / "state" / "ecrf"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")  # not absolute: ignored, as XDG says
    assert user_state_dir() == tmp_path / "home" / ".local" / "state" / "ecrf"


def test_runs_from_different_folders_share_one_state_file_per_project(small, tmp_path,
                                                                      monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert run_sync(small).full_pull is True
    monkeypatch.chdir(tmp_path / "b")
    second = run_sync(small)
    assert (second.full_pull, second.records_pulled) == (False, 0)
    assert default_file(small).exists()
    assert not list((tmp_path / "a").iterdir()) and not list((tmp_path / "b").iterdir())


def test_another_project_gets_its_own_state_file(small, redcap_server, tmp_path):
    other = trial(redcap_server, tmp_path / "unused.sqlite", demo_records(1)).model_copy(
        update={"state_path": None})
    run_sync(small)
    run_sync(other)
    assert default_file(small) != default_file(other)
    assert default_file(small).exists() and default_file(other).exists()


def test_the_state_path_setting_still_wins(small, tmp_path):
    chosen = small.model_copy(update={"state_path": tmp_path / "mine.sqlite"})
    run_sync(chosen)
    assert (tmp_path / "mine.sqlite").exists() and not default_file(small).exists()


def test_the_lock_is_per_project_whatever_the_state_path(small, redcap_server, tmp_path):
    here = small.model_copy(update={"state_path": tmp_path / "here.sqlite"})
    there = small.model_copy(update={"state_path": tmp_path / "there.sqlite"})
    other = trial(redcap_server, tmp_path / "other.sqlite", demo_records(1))
    holder = Ledger(tmp_path / "here.sqlite")
    with holder.lock(key_of(here)):
        with pytest.raises(LockHeld, match="another ecrf sync is running on this project"):
            run_sync(there)
        with pytest.raises(LockHeld):
            run_sync(small)
        assert run_sync(other).full_pull is True
    holder.close()
    assert run_sync(there).full_pull is True


# -- a state file that cannot be used: one line, exit 2, never a traceback -------------------

def run_cli(settings, state: Path, monkeypatch, tmp_path) -> tuple[int, str]:
    monkeypatch.setenv("REDCAP_API_URL", settings.redcap_api_url)
    monkeypatch.setenv("REDCAP_API_TOKEN", settings.redcap_api_token.get_secret_value())
    config = tmp_path / "ecrf.toml"
    config.write_text(f'state_path = "{state}"\nredcap_dir = "{settings.redcap_dir}"\n')
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    return result.exit_code, result.output


def assert_one_line_naming(output: str, path: Path, *words: str) -> None:
    assert output.startswith("Error: ") and output.count("\n") == 1, output
    assert str(path) in output and "Traceback" not in output
    for word in words:
        assert word in output, output


def test_a_corrupt_state_file_names_the_file_and_what_to_do(small, tmp_path, monkeypatch):
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is not a database, it is a note somebody saved here\n" * 20)
    code, output = run_cli(small, state, monkeypatch, tmp_path)
    assert code == 2
    assert_one_line_naming(output, state, "damaged", "move it aside")


def test_a_truncated_state_file_names_the_file_and_what_to_do(small, tmp_path, monkeypatch):
    state = tmp_path / "state.sqlite"
    run_sync(small.model_copy(update={"state_path": state}))
    data = state.read_bytes()
    assert len(data) > 8192
    state.write_bytes(data[: len(data) // 2])
    code, output = run_cli(small, state, monkeypatch, tmp_path)
    assert code == 2
    assert_one_line_naming(output, state, "damaged")


def test_a_state_file_emptied_to_nothing_is_refused_not_started_over(small, tmp_path,
                                                                   monkeypatch):
    """A truncation to 0 bytes would otherwise read as a new file: a silent full pull, and the
    run history and ledger gone without a word."""
    state = tmp_path / "state.sqlite"
    run_sync(small.model_copy(update={"state_path": state}))
    state.write_bytes(b"")
    code, output = run_cli(small, state, monkeypatch, tmp_path)
    assert code == 2
    assert_one_line_naming(output, state, "damaged", "empty, 0 bytes", "move it aside")


def test_another_programs_database_is_not_taken_over(small, tmp_path, monkeypatch):
    state = tmp_path / "redcap.sqlite"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE data (project_id INTEGER, record TEXT, value TEXT)")
    code, output = run_cli(small, state, monkeypatch, tmp_path)
    assert code == 2
    assert_one_line_naming(output, state, "another program's tables: data")
    with sqlite3.connect(state) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["data"]


def test_a_state_file_another_program_holds_locked_says_so_not_damaged(small, tmp_path,
                                                                       monkeypatch):
    """"database is locked" is a passing lock: moving the file aside, as a damaged file's
    message advises, would throw away the run history for nothing."""
    state = tmp_path / "state.sqlite"
    run_sync(small.model_copy(update={"state_path": state}))
    holder = sqlite3.connect(state, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        monkeypatch.setattr(sqlite3, "connect", _quick(sqlite3.connect))
        code, output = run_cli(small, state, monkeypatch, tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 2
    assert_one_line_naming(output, state, "in use by another program", "nothing was lost")
    assert "damaged" not in output


def _quick(connect):
    """sqlite3.connect waiting 0.1 s for a lock instead of 5 s."""
    def quick(*args, **kwargs):
        return connect(*args, **{**kwargs, "timeout": 0.1})
    return quick


def test_an_unwritable_state_path_names_the_file_and_what_to_do(small, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    state = blocker / "state.sqlite"  # its folder cannot be created (root ignores chmod)
    code, output = run_cli(small, state, monkeypatch, tmp_path)
    assert code == 2
    assert_one_line_naming(output, state, "set state_path")


def test_a_state_path_that_is_a_folder_names_the_file(small, tmp_path, monkeypatch):
    state = tmp_path / "state.sqlite"
    state.mkdir()
    code, output = run_cli(small, state, monkeypatch, tmp_path)
    assert code == 2
    assert_one_line_naming(output, state)


def test_a_full_disk_names_the_file_and_says_to_free_space(tmp_path):
    ledger = Ledger(tmp_path / "state.sqlite")
    pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
    ledger._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own SQLITE_FULL
    run = ledger.start_run(ProjectKey("http://127.0.0.1/api/", "1", ""), "write", None)
    cells = pd.DataFrame([dict(zip(LEDGER_COLUMNS, ["01-001", "e", "", "", "f", "", "x" * 500,
                                                    "R"]))] * 200)
    with pytest.raises(StateFileError) as caught:
        ledger.record_writes(run, cells)
    ledger.close()
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "state.sqlite") in message
    assert "disk is full" in message and "free space" in message
    assert caught.value.exit_code == 2


# -- a re-open that died between its two imports ---------------------------------------------

@pytest.fixture
def mismatch(redcap_server, tmp_path):
    return synced_subject(redcap_server, tmp_path, MISMATCH)


def the_query(settings) -> dict[str, str]:
    rows = queries(settings)
    return rows[rows["dq_rule"] == "IE_MISMATCH"].iloc[0].to_dict()


def import_rows(settings, *rows: dict[str, str]) -> None:
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": MISMATCH, **row} for row in rows])


@pytest.mark.parametrize("status", ["1", "2"])
def test_a_reopen_that_died_between_its_imports_is_finished_by_the_next_run(mismatch, status):
    import_rows(mismatch, {"redcap_event_name": "screening_arm_1", "ie_yn": "1"})
    run_sync(mismatch)
    resolved = the_query(mismatch)
    assert (resolved["dq_status"], resolved["dq_resolved"] != "") == ("4", True)
    import_rows(mismatch, {"redcap_event_name": "screening_arm_1", "ie_yn": "0"})
    # The re-open's first import (status Open) landed; the run died before its second import
    # blanked dq_resolved. A site user may even have answered in between.
    import_rows(mismatch, {"redcap_event_name": "logs_arm_1",
                           "redcap_repeat_instrument": "dq_query",
                           "redcap_repeat_instance": resolved["redcap_repeat_instance"],
                           "dq_status": status})
    run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["redcap_repeat_instance"], query["dq_status"], query["dq_resolved"]) == (
        resolved["redcap_repeat_instance"], status, "")
    assert run_sync(mismatch, full=True).cells_written == 0
