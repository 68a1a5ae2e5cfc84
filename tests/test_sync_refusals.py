"""The sync where REDCap says no, and where people work while it runs (#12.5, #12.6, #12.12).

Real HTTP against the embedded server with REDCap's locks, hard ranges, rights and rate limit
(redcap-behaviour.md §2, §4); no mocks. Locks and users are set as an
administrator would, with `ecrf server ...` on the server's database.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import requests
from click.testing import CliRunner
from pydantic import SecretStr
from redcap import Project

from sync.cli import cli
from sync.demo.data import demo_records
from sync.errors import AddressBanned, RedcapApiError
from sync.job import desired_eligibility, run_sync
from sync.ledger import Ledger
from sync.server.access import FORM_LOCKED
from tests.test_sync import (  # noqa: F401 (mismatch is a fixture)
    MISMATCH, export, mismatch, queries, screening, set_cells, the_query, trial,
)

SCREENING = "screening_arm_1"


def admin(server, *args: str) -> str:
    result = CliRunner().invoke(cli, ["server", args[0], "--db", str(server.db_path), *args[1:]])
    assert result.exit_code == 0, result.output
    return result.output


def project_of(settings) -> Project:
    return Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())


def project_id(settings) -> str:
    return str(project_of(settings).export_project_info()["project_id"])


def set_hard_maximum(settings, field: str, maximum: int) -> None:
    """A hard range as a data manager sets one: validation max plus @FORCE-MINMAX (§2)."""
    project = project_of(settings)
    metadata = project.export_metadata()
    for row in metadata:
        if row["field_name"] == field:
            row["text_validation_max"] = str(maximum)
            row["field_annotation"] = (row["field_annotation"] + " @FORCE-MINMAX").strip()
    project.import_metadata(metadata)


@pytest.fixture(scope="module")
def refusing_trial(redcap_server, tmp_path_factory):
    """40 subjects; one with its eligibility form locked, the oldest above a hard age maximum."""
    records = demo_records(40)
    settings = trial(redcap_server, tmp_path_factory.mktemp("refusals") / "state.sqlite",
                     records)
    ages = pd.to_numeric(desired_eligibility(records)[0]["age"], errors="coerce").dropna()
    ages.index = ages.index.get_level_values(0)
    oldest = ages.sort_values().index[-1]
    assert ages.sort_values().iloc[-2] < ages[oldest]
    locked = next(r for r in ages.index if r != oldest)
    set_hard_maximum(settings, "age", int(ages[oldest]) - 1)
    admin(redcap_server, "lock", "--project", project_id(settings), "--record", locked,
          "--event", SCREENING, "--form", "eligibility")
    return settings, str(locked), str(oldest), int(ages[oldest])


def test_a_locked_form_and_a_refused_value_leave_the_other_38_subjects_written(refusing_trial):
    """`Records.php` l.6264-6275: REDCap fails the whole import; the sync spares the rest."""
    settings, locked, oldest, age = refusing_trial
    summary = run_sync(settings)
    refused = summary.not_written
    assert set(refused["record_id"]) == {locked, oldest}
    assert summary.records_not_written == 2 and summary.records_written == 38
    mine = refused[refused["record_id"] == locked]
    assert set(mine["message"]) == {FORM_LOCKED}
    assert "elig_calc" in set(mine["field"]) and "age" not in set(mine["field"])
    theirs = refused[refused["record_id"] == oldest]
    assert theirs[["field", "new_value"]].values.tolist() == [["age", str(age)]]
    assert theirs["message"].iloc[0] == \
        f"age should not be greater than the field maximum ({age - 1})"
    rows = screening(export(settings))
    assert rows.loc[locked, "elig_calc"] == "" and rows.loc[locked, "age"] != ""
    assert rows.loc[oldest, "age"] == "" and rows.loc[oldest, "elig_calc"] != ""
    expected = desired_eligibility(demo_records(40))[0].fillna("").astype(str)
    expected.index = expected.index.get_level_values(0)
    others = expected.drop(index=[locked, oldest])
    pd.testing.assert_frame_equal(rows.loc[others.index, others.columns], others,
                                  check_names=False)
    ledger = Ledger(settings.state_path)
    try:
        assert set(ledger.refused(summary.run_id)["record_id"]) == {locked, oldest}
    finally:
        ledger.close()
    assert f"{oldest} {SCREENING} age = '{age}': age should not be greater" in summary.describe()


def test_later_runs_retry_the_refused_cells_and_exit_5_until_they_land(
        refusing_trial, redcap_server, tmp_path, monkeypatch):
    settings, locked, oldest, age = refusing_trial
    config = tmp_path / "ecrf.toml"
    config.write_text(f'state_path = "{settings.state_path}"\n'
                      f'redcap_dir = "{settings.redcap_dir}"\n')
    monkeypatch.setenv("REDCAP_API_URL", settings.redcap_api_url)
    monkeypatch.setenv("REDCAP_API_TOKEN", settings.redcap_api_token.get_secret_value())
    again = CliRunner().invoke(cli, ["sync", "--json", "--config", str(config)])
    assert again.exit_code == 5, again.output
    report = json.loads(again.output.strip().splitlines()[-1])
    assert report["records_not_written"] == 2 and report["records_pulled"] == 2
    assert {row["record_id"] for row in report["not_written"]} == {locked, oldest}
    assert (report["not_given_back"], report["recreated"], report["recreated_before"]) == (
        [], {}, {}), "the sync's own refused cells are not a person's value to enter again"
    admin(redcap_server, "unlock", "--project", project_id(settings), "--record", locked,
          "--event", SCREENING, "--form", "eligibility")
    set_hard_maximum(settings, "age", 120)
    finished = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    assert finished.exit_code == 0, finished.output
    rows = screening(export(settings))
    assert rows.loc[locked, "elig_calc"] != "" and rows.loc[oldest, "age"] == str(age)
    assert run_sync(settings).records_written == 0


def test_a_refusal_that_names_no_record_is_found_by_halving_the_batch(refusing_trial):
    """When REDCap's message names no cell, halving finds the refused record."""
    from sync.connection import connect
    from sync.write import import_sparing
    settings, _, _, _ = refusing_trial
    cells = pd.DataFrame({
        "record_id": ["01-001", "01-002", "01-003"], "redcap_event_name": [SCREENING] * 3,
        "redcap_repeat_instrument": [""] * 3, "redcap_repeat_instance": [""] * 3,
        "field": ["age", "age", "age"], "old_value": [""] * 3, "new_value": ["50", "51", "52"],
        "rule_id": ["AGE"] * 3})
    cells.loc[1, "redcap_event_name"] = "no_such_event_arm_1"
    conn = connect(settings)
    refused = import_sparing(conn, cells, False, "record_id", "test import", "")
    assert refused["record_id"].tolist() == ["01-002"]
    assert "redcap_event_name are invalid: no_such_event_arm_1" in refused["message"].iloc[0]
    assert conn.calls <= 5


def test_a_field_removed_from_the_dictionary_meanwhile_spares_the_other_fields(
        redcap_server, tmp_path):
    """The message names the field, not the record: its cells are set aside in every record."""
    records = demo_records(40)
    settings = trial(redcap_server, tmp_path / "state.sqlite",
                     records[records["record_id"].isin(["01-001", "01-002", "01-003"])])
    project = project_of(settings)

    def remove_age() -> None:
        project.import_metadata([row for row in project.export_metadata()
                                 if row["field_name"] != "age"])
    summary = run_sync(settings, progress=MonitorAtWork(remove_age))
    assert set(summary.not_written["field"]) == {"age"}
    assert summary.not_written["message"].str.contains("not found in the project").all()
    assert (screening(export(settings))["elig_calc"] != "").any()


def test_a_form_no_longer_repeating_spares_the_eligibility_cells(redcap_server, tmp_path):
    """REDCap names every refused cell; the queries wait, the eligibility outputs land."""
    records = demo_records(40)
    settings = trial(redcap_server, tmp_path / "state.sqlite",
                     records[records["record_id"].isin(["01-001", "01-002", "01-003"])])
    project = project_of(settings)

    def stop_repeating_queries() -> None:
        project.import_repeating_instruments_events(
            [row for row in project.export_repeating_instruments_events()
             if row["form_name"] != "dq_query"])
    summary = run_sync(settings, progress=MonitorAtWork(stop_repeating_queries))
    assert not summary.not_written.empty
    assert set(summary.not_written["redcap_repeat_instrument"]) == {"dq_query"}
    assert summary.not_written["message"].str.contains("is not a repeating instrument").all()
    assert (screening(export(settings))["elig_calc"] != "").any()


# -- #12.6: a monitor at work while the sync runs ---------------------------------------------

class MonitorAtWork:
    """The job's progress protocol: when the sync starts writing, after its pull, a monitor
    acts through the API (a real HTTP call while the run is paused at that point)."""

    def __init__(self, act) -> None:
        self.act, self.acted = act, False

    def start(self, stage: str, total: int) -> None:
        if stage == "write" and not self.acted:
            self.acted = True
            self.act()

    def advance(self, stage: str, amount: int) -> None:
        pass


def test_a_query_the_monitor_closes_between_pull_and_write_stays_closed(mismatch):
    instance = the_query(mismatch)["redcap_repeat_instance"]
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})  # the site corrects: the sync would resolve
    monitor = MonitorAtWork(lambda: set_cells(mismatch, "logs_arm_1", {"dq_status": "3"},
                                              instance, "dq_query"))
    summary = run_sync(mismatch, progress=monitor)
    assert monitor.acted and summary.records_replanned == 1
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"]) == ("3", "")
    assert run_sync(mismatch).records_written == 0


def test_a_query_the_site_answers_between_pull_and_write_is_left_to_the_next_run(mismatch):
    """Contract: a change made by a person while the sync runs (a status, a response) is never
    overwritten by that run. The finding went before the run (the site corrected ie_yn); the
    site's answer given mid-run stays as given, and the next run resolves the query."""
    instance = the_query(mismatch)["redcap_repeat_instance"]
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})
    site = MonitorAtWork(lambda: set_cells(
        mismatch, "logs_arm_1", {"dq_status": "2", "dq_response": "Corrected from the source."},
        instance, "dq_query"))
    summary = run_sync(mismatch, progress=site)
    assert site.acted and summary.records_replanned == 1
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"], query["dq_response"]) == (
        "2", "", "Corrected from the source.")
    run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"] != "", query["dq_response"]) == (
        "4", True, "Corrected from the source.")
    assert run_sync(mismatch).records_written == 0


def test_new_queries_are_numbered_after_an_instance_the_monitor_added_meanwhile(
        redcap_server, tmp_path):
    records = demo_records(40)
    subject = records[records["record_id"] == MISMATCH].copy()
    base = (subject["redcap_event_name"] == SCREENING) & (subject["redcap_repeat_instrument"] == "")
    subject.loc[base, "ie_yn"] = "1"  # consistent at first: no IE_MISMATCH query
    settings = trial(redcap_server, tmp_path / "state.sqlite", subject)
    run_sync(settings)
    existing = queries(settings)["redcap_repeat_instance"].astype(int)
    new = str(int(existing.max()) + 1 if len(existing) else 1)
    set_cells(settings, SCREENING, {"ie_yn": "0"})  # the sync will open a query at `new`
    manual = {"dq_rule": "MONITOR", "dq_text": "Please send the source document.",
              "dq_status": "1"}
    monitor = MonitorAtWork(lambda: set_cells(settings, "logs_arm_1", manual, new, "dq_query"))
    summary = run_sync(settings, progress=monitor)
    assert monitor.acted and summary.records_replanned == 1
    after = queries(settings).set_index("redcap_repeat_instance")
    assert (after.loc[new, "dq_rule"], after.loc[new, "dq_text"]) == (
        "MONITOR", "Please send the source document.")
    opened = after[after["dq_rule"] == "IE_MISMATCH"]
    assert len(opened) == 1 and int(opened.index[0]) > int(new)


# -- #12.12: what REDCap's 429 and 403 mean -----------------------------------------------------

def test_a_user_without_the_import_right_is_told_so_not_blamed_on_the_token(
        mismatch, redcap_server):
    output = admin(redcap_server, "user", "--project", project_id(mismatch), "--no-import",
                   "reader")
    token = output.strip().rsplit("API token: ", 1)[1]
    reader = mismatch.model_copy(update={"redcap_api_token": SecretStr(token)})
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})
    with pytest.raises(RedcapApiError) as stopped:
        run_sync(reader)
    message = str(stopped.value)
    assert "lacks the API Import/Update right" in message and "REDCAP_API_TOKEN" not in message


def test_a_user_without_the_logging_right_is_told_so(mismatch, redcap_server):
    output = admin(redcap_server, "user", "--project", project_id(mismatch), "--no-logging",
                   "nolog")
    token = output.strip().rsplit("API token: ", 1)[1]
    with pytest.raises(RedcapApiError, match="lacks the Logging right"):
        run_sync(mismatch.model_copy(update={"redcap_api_token": SecretStr(token)}))


def test_deidentified_export_rights_stop_the_run_before_anything_is_written(
        mismatch, redcap_server):
    """§2: REDCap drops dates and free text silently; eligibility on them would be wrong."""
    output = admin(redcap_server, "user", "--project", project_id(mismatch), "--export-rights",
                   "deidentified", "blinded_monitor")
    token = output.strip().rsplit("API token: ", 1)[1]
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})
    before = export(mismatch)
    with pytest.raises(RedcapApiError, match="needs full data export rights") as stopped:
        run_sync(mismatch.model_copy(update={"redcap_api_token": SecretStr(token)}),
                 full=True)
    assert "brthdat" in str(stopped.value)
    pd.testing.assert_frame_equal(export(mismatch), before)


def test_a_ban_stops_the_run_at_once_and_says_an_administrator_must_lift_it(tmp_path):
    """§4: 429 means banned for good; retrying would only prolong it."""
    from tests.conftest import PROJECT_TOKEN, SUPER_TOKEN, RedcapServer, free_port
    server = RedcapServer(f"http://127.0.0.1:{free_port()}/api/", PROJECT_TOKEN, SUPER_TOKEN,
                          tmp_path / "redcap.sqlite", tmp_path / "server.log")
    server.start()
    try:
        records = demo_records(40)
        settings = trial(server, tmp_path / "state.sqlite",
                         records[records["record_id"] == MISMATCH])
        admin(server, "rate-limit", "3")
        with pytest.raises(AddressBanned) as stopped:
            run_sync(settings.model_copy(update={"retry_budget_seconds": 2.0}))
        assert "administrator must lift it" in str(stopped.value)
        assert "has been banned" in str(stopped.value)
        hits = requests.post(server.url, data={"token": PROJECT_TOKEN, "content": "version"},
                             timeout=10)
        assert hits.status_code == 429
    finally:
        server.stop()


def test_a_refused_status_leaves_its_whole_query_unwritten_not_half_resolved(mismatch):
    """A design whose dq_status lost its code 4 (Resolved) refuses the resolve: the query's
    `dq_resolved` used to land anyway, a resolution date on a query still Open."""
    project = project_of(mismatch)
    metadata = project.export_metadata()
    original = [dict(row) for row in metadata]
    for row in metadata:
        if row["field_name"] == "dq_status":
            row["select_choices_or_calculations"] = "1, Open | 2, Answered | 3, Closed"
    project.import_metadata(metadata)
    set_cells(mismatch, SCREENING, {"ie_yn": "1"})  # the finding goes: the sync resolves
    summary = run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"]) == ("1", "")
    refused = summary.not_written.set_index("field")["message"]
    assert "not a valid category" in refused["dq_status"]
    assert refused["dq_resolved"].startswith("not written: REDCap refused another cell of this")
    project.import_metadata(original)
    run_sync(mismatch)
    query = the_query(mismatch)
    assert (query["dq_status"], query["dq_resolved"] != "") == ("4", True)
