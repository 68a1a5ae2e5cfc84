"""One nightly run: pull → type and validate → evaluate → diff → write back → report.

This is the only module that knows the order of the stages. A run holds the lock, reads the
cursor of the last successful run, pulls what changed batch by batch (`_BatchRun`: each batch
of whole records goes through every stage before the next is pulled), computes the full
desired state of every sync-owned cell (eligibility outputs, age, dq_query rows), writes only
the cells that differ (never a calculated field: REDCap ignores imported calc values, so a
stale one is a CALC_STALE finding), and advances the cursor only when everything landed. A run
that dies half-way leaves the cursor where it was, so the next run recomputes and finishes the
job; because the desired state is recomputed from REDCap each time, nothing is written twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import secrets
import threading
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol

import pandas as pd

from sync import batches
from sync import eligibility as eligibility_stage
from sync import queries as query_stage
from sync import rule_guard
from sync import rules as rule_stage
from sync.config import Settings
from sync.connection import connect, split_credentials
from sync import gap, readback, stopping
from sync.diff import KEY_COLUMNS, diff_cells, empty_cells, keyed
from sync.crf.dictionary import Dictionary
from sync.changes import Changes, OwnWrites, design_hash, read_log, reconciliation_due
from sync.errors import EXIT_NOT_WRITTEN, ConfigError, LockHeld
from sync.ledger import Ledger, ProjectKey, PullState, state_path_for, utc_now_ms
from sync.memory import release_freed_memory
from sync.pull import (all_record_ids, project_key, pull_batches, pull_dictionary,
                       pull_groups, pull_records, read_ahead, records_to_pull, require_every_column)
from sync.run_history import record_unstarted
from sync.crf.trial_crf import require_trial_crf
from sync.typed import TypingProblem, typing_problems
from sync.write import WriteBehind, import_cells, write_changes

log = logging.getLogger(__name__)

ELIGIBILITY_RULES = {"age": "AGE", **{f"inc{n}": f"I{n}" for n in range(1, 5)},
                     **{f"exc{n}": f"E{n}" for n in range(1, 10)},
                     "elig_calc": "ELIG_CALC", "elig_fail": "ELIG_CALC",
                     "elig_missing": "ELIG_CALC"}
QUERY_OWNED = frozenset(query_stage.QUERY_FIELDS)
EXIT_RULE_HELD = 6
"""Exit code of a run that held back a rule's new queries (`rule_guard`)."""
EXIT_RECREATED = 7
"""Exit code of a run that names a record its import re-created after a person deleted or
renamed it (`sync.gap`), until a person deletes it."""
STRING = "string[pyarrow]" if importlib.util.find_spec("pyarrow") else "string"


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
    queries_given_back: int = 0
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
    recreated: dict[str, str] = field(default_factory=dict)
    """Records a person deleted or renamed while the run imported them: what happened."""
    recreated_before: dict[str, str] = field(default_factory=dict)
    """Records an earlier run re-created that still hold only what it wrote: what happened
    and in which run."""
    values_not_given_back: int = 0
    not_given_back: pd.DataFrame = field(default_factory=lambda: empty_cells().assign(message=""),
                                         repr=False)
    """A person's query cells the import overwrote that REDCap refused to put back: their
    values, to enter again."""

    @property
    def exit_code(self) -> int:
        """6 when a rule was held back, else 7 when a record re-created by an import waits for
        a person to delete it (both need a person), else 5 when REDCap refused cells (the next
        run retries the sync's own; a person's value it could not give back is listed to enter
        again), else 0."""
        if self.held_rules:
            return EXIT_RULE_HELD
        if self.recreated or self.recreated_before:
            return EXIT_RECREATED
        return EXIT_NOT_WRITTEN if self.records_not_written or self.values_not_given_back else 0

    def details(self) -> dict[str, object]:
        """What the run held back or was told to accept, and the records re-created by an
        import that wait for a person (the next run names them again), for the ledger."""
        waiting = {record: f"{why} in REDCap while run {self.run_id} imported it"
                   for record, why in self.recreated.items()}
        return {"held_rules": [t.as_dict() for t in self.held_rules],
                "accepted_rules": [t.as_dict() for t in self.accepted_rules],
                "recreated": {**self.recreated_before, **waiting}}

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
                           ("queries given back", "queries_given_back"),
                           ("records not written", "records_not_written")):
            lines.append(f"  {label:<18} {counts[key]}")
        lines += [f"RE-CREATED: record {record} was {why} in REDCap while this run imported it; "
                  "the import re-created it holding only the sync's cells: delete it in REDCap"
                  for record, why in sorted(self.recreated.items())]
        lines += [f"RE-CREATED, STILL THERE: record {record} was {why}; the import re-created it "
                  "holding only the sync's cells and no one has changed it since: delete it in "
                  "REDCap" for record, why in sorted(self.recreated_before.items())]
        lines += [f"HELD BACK: {t.describe(self.hold_share, False)}" for t in self.held_rules]
        lines += [t.describe(self.hold_share, True) for t in self.accepted_rules]
        return "\n".join(lines + self.describe_not_written() + self.describe_not_given_back())

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

    def describe_not_given_back(self, limit: int = 20) -> list[str]:
        """A person's values the run overwrote and REDCap refused to put back: no later run
        restores them, so a person enters them again."""
        if self.not_given_back.empty:
            return []
        lines = [f"NOT GIVEN BACK ({self.values_not_given_back}; in the ledger, run "
                 f"{self.run_id}): a person saved these while this run imported the same "
                 "queries, and REDCap refused to put them back; enter them again in REDCap:"]
        lines += [f"  {row.record_id} dq_query instance {row.redcap_repeat_instance} "
                  f"{row.field} = {row.new_value!r}: {row.message}"
                  for row in self.not_given_back.head(limit).itertuples(index=False)]
        if len(self.not_given_back) > limit:
            lines.append(f"  ... and {len(self.not_given_back) - limit} more")
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


@dataclass
class Found:
    """One batch of whole records evaluated, its queries not yet planned: the cells the sync
    owns as REDCap holds them (keyed by row), the eligibility cells that differ, the findings, which of them would open a new query, the batch's dq_query
    rows, and per rule the records it evaluated (for `rule_guard`)."""

    current: pd.DataFrame
    flags: pd.DataFrame
    findings: pd.DataFrame
    new: pd.Series
    existing: pd.DataFrame
    evaluated: dict[str, int]

    @property
    def new_findings(self) -> pd.DataFrame:
        return self.findings[self.new.to_numpy()]


def find(records: pd.DataFrame, dictionary: Dictionary, settings: Settings,
         catalogue: list[rule_stage.Rule], problems: list[TypingProblem] | None = None,
         across: pd.DataFrame | None = None) -> Found:
    """Eligibility and every rule of the catalogue over `records` (`problems`: the values
    typing could not read, when already known; `across`: what rules comparing records read of
    the records outside this batch, `sync.batches`)."""
    pk, owned = dictionary.record_id_field, owned_fields(dictionary)
    current = keyed(records[[c for c in records.columns
                             if c == pk or c in KEY_COLUMNS or c in owned]], pk)
    eligibility_cells, decision = desired_eligibility(records, settings.i3_respiratory_reading)
    flags = diff_cells(eligibility_cells, current, ELIGIBILITY_RULES)
    findings = rule_stage.run_rules(records, dictionary, catalogue, decision, problems,
                                    steroid_limit_mg=settings.steroid_limit_mg_per_day,
                                    across=across)
    existing = records[records.get("redcap_repeat_instrument", "") == query_stage.QUERY_INSTRUMENT]
    return Found(current, flags, findings, query_stage.is_new(findings, existing), existing,
                 rule_guard.records_evaluated(records, dictionary, catalogue, decision))


def plan(found: Found, catalogue: list[rule_stage.Rule], now: datetime,
         hold: frozenset[str] | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The batch's change set and its counts. `hold`: the rules whose new queries stay
    unwritten; None while the run's rule guard is undecided, which keeps back every new query
    (the caller plans them later with `plan_new`). Either way the queries are planned once."""
    opening = found.new if hold is None else found.new & found.findings["rule_id"].isin(hold)
    query_plan = query_stage.plan_queries(found.findings[~opening.to_numpy()], found.existing,
                                          now, checked_rules={rule.rule_id for rule in catalogue})
    changes = pd.concat([found.flags, _query_cells(query_plan, found.current)], ignore_index=True)
    return changes, {"flags_changed": len(found.flags), **_plan_counts(query_plan)}


def plan_new(findings: pd.DataFrame, queries: pd.DataFrame, now: datetime
             ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The new queries of findings kept back by `plan`, after the dq_query rows REDCap holds
    now (`queries`); nothing else of those records is touched."""
    query_plan = query_stage.plan_queries(findings, queries, now, checked_rules=())
    return _query_cells(query_plan, keyed(queries, "record_id")), _plan_counts(query_plan)


def _query_cells(query_plan: query_stage.QueryPlan, current: pd.DataFrame) -> pd.DataFrame:
    rows, blanks = desired_queries(query_plan)
    query_rules = _query_rule_ids(query_plan, rows, blanks)
    return pd.concat([diff_cells(rows, current, query_rules),
                      diff_cells(blanks, current, query_rules)], ignore_index=True)


def _plan_counts(query_plan: query_stage.QueryPlan) -> dict[str, int]:
    return {f"queries_{name}": query_plan.counts.get(name, 0)
            for name in ("opened", "resolved", "reopened", "updated")}


def evaluate(records: pd.DataFrame, dictionary: Dictionary, settings: Settings,
             now: datetime, problems: list[TypingProblem] | None = None,
             accept_rules: frozenset[str] = frozenset(),
             catalogue: list[rule_stage.Rule] | None = None,
             across: pd.DataFrame | None = None) -> tuple[pd.DataFrame, RunSummary]:
    """The change set for `records` taken as the whole run (as the cut does), and the counts
    behind it. A rule that trips `rule_guard` on these records has its new queries left out
    unless in `accept_rules`. `catalogue`: the rules, when already loaded; `across`: what rules
    comparing records read of the records outside `records` (`sync.batches`).
    """
    if catalogue is None:
        catalogue = rule_stage.load_rules(settings.redcap_dir / "rules.csv", dictionary)
    found = find(records, dictionary, settings, catalogue, problems, across)
    tally = rule_guard.Tally()
    tally.add(found.evaluated, found.new_findings)
    summary = RunSummary()
    changes, counts = plan(found, catalogue, now, _decide(summary, tally, settings, accept_rules))
    for name, value in counts.items():
        setattr(summary, name, value)
    return changes, summary


def _decide(summary: RunSummary, tally: rule_guard.Tally, settings: Settings,
            accept_rules: frozenset[str]) -> frozenset[str]:
    """The run's rule guard: which tripped rules are held back and which accepted."""
    tripped = tally.tripped(settings.rule_hold_share, settings.rule_hold_min_records)
    summary.hold_share = settings.rule_hold_share
    summary.held_rules = [t for t in tripped if t.rule not in accept_rules]
    summary.accepted_rules = [t for t in tripped if t.rule in accept_rules]
    for tripped_rule in summary.held_rules:
        log.warning("%s", tripped_rule.describe(settings.rule_hold_share, False))
    return frozenset(t.rule for t in summary.held_rules)


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
            reason = "--full" if full else _settings_reason(cursor, last_fingerprint,
                                                            fingerprint)
            retry = ledger.records_to_retry(key)
            ledger.begin_run(run_id, cursor, fingerprint)
            summary = _run(conn, ledger, run_id, settings, (key, info),
                           (cursor, seen, retry), dry_run, reason, only_records, progress,
                           now or datetime.now(), accept_rules)
            stopping.check()
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


def _known_rules(catalogue: list[rule_stage.Rule], names: tuple[str, ...],
                 settings: Settings) -> frozenset[str]:
    """The rules named by --accept-rule, each checked against the catalogue."""
    unknown = sorted(set(names) - {rule.rule_id for rule in catalogue})
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


def _settings_reason(cursor: str | None, last_fingerprint: str, fingerprint: str) -> str:
    """Why a run must pull every record before the log is read, or ''."""
    if cursor is None:
        return "first run"
    return "rules, settings or tool version changed" if last_fingerprint != fingerprint else ""


def _design_reason(dictionary: Dictionary, previous: PullState | None) -> str:
    """'' unless the project's design differs from the one the last run pulled with."""
    if previous is not None and design_hash(dictionary) != previous.design_hash:
        return "the project's design changed in REDCap"
    return ""


def _own_writes(ledger: Ledger, key: ProjectKey, cursor: str | None
                ) -> tuple[OwnWrites, PullState | None]:
    """The sync's writes since the cursor's run, to skip its own log entries; the pull state."""
    previous = ledger.pull_state(key)
    if previous is None or cursor is None:
        return OwnWrites(), previous
    runs = ledger.runs_since(key, previous.run_id)
    if not ledger.wrote_any(runs):
        return OwnWrites(None, previous.sync_user, previous.record_id_field), previous
    return OwnWrites(lambda record: ledger.cells_of_record(runs, record), previous.sync_user,
                     previous.record_id_field), previous


def _dictionary(conn, info: dict) -> Dictionary:
    dictionary = pull_dictionary(conn, info)
    require_trial_crf(dictionary, info, conn.project.url)
    return dictionary


def _run(conn, ledger: Ledger, run_id: str, settings: Settings, project: tuple[ProjectKey, dict],
         state: tuple[str | None, tuple[str, ...], frozenset[str]], dry_run: bool, reason: str,
         only_records: list[str] | None, progress: Progress, now: datetime,
         accept_rules: tuple[str, ...]) -> RunSummary:
    key, info = project
    cursor, seen, retry = state
    own, previous = _own_writes(ledger, key, cursor)
    changes = read_log(conn, cursor, seen, own, since=None if cursor else datetime.now())
    touched = changes.changed
    if retry - changes.deleted:
        changes = dataclasses.replace(changes, changed=changes.changed | (retry - changes.deleted))
    dictionary = None
    if previous is None or reason:
        dictionary = _dictionary(conn, info)
    pk = dictionary.record_id_field if dictionary else previous.record_id_field
    existing, everyone = (batches.record_ids_with_across(conn, dictionary) if dictionary
                          else (all_record_ids(conn, pk), None))
    reason = _full_pull_reason(settings, previous, changes, existing, reason)
    if dictionary is None and (reason or only_records or changes.changed
                               or changes.design_touched):
        dictionary = _dictionary(conn, info)
    if dictionary is not None and not reason:
        reason = _design_reason(dictionary, previous)
    after = PullState(run_id, design_hash(dictionary) if dictionary else previous.design_hash,
                      dictionary.record_id_field if dictionary else previous.record_id_field,
                      changes.user, (changes.cursor_to or "") if reason else previous.last_full,
                      frozenset(existing))
    summary = RunSummary(full_pull=bool(reason), full_reason=reason,
                         records_deleted=len(changes.deleted), cursor=changes.cursor_to,
                         seen_log=changes.seen, pull_state=after)
    summary.recreated_before = {record: why for record, why in ledger.recreated(key).items()
                                if record in after.record_ids and record not in touched}
    work = bool(reason or only_records or set(existing) & changes.changed)
    catalogue = (rule_stage.load_rules(settings.redcap_dir / "rules.csv", dictionary)
                 if work or accept_rules else [])
    accepted = _known_rules(catalogue, accept_rules, settings)
    if not work:
        return summary
    record_ids, _ = records_to_pull(changes, existing, full=bool(reason),
                                    only_records=only_records)
    summary.records_pulled = len(record_ids)
    across = None
    if len(record_ids) > settings.batch_size or len(record_ids) < len(existing):
        across = batches.across_records(conn, dictionary, {rule.rule_id for rule in catalogue},
                                        everyone)
    del everyone
    run = _BatchRun(conn, ledger, run_id, settings, dictionary, catalogue, now, across,
                    accepted, dry_run, summary, progress)
    run.total = len(record_ids)
    progress.start("pull", len(record_ids))
    last = (len(record_ids) - 1) // settings.batch_size
    with closing(read_ahead(pull_batches(conn, dictionary, record_ids, settings.batch_size,
                                         progress=lambda n: progress.advance("pull", n)))
                 ) as pulled, run.writing():
        for number, records in enumerate(pulled):
            run.batch(records, decide=number == last)
    run.finish()
    return summary


class _BatchRun:
    """One run, batch by batch: each batch of whole records is typed, evaluated, diffed and
    written before the next is pulled, so memory follows `batch_size`, not the project.

    The rule guard is judged on the whole run, so until the last batch every new query is kept
    back (its finding only, compactly) while everything else is written; the last batch
    decides, writes its own new queries of the rules not held, and `finish` then opens the
    kept-back ones, after reading back the queries their records hold by then.

    Each batch is read back, re-planned and imported behind the evaluation of the next
    (`WriteBehind`); a re-plan evaluates too, so evaluation and the kept-back findings are
    shared under `evaluating`, and each write re-plans with the guard of its own batch.
    """

    def __init__(self, conn, ledger: Ledger, run_id: str, settings: Settings,
                 dictionary: Dictionary, catalogue: list[rule_stage.Rule], now: datetime,
                 across: pd.DataFrame | None, accepted: frozenset[str], dry_run: bool,
                 summary: RunSummary, progress: Progress) -> None:
        self.conn, self.ledger, self.run_id, self.settings = conn, ledger, run_id, settings
        self.dictionary, self.catalogue, self.now, self.across = dictionary, catalogue, now, across
        self.accepted, self.dry_run = accepted, dry_run
        self.summary, self.progress = summary, progress
        self.tally = rule_guard.Tally()
        # a guard that can hold nothing (a share of 1: no rule fires on more records than it
        # evaluated) is decided before the first batch, whose new queries are then written
        # with it instead of kept back to the end
        self.hold: frozenset[str] | None = (frozenset() if settings.rule_hold_share >= 1
                                            else None)
        self.kept: list[pd.DataFrame] = []
        self.planned: list[pd.DataFrame] = []
        self.written_ids: set[str] = set()
        self.refused: list[pd.DataFrame] = []
        self.not_given_back: list[pd.DataFrame] = []
        self.fields = readback.readback_fields(dictionary, owned_fields(dictionary))
        self.columns = dictionary.export_columns()
        self.total, self.write_started, self.imports = 0, False, 0
        self.writer: WriteBehind | None = None
        self.evaluating = threading.Lock()
        state = summary.pull_state
        self.user = state.sync_user if state is not None else ""
        self.log_from = summary.cursor
        """REDCap's minute at or before the next read-back: where a gap check reads the log."""
        self.query_fields = frozenset(readback.readback_fields(dictionary, frozenset()))
        self.field_names = frozenset(dictionary.metadata["field_name"])
        self.labels = gap.log_labels(dictionary.events, dictionary.arms)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Batches written behind the evaluation of the next (a dry run writes nothing)."""
        if self.dry_run:
            yield
            return
        try:
            with WriteBehind() as self.writer:
                yield
        finally:
            self.writer = None

    def batch(self, records: pd.DataFrame, decide: bool) -> None:
        """Type, evaluate, plan and write one batch; `decide`: it is the run's last."""
        stopping.check()
        require_every_column(records, self.dictionary, self.columns)
        with self.evaluating:
            problems = typing_problems(records, self.dictionary)
            for problem in problems[:max(0, 20 - self.summary.typing_problems)]:
                log.warning("value REDCap holds but cannot be typed: %s", problem)
            self.summary.typing_problems += len(problems)
            found = find(records, self.dictionary, self.settings, self.catalogue, problems,
                         self.across)
            del problems
            self.tally.add(found.evaluated, found.new_findings)
            if decide:
                self.hold = _decide(self.summary, self.tally, self.settings, self.accepted)
            changes = self._plan(found)
            del found
        self._write(changes, records)
        del changes, records
        release_freed_memory()

    def _plan(self, found: Found) -> pd.DataFrame:
        changes, counts = plan(found, self.catalogue, self.now, self.hold)
        for name, value in counts.items():
            setattr(self.summary, name, getattr(self.summary, name) + value)
        if self.hold is None and found.new.any():
            self.kept.append(_compact(found.new_findings))
        return changes

    def _write(self, changes: pd.DataFrame, pulled: pd.DataFrame | None,
               read: pd.DataFrame | None = None) -> None:
        if self.dry_run:
            self.planned.append(_compact(changes))
            self.summary.cells_written += len(changes)
            return
        if changes.empty:
            return
        if pulled is not None and not self.write_started:
            self.progress.start("write", self.total)
            self.write_started = True
        if pulled is None or self.writer is None:
            self._write_now(changes, pulled, self.hold, read)
            return
        pk = self.dictionary.record_id_field
        seen = pulled[[c for c in dict.fromkeys((pk, *readback.KEY, *self.fields))
                       if c in pulled.columns]]
        hold = self.hold
        self.writer.submit(lambda: self._write_now(changes, seen, hold))

    def _write_now(self, changes: pd.DataFrame, pulled: pd.DataFrame | None,
                   hold: frozenset[str] | None, read: pd.DataFrame | None = None) -> None:
        """Import `changes`, each batch re-planned first against what REDCap holds now when
        `pulled` (what the read-back compares with) is given, and checked after its import
        for a person's save since that read (or since `read`, what was read instead)."""
        last_read: list[pd.DataFrame | None] = [read]

        def before(batch: pd.DataFrame) -> pd.DataFrame:
            batch, last_read[0] = self._replan(batch, pulled, hold)
            return batch

        written = write_changes(
            self.conn, self.ledger, self.run_id, changes,
            record_id_field=self.dictionary.record_id_field,
            owned_fields=owned_fields(self.dictionary), batch_size=self.settings.batch_size,
            progress=None if pulled is None else lambda n: self.progress.advance("write", n),
            before_batch=None if pulled is None else before,
            after_batch=lambda batch: self._give_back(batch, last_read[0]),
            first_batch=self.imports + 1)
        self.imports += written.batches
        self.summary.cells_written += written.cells
        self.written_ids |= written.record_ids
        if not written.refused.empty:
            self.refused.append(written.refused)

    def _give_back(self, written: pd.DataFrame, read: pd.DataFrame | None) -> None:
        """Put back the queries a person saved between `read` (the batch's records as last
        read, keyed by `record_id`) and the import of `written` (`sync.gap`)."""
        if (read is None or not self.user or self.log_from is None
                or not (written["redcap_repeat_instrument"] == query_stage.QUERY_INSTRUMENT
                        ).any()):
            return
        records = set(written["record_id"])
        entries = gap.read_log(self.conn, self.log_from, records,
                               f"read the log of {len(records)} records just imported")
        own = next((e for e in entries if e.get("username") == self.user), None)
        if own is not None:
            self.log_from = str(own.get("timestamp", ""))[:16] or self.log_from
        found = gap.overwritten(entries, written, read, user=self.user,
                                record_id_field="record_id", query_fields=self.query_fields,
                                field_names=self.field_names, labels=self.labels)
        for record, why in found.recreated.items():
            log.warning("record %s was %s in REDCap while this run imported it: the import "
                        "re-created it holding only the sync's cells; delete it in REDCap",
                        record, why)
        self.summary.recreated.update(found.recreated)
        for record in found.recreated:
            self.summary.recreated_before.pop(record, None)
        if found.cells.empty:
            return
        queries = found.queries
        log.warning("%d data queries were saved in REDCap by a person while this run imported "
                    "them (%s): given back as that person left them; the next sync takes them up",
                    len(queries), ", ".join(f"record {r} dq_query instance {i}"
                                            for r, i in queries[:10]))
        self._uncount(written, queries)
        self.ledger.record_writes(self.run_id, found.cells)
        refused = import_cells(self.conn, found.cells, self.dictionary.record_id_field,
                               f"give back {len(queries)} queries",
                               f"the ledger {self.ledger.path}, run {self.run_id}")
        for cells in (r.assign(message="the person's value could not be given back: "
                               + r["message"]) for r in refused if not r.empty):
            self.ledger.record_refused(self.run_id, cells)
            self.not_given_back.append(cells)
        self.summary.queries_given_back += len(queries)

    def _uncount(self, written: pd.DataFrame, queries: list[tuple[str, str]]) -> None:
        """Take what the run did to queries it then gave back out of the summary's counts."""
        places = set(queries)
        wrote: dict[tuple[str, str], dict[str, str]] = {}
        for record, instrument, instance, name, value in zip(
                written["record_id"], written["redcap_repeat_instrument"],
                written["redcap_repeat_instance"], written["field"], written["new_value"]):
            if instrument == query_stage.QUERY_INSTRUMENT and (record, str(instance)) in places:
                wrote.setdefault((record, str(instance)), {})[name] = value
        summary = self.summary
        for cells in wrote.values():
            count = ("queries_opened" if "dq_opened" in cells
                     else {"4": "queries_resolved", "1": "queries_reopened"}.get(
                         cells.get("dq_status", ""), "queries_updated"))
            setattr(summary, count, max(0, getattr(summary, count) - 1))

    def _replan(self, batch: pd.DataFrame, pulled: pd.DataFrame, hold: frozenset[str] | None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Re-plan, from a fresh pull, the batch's records someone changed since the pull
        (`hold`: the rule guard as the batch was planned with); with the batch's records as
        they were last read."""
        pk = self.dictionary.record_id_field
        records = list(dict.fromkeys(batch["record_id"]))
        moved = readback.moved_records(self.conn, self.dictionary, pulled, records, self.fields)
        read = pulled[pulled[pk].isin(set(records) - set(moved))]
        if not moved:
            return batch, read.rename(columns={pk: "record_id"})
        log.info("re-planning %d records changed since the pull: %s", len(moved), moved[:10])
        self.summary.records_replanned += len(moved)
        fresh = pull_records(self.conn, self.dictionary, moved, self.settings.batch_size)
        with self.evaluating:
            found = find(fresh, self.dictionary, self.settings, self.catalogue, None,
                         self.across)
            if hold is None:
                self.kept = [k[~k["record_id"].isin(moved)] for k in self.kept]
                if found.new.any():
                    self.kept.append(_compact(found.new_findings))
            cells, _ = plan(found, self.catalogue, self.now, hold)
        touched = readback.queries_touched(pulled, fresh, self.dictionary.record_id_field,
                                           self.fields)
        if touched:
            log.info("%d data queries were changed in REDCap while this run worked (%s): left "
                     "as they are now; the next sync takes them up", len(touched),
                     ", ".join(f"record {r} query {i}" for r, i in sorted(touched)[:10]))
            on_touched = [(record, str(instance)) in touched
                          and instrument == query_stage.QUERY_INSTRUMENT
                          for record, instrument, instance in zip(
                              cells["record_id"], cells["redcap_repeat_instrument"],
                              cells["redcap_repeat_instance"])]
            cells = cells[~pd.Series(on_touched, index=cells.index, dtype=bool)]
        read = pd.concat([read, fresh.reindex(columns=read.columns, fill_value="")],
                         ignore_index=True).rename(columns={pk: "record_id"})
        return pd.concat([batch[~batch["record_id"].isin(moved)], cells], ignore_index=True), read

    def finish(self) -> None:
        """Open the kept-back new queries of the rules the guard did not hold, then sum up."""
        stopping.check()
        hold = self.hold or frozenset()
        for kept in self.kept:
            kept = kept[~kept["rule_id"].isin(hold)]
            if kept.empty:
                continue
            findings = kept.astype(str)
            queries = readback.query_rows(self.conn, self.dictionary,
                                          list(dict.fromkeys(findings["record_id"])))
            changes, counts = plan_new(findings, queries, self.now)
            self.summary.queries_opened += counts["queries_opened"]
            self._write(changes, None, queries)
        self.kept.clear()
        summary = self.summary
        if self.planned:
            summary.changes = pd.concat([p.astype(str) for p in self.planned], ignore_index=True)
        if self.refused:
            summary.not_written = pd.concat(self.refused, ignore_index=True)
            summary.cells_not_written = len(summary.not_written)
            refused_ids = set(summary.not_written["record_id"])
            summary.records_not_written = len(refused_ids)
            self.written_ids -= refused_ids
        if self.not_given_back:
            summary.not_given_back = pd.concat(self.not_given_back, ignore_index=True)
            summary.values_not_given_back = len(summary.not_given_back)
        summary.records_written = len(self.written_ids)


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame kept across batches, its repeated strings as categories, free text as Arrow
    strings (#17.3); `.astype(str)` gives the same values back."""
    return frame.astype({column: "category" if column not in ("message", "new_value",
                                                              "old_value")
                         else STRING for column in frame.columns})


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

    The rule catalogue is evaluated as a dry run now would (every record, or after a sync only
    those changed since), and its pending writes go into the cut, so its data status and query
    listing describe its data.
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
        cursor, seen, fingerprint = ledger.last_state(key)
        sync_run = ledger.last_run_id(key)
        own, previous = _own_writes(ledger, key, cursor)
        changes = read_log(conn, cursor, seen, own) if cursor else None
        since_sync = _SinceSync(cursor, fingerprint, previous, changes,
                                ledger.records_to_retry(key))
    finally:
        ledger.close()
    stamp = cut_time.astimezone(timezone.utc).replace(tzinfo=None) if cut_time.tzinfo else cut_time
    source = CutSource(project_id=str(info.get("project_id", "")),
                       project_title=str(info.get("project_title", "")),
                       project_url=split_credentials(settings.redcap_api_url)[0],
                       api_user=settings.api_user or None, sync_run=sync_run,
                       changed_records=sorted(changes.changed) if changes else None,
                       tool_commit=tool_commit())
    return write_cut(_cut_records(conn, dictionary, settings, stamp, since_sync), dictionary,
                     out_dir,
                     deidentify=deidentify, formats=formats, batch_size=settings.batch_size,
                     cut_time=cut_time, redcap_version=str(version),
                     log_cursor=cursor, rules_path=settings.redcap_dir / "rules.csv",
                     tool_version=__version__,
                     secret_salt=deidentify_salt(settings, key) if deidentify else None,
                     unblinded=unblinded, unblinded_deidentified=unblinded_deidentified,
                     source=source, coding=coding)


@dataclass
class _SinceSync:
    """What the last successful sync left for the next one: its fingerprint and pull state,
    the log since its cursor (None without one) and the records it could not write."""
    cursor: str | None
    fingerprint: str
    previous: PullState | None
    changes: Changes | None
    retry: frozenset[str]

    def full_reason(self, settings: Settings, dictionary: Dictionary,
                    existing: list[str]) -> str:
        """Why a sync run now would pull every record (`run_sync`'s words), or ''."""
        reason = _settings_reason(self.cursor, self.fingerprint, run_fingerprint(settings))
        if reason or self.changes is None:
            return reason or "first run"
        return (_full_pull_reason(settings, self.previous, self.changes, existing, "")
                or _design_reason(dictionary, self.previous))

    def records_to_evaluate(self, existing: list[str]) -> frozenset[str]:
        """The records a sync run now would pull when it need not pull every record: every
        other record already holds what the sync writes, so a dry run would write nothing."""
        changes = self.changes
        return frozenset((changes.changed | (self.retry - changes.deleted)) & set(existing))


def _cut_records(conn, dictionary: Dictionary, settings: Settings, now: datetime,
                 since_sync: _SinceSync):
    """The project's records as the cut pulls them, batch by batch, each batch with what a
    sync run would write to it now: the rule catalogue evaluated on those of its records a
    sync would evaluate (`_SinceSync`), as a dry run would."""
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

    catalogue = rule_stage.load_rules(settings.redcap_dir / "rules.csv", dictionary)
    record_ids, everyone = batches.record_ids_with_across(conn, dictionary)
    reason = since_sync.full_reason(settings, dictionary, record_ids)
    only = None if reason else since_sync.records_to_evaluate(record_ids)
    evaluated = len(record_ids) if only is None else len(only)
    if only is None:
        log.info("the cut evaluates the rules on all %d records, as the next sync would pull "
                 "them all (%s)", evaluated, reason)
    else:
        log.info("the last sync left %d of %d records to evaluate; the cut's pending sync "
                 "writes are theirs (the other records hold what the sync wrote)", evaluated,
                 len(record_ids))
    across = (batches.across_records(conn, dictionary, {rule.rule_id for rule in catalogue},
                                     everyone)
              if evaluated and (evaluated > settings.batch_size or evaluated < len(record_ids))
              else None)
    del everyone

    def cells(records: pd.DataFrame) -> pd.DataFrame | None:
        if only is not None:
            records = records[records[dictionary.record_id_field].isin(only)
                              ].reset_index(drop=True)
        if not len(records):
            return None
        return evaluate(records, dictionary, settings, now, catalogue=catalogue,
                        across=across)[0]

    return CutRecords(record_ids=record_ids, pull=pull, pull_fields=pull_fields, cells=cells,
                      pull_groups=lambda groups: pull_groups(conn, dictionary, groups))
