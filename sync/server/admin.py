"""What REDCap's administrators and web pages do and its API cannot: locking, project status,
user rights. `ecrf server lock|unlock|status|user` call these on the database file, safely
while the server runs (SQLite in WAL mode; every API call reads the state afresh).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sync.errors import ConfigError
from sync.server.access import EDIT_PROD_EVENTS, EXPORT_DEIDENTIFIED, EXPORT_FULL, \
    EXPORT_NO_IDENTIFIERS, EXPORT_NONE, user_of
from sync.server.store import API_USER, MANAGE, Design, Store, new_token, now

ADMIN = "site_admin"
EXPORT_RIGHTS = {"full": EXPORT_FULL, "none": EXPORT_NONE, "deidentified": EXPORT_DEIDENTIFIED,
                 "no-identifiers": EXPORT_NO_IDENTIFIERS}


def _design(store: Store, project_id: int | None) -> Design:
    ids = [pid for pid, _ in store.all_tokens()]
    chosen = project_id if project_id is not None else (min(ids) if ids else None)
    if chosen not in ids:
        raise ConfigError(f"no project {project_id} in {store.db_path} "
                          f"(projects: {', '.join(map(str, sorted(ids))) or 'none'})")
    return store.design(int(chosen))


@dataclass
class LockTarget:
    """A whole record (no form), or one form of one event and instance of a record."""

    record: str
    event: str = ""
    form: str = ""
    instance: int = 1

    def describe(self) -> str:
        if not self.form:
            return f"record {self.record}"
        event = f", event {self.event}" if self.event else ""
        return f"form {self.form} of record {self.record}{event}, instance {self.instance}"


def set_lock(store: Store, target: LockTarget, locked: bool, project_id: int | None = None) -> str:
    """Lock or unlock; logged as REDCap logs it, outside `logtype=record` (§1)."""
    design = _design(store, project_id)
    if target.record not in store.record_names(design.project_id):
        raise ConfigError(f"no record {target.record!r} in project {design.project_id}")
    event_id = 0
    if target.form:
        if target.form not in design.form_names:
            raise ConfigError(f"no instrument {target.form!r} in project {design.project_id} "
                              f"(instruments: {', '.join(design.form_names)})")
        event = design.event_by_name(target.event) if target.event else None
        if target.event and event is None:
            raise ConfigError(f"no event {target.event!r} in project {design.project_id}")
        if design.is_longitudinal and event is None:
            raise ConfigError("--event is required with --form in a longitudinal project")
        event_id = event.event_id if event else design.default_event_id()
    verb = "Lock" if locked else "Unlock"
    with store.write() as db:
        changed = store.set_lock(db, design.project_id, target.record, event_id, target.form,
                                 target.instance if target.form else 1, locked)
        if changed:
            details = f"Action: {verb} {'instrument' if target.form else 'entire record'}\n" \
                      f"Record: {target.record}" + (
                          f"\nForm: {target.form}\nEvent: {target.event}\nInstance: "
                          f"{target.instance}" if target.form else "")
            store.log(db, design.project_id, "Lock/Unlock Record", details, target.record,
                      logtype="lock_record", username=ADMIN)
    state = "locked" if locked else "unlocked"
    return f"{target.describe()} {state}" if changed else \
        f"{target.describe()} was already {state}"


def set_status(store: Store, status: str, project_id: int | None = None,
               events_editable: bool | None = None) -> str:
    """Move a project to development or production (§3); optionally let users edit events."""
    if status not in ("development", "production"):
        raise ConfigError(f"status must be development or production, not {status!r}")
    design = _design(store, project_id)
    info = dict(design.info)
    production = status == "production"
    info["in_production"] = int(production)
    info["production_time"] = now() if production else ""
    with store.write() as db:
        store.save_info(db, design.project_id, info)
        store.log(db, design.project_id, MANAGE,
                  "Move project to production status" if production
                  else "Move project back to development status", logtype="manage",
                  username=ADMIN)
    if events_editable is not None:
        store.set_setting(EDIT_PROD_EVENTS, "1" if events_editable else "0")
    editable = store.setting(EDIT_PROD_EVENTS) == "1"
    return (f"project {design.project_id} is in {status} status; normal users "
            f"{'may' if editable else 'may not'} edit events in production")


def set_user(store: Store, username: str, project_id: int | None = None, *,
             new_api_token: bool = False, rights: dict[str, bool] | None = None,
             group: str | None = None, export_rights: str | None = None) -> tuple[str, str]:
    """Create or change a project user and its rights; returns (summary, token or '')."""
    design = _design(store, project_id)
    body: dict[str, Any] = dict(user_of(store, design.project_id, username))
    if "api_export" not in body:
        body.update(api_export=1, api_import=1, logging=1)
    for name, granted in (rights or {}).items():
        body[name] = int(granted)
    if group is not None:
        known = {d["unique_group_name"] for d in store.items(design.project_id, "dag")}
        if group and group not in known:
            raise ConfigError(f"no data access group {group!r} in project {design.project_id} "
                              f"(groups: {', '.join(sorted(known)) or 'none'})")
        body["redcap_data_access_group"] = group
    if export_rights is not None:
        if export_rights not in EXPORT_RIGHTS:
            raise ConfigError(f"export rights must be one of {', '.join(EXPORT_RIGHTS)}")
        body["forms_export"] = {form: EXPORT_RIGHTS[export_rights] for form in design.form_names}
    known_token = {user: token for pid, user, token in store.user_tokens()
                   if pid == design.project_id}
    has_token = username in known_token or username == API_USER  # the project token is its own
    token = new_token() if new_api_token or not has_token else ""
    replaces_project_token = token != "" and username == API_USER
    with store.write() as db:
        store.put_item(db, design.project_id, "user", username, body)
        if replaces_project_token:  # the project's own token is this user's: the old one goes
            db.execute("UPDATE projects SET token=? WHERE project_id=?",
                       (token, design.project_id))
            db.execute("DELETE FROM user_tokens WHERE project_id=? AND username=?",
                       (design.project_id, username))
        elif token:
            store.set_user_token(db, design.project_id, username, token)
    rights_text = ", ".join(f"{k}={body.get(k)}" for k in ("api_export", "api_import", "logging"))
    exports = body.get("forms_export")
    shown = next(iter({v for v in exports.values()}), EXPORT_FULL) if isinstance(exports, dict) \
        else EXPORT_FULL
    names = {v: k for k, v in EXPORT_RIGHTS.items()}
    summary = (f"user {username} of project {design.project_id}: {rights_text}, data access "
               f"group {body.get('redcap_data_access_group') or '(none)'}, export rights "
               f"{names.get(shown, shown)}")
    if replaces_project_token:
        summary += (f"\nthe project's token was replaced: the old one is refused from now on. A "
                    f"server started with ECRF_SERVE_TOKEN or --token-file sets that token "
                    f"again when it starts: put the new one there")
    return summary, token
