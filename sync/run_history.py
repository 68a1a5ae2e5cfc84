"""Run history: what every `ecrf sync` did, read back from the ledger for `ecrf runs`.

Each run is one JSON object (start and end in UTC, duration, exit code, counts, outcome, error),
the same shape `ecrf sync --json` prints, so a log collector and a data manager read the same
thing. A run that could not reach its state file is described but cannot be kept; the object
says why.
"""
from __future__ import annotations

import json
import tomllib
from datetime import datetime
from pathlib import Path

import pandas as pd

from sync.errors import StateFileError
from sync.ledger import Ledger, ProjectKey, state_path_for, user_state_dir, utc_now_ms

OUTCOMES = {"succeeded": "done", "failed": "failed", "refused": "refused (lock held)",
            "held": "rule held back", "running": "unfinished"}
COUNT_KEYS = ("records_pulled", "records_written", "cells_written", "queries_opened",
              "queries_resolved", "queries_reopened", "api_calls")


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return round((parse(end) - parse(start)).total_seconds(), 3)


def run_object(row: dict) -> dict:
    """One ledger row as the run's JSON object."""
    counts = json.loads(row.get("counts") or "{}")
    details = json.loads(row.get("details") or "{}")
    exit_code = row.get("exit_code")
    return {"run_id": row["run_id"], "project": row.get("project_key") or None,
            "started_utc": row["started_utc"], "finished_utc": row.get("finished_utc"),
            "duration_seconds": _seconds_between(row["started_utc"], row.get("finished_utc")),
            "mode": row["mode"], "pull": row.get("pull") or None,
            "outcome": row["status"],
            "exit_code": None if exit_code is None or pd.isna(exit_code) else int(exit_code),
            "error": row.get("message") or None,
            **{key: int(counts.get(key, 0)) for key in COUNT_KEYS},
            **{k: v for k, v in counts.items() if k not in COUNT_KEYS},
            "held_rules": details.get("held_rules", []),
            "accepted_rules": details.get("accepted_rules", [])}


def unrecorded_object(started: str, exit_code: int, error: str, reason: str,
                      mode: str = "write") -> dict:
    """A run the state file could not keep: what is known, and why it is not in the history."""
    finished = utc_now_ms()
    return {"run_id": None, "project": None, "started_utc": started, "finished_utc": finished,
            "duration_seconds": _seconds_between(started, finished), "mode": mode, "pull": None,
            "outcome": "failed", "exit_code": exit_code, "error": error,
            "not_recorded": reason}


def history_files(state_path: Path | None) -> list[Path]:
    """The state files that may hold runs: the configured one, else every per-project file in
    the user's state directory (runs of other URLs are filtered out by `load_history`)."""
    if state_path is not None:
        return [state_path] if Path(state_path).exists() else []
    return sorted(user_state_dir().glob("*.sqlite"))


def load_history(state_path: Path | None, url: str) -> list[tuple[dict, Path]]:
    """Every run of the project(s) at `url` (all runs of a configured state file), oldest first,
    each with the file that keeps it."""
    found: list[tuple[dict, Path]] = []
    for path in history_files(state_path):
        ledger = Ledger(path)
        try:
            rows = ledger.runs().to_dict("records")
        finally:
            ledger.close()
        found += [(run_object(row), path) for row in rows
                  if state_path is not None or str(row["project_key"]).startswith(f"{url}#")]
    return sorted(found, key=lambda item: item[0]["started_utc"])


def find_run(runs: list[tuple[dict, Path]], wanted: str) -> tuple[dict, Path] | None:
    """The run with id `wanted` (or a unique start of it; `last` is the latest run)."""
    if wanted == "last":
        return runs[-1] if runs else None
    matches = [item for item in runs if (item[0]["run_id"] or "").startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def read_run(path: Path, run_id: str) -> dict | None:
    """One run's object from the state file that keeps it."""
    ledger = Ledger(path)
    try:
        rows = ledger.runs()
    finally:
        ledger.close()
    rows = rows[rows["run_id"] == run_id].to_dict("records")
    return run_object(rows[0]) if rows else None


def record_unstarted(state_path: Path, project: ProjectKey, mode: str, started: str, error: str,
                     exit_code: int, api_calls: int = 0) -> tuple[str | None, str]:
    """Keep a run that failed before its own state file was known (a bad setting, REDCap not
    answering); returns (run id, why it could not be kept)."""
    try:
        ledger = Ledger(state_path)
    except StateFileError as exc:  # the state file itself is the problem; the run is reported
        return None, str(exc)
    try:
        run_id = ledger.start_run(project, mode, None, started_utc=started)
        ledger.finish_run(run_id, "failed", None, {"api_calls": api_calls}, error,
                          exit_code=exit_code)
        return run_id, ""
    except StateFileError as exc:
        return None, str(exc)
    finally:
        ledger.close()


def unstarted_state_path(config: Path | None, url: str) -> Path:
    """Where a run whose settings did not load is kept: the file's `state_path` if it can be
    read, else the user's state file for runs that never reached a project of `url`."""
    source = config or Path("ecrf.toml")
    configured = None
    try:
        value = tomllib.loads(source.read_text(encoding="utf-8")).get("state_path")
        configured = Path(value) if isinstance(value, str) and value else None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        pass
    return state_path_for(configured, url, "")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def format_runs(runs: list[dict]) -> str:
    """The run history as a table, newest last, one line per run."""
    if not runs:
        return "no runs recorded yet"
    header = ("run", "started (UTC)", "took", "mode", "pull", "pulled", "written", "opened",
              "resolved", "re-opened", "API", "outcome", "exit")
    lines = [header]
    for run in runs:
        outcome = OUTCOMES.get(run["outcome"], run["outcome"])
        if run["held_rules"]:
            outcome += ": " + ", ".join(h["rule"] for h in run["held_rules"])
        lines.append((run["run_id"] or "-", run["started_utc"][:19].replace("T", " "),
                      _duration(run["duration_seconds"]), run["mode"], run["pull"] or "-",
                      str(run["records_pulled"]), str(run["records_written"]),
                      str(run["queries_opened"]), str(run["queries_resolved"]),
                      str(run["queries_reopened"]), str(run["api_calls"]), outcome,
                      "-" if run["exit_code"] is None else str(run["exit_code"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
            for line in lines]
    for run in runs:
        if run["error"]:
            text.append(f"{run['run_id'] or '-'}: {run['error']}")
    return "\n".join(text)


def format_run(run: dict, writes: pd.DataFrame) -> str:
    """One run: its summary, then every cell it wrote with old and new value and rule."""
    lines = [format_runs([run]), ""]
    if run["held_rules"]:
        for held in run["held_rules"]:
            lines.append(f"held back: rule {held['rule']} would have opened queries on "
                         f"{held['records']} of {held['evaluated']} records")
    if writes.empty:
        lines.append("no cells written")
        return "\n".join(lines)
    shown = writes.rename(columns={"redcap_event_name": "event",
                                   "redcap_repeat_instrument": "instrument",
                                   "redcap_repeat_instance": "instance", "record_id": "record",
                                   "old_value": "old", "new_value": "new", "rule_id": "rule"})
    columns = ["record", "event", "instrument", "instance", "field", "old", "new", "rule"]
    lines.append(f"{len(writes)} cells written:")
    lines.append(shown[columns].to_string(index=False))
    return "\n".join(lines)
