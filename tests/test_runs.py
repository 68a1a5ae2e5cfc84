"""Run history (#15.4): every `ecrf sync` is kept and `ecrf runs` reads it back.

Runs go through the `ecrf` command against the embedded server over real HTTP; `--json` must
leave nothing but JSON on standard output, whatever happens.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from redcap import Project

from sync.cli import cli
from sync.demo.data import demo_records
from sync.ledger import ProjectKey, project_lock
from tests.trials import ROOT, deployed_trial


def write_config(path: Path, state: Path, **extra: object) -> Path:
    lines = [f'state_path = "{state}"', f'redcap_dir = "{ROOT / "redcap"}"',
             "timeout_seconds = 5", "retry_budget_seconds = 1",
             *(f"{k} = {json.dumps(v)}" for k, v in extra.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def project(redcap_server, tmp_path_factory):
    """The 40-subject demo trial; returns (url, token, folder)."""
    folder = tmp_path_factory.mktemp("runs")
    settings = deployed_trial(redcap_server, folder, demo_records(40))
    return redcap_server.url, settings.redcap_api_token.get_secret_value(), folder


def ecrf(args: list[str], url: str, token: str):
    """`ecrf ARGS` with stdout and stderr kept apart."""
    return CliRunner().invoke(cli, args, env={"REDCAP_API_URL": url, "REDCAP_API_TOKEN": token})


def only_json(stdout: str) -> list[dict]:
    """Every line of stdout parses as one JSON object (fails otherwise)."""
    lines = stdout.splitlines()
    assert lines, "nothing on stdout"
    return [json.loads(line) for line in lines]


def assert_times(run: dict) -> None:
    start = datetime.fromisoformat(run["started_utc"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(run["finished_utc"].replace("Z", "+00:00"))
    assert start.utcoffset().total_seconds() == 0 and end >= start
    assert run["duration_seconds"] == pytest.approx((end - start).total_seconds(), abs=0.002)


@pytest.fixture(scope="module")
def first_run(project):
    """The trial's first `ecrf sync --json`: (config file, its JSON object)."""
    url, token, folder = project
    config = str(write_config(folder / "ecrf.toml", folder / "state.sqlite"))
    first = ecrf(["sync", "--config", config, "--json"], url, token)
    assert first.exit_code == 0, first.output
    [done] = only_json(first.stdout)
    return config, done


def test_runs_lists_done_refused_and_failed_runs_each_with_its_exit_code(project, first_run):
    url, token, folder = project
    config, done = first_run
    assert done["exit_code"] == 0 and done["outcome"] == "succeeded" and done["pull"] == "full"
    assert done["records_written"] == 40 and done["queries_opened"] > 0
    assert_times(done)

    project_id = str(Project(url, token).export_project_info()["project_id"])
    with project_lock(ProjectKey(url, project_id, "")):
        locked = ecrf(["sync", "--config", config, "--json"], url, token)
    assert locked.exit_code == 4
    [refused] = only_json(locked.stdout)
    assert (refused["outcome"], refused["exit_code"]) == ("refused", 4)
    assert refused["api_calls"] == 1, "only the call that says which project the token opens"
    assert "lock" in refused["error"] and "lock" in locked.stderr
    assert_times(refused)

    revoked = ecrf(["sync", "--config", config, "--json"], url, "0" * 32)
    assert revoked.exit_code == 3
    [failed] = only_json(revoked.stdout)
    assert failed["outcome"] == "failed" and failed["exit_code"] == 3 and failed["error"]

    listed = ecrf(["runs", "--config", config, "--json"], url, token)
    assert listed.exit_code == 0, listed.output
    runs = only_json(listed.stdout)
    assert [(r["run_id"], r["exit_code"]) for r in runs] == [
        (done["run_id"], 0), (refused["run_id"], 4), (failed["run_id"], 3)]
    assert "0" * 32 not in listed.stdout

    table = ecrf(["runs", "--config", config], url, token)
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["run", "started", "(UTC)"]
    assert done["run_id"] in rows[0] and "full" in rows[0] and " done " in rows[0]
    assert "refused (lock held)" in rows[1] and "failed" in rows[2]
    assert any(line.startswith(f"{failed['run_id']}: ") for line in rows)


def test_runs_show_lists_every_cell_the_run_wrote(project, first_run):
    url, token, _ = project
    config, run = first_run
    shown = ecrf(["runs", "show", run["run_id"][:6], "--config", config, "--json"], url, token)
    [detail] = only_json(shown.stdout)
    assert len(detail["writes"]) == run["cells_written"] > 0
    statuses = [w for w in detail["writes"] if w["field"] == "dq_status"]
    assert statuses and all((w["old_value"], w["new_value"]) == ("", "1") for w in statuses)
    assert all(w["rule_id"] for w in detail["writes"])
    text = ecrf(["runs", "show", run["run_id"], "--config", config], url, token).stdout
    assert f"{run['cells_written']} cells written:" in text
    elig = next(w for w in detail["writes"] if w["field"] == "elig_calc")
    assert any(elig["record_id"] in line and "elig_calc" in line and "ELIG_CALC" in line
               for line in text.splitlines())
    missing = ecrf(["runs", "show", "nosuchrun", "--config", config], url, token)
    assert missing.exit_code == 2 and "no run 'nosuchrun'" in missing.stderr


def test_a_run_with_a_bad_setting_is_recorded_and_json_stays_json(project, tmp_path):
    url, token, _ = project
    state = tmp_path / "state.sqlite"
    bad = str(write_config(tmp_path / "bad.toml", state, batch_size=0))
    result = ecrf(["sync", "--config", bad, "--json"], url, token)
    assert result.exit_code == 2
    [failed] = only_json(result.stdout)
    assert failed["exit_code"] == 2 and "batch_size" in failed["error"]
    assert_times(failed)
    assert "batch_size" in result.stderr
    good = str(write_config(tmp_path / "good.toml", state))
    [kept] = only_json(ecrf(["runs", "--config", good, "--json"], url, token).stdout)
    assert kept["run_id"] == failed["run_id"] and kept["exit_code"] == 2


def test_a_state_file_that_cannot_be_opened_is_named_and_json_stays_json(project, tmp_path):
    url, token, _ = project
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = str(write_config(tmp_path / "ecrf.toml", blocker / "state.sqlite"))
    result = ecrf(["sync", "--config", config, "--json"], url, token)
    assert result.exit_code == 2
    [failed] = only_json(result.stdout)
    assert failed["run_id"] is None and failed["exit_code"] == 2
    assert str(blocker) in failed["not_recorded"] and str(blocker) in failed["error"]
    assert result.stderr.count("\n") == 1 and str(blocker) in result.stderr, \
        "the state file's own error says it all, on one line"


def test_without_state_path_runs_of_one_url_are_listed_from_the_users_state_folder(project,
                                                                                    tmp_path):
    """The default state file is per project; a run refused before REDCap said which project
    it is goes to the file of its URL, and `ecrf runs` shows both for that URL only."""
    url, token, _ = project
    config = tmp_path / "ecrf.toml"
    config.write_text(f'redcap_dir = "{ROOT / "redcap"}"\nretry_budget_seconds = 1\n')
    done = ecrf(["sync", "--config", str(config), "--json"], url, token)
    assert done.exit_code == 0, done.output
    refused = ecrf(["sync", "--config", str(config), "--json"], url, "0" * 32)
    assert refused.exit_code == 3
    other = url.replace("127.0.0.1", "localhost")
    elsewhere = ecrf(["sync", "--config", str(config), "--json"], other, "0" * 32)
    assert elsewhere.exit_code == 3
    listed = only_json(ecrf(["runs", "--config", str(config), "--json"], url, token).stdout)
    assert [r["run_id"] for r in listed][-2:] == [json.loads(done.stdout)["run_id"],
                                                  json.loads(refused.stdout)["run_id"]]
    assert json.loads(elsewhere.stdout)["run_id"] not in {r["run_id"] for r in listed}
