"""`ecrf deploy`: push the data dictionary and `redcap/` to a REDCap project, safely and idempotently.

The order is the one REDCap needs: project settings, arms, events, metadata, instrument-event
mapping, repeating instruments. Each part is compared with what the project holds first and
sent only when it differs, so a second deploy sends nothing. On a project that already holds
data, a change that would orphan data (a removed field, event or mapping that holds values, or a
choice code still in use) is refused unless forced.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sync.connection import Connection
from sync.dictionary import Dictionary
from sync.errors import EcrfError
from sync.project_access import apply_access, plan_access

SETTING_KEYS = ("project_title", "purpose", "purpose_other", "project_notes", "is_longitudinal", "scheduling_enabled",
                "has_repeating_instruments_or_events", "surveys_enabled",
                "record_autonumbering_enabled", "missing_data_codes")


class DeployRefused(EcrfError):
    """The deploy would orphan data already in the project; nothing was changed."""


@dataclass
class DeployPlan:
    """What differs between the files and the project, and what that would do to its data."""

    changes: dict[str, list[str]] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)

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


def plan_deploy(local: Dictionary, remote: Dictionary, remote_info: dict[str, str]) -> DeployPlan:
    """Compare the files with the project, part by part, in deploy order."""
    plan = DeployPlan()
    plan.changes["project settings"] = [
        f"{k}: {remote_info.get(k, '')!r} -> {v!r}"
        for k, v in _settings_changes(local.project, remote_info).items()]
    for part, here, there, columns in (
            ("arms", local.arms, remote.arms, ["arm_num", "name"]),
            ("events", local.events, remote.events, EVENT_KEYS)):
        plan.changes[part] = ([f"add/update {row}" for row in sorted(_rows(here, columns) - _rows(there, columns))]
                              + [f"remove {row}" for row in sorted(_rows(there, columns) - _rows(here, columns))])
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
    if "redcap_event_name" in records.columns:
        kept_events = set(local.event_names)
        for event in sorted(set(records["redcap_event_name"]) - kept_events - {""}):
            orphans.append(f"event {event} is removed but holds data")
    return orphans


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
    if dry_run:
        return plan
    _refuse_orphans(plan, force)
    _apply(conn, local, plan, has_data=not records.empty, force=force)
    apply_access(conn, dags, roles)
    return plan


def _refuse_orphans(plan: DeployPlan, force: bool) -> None:
    if plan.orphans and not force:
        raise DeployRefused(
            "deploy refused, it would orphan data already entered:\n  "
            + "\n  ".join(plan.orphans) + "\nNothing was changed. Rerun with --force to apply anyway.")


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
            plan.orphans.append("the project's existing event(s) would be replaced while "
                                "records exist")
            _refuse_orphans(plan, force)
    removing = any(item.startswith("remove") for part in ("arms", "events")
                   for item in plan.changes[part])
    override = 1 if removing else 0
    if plan.changes["arms"]:
        conn.call("import arms", project.import_arms, _records(local.arms), override=override)
    if plan.changes["events"]:
        events = local.events.drop(columns=["unique_event_name"], errors="ignore")
        conn.call("import events", project.import_events, _records(events), override=override)
    if plan.changes["metadata"]:
        conn.call("import metadata", project.import_metadata, _records(local.metadata))
    if plan.changes["instrument-event mapping"]:
        conn.call("import instrument-event mapping", project.import_instrument_event_mappings,
                  _records(local.mapping))
    if plan.changes["repeating instruments"]:
        conn.call("import repeating instruments", project.import_repeating_instruments_events,
                  _records(local.repeating))


def _records(frame: pd.DataFrame) -> list[dict[str, str]]:
    return frame.fillna("").astype(str).to_dict(orient="records")
