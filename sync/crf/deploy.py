"""`ecrf deploy`: push the data dictionary and `redcap/` to a REDCap project, safely and idempotently.

The order is the one REDCap needs: project settings, arms, events, metadata, instrument-event
mapping, repeating instruments. Each part is compared with what the project holds first and
sent only when it differs, so a second deploy sends nothing. Events are matched by
`unique_event_name`: a changed window is updated in place, a new event is added (REDCap names it).
On a project holding records nothing is sent that deletes events, arms or a mapping with data,
and a change that would orphan data is refused unless forced; in production status nothing is
sent at all (REDCap's draft mode is the way). Facts: redcap-behaviour.md §3.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sync.crf.check import check_project, format_problems
from sync.connection import Connection
from sync.crf.dictionary import Dictionary
from sync.errors import DictionaryError, EcrfError
from sync.crf.project_access import apply_access, plan_access

SETTING_KEYS = ("project_title", "purpose", "purpose_other", "project_notes", "is_longitudinal", "scheduling_enabled",
                "has_repeating_instruments_or_events", "surveys_enabled",
                "record_autonumbering_enabled", "missing_data_codes")


DRAFT_MODE_PARTS = ("arms", "events", "metadata", "instrument-event mapping")
"""Parts REDCap's API refuses to import in production status (redcap-behaviour.md §3)."""


class DeployRefused(EcrfError):
    """The deploy would lose or orphan data, or the project is in production; nothing was sent."""


class DeployFailed(EcrfError):
    """REDCap did not end up holding what was sent."""


@dataclass
class DeployPlan:
    """What differs between the files and the project, and what that would do to its data.

    `orphans` (a removed field or choice code still holding values) are refused unless
    `--force`: forcing touches no event, arm or mapping. `blocked` are refused even with it.
    """

    changes: dict[str, list[str]] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(self.changes.values())

    def describe(self, brief: bool = False) -> str:
        """The plan as text; `brief` gives one line per part with its number of changes."""
        if self.empty:
            return "The project already matches the files; nothing to deploy."
        lines = []
        for part, items in self.changes.items():
            if items and brief:
                lines.append(f"  {part}: {len(items)} change{'s' if len(items) != 1 else ''}")
            elif items:
                lines.append(f"{part}:")
                lines.extend(f"  {item}" for item in items)
        if self.orphans:
            lines.append("would orphan data already entered:")
            lines.extend(f"  {item}" for item in self.orphans)
        if self.blocked:
            lines.append("cannot be deployed:")
            lines.extend(f"  {item}" for item in self.blocked)
        return "\n".join(lines)


def _rows(frame: pd.DataFrame, columns: list[str]) -> set[tuple[str, ...]]:
    if frame.empty:
        return set()
    return {tuple(_text(v) for v in row) for row in frame[columns].itertuples(index=False)}


def _text(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    try:
        number = float(text)
        return str(int(number)) if number.is_integer() else text
    except ValueError:
        return text


EVENT_KEYS = ["unique_event_name", "event_name", "arm_num", "day_offset", "offset_min",
              "offset_max", "custom_event_label"]


def _settings_changes(local: dict[str, str], remote: dict[str, str]) -> dict[str, str]:
    return {key: local[key] for key in SETTING_KEYS
            if key in local and _text(local[key]) != _text(remote.get(key, ""))}


def _metadata_changes(local: Dictionary, remote: Dictionary) -> list[str]:
    here = local.metadata.set_index("field_name")
    there = remote.metadata.set_index("field_name")
    items = [f"add field {name}" for name in here.index if name not in there.index]
    items += [f"remove field {name}" for name in there.index if name not in here.index]
    for name in here.index.intersection(there.index):
        differing = [key for key in here.columns if _text(here.at[name, key]) != _text(there.at[name, key])]
        if differing:
            items.append(f"change field {name}: {', '.join(differing)}")
    if not items and list(here.index) != list(there.index):
        items.append("reorder fields")
    return items


def _keyed_changes(noun: str, here: pd.DataFrame, there: pd.DataFrame,
                   columns: list[str]) -> list[str]:
    """`add`, `update` (what changes) and `remove` items, rows matched by the first column."""
    local = {row[0]: row for row in _rows(here, columns)}
    remote = {row[0]: row for row in _rows(there, columns)}
    items = [f"add {noun} {key}" for key in local if key not in remote]
    for key in (k for k in local if k in remote and local[k] != remote[k]):
        changed = [f"{c} {old!r} -> {new!r}" for c, old, new in zip(columns, remote[key], local[key])
                   if old != new]
        items.append(f"update {noun} {key}: {', '.join(changed)}")
    return items + [f"remove {noun} {key}" for key in remote if key not in local]


def plan_deploy(local: Dictionary, remote: Dictionary, remote_info: dict[str, str]) -> DeployPlan:
    """Compare the files with the project, part by part, in deploy order."""
    plan = DeployPlan()
    plan.changes["project settings"] = [
        f"{k}: {remote_info.get(k, '')!r} -> {v!r}"
        for k, v in _settings_changes(local.project, remote_info).items()]
    plan.changes["arms"] = _keyed_changes("arm", local.arms, remote.arms, ["arm_num", "name"])
    plan.changes["events"] = _keyed_changes("event", local.events, remote.events, EVENT_KEYS)
    plan.changes["metadata"] = _metadata_changes(local, remote)
    for part, here, there, columns in (
            ("instrument-event mapping", local.mapping, remote.mapping,
             ["arm_num", "unique_event_name", "form"]),
            ("repeating instruments", local.repeating, remote.repeating,
             ["event_name", "form_name", "custom_form_label"])):
        plan.changes[part] = ([f"add {row}" for row in sorted(_rows(here, columns) - _rows(there, columns))]
                              + [f"remove {row}" for row in sorted(_rows(there, columns) - _rows(here, columns))])
    return plan


def find_orphans(local: Dictionary, remote: Dictionary, records: pd.DataFrame) -> list[str]:
    """Values already in the project that the new definition would leave without a home."""
    if records.empty:
        return []
    orphans = []
    filled = records.astype(str).ne("")
    kept_fields = set(local.fields)
    for name in remote.fields:
        columns = [c for c in remote.export_field_names(name) if c in records.columns]
        if name not in kept_fields and columns and filled[columns].any(axis=None):
            orphans.append(f"field {name} is removed but holds data")
        elif name in kept_fields and remote.field_type(name) in ("radio", "dropdown") and name in records:
            codes = {code for code, _ in local.choices(name)}
            used = set(records.loc[filled[name], name]) - codes
            if used:
                orphans.append(f"field {name}: choice codes {sorted(used)} are removed but in use")
    return orphans


def find_blocked(local: Dictionary, remote: Dictionary, records: pd.DataFrame,
                 plan: DeployPlan, info: dict[str, str]) -> list[str]:
    """Changes no `--force` may send: production status, and deletions on a project with records."""
    draft_mode = [p for p in DRAFT_MODE_PARTS if plan.changes.get(p)]
    if info.get("in_production") == "1" and draft_mode:
        return [f"the project is in production status: {', '.join(draft_mode)} need REDCap's "
                "draft mode (Online Designer or Data Dictionary upload, then 'Submit changes "
                "for review'; events and arms in Project Setup)"]
    if records.empty:
        return []
    blocked = [f"{item} while the project holds records (remove it in REDCap's Project Setup "
               "after moving its data)" for part in ("arms", "events")
               for item in plan.changes[part] if item.startswith("remove")]
    kept = set(_rows(local.mapping, ["unique_event_name", "form"]))
    for event, form in sorted(set(_rows(remote.mapping, ["unique_event_name", "form"])) - kept):
        if _form_holds_data(remote, records, event, form):
            blocked.append(f"form {form} is unmapped from event {event} but holds data there")
    return blocked


def _form_holds_data(remote: Dictionary, records: pd.DataFrame, event: str, form: str) -> bool:
    if "redcap_event_name" not in records.columns:
        return False
    rows = records[records["redcap_event_name"] == event]
    columns = [c for name in remote.fields_of_form(form) if name != remote.record_id_field
               for c in remote.export_field_names(name) if c in rows.columns]
    status = rows.get(f"{form}_complete", pd.Series(dtype=str)).isin(["1", "2"])
    return bool(rows[columns].ne("").any(axis=None) or status.any())


def check_files(dictionary_path: Path, redcap_dir: Path) -> None:
    """`ecrf check` before anything is sent: any error stops the deploy (no `--force`)."""
    problems = [p for p in check_project(dictionary_path, redcap_dir) if p.severity == "error"]
    if problems:
        raise DictionaryError("deploy refused: `ecrf check` finds errors in the files; nothing "
                              "was sent. Correct them and deploy again.\n"
                              + format_problems(problems))


def remote_dictionary(conn: Connection) -> tuple[Dictionary, dict[str, str]]:
    project = conn.project
    info = conn.call("export project info", project.export_project_info)
    longitudinal = str(info.get("is_longitudinal", "0")) == "1"
    metadata = conn.call("export metadata", project.export_metadata)
    arms = conn.call("export arms", project.export_arms) if longitudinal else []
    events = conn.call("export events", project.export_events) if longitudinal else []
    mapping = (conn.call("export instrument-event mapping",
                         project.export_instrument_event_mappings) if longitudinal else [])
    repeating = []
    if str(info.get("has_repeating_instruments_or_events", "0")) == "1":
        repeating = conn.call("export repeating instruments",
                              project.export_repeating_instruments_events)
    remote = Dictionary.from_api(metadata, events, mapping, repeating, info, arms)
    return remote, {str(k): _text(v) for k, v in info.items()}


def _records_for_orphan_check(conn: Connection, remote: Dictionary) -> pd.DataFrame:
    if remote.metadata.empty:
        return pd.DataFrame()
    rows = conn.call("export records", conn.project.export_records, format_type="json")
    return pd.DataFrame.from_records(rows).fillna("").astype(str) if rows else pd.DataFrame()


def deploy(conn: Connection, local: Dictionary, *, force: bool = False,
           dry_run: bool = False, redcap_dir: Path | None = None) -> DeployPlan:
    """Bring the project in line with the files; returns the plan that was (or would be) applied.

    With `redcap_dir`, its sites (`dags.csv`) and user roles (`user_roles.csv`) are sent too,
    after everything else."""
    remote, info = remote_dictionary(conn)
    plan = plan_deploy(local, remote, info)
    dags, roles = [], []
    if redcap_dir is not None:
        access, dags, roles = plan_access(conn, redcap_dir)
        plan.changes.update(access)
    if plan.empty:
        return plan
    records = _records_for_orphan_check(conn, remote)
    plan.orphans = find_orphans(local, remote, records)
    plan.blocked = find_blocked(local, remote, records, plan, info)
    if dry_run:
        return plan
    _refuse(plan, force)
    _apply(conn, local, plan, has_data=not records.empty, force=force)
    apply_access(conn, dags, roles)
    return plan


def _refuse(plan: DeployPlan, force: bool) -> None:
    """Stop before sending; `--force` is suggested only when it alone would make the deploy go."""
    if plan.blocked:
        lines = plan.blocked + ([f"(and, needing --force: {item})" for item in plan.orphans])
        raise DeployRefused("deploy refused:\n  " + "\n  ".join(lines)
                            + "\nNothing was changed.\n" + plan.describe())
    if plan.orphans and not force:
        raise DeployRefused(
            "deploy refused, it would orphan data already entered:\n  "
            + "\n  ".join(plan.orphans) + "\nNothing was changed. Rerun with --force if these "
            "values are meant to leave the CRF (they will no longer show or export).")


def _apply(conn: Connection, local: Dictionary, plan: DeployPlan, *, has_data: bool,
           force: bool) -> None:
    project = conn.project
    settings = {k: v for k, v in local.project.items() if k in SETTING_KEYS}
    if plan.changes["project settings"]:
        conn.post("import project settings", content="project_settings",
                  data=json.dumps(settings))
        # A project that just became longitudinal shows REDCap's default arm and event only
        # now, and a classic project's data live in that event: plan them again.
        replanned = plan_deploy(local, *remote_dictionary(conn))
        for part in ("arms", "events"):
            plan.changes[part] = replanned.changes[part]
        if has_data and any(i.startswith("remove") for i in plan.changes["events"]):
            raise DeployRefused(
                "deploy stopped after the project settings: the project's existing event(s) "
                "would be replaced while records exist. Only the project settings were sent; "
                "define the events in REDCap's Project Setup, then deploy again.")
    # Deleting overrides only ever run on a project without records (find_blocked).
    override = int(any(item.startswith("remove") for part in ("arms", "events")
                       for item in plan.changes[part]))
    if plan.changes["arms"]:
        conn.call("import arms", project.import_arms, _records(local.arms), override=override)
    if plan.changes["events"]:
        conn.call("import events", project.import_events, _event_rows(local, plan, override),
                  override=override)
        _check_event_names(conn, local)
    if plan.changes["metadata"]:
        conn.call("import metadata", project.import_metadata, _records(local.metadata))
    if plan.changes["instrument-event mapping"] or (override and not local.mapping.empty):
        # REDCap replaces the whole mapping with what is sent: always the full mapping.
        conn.call("import instrument-event mapping", project.import_instrument_event_mappings,
                  _records(local.mapping))
    if plan.changes["repeating instruments"] or (override and not local.repeating.empty):
        conn.call("import repeating instruments", project.import_repeating_instruments_events,
                  _records(local.repeating))


def _event_rows(local: Dictionary, plan: DeployPlan, override: int) -> list[dict[str, str]]:
    """Rows of changed events with their `unique_event_name` (REDCap updates those in place) and
    of new events without one (REDCap names them from `event_name`, §3)."""
    if override:
        return _records(local.events.drop(columns=["unique_event_name"]))
    updated = {item.split()[2].rstrip(":") for item in plan.changes["events"]
               if item.startswith("update event ")}
    added = {item.split()[2] for item in plan.changes["events"] if item.startswith("add event ")}
    rows = []
    for row in _records(local.events):
        if row["unique_event_name"] in added:
            rows.append({k: v for k, v in row.items() if k != "unique_event_name"})
        elif row["unique_event_name"] in updated:
            rows.append(row)
    return rows


def _check_event_names(conn: Connection, local: Dictionary) -> None:
    there = {str(e.get("unique_event_name")) for e in
             conn.call("export events", conn.project.export_events)}
    missing = [name for name in local.event_names if name not in there]
    if missing:
        raise DeployFailed(
            f"REDCap named the new event(s) otherwise than redcap/events.csv: {', '.join(missing)} "
            f"not in the project (it has {', '.join(sorted(there))}). REDCap makes the unique "
            "name from event_name; correct unique_event_name in events.csv and deploy again.")


def _records(frame: pd.DataFrame) -> list[dict[str, str]]:
    return frame.fillna("").astype(str).to_dict(orient="records")
