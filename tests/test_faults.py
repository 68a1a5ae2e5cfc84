"""The sync against a misbehaving REDCap: every fault a server or proxy produces, over real HTTP.

The embedded server runs with fault injection on (`ECRF_SERVER_FAULTS`); each test sets its
faults through `/__faults__`, runs the sync, clears the faults and runs it again. Whatever the
fault, the sync either retries and succeeds or stops naming the call that failed; afterwards no
query is lost or duplicated, no site-entered value has changed, the next run leaves exactly the
state of a run that saw no fault, and the run after that writes nothing.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
import requests
from pydantic import SecretStr

from sync.config import Settings
from sync.connection import connect
from sync.demo import load_records
from sync.demo.cases import DEMO_CASES
from sync.demo.data import demo_records
from sync.crf.deploy import deploy
from sync.errors import AddressBanned, RedcapApiError
from sync.job import owned_fields, run_sync
from sync.ledger import Ledger
from sync.server.faults import ENV_VAR, FAULTS_PATH, call_of, parse_faults
from tests.conftest import PROJECT_TOKEN, SUPER_TOKEN, RedcapServer, free_port
from tests.test_sync import DICTIONARY, ROOT, export

NOW = datetime(2026, 11, 20, 9, 30)
KEYS = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]
SUBJECTS = [record for record, case in DEMO_CASES.items() if case.rules][:10]
OWNED = owned_fields(DICTIONARY) | {"dq_query_complete"}


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedcapServer]:
    """An `ecrf serve` of its own with fault injection switched on, and no fault yet."""
    where = tmp_path_factory.mktemp("fault_server")
    server = RedcapServer(f"http://127.0.0.1:{free_port()}/api/", PROJECT_TOKEN, SUPER_TOKEN,
                          where / "redcap.sqlite", where / "server.log")
    os.environ[ENV_VAR] = "on"
    try:
        server.start()
    finally:
        del os.environ[ENV_VAR]
    try:
        yield server
    finally:
        set_faults(server, [])
        server.stop()


def set_faults(server: RedcapServer, faults: list[dict]) -> list[dict]:
    reply = requests.post(server.url.replace("/api/", FAULTS_PATH), data=json.dumps(faults),
                          timeout=10)
    reply.raise_for_status()
    return reply.json()


def faults_now(server: RedcapServer) -> list[dict]:
    return requests.get(server.url.replace("/api/", FAULTS_PATH), timeout=10).json()


def demo_subset() -> pd.DataFrame:
    records = demo_records(40)
    return records[records["record_id"].isin(SUBJECTS)]


def new_trial(server: RedcapServer, state: Path, **limits: float) -> Settings:
    """A fresh project with the CRF and the ten subjects; settings with small retry budgets."""
    settings = Settings(REDCAP_API_URL=server.url,
                        REDCAP_API_TOKEN=SecretStr(server.create_project()),
                        state_path=state, redcap_dir=ROOT / "redcap",
                        dictionary_path=ROOT / "data_dictionary.csv", batch_size=3)
    deploy(connect(settings), DICTIONARY)
    load_records(settings, demo_subset())
    # the ten subjects are chosen to fire rules: the most-records guard (#15.3) is not under test
    return settings.model_copy(update={"timeout_seconds": 5.0, "retry_budget_seconds": 6.0,
                                       "rule_hold_min_records": 1000, **limits})


@pytest.fixture(scope="module")
def clean_state(fault_server, tmp_path_factory) -> pd.DataFrame:
    """What REDCap holds after one sync that met no fault."""
    settings = new_trial(fault_server, tmp_path_factory.mktemp("clean") / "state.sqlite")
    run_sync(settings, now=NOW)
    return export(settings)


def assert_site_values_kept(after: pd.DataFrame, before: pd.DataFrame) -> None:
    """Every row a site entered is still there with every value it had in a field not owned."""
    columns = [c for c in before.columns if c not in OWNED]
    kept = before[columns].merge(after[columns], on=KEYS, how="left", suffixes=("", "_after"))
    pd.testing.assert_frame_equal(
        kept[[f"{c}_after" for c in columns if c not in KEYS]].set_axis(
            [c for c in columns if c not in KEYS], axis=1),
        before[[c for c in columns if c not in KEYS]].reset_index(drop=True))


def assert_recovered(settings: Settings, clean: pd.DataFrame, before: pd.DataFrame) -> None:
    """The state after recovery is a clean run's, site values intact, every query once."""
    after = export(settings)
    assert_site_values_kept(after, before)
    queries = after[after["redcap_repeat_instrument"] == "dq_query"]
    assert queries["dq_key"].is_unique and (queries["dq_key"] != "").all()
    pd.testing.assert_frame_equal(after.sort_values(KEYS).reset_index(drop=True),
                                  clean.sort_values(KEYS).reset_index(drop=True))
    assert run_sync(settings, now=NOW).records_written == 0


RECOVERED_WITHIN_THE_RUN = {
    "500 on the second import, before it commits":
        {"content": "record", "action": "import", "skip": 1, "status": 500},
    "500 on the second import, after it committed":
        {"content": "record", "action": "import", "skip": 1, "status": 500, "when": "after"},
    "502 twice on a record export": {"content": "record", "action": "export", "skip": 1,
                                     "status": 502, "count": 2},
    "503 on the metadata export": {"content": "metadata", "status": 503},
    "504 on the log export": {"content": "log", "status": 504},
    "truncated log export (read as a stream)": {"content": "log", "kind": "truncate"},
    "connection dropped half-way through the log export": {"content": "log", "kind": "drop"},
    "200 with a proxy's HTML page on the log export": {"content": "log", "kind": "html"},
    "200 with a proxy's HTML page on project info": {"content": "project", "kind": "html"},
    "200 with a proxy's HTML page on the record-id export (asked as CSV)":
        {"content": "record", "action": "export", "kind": "html"},
    "truncated record export": {"content": "record", "action": "export", "skip": 1,
                                "kind": "truncate"},
    "connection dropped half-way through a record export": {
        "content": "record", "action": "export", "skip": 1, "kind": "drop"},
    "import slower than the client's timeout, committing late":
        {"content": "record", "action": "import", "skip": 2, "kind": "slow", "delay": 2.5},
}


@pytest.mark.parametrize("fault", RECOVERED_WITHIN_THE_RUN.values(),
                         ids=RECOVERED_WITHIN_THE_RUN.keys())
def test_a_passing_fault_is_retried_and_the_run_completes(fault_server, clean_state, tmp_path,
                                                          fault):
    settings = new_trial(fault_server, tmp_path / "state.sqlite", timeout_seconds=1.0)
    before = export(settings)
    set_faults(fault_server, [fault])
    try:
        summary = run_sync(settings, now=NOW)
        fired = faults_now(fault_server)[0]["fired"]
    finally:
        set_faults(fault_server, [])
    assert fired == fault.get("count", 1)
    assert summary.records_written == len(SUBJECTS)
    assert_recovered(settings, clean_state, before)


STOPPING = {
    "every import after the first fails with 500 before committing": (
        {"content": "record", "action": "import", "skip": 1, "count": None, "status": 500},
        "import batch 2 (values): REDCap did not answer properly"),
    "every import after the first commits, then answers 500": (
        {"content": "record", "action": "import", "skip": 1, "count": None, "status": 500,
         "when": "after"},
        "import batch 2 (values): REDCap did not answer properly"),
    "the server stays down (503) from the record exports on": (
        {"content": "record", "action": "export", "count": None, "status": 503},
        "export record ids: REDCap did not answer properly"),
    "the token is revoked after the second import": (
        {"skip": 0, "count": None, "kind": "revoke", "content": "record", "action": "import"},
        "import batch 1 (values): REDCap refused the API token"),
}


@pytest.mark.parametrize("fault, message", STOPPING.values(), ids=STOPPING.keys())
def test_a_lasting_fault_stops_the_run_and_the_next_run_finishes_the_work(
        fault_server, clean_state, tmp_path, fault, message):
    settings = new_trial(fault_server, tmp_path / "state.sqlite", retry_budget_seconds=1.5)
    before = export(settings)
    set_faults(fault_server, [fault])
    try:
        with pytest.raises(RedcapApiError) as stopped:
            run_sync(settings, now=NOW)
    finally:
        set_faults(fault_server, [])
    assert str(stopped.value).startswith(message)
    assert settings.redcap_api_token.get_secret_value() not in str(stopped.value)
    run_sync(settings, now=NOW)
    assert_recovered(settings, clean_state, before)


def test_an_import_failing_behind_the_next_evaluation_stops_the_run_at_its_batch(
        fault_server, clean_state, tmp_path):
    """Batches are imported while the next is evaluated (#17): when the second import fails,
    the error names batch 2, and neither REDCap nor the ledger holds anything of batches 3, 4."""
    settings = new_trial(fault_server, tmp_path / "state.sqlite", retry_budget_seconds=1.5)
    before = export(settings)
    order = list(dict.fromkeys(before["record_id"]))
    set_faults(fault_server, [{"content": "record", "action": "import", "skip": 1,
                               "count": None, "status": 500}])
    try:
        with pytest.raises(RedcapApiError, match=r"^import batch 2 \(values\)") as stopped:
            run_sync(settings, now=NOW)
    finally:
        set_faults(fault_server, [])
    ledger = Ledger(settings.state_path)
    try:
        logged = set(ledger.writes(stopped.value.run_id)["record_id"])
    finally:
        ledger.close()
    assert logged == set(order[:6]), "the ledger lists exactly the batches sent"
    after = export(settings)
    flags = after[[c for c in ("age", "elig_calc", "elig_fail", "elig_missing") if c in after]]
    assert set(after.loc[(flags != "").any(axis=1), "record_id"]) == set(order[:3])
    run_sync(settings, now=NOW)
    assert_recovered(settings, clean_state, before)


def test_a_429_is_a_ban_the_run_stops_at_once_and_the_next_run_finishes_after_it_is_lifted(
        fault_server, clean_state, tmp_path):
    """redcap-behaviour.md §4: past the rate limit the address is banned, no Retry-After."""
    settings = new_trial(fault_server, tmp_path / "state.sqlite", retry_budget_seconds=30.0)
    before = export(settings)
    set_faults(fault_server, [{"content": "record", "action": "import", "status": 429}])
    try:
        with pytest.raises(AddressBanned, match="administrator must lift it") as stopped:
            run_sync(settings, now=NOW)
        rule = faults_now(fault_server)[0]
        banned = requests.post(fault_server.url, data={"content": "version"}, timeout=10)
    finally:
        set_faults(fault_server, [])  # the administrator lifts the ban
    assert (rule["seen"], rule["fired"]) == (1, 1)  # no retry, nothing sent after the ban
    assert str(stopped.value).startswith("import batch 1 (values): REDCap banned")
    assert banned.status_code == 429 and "Retry-After" not in banned.headers
    run_sync(settings, now=NOW)
    assert_recovered(settings, clean_state, before)


def test_a_429_with_retry_after_is_a_throttle_not_a_ban_the_run_waits_and_finishes(
        fault_server, clean_state, tmp_path):
    """REDCap's ban never carries Retry-After (redcap-behaviour.md §4); a 429 that does (a proxy,
    the embedded server's failed-token brake) says when to come back, so the sync waits."""
    settings = new_trial(fault_server, tmp_path / "state.sqlite", retry_budget_seconds=30.0)
    before = export(settings)
    set_faults(fault_server, [{"content": "record", "action": "import", "status": 429,
                               "retry_after": 0.2, "count": 1}])
    try:
        run_sync(settings, now=NOW)
        rule = faults_now(fault_server)[0]
    finally:
        set_faults(fault_server, [])
    assert rule["fired"] == 1 and rule["seen"] >= 2  # throttled once, then sent again
    assert_recovered(settings, clean_state, before)


def test_token_revoked_mid_run_names_the_token_and_the_call(fault_server, clean_state, tmp_path):
    settings = new_trial(fault_server, tmp_path / "state.sqlite")
    before = export(settings)
    set_faults(fault_server, [{"kind": "revoke", "skip": 6, "count": None}])
    try:
        with pytest.raises(RedcapApiError, match="refused the API token") as stopped:
            run_sync(settings, now=NOW)
    finally:
        set_faults(fault_server, [])
    assert "Check REDCAP_API_TOKEN" in str(stopped.value)
    run_sync(settings, now=NOW)
    assert_recovered(settings, clean_state, before)


def sync_process(settings: Settings, config: Path, *args: str) -> subprocess.Popen[bytes]:
    config.write_text(f'state_path = "{settings.state_path}"\nbatch_size = 2\n'
                      'rule_hold_min_records = 1000\n'
                      f'redcap_dir = "{ROOT / "redcap"}"\n'
                      f'dictionary_path = "{ROOT / "data_dictionary.csv"}"\n')
    env = {**os.environ, "REDCAP_API_URL": settings.redcap_api_url,
           "REDCAP_API_TOKEN": settings.redcap_api_token.get_secret_value()}
    return subprocess.Popen([sys.executable, "-m", "sync", "sync", "--config", str(config),
                             "--json", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_until_committed(server: RedcapServer, process: subprocess.Popen[bytes],
                         count: str = "answered") -> None:
    """Until the fault rule's `count` (answered: REDCap committed the call behind it; fired:
    the call is held) is not 0, the sync still running."""
    deadline = time.monotonic() + 60
    while faults_now(server)[0][count] == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sync never reached its second import"
        time.sleep(0.05)


def assert_recovered_at_wall_clock(settings: Settings, clean: pd.DataFrame,
                                   before: pd.DataFrame) -> pd.DataFrame:
    """`assert_recovered` for runs in a subprocess, which stamp queries at the wall clock, not
    at NOW; the state it checked."""
    stamps = ["dq_opened", "dq_resolved"]
    after = export(settings)
    assert_site_values_kept(after, before)
    assert after["dq_key"][after["dq_key"] != ""].is_unique
    pd.testing.assert_frame_equal(
        after.drop(columns=stamps).sort_values(KEYS).reset_index(drop=True),
        clean.drop(columns=stamps).sort_values(KEYS).reset_index(drop=True))
    return after


def test_a_sync_killed_between_its_writes_is_finished_by_the_next_run(fault_server, clean_state,
                                                                       tmp_path):
    """SIGKILL while REDCap holds the second import but the sync has not had the answer."""
    settings = new_trial(fault_server, tmp_path / "state.sqlite")
    before = export(settings)
    set_faults(fault_server, [{"content": "record", "action": "import", "skip": 1,
                               "kind": "slow", "when": "after", "delay": 60}])
    process = sync_process(settings, tmp_path / "ecrf.toml")
    try:
        wait_until_committed(fault_server, process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        set_faults(fault_server, [])
    assert process.returncode == -signal.SIGKILL
    partial = export(settings)
    flags = [c for c in ("age", "elig_calc", "elig_fail", "elig_missing") if c in partial]
    assert 0 < (partial[flags] != "").sum().sum() < (clean_state[flags] != "").sum().sum()
    assert (partial["redcap_repeat_instrument"] == "dq_query").sum() == 0, \
        "new queries wait until the run's rule guard has seen every batch (#17.1)"
    for expected_written in (len(SUBJECTS), 0):  # every subject fires a rule: all get queries
        rerun = sync_process(settings, tmp_path / "ecrf.toml")
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()
        assert json.loads(out)["records_written"] == expected_written
    after = assert_recovered_at_wall_clock(settings, clean_state, before)
    assert (after["dq_opened"] != "").sum() == (clean_state["dq_opened"] != "").sum()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_sync_told_to_stop_ends_as_a_failed_run_and_the_next_run_finishes(
        fault_server, clean_state, tmp_path, stop):
    """systemd stops a service with SIGTERM; a closed terminal sends SIGHUP; Ctrl-C SIGINT. The
    run says so, prints its JSON, is kept as failed (not "running" for ever) with exit 1, and
    the next run leaves the state of a run that was never stopped."""
    from sync.run_history import load_history
    settings = new_trial(fault_server, tmp_path / "state.sqlite")
    before = export(settings)
    set_faults(fault_server, [{"content": "record", "action": "import", "skip": 1,
                               "kind": "slow", "when": "before", "delay": 3}])
    process = sync_process(settings, tmp_path / "ecrf.toml")
    try:
        wait_until_committed(fault_server, process, "fired")
        process.send_signal(stop)  # the import already handed over is finished first
        out, err = process.communicate(timeout=60)
    finally:
        set_faults(fault_server, [])
    assert process.returncode == 1, err.decode()
    assert f"Error: stopped by {stop.name} before it finished" in err.decode()
    assert json.loads(out)["exit_code"] == 1
    last = load_history(settings.state_path, settings.redcap_api_url)[-1][0]
    assert (last["outcome"], last["exit_code"]) == ("failed", 1)
    assert f"stopped by {stop.name}" in last["error"]
    rerun = sync_process(settings, tmp_path / "ecrf.toml")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    assert_recovered_at_wall_clock(settings, clean_state, before)


def test_a_stop_a_library_swallows_still_ends_the_run_as_failed(fault_server, tmp_path):
    """A signal handler's exception lands wherever the main thread is, and a library's own
    `except Exception` fallback (pandas has several) can swallow it: seen once as a Ctrl-C
    run that went on and exited 0. The request is kept and checked between batches."""
    from sync.cli import _stops_as_a_failed_run
    from sync.errors import RunStopped
    from sync.run_history import load_history
    settings = new_trial(fault_server, tmp_path / "state.sqlite")

    class SwallowsTheFirstStop:
        def start(self, stage: str, total: int) -> None:
            if stage == "write":
                try:
                    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
                except Exception:  # noqa: BLE001 - the library's fallback
                    pass

        def advance(self, stage: str, amount: int) -> None:
            pass

    with _stops_as_a_failed_run(), pytest.raises(RunStopped, match="stopped by SIGINT"):
        run_sync(settings, progress=SwallowsTheFirstStop())
    last = load_history(settings.state_path, settings.redcap_api_url)[-1][0]
    assert last["outcome"] == "failed" and "stopped by SIGINT" in last["error"]
    assert run_sync(settings).exit_code == 0, "a later run in the same process is not stopped"


def test_a_sync_run_from_another_thread_keeps_the_callers_signal_handlers():
    """Python lets only the main thread set signal handlers: a scheduler that runs the
    command in a worker thread must not see it fail for that."""
    import threading
    from sync.cli import _stops_as_a_failed_run
    before, ran, failed = signal.getsignal(signal.SIGTERM), [], []

    def work() -> None:
        try:
            with _stops_as_a_failed_run():
                ran.append(signal.getsignal(signal.SIGTERM))
        except Exception as exc:  # noqa: BLE001 - what the worker would have died of
            failed.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert failed == [] and ran == [before]
    with _stops_as_a_failed_run():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_fault_rules_are_checked_and_read_from_either_body_encoding():
    assert [(f.status, f.skip, f.count) for f in parse_faults('{"status": 503, "skip": 2}')] \
        == [(503, 2, 1)]
    with pytest.raises(Exception, match="fault rule 1: kind must be one of"):
        parse_faults('[{"kind": "explode"}]')
    assert call_of(b"token=X&content=record&data=%5B%5D", "application/x-www-form-urlencoded") \
        == ("record", "import")
    multipart = (b'--b\r\nContent-Disposition: form-data; name="content"\r\n\r\nfile\r\n'
                 b'--b\r\nContent-Disposition: form-data; name="action"\r\n\r\nimport\r\n--b--')
    assert call_of(multipart, "multipart/form-data; boundary=b") == ("file", "import")


def test_fault_injection_exists_only_when_switched_on(redcap_server, tmp_path):
    """The shared server runs without faults: no control path. `ecrf serve --faults` has one."""
    assert requests.post(redcap_server.url.replace("/api/", FAULTS_PATH), data="[]",
                         timeout=10).status_code == 404
    rules = tmp_path / "faults.json"
    rules.write_text(json.dumps([{"content": "version", "status": 503, "count": None}]))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sync", "serve", "--db",
                               str(tmp_path / "r.sqlite"), "--port", str(port),
                               "--faults", str(rules)],
                              env={**os.environ, "ECRF_SERVE_TOKEN": PROJECT_TOKEN},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
        while True:
            try:
                answer = requests.post(f"{url}/api/", data={"token": PROJECT_TOKEN,
                                                           "content": "version"}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert (answer.status_code, answer.text) == (503, "HTTP 503 (injected fault)")
        assert [(f["status"], f["fired"]) for f in requests.get(url + FAULTS_PATH).json()] \
            == [(503, 1)]
    finally:
        server.terminate()
        server.wait(timeout=10)
