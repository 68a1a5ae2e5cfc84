"""Who may see what: the sites (data access groups) and user roles in `redcap/`, and the blind.

`redcap/dags.csv` and `redcap/user_roles.csv` are REDCap's own API formats (the columns of
`content=dag` and `content=userRole` exports, form rights written `form:right,form:right` as
REDCap's CSV export writes them). A field whose annotation carries `@UNBLINDED` reveals the
allocation; every form holding one must be closed, for data entry and export, to every role but
the unblinded ones (labels starting "Unblinded"). REDCap ignores the `@UNBLINDED` word; tools
(the check, the sponsor's blinded cut) find allocation-revealing fields by it.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync.crf.check_rules import Found, Where
from sync.crf.dictionary import Dictionary
from sync.crf.redcap_spec import USER_RIGHTS, parse_form_rights

UNBLINDED_TAG = re.compile(r"@UNBLINDED(?![-\w])")
DAG_FILE, ROLE_FILE = "dags.csv", "user_roles.csv"
DAG_COLUMNS: tuple[str, ...] = ("data_access_group_name", "unique_group_name")
ROLE_COLUMNS: tuple[str, ...] = ("unique_role_name", "role_label", *USER_RIGHTS, "forms",
                                 "forms_export")
ENTRY_RIGHTS = {0: "no access", 1: "view and edit", 2: "read only", 3: "edit survey responses"}
EXPORT_RIGHTS = {0: "no access", 1: "full data set", 2: "de-identified", 3: "identifiers removed"}


def unblinded_fields(dictionary: Dictionary) -> list[str]:
    """Fields whose annotation carries `@UNBLINDED`, in dictionary order."""
    return [f for f in dictionary.fields if UNBLINDED_TAG.search(dictionary.annotation(f))]


def unblinded_forms(dictionary: Dictionary) -> set[str]:
    return {dictionary.form_of(f) for f in unblinded_fields(dictionary)}


def is_unblinded_role(label: str) -> bool:
    return label.strip().lower().startswith("unblinded")


def read_table(path: Path) -> list[dict[str, str]] | None:
    """Rows of a `redcap/` CSV, or None when the file is absent (the project has none)."""
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [{k: (v or "").strip() for k, v in row.items() if k is not None}
                for row in csv.DictReader(handle)]


def redcap_group_name(label: str) -> str:
    """The unique name REDCap gives a new DAG: lower case, `_` for blanks, other signs dropped,
    at most 18 characters (`DataAccessGroups::getUniqueGroupName`)."""
    return re.sub(r"[^a-z0-9_]", "", label.strip().lower().replace(" ", "_"))[:18]


def role_payload(row: dict[str, str], unique_role_name: str = "") -> dict[str, Any]:
    """A `redcap/user_roles.csv` row with rights as numbers and form rights as dicts, for
    comparing; a blank `unique_role_name` makes REDCap create the role on import."""
    body: dict[str, Any] = {"unique_role_name": unique_role_name,
                            "role_label": row["role_label"]}
    body.update({k: int(row.get(k) or 0) for k in USER_RIGHTS})
    for key in ("forms", "forms_export"):
        body[key] = {f: int(r) for f, r in parse_form_rights(row.get(key, "")).items()}
    return body


def roles_csv(roles: list[dict[str, Any]]) -> str:
    """Roles as REDCap's CSV role import reads them (form rights `form:right,form:right`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ROLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for role in roles:
        writer.writerow({k: (",".join(f"{f}:{r}" for f, r in v.items()) if isinstance(v, dict)
                             else v) for k, v in role.items()})
    return buffer.getvalue()


def access_problems(dictionary: Dictionary, redcap_dir: Path) -> Iterator[Found]:
    """Roles name every form with a valid right and keep `@UNBLINDED` forms from blinded
    roles; DAG names are what REDCap would make of their labels."""
    redcap = redcap_dir.name
    yield from _role_problems(dictionary, read_table(redcap_dir / ROLE_FILE),
                              f"{redcap}/{ROLE_FILE}")
    yield from _dag_problems(read_table(redcap_dir / DAG_FILE), f"{redcap}/{DAG_FILE}")


def _role_problems(dictionary: Dictionary, rows: list[dict[str, str]] | None,
                   file: str) -> Iterator[Found]:
    if rows is None:
        return
    secret = unblinded_forms(dictionary)
    forms = list(dictionary.forms)
    labels: set[str] = set()
    for number, row in enumerate(rows, start=2):
        label = row.get("role_label", "")
        if not label:
            yield Where(file, number, "role_label"), "a role needs a label", "error"
            continue
        if label in labels:
            yield Where(file, number, "role_label"), f'role "{label}" is defined twice', "error"
        labels.add(label)
        for right in USER_RIGHTS:
            if row.get(right, "0") not in ("0", "1", ""):
                yield (Where(file, number, right), f'role "{label}": {right} must be 0 or 1',
                       "error")
        for column, allowed in (("forms", ENTRY_RIGHTS), ("forms_export", EXPORT_RIGHTS)):
            rights = parse_form_rights(row.get(column, ""))
            for form in [f for f in forms if f not in rights]:
                yield (Where(file, number, column),
                       f'role "{label}" gives no right for form "{form}"', "error")
            for form in [f for f in rights if f not in forms]:
                yield (Where(file, number, column),
                       f'role "{label}": no form named "{form}" in the dictionary', "error")
            for form, right in rights.items():
                if not right.isdigit() or int(right) not in allowed:
                    yield (Where(file, number, column), f'role "{label}", form "{form}": right '
                           f'"{right}" is not one of {sorted(allowed)}', "error")
                elif form in secret and int(right) and not is_unblinded_role(label):
                    yield (Where(file, number, column),
                           f'role "{label}" is blinded but may open form "{form}", which holds '
                           "@UNBLINDED fields; give it 0", "error")


def _dag_problems(rows: list[dict[str, str]] | None, file: str) -> Iterator[Found]:
    if rows is None:
        return
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):
        label, unique = row.get("data_access_group_name", ""), row.get("unique_group_name", "")
        if not label:
            yield Where(file, number, "data_access_group_name"), "a DAG needs a name", "error"
            continue
        if unique != redcap_group_name(label):
            yield (Where(file, number, "unique_group_name"), f'REDCap names DAG "{label}" '
                   f'"{redcap_group_name(label)}", not "{unique}"', "error")
        if unique in seen:
            yield Where(file, number, "unique_group_name"), f'"{unique}" is used twice', "error"
        seen.add(unique)


def _number(value: object) -> int:
    text = str(value if value is not None else "").strip()
    return int(float(text)) if text else 0


def _remote_role(role: dict[str, Any]) -> dict[str, Any]:
    """An exported role in the shape of `role_payload` (CSV and JSON exports differ in types)."""
    body: dict[str, Any] = {"unique_role_name": str(role.get("unique_role_name", "")),
                            "role_label": str(role.get("role_label", ""))}
    body.update({k: _number(role.get(k)) for k in USER_RIGHTS})
    for key in ("forms", "forms_export"):
        rights = role.get(key) or {}
        if not isinstance(rights, dict):
            rights = parse_form_rights(str(rights))
        body[key] = {str(f): _number(r) for f, r in rights.items()}
    return body


def plan_access(conn: Any, redcap_dir: Path) -> tuple[dict[str, list[str]], list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
    """What differs between `redcap/dags.csv`, `redcap/user_roles.csv` and the project: the
    changes as text, and the DAG and role rows to import. DAGs and roles the project holds
    beyond the files are left alone (users may be assigned to them)."""
    changes: dict[str, list[str]] = {}
    dag_rows, role_rows = read_table(redcap_dir / DAG_FILE), read_table(redcap_dir / ROLE_FILE)
    dags: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    if dag_rows is not None:
        remote = {str(d["unique_group_name"]): str(d["data_access_group_name"])
                  for d in conn.call("export DAGs", conn.project.export_dags)}
        for row in dag_rows:
            unique, label = row["unique_group_name"], row["data_access_group_name"]
            if remote.get(unique) != label:
                dags.append({"data_access_group_name": label,
                             "unique_group_name": unique if unique in remote else ""})
        changes["data access groups"] = [
            f"{'rename' if d['unique_group_name'] else 'add'} DAG {d['data_access_group_name']}"
            for d in dags]
    if role_rows is not None:
        remote_roles = {r["role_label"]: r for r in map(_remote_role, conn.call(
            "export user roles", conn.project.export_user_roles))}
        for row in role_rows:
            there = remote_roles.get(row["role_label"])
            wanted = role_payload(row, there["unique_role_name"] if there else "")
            if wanted != there:
                roles.append(wanted)
        changes["user roles"] = [f"{'update' if r['unique_role_name'] else 'add'} role "
                                 f"{r['role_label']}" for r in roles]
    return changes, dags, roles


def apply_access(conn: Any, dags: list[dict[str, Any]], roles: list[dict[str, Any]]) -> None:
    """Import the DAGs and roles `plan_access` found missing or different (after the metadata,
    since form rights name the project's forms)."""
    if dags:
        conn.call("import DAGs", conn.project.import_dags, dags)
    if roles:
        conn.call("import user roles", conn.project.import_user_roles, roles_csv(roles),
                  import_format="csv")
