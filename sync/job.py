"""One nightly run: pull → type and validate → evaluate → diff → write back → report.

This is the only module that knows the order of the stages. A run holds the lock, reads the
cursor of the last successful run, pulls what changed, computes the full desired state of every
sync-owned cell (eligibility outputs, age, dq_query rows), writes only the cells that differ
(never a calculated field: REDCap ignores imported calc values, so a stale one is a CALC_STALE
finding), and advances the cursor only when everything landed. A run that dies half-way
leaves the cursor where it was, so the next run recomputes and finishes the job; because the
desired state is recomputed from REDCap each time, nothing is written twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import pandas as pd

from sync import eligibility as eligibility_stage
from sync import queries as query_stage
from sync import rule_guard
from sync import rules as rule_stage
from sync.config import Settings
from sync.connection import connect, split_credentials
from sync import readback
from sync.diff import KEY_COLUMNS, diff_cells, empty_cells, keyed
from sync.crf.dictionary import Dictionary
from sync.changes import OwnWrites, design_hash, read_log, reconciliation_due
from sync.errors import EXIT_NOT_WRITTEN, ConfigError, LockHeld
from sync.ledger import Ledger, ProjectKey, PullState, state_path_for, utc_now_ms
from sync.pull import (Pulled, all_record_ids, project_key, pull, pull_dictionary,
                       pull_records, require_every_column)
from sync.run_history import record_unstarted
from sync.crf.trial_crf import require_trial_crf
from sync.typed import TypingProblem, type_frame_with_problems
from sync.write import write_changes

log = logging.getLogger(__name__)

ELIGIBILITY_RULES = {"age": "AGE", **{f"inc{n}": f"I{n}" for n in range(1, 5)},
                     **{f"exc{n}": f"E{n}" for n in range(1, 10)},
                     "elig_calc": "ELIG_CALC", "elig_fail": "ELIG_CALC",
                     "elig_missing": "ELIG_CALC"}
QUERY_OWNED = frozenset(query_stage.QUERY_FIELDS)
EXIT_RULE_HELD = 6
"""Exit code of a run that held back a rule's new queries (`rule_guard`)."""


class Progress(Protocol):
    """Where a run reports how far it is; the CLI draws it, tests ignore it."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, amount: int) -> None: ...


class NoProgress:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int) -> None:
        pass


@dataclass
class RunSummary:
    """What one run did, for the terminal, the JSON log and the ledger."""

    run_id: str = ""
    mode: str = "write"
    full_pull: bool = False
    full_reason: str = ""
    records_pulled: int = 0
    records_deleted: int = 0
    flags_changed: int = 0
    queries_opened: int = 0
    queries_resolved: int = 0
    queries_reopened: int = 0
    queries_updated: int = 0
    cells_written: int = 0
    records_written: int = 0
    typing_problems: int = 0
    records_replanned: int = 0
    records_not_written: int = 0
    cells_not_written: int = 0
    api_calls: int = 0
    cursor: str | None = None
    seen_log: tuple[str, ...] = ()
    pull_state: PullState | None = field(default=None, repr=False)
    changes: pd.DataFrame = field(default_factory=empty_cells, repr=False)
    not_written: pd.DataFrame = field(default_factory=lambda: empty_cells().assign(message=""),
                                      repr=False)
    state_path: Path | None = None
    held_rules: list[rule_guard.Tripped] = field(default_factory=list)
    accepted_rules: list[rule_guard.Tripped] = field(default_factory=list)
    hold_share: float = 0.5

    @property
    def exit_code(self) -> int:
        """6 when a rule was held back (a person must look), else 5 when REDCap refused cells
        (the next run retries them), else 0."""
        if self.held_rules:
            return EXIT_RULE_HELD
        return EXIT_NOT_WRITTEN if self.records_not_written else 0

    def details(self) -> dict[str, list[dict[str, object]]]:
        """What the run held back or was told to accept, for the ledger."""
        return {"held_rules": [t.as_dict() for t in self.held_rules],
                "accepted_rules": [t.as_dict() for t in self.accepted_rules]}

    def describe(self) -> str:
        """The summary a data manager reads at the end of a run."""
        counts = self.counts()
        lines = [f"run {self.run_id} ({self.mode}, {'full' if self.full_pull else 'incremental'} pull"
                 + (f": {self.full_reason})" if self.full_reason else ")")]
        for label, key in (("records pulled", "records_pulled"), ("flags changed", "flags_changed"),
                           ("queries opened", "queries_opened"),
                           ("queries resolved", "queries_resolved"),
                           ("queries re-opened", "queries_reopened"),
                           ("query texts updated", "queries_updated"),
                           ("cells written", "cells_written"),
                           ("records written", "records_written"), ("API calls", "api_calls"),
                           ("invalid values", "typing_problems"),
                           ("records re-planned", "records_replanned"),
                           ("records not written", "records_not_written")):
            lines.append(f"  {label:<18} {counts[key]}")
        lines += [f"HELD BACK: {t.describe(self.hold_share, False)}" for t in self.held_rules]
        lines += [t.describe(self.hold_share, True) for t in self.accepted_rules]
        return "\n".join(lines + self.describe_not_written())

    def describe_not_written(self, limit: int = 20) -> list[str]:
        """The cells REDCap refused, with its message; the next run tries them again."""
        if self.not_written.empty:
            return []
        lines = [f"cells REDCap refused ({self.cells_not_written}; in the ledger, run "
                 f"{self.run_id}; the next run tries them again):"]
        for row in self.not_written.head(limit).itertuples(index=False):
            place = " ".join(p for p in (row.redcap_event_name, row.redcap_repeat_instrument,
                                         str(row.redcap_repeat_instance)) if p)
            lines.append(f"  {row.record_id} {place} {row.field} = {row.new_value!r}: "
                         f"{row.message}")
        if len(self.not_written) > limit:
            lines.append(f"  ... and {len(self.not_written) - limit} more")
        return lines

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)
                and not isinstance(v, bool)}


def desired_eligibility(records: pd.DataFrame, reading: str = "any"
                        ) -> tuple[pd.DataFrame, eligibility_stage.Eligibility]:
    """Eligibility outputs and age, keyed to each record's screening row."""
    decision = eligibility_stage.decide_eligibility(records, i3_respiratory_reading=reading)
    values = decision.values
    index = pd.MultiIndex.from_arrays(
        [values.index.astype(str), [eligibility_stage.SCREENING_EVENT] * len(values),
         [""] * len(values), [""] * len(values)], names=KEY_COLUMNS)
    return values.set_axis(index), decision


def desired_queries(plan: query_stage.QueryPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The query plan as desired cells: values to set, and cells to blank."""
    def index(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype(str).set_index(list(KEY_COLUMNS))
    rows = index(plan.rows).replace("", pd.NA) if not plan.rows.empty else pd.DataFrame()
    blanks = index(plan.blank_rows) if not plan.blank_rows.empty else pd.DataFrame()
    return rows, blanks


def evaluate(records: pd.DataFrame, dictionary: Dictionary, settings: Settings,
             now: datetime, problems: list[TypingProblem] | None = None,
             accept_rules: frozenset[str] = frozenset(), held: frozenset[str] = frozenset()
             ) -> tuple[pd.DataFrame, RunSummary]:
    """The change set for the pulled records, and the counts behind it (`problems`: the values
    typing could not read, when already known).

    A rule that trips `rule_guard` has its new queries left out unless in `accept_rules`; so
    has a rule in `held` (held back earlier in the same run).
    """
    summary = RunSummary()
    current = keyed(records, dictionary.record_id_field)
    eligibility_cells, decision = desired_eligibility(records, settings.i3_respiratory_reading)
    flags = diff_cells(eligibility_cells, current, ELIGIBILITY_RULES)
    catalogue = rule_stage.load_rules(settings.redcap_dir / "rules.csv", dictionary)
    findings = rule_stage.run_rules(records, dictionary, catalogue, decision, problems,
                                    steroid_limit_mg=settings.steroid_limit_mg_per_day)
    existing = records[records.get("redcap_repeat_instrument", "") == query_stage.QUERY_INSTRUMENT]
    checked = {rule.rule_id for rule in catalogue}
    plan = query_stage.plan_queries(findings, existing, now, checked_rules=checked)
    tripped = rule_guard.tripped_rules(
        plan.transitions, rule_guard.records_evaluated(records, dictionary, catalogue, decision),
        settings.rule_hold_share, settings.rule_hold_min_records)
    summary.hold_share = settings.rule_hold_share
    summary.held_rules = [t for t in tripped if t.rule not in accept_rules]
    summary.accepted_rules = [t for t in tripped if t.rule in accept_rules]
    for tripped_rule in summary.held_rules:
        log.warning("%s", tripped_rule.describe(settings.rule_hold_share, False))
    hold = {t.rule for t in summary.held_rules} | (held - accept_rules)
    if hold:
        findings = rule_guard.without_new_findings(findings, plan.transitions, hold)
        plan = query_stage.plan_queries(findings, existing, now, checked_rules=checked)
    rows, blanks = desired_queries(plan)
    query_rules = _query_rule_ids(plan, rows, blanks)
    query_cells = pd.concat([diff_cells(rows, current, query_rules),
                             diff_cells(blanks, current, query_rules)], ignore_index=True)
    changes = pd.concat([flags, query_cells], ignore_index=True)
    summary.flags_changed = len(flags)
    summary.queries_opened = plan.counts.get("opened", 0)
    summary.queries_resolved = plan.counts.get("resolved", 0)
    summary.queries_reopened = plan.counts.get("reopened", 0)
    summary.queries_updated = plan.counts.get("updated", 0)
    return changes, summary


def _query_rule_ids(plan: query_stage.QueryPlan, rows: pd.DataFrame,
                    blanks: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the finding's rule and the lifecycle move that justified writing it."""
    moves = plan.transitions
    reason = {(str(r.record_id), str(r.instance)): f"{r.rule_id}:{r.reason}"
              for r in moves.itertuples(index=False)}
    frames = []
    for frame in (rows, blanks):
        if frame.empty:
            continue
        labels = [reason.get((key[0], key[3]), "") for key in frame.index]
        frames.append(pd.DataFrame({c: labels for c in frame.columns}, index=frame.index))
    if not frames:
        return pd.DataFrame()
    combined = pd.concat(frames)
    return combined[~combined.index.duplicated()]


def run_fingerprint(settings: Settings) -> str:
    """What the findings depend on besides the data: the rule catalogue, the settings that
    change decisions, and this tool's version. A different fingerprint means a full pull."""
    from sync import __version__
    rules = settings.redcap_dir / "rules.csv"
    digest = hashlib.sha256(rules.read_bytes() if rules.exists() else b"")
    digest.update(f"{__version__}|{settings.i3_respiratory_reading}|"
                  f"{settings.steroid_limit_mg_per_day}".encode())
    return digest.hexdigest()[:16]


def owned_fields(dictionary: Dictionary) -> frozenset[str]:
    """Every field the sync may write; anything else in a change set is refused. Never a
    calculated field: REDCap would ignore the value (redcap-behaviour.md §2)."""
    return frozenset(ELIGIBILITY_RULES) | QUERY_OWNED


def run_sync(settings: Settings, *, dry_run: bool = False, full: bool = False,
             only_records: list[str] | None = None, progress: Progress | None = None,
             now: datetime | None = None, accept_rules: tuple[str, ...] = ()) -> RunSummary:
    """Run the nightly job once against the project in `settings`.

    `accept_rules` lets this run write the new queries of rules `rule_guard` would hold back.
    Every run is kept, with its start time, also one refused by the lock or failing before
    REDCap said which project it is (`_keep_failed_run`); an error leaves with the run's id as
    `error.run_id`.
    """
    progress = progress or NoProgress()
    mode = "dry-run" if dry_run else "write"
    started = utc_now_ms()
    conn = key = ledger = run_id = None
    try:
        conn = connect(settings)
        key, info = project_key(conn)
        ledger = Ledger(state_path_for(settings.state_path, key.url, key.project_id))
        run_id = ledger.start_run(key, mode, None, started_utc=started)
        with ledger.lock(key):
            fingerprint = run_fingerprint(settings)
            cursor, seen, last_fingerprint = ledger.last_state(key)
            reason = ("--full" if full else "first run" if cursor is None
                      else "rules, settings or tool version changed"
                      if last_fingerprint != fingerprint else "")
            retry = ledger.records_to_retry(key)
            ledger.begin_run(run_id, cursor, fingerprint)
            accepted = _known_rules(settings, accept_rules)
            summary = _run(conn, ledger, run_id, settings, (key, info),
                           (cursor, seen, retry), dry_run, reason, only_records, progress,
                           now or datetime.now(), accepted)
            summary.run_id, summary.mode, summary.api_calls = run_id, mode, conn.calls
            summary.state_path = ledger.path
            advance = (summary.cursor if not (dry_run or only_records or summary.held_rules)
                       else None)
            ledger.finish_run(run_id, "held" if summary.held_rules else "succeeded", advance,
                              summary.counts(), seen=summary.seen_log if advance else (),
                              exit_code=summary.exit_code, details=summary.details(),
                              pull="full" if summary.full_pull else "incremental")
            if advance and summary.pull_state is not None:
                ledger.save_pull_state(key, summary.pull_state)
            return summary
    except Exception as exc:
        _keep_failed_run(exc, settings, ledger, run_id, key, mode, started,
                         conn.calls if conn else 0)
        raise
    finally:
        if ledger is not None:
            ledger.close()


def _keep_failed_run(exc: Exception, settings: Settings, ledger: Ledger | None,
                     run_id: str | None, key: ProjectKey | None, mode: str, started: str,
                     api_calls: int) -> None:
    """Complete the failed run's row, or keep a run that failed before its project's state
    file was known, in the state file of its URL; the error then carries `run_id` and
    `state_path` (None when even that file cannot be opened, and `why_not` says why)."""
    status = "refused" if isinstance(exc, LockHeld) else "failed"
    exit_code = getattr(exc, "exit_code", 1)
    if ledger is not None and run_id is not None:
        ledger.finish_run(run_id, status, None, {"api_calls": api_calls}, str(exc),
                          exit_code=exit_code)
        exc.run_id, exc.state_path = run_id, ledger.path
        return
    unreached = key or ProjectKey(split_credentials(settings.redcap_api_url)[0], "", "")
    path = state_path_for(settings.state_path, unreached.url, unreached.project_id)
    exc.run_id, why_not = record_unstarted(path, unreached, mode, started, str(exc), exit_code,
                                           api_calls)
    exc.state_path = path if exc.run_id else None
    exc.why_not = why_not


def _known_rules(settings: Settings, names: tuple[str, ...]) -> frozenset[str]:
    """The rules named by --accept-rule, each checked against the catalogue."""
    if not names:
        return frozenset()
    known = {rule.rule_id for rule in rule_stage.load_rules(settings.redcap_dir / "rules.csv")}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"--accept-rule {unknown[0]}: no such rule in "
                          f"{settings.redcap_dir / 'rules.csv'}")
    return frozenset(names)


def _full_pull_reason(settings: Settings, state: PullState | None, changes, existing: list[str],
                      reason: str) -> str:
    """Why this run must pull every record, or '' (redcap-behaviour.md §1: the log alone
    cannot be trusted after a restore, a clock going back, or records vanishing)."""
    if reason:
        return reason
    if state is None:
        return "no pull state from an earlier run"
    if changes.distrust:
        return changes.distrust
    vanished = state.record_ids - set(existing) - changes.deleted - set(changes.renamed)
    if vanished:
        return (f"{len(vanished)} records vanished without a delete entry in the log "
                f"(e.g. {sorted(vanished)[0]})")
    if reconciliation_due(changes.cursor_to, state.last_full, settings.full_reconcile_days):
        return f"reconciliation every {settings.full_reconcile_days} days"
    return ""


def _own_writes(ledger: Ledger, key: ProjectKey, cursor: str | None
                ) -> tuple[OwnWrites, PullState | None]:
    """The sync's writes since the cursor's run, to skip its own log entries; the pull state."""
    previous = ledger.pull_state(key)
    if previous is None or cursor is None:
        return OwnWrites(), previous
    return OwnWrites.from_ledger(ledger.writes_since(key, previous.run_id), previous.sync_user,
                                 previous.record_id_field), previous


def _dictionary(conn, info: dict) -> Dictionary:
    dictionary = pull_dictionary(conn, info)
    require_trial_crf(dictionary, info, conn.project.url)
    return dictionary


def _run(conn, ledger: Ledger, run_id: str, settings: Settings, project: tuple[ProjectKey, dict],
         state: tuple[str | None, tuple[str, ...], frozenset[str]], dry_run: bool, reason: str,
         only_records: list[str] | None, progress: Progress, now: datetime,
         accept_rules: frozenset[str]) -> RunSummary:
    key, info = project
    cursor, seen, retry = state
    own, previous = _own_writes(ledger, key, cursor)
    changes = read_log(conn, cursor, seen, own)
    if retry - changes.deleted:
        changes = dataclasses.replace(changes, changed=changes.changed | (retry - changes.deleted))
    dictionary = None
    if previous is None or reason:
        dictionary = _dictionary(conn, info)
    pk = dictionary.record_id_field if dictionary else previous.record_id_field
    existing = all_record_ids(conn, pk)
    reason = _full_pull_reason(settings, previous, changes, existing, reason)
    if dictionary is None and (reason or only_records or changes.changed
                               or changes.design_touched):
        dictionary = _dictionary(conn, info)
    if dictionary is not None and previous is not None and not reason \
            and design_hash(dictionary) != previous.design_hash:
        reason = "the project's design changed in REDCap"
    after = PullState(run_id, design_hash(dictionary) if dictionary else previous.design_hash,
                      dictionary.record_id_field if dictionary else previous.record_id_field,
                      changes.user, (changes.cursor_to or "") if reason else previous.last_full,
                      frozenset(existing))
    summary = RunSummary(full_pull=bool(reason), full_reason=reason,
                         records_deleted=len(changes.deleted), cursor=changes.cursor_to,
                         seen_log=changes.seen, pull_state=after)
    wanted = set(existing) & changes.changed
    if not (reason or only_records or wanted):
        return summary
    pulled: Pulled = pull(conn, dictionary, changes, existing, full=bool(reason),
                          only_records=only_records, batch_size=settings.batch_size,
                          progress=lambda n: progress.advance("pull", n),
                          on_total=lambda n: progress.start("pull", n))
    require_every_column(pulled.records, dictionary)
    summary.records_pulled = len(pulled.record_ids)
    if pulled.records.empty:
        return summary
    _, problems = type_frame_with_problems(pulled.records, dictionary)
    summary.typing_problems = len(problems)
    for problem in problems[:20]:
        log.warning("value REDCap holds but cannot be typed: %s", problem)
    changes, counts = evaluate(pulled.records, dictionary, settings, now, problems,
                               accept_rules)
    for name in ("flags_changed", "queries_opened", "queries_resolved", "queries_reopened",
                 "queries_updated", "held_rules", "accepted_rules", "hold_share"):
        setattr(summary, name, getattr(counts, name))
    summary.changes = changes
    summary.cells_written = len(changes)
    if dry_run or changes.empty:
        return summary
    progress.start("write", changes["record_id"].nunique())
    fields = readback.readback_fields(dictionary, owned_fields(dictionary))

    def replan(batch: pd.DataFrame) -> pd.DataFrame:
        """Re-plan, from a fresh pull, the batch's records someone changed since the pull."""
        moved = readback.moved_records(conn, dictionary, pulled.records,
                                       list(dict.fromkeys(batch["record_id"])), fields)
        if not moved:
            return batch
        log.info("re-planning %d records changed since the pull: %s", len(moved), moved[:10])
        summary.records_replanned += len(moved)
        fresh = pull_records(conn, dictionary, moved, settings.batch_size)
        cells, _ = evaluate(fresh, dictionary, settings, now, None, accept_rules,
                            frozenset(t.rule for t in summary.held_rules))
        return pd.concat([batch[~batch["record_id"].isin(moved)], cells], ignore_index=True)

    written = write_changes(
        conn, ledger, run_id, changes, record_id_field=dictionary.record_id_field,
        owned_fields=owned_fields(dictionary), batch_size=settings.batch_size,
        progress=lambda n: progress.advance("write", n), before_batch=replan)
    summary.records_written = written.records
    summary.not_written = written.refused
    summary.cells_not_written = len(written.refused)
    summary.records_not_written = written.refused["record_id"].nunique()
    summary.cells_written = written.cells
    return summary


def deidentify_salt(settings: Settings, project: ProjectKey) -> bytes:
    """The secret behind de-identified date shifts: from the settings, else a private file
    beside the state file (created once, owner-only), so that successive cuts shift alike."""
    configured = settings.deidentify_salt.get_secret_value()
    if configured:
        return configured.encode("utf-8")
    path = state_path_for(settings.state_path, project.url, project.project_id).parent \
        / "deidentify.salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode("utf-8")


def run_export(settings: Settings, out_dir: Path, *, deidentify: bool = False,
               formats: tuple[str, ...] = ("csv", "parquet", "xpt"),
               now: datetime | None = None, unblinded: bool = False,
               unblinded_deidentified: bool = False, coding: Path | None = None):
    """Pull every record and write the sponsor's data cut into the new folder `out_dir`.

    The rule catalogue is evaluated on exactly the records pulled, as a dry run would, and its
    pending writes go into the cut, so its data status and query listing describe its data.
    """
    from sync import __version__
    from sync.export import write_cut
    from sync.connection import split_credentials
    from sync.export.manifest import CutSource, tool_commit

    cut_time = now or datetime.now(timezone.utc)
    conn = connect(settings)
    key, info = project_key(conn)
    dictionary = pull_dictionary(conn, info)
    version = conn.call("export version", conn.project.export_version)
    ledger = Ledger(state_path_for(settings.state_path, key.url, key.project_id))
    try:
        cursor, seen, _ = ledger.last_state(key)
        sync_run = ledger.last_run_id(key)
        own, _ = _own_writes(ledger, key, cursor)
    finally:
        ledger.close()
    changed = sorted(read_log(conn, cursor, seen, own).changed) if cursor else None
    stamp = cut_time.astimezone(timezone.utc).replace(tzinfo=None) if cut_time.tzinfo else cut_time
    source = CutSource(project_id=str(info.get("project_id", "")),
                       project_title=str(info.get("project_title", "")),
                       project_url=split_credentials(settings.redcap_api_url)[0],
                       api_user=settings.api_user or None, sync_run=sync_run,
                       changed_records=changed, tool_commit=tool_commit())
    return write_cut(_cut_records(conn, dictionary, settings, stamp), dictionary, out_dir,
                     deidentify=deidentify, formats=formats, batch_size=settings.batch_size,
                     cut_time=cut_time, redcap_version=str(version),
                     log_cursor=cursor, rules_path=settings.redcap_dir / "rules.csv",
                     tool_version=__version__,
                     secret_salt=deidentify_salt(settings, key) if deidentify else None,
                     unblinded=unblinded, unblinded_deidentified=unblinded_deidentified,
                     source=source, coding=coding)


def _cut_records(conn, dictionary: Dictionary, settings: Settings, now: datetime):
    """The project's records as the cut pulls them, batch by batch, each batch with what a
    sync run would write to it now (the rule catalogue evaluated on exactly those records)."""
    from sync.export.records import CutRecords
    from sync.pull import records_frame

    def pull(ids: list[str]) -> pd.DataFrame:
        if not ids:
            return records_frame([], dictionary.export_columns())
        return pull_records(conn, dictionary, ids, settings.batch_size)

    def pull_fields(ids: list[str], names: list[str]) -> pd.DataFrame:
        rows = conn.call(f"export {len(names)} fields of {len(ids)} records",
                         conn.project.export_records, format_type="json", records=ids,
                         fields=names) if ids else []
        return records_frame(rows, names)

    def cells(records: pd.DataFrame) -> pd.DataFrame | None:
        return evaluate(records, dictionary, settings, now)[0] if len(records) else None

    return CutRecords(record_ids=all_record_ids(conn, dictionary), pull=pull,
                      pull_fields=pull_fields, cells=cells)
