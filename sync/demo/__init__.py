"""The whole job end to end on the embedded server, with the synthetic demo trial.

Starts `ecrf serve` in a working directory, deploys the CRF, loads the demo records, syncs,
shows what the sync decided (`demo_story`), plays a site answering and correcting and a monitor
closing queries, syncs again (the correction resolved, the rest untouched), checks that one
more sync writes nothing, and writes the monitors' digest and a data cut. The server runs
as a child process, exactly as a data manager would run it, so the demo exercises real HTTP.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import requests
from pydantic import SecretStr

from sync.config import Settings
from sync.errors import EcrfError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedServer:
    """An `ecrf serve` child process and how to reach it."""

    url: str
    token: str
    process: subprocess.Popen
    log_path: Path


@contextmanager
def embedded_server(workdir: Path, port: int | None = None) -> Iterator[EmbeddedServer]:
    """Run `ecrf serve` with its database in `workdir` until the block ends."""
    port = port or free_port()
    token = secrets.token_hex(16).upper()
    log_path = workdir / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "serve", "--db", str(workdir / "redcap.sqlite"),
         "--port", str(port), "--log-file", str(log_path)],
        env={**os.environ, "ECRF_SERVE_TOKEN": token})
    url = f"http://127.0.0.1:{port}/api/"
    try:
        _wait_until_up(url, process, log_path)
        yield EmbeddedServer(url, token, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EcrfError(f"the embedded server stopped at start; its log {log_path} says:\n"
                            + log_path.read_text(errors="replace")[-2000:])
        try:
            requests.post(url, data={"content": "version"}, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise EcrfError(f"the embedded server did not answer at {url} within 30 s; see {log_path}")


@dataclass
class DemoResult:
    workdir: Path
    url: str
    records_loaded: int
    summaries: list = field(default_factory=list)
    cut_dir: Path | None = None
    played: dict[str, str] = field(default_factory=dict)
    """Status of each played query after the second sync, by what happened to it."""


def load_records(settings: Settings, frame, batch_size: int = 500,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Import the demo trial's records through the API, whole subjects per call, checking each
    count; returns the number of records REDCap created. `progress(done, total)` hears after
    each call (about ten calls when it is given)."""
    from sync.connection import connect
    conn = connect(settings)
    subjects = list(dict.fromkeys(frame["record_id"]))
    step = min(batch_size, -(-len(subjects) // 10)) if progress else batch_size
    total = 0
    for start in range(0, len(subjects), step):
        part = frame[frame["record_id"].isin(subjects[start:start + step])]
        rows = [{k: v for k, v in row.items() if v != ""} | _keys(row)
                for row in part.to_dict(orient="records")]
        if rows:  # REDCap recomputes only the calcs the first row's fields trigger (§2)
            rows[0] = {k: "" for k in part.columns} | rows[0]
        answer = conn.call("import demo records", conn.project.import_records, rows)
        total += int(answer["count"])
        if progress:
            progress(min(start + step, len(subjects)), len(subjects))
    from sync.demo.data import late_corrections
    late = late_corrections(frame)
    if late:
        conn.call("import late demo edits", conn.project.import_records, late)
    _import_unvalidated(conn, frame)
    return total


def _import_unvalidated(conn, frame) -> None:
    """Values a site entered before their field got its validation (see `unvalidated_entries`):
    the validation is dropped for the one import and restored."""
    from sync.demo.data import unvalidated_entries
    rows = unvalidated_entries(frame)
    if not rows:
        return
    fields = {name for row in rows for name in row} - {"record_id", "redcap_event_name"}
    metadata = conn.call("export metadata", conn.project.export_metadata)
    loose = [dict(m, text_validation_type_or_show_slider_number="", text_validation_min="",
                  text_validation_max="") if m["field_name"] in fields else m for m in metadata]
    conn.call("import metadata without validation", conn.project.import_metadata, loose)
    try:
        conn.call("import unvalidated demo values", conn.project.import_records, rows)
    finally:
        conn.call("import metadata", conn.project.import_metadata, metadata)


def _keys(row: dict) -> dict:
    return {k: row[k] for k in ("redcap_event_name", "redcap_repeat_instrument",
                                "redcap_repeat_instance") if k in row}


def run_demo(workdir: Path, *, subjects: int = 40, project_dir: Path = Path("."),
             say: Callable[[str], None] = lambda text: None) -> DemoResult:
    """Deploy, load, sync, show the decisions, play a day of site and monitor work, sync again,
    then write the digest and a cut, on a fresh embedded server in `workdir`."""
    from sync.demo import story
    from sync.connection import connect
    from sync.demo.data import demo_records
    from sync.crf.deploy import deploy
    from sync.crf.dictionary import load_dictionary
    from sync.digest import queries_report
    from sync.job import run_export, run_sync

    workdir.mkdir(parents=True, exist_ok=True)
    with embedded_server(workdir) as server:
        say(f"embedded REDCap server at {server.url} (database {workdir / 'redcap.sqlite'})")
        settings = Settings(REDCAP_API_URL=server.url, REDCAP_API_TOKEN=SecretStr(server.token),
                            state_path=workdir / "state.sqlite",
                            redcap_dir=project_dir / "redcap",
                            dictionary_path=project_dir / "data_dictionary.csv")
        rules = settings.redcap_dir / "rules.csv"
        conn = connect(settings)
        dictionary = load_dictionary(settings.dictionary_path, settings.redcap_dir)
        plan = deploy(conn, dictionary, redcap_dir=settings.redcap_dir)
        say("deployed the CRF (data_dictionary.csv and redcap/):\n" + plan.describe(brief=True))
        records = demo_records(n_subjects=subjects)
        loaded = load_records(settings, records, progress=lambda done, total: say(
            f"  loading demo subjects: {done}/{total}"))
        say(f"loaded {loaded} demo subjects ({len(records)} rows)")
        result = DemoResult(workdir, server.url, loaded)

        result.summaries.append(run_sync(settings))
        say(f"first sync:\n{result.summaries[-1].describe()}")
        screening = story.screening_rows(conn)
        say("what it decided, for a few subjects (13 criteria: I1-I4 met, E1-E9 absent):\n"
            + story.eligibility_table(screening))
        scene = story.choose_scene(queries_report(conn, rules).rows)
        if scene is None:
            say("(too few queries among these subjects to play a site's day; try --subjects 40)")
        else:
            say("three of the queries it opened, as a site user reads them on the form:\n"
                + "\n".join(story.as_site_reads_it(row) for _, row in scene.items()))
            say("a day at the site:\n" + "\n".join(story.play(conn, scene, screening)))
            result.summaries.append(run_sync(settings))
            say(f"second sync:\n{result.summaries[-1].describe()}")
            result.played, shown = story.statuses_now(scene, queries_report(conn, rules).rows)
            say("the three queries now (the correction resolved, the others as people left "
                f"them):\n{shown}")
        result.summaries.append(run_sync(settings))
        say(f"one more sync, nothing changed since (must write nothing):\n"
            f"{result.summaries[-1].describe()}")
        digest = queries_report(conn, rules)
        (workdir / "queries.html").write_text(digest.html, encoding="utf-8")
        say(f"monitors' digest of {len(digest.rows)} queries ({digest.active} open or answered) "
            f"written to {workdir / 'queries.html'}")
        result.cut_dir = workdir / "cut"
        manifest = run_export(settings, result.cut_dir)
        say(f"data cut of {manifest.records} subjects written to {result.cut_dir}")
        return result
