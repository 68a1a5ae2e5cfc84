"""Sites, user roles, missing-data codes and the blind: `redcap/` lands in REDCap as written,
and no blinded role can open a form holding an `@UNBLINDED` field."""
from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr
from redcap import Project

from sync.crf.check import check_project
from sync.config import Settings
from sync.connection import connect
from sync.crf.deploy import deploy
from sync.crf.dictionary import load_dictionary
from sync.crf.redcap_spec import parse_form_rights
from sync.crf.project_access import (
    is_unblinded_role, read_table, unblinded_fields, unblinded_forms,
)

ROOT = Path(__file__).resolve().parents[1]
REDCAP = ROOT / "redcap"
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", REDCAP)


@pytest.fixture
def fresh(redcap_server):
    token = redcap_server.create_project()
    settings = Settings(REDCAP_API_URL=redcap_server.url, REDCAP_API_TOKEN=SecretStr(token))
    return settings, Project(redcap_server.url, token)


def _roles_as_files(exported: list[dict]) -> dict[str, dict[str, object]]:
    return {r["role_label"]: {k: (v if isinstance(v, dict) else str(v)) for k, v in r.items()
                              if k != "unique_role_name"} for r in exported}


def test_deploy_sends_roles_dags_and_missing_codes_and_exports_equal_the_files(fresh) -> None:
    settings, project = fresh
    plan = deploy(connect(settings), DICTIONARY, redcap_dir=REDCAP)
    assert plan.changes["user roles"] and plan.changes["data access groups"]
    files = {r["role_label"]: r for r in read_table(REDCAP / "user_roles.csv")}
    exported = _roles_as_files(project.export_user_roles())
    assert set(exported) == set(files)
    for label, row in files.items():
        wanted = {k: v for k, v in row.items() if k not in ("unique_role_name", "forms",
                                                            "forms_export")}
        for key in ("forms", "forms_export"):
            wanted[key] = {f: int(r) for f, r in parse_form_rights(row[key]).items()}
        assert {k: exported[label][k] for k in wanted} == wanted
    assert [{k: d[k] for k in ("data_access_group_name", "unique_group_name")}
            for d in project.export_dags()] == read_table(REDCAP / "dags.csv")
    assert project.export_project_info()["missing_data_codes"] == \
        DICTIONARY.project["missing_data_codes"]
    assert deploy(connect(settings), DICTIONARY, redcap_dir=REDCAP).empty


def test_a_role_changed_in_the_files_is_updated_in_place_not_added(fresh, tmp_path) -> None:
    settings, project = fresh
    deploy(connect(settings), DICTIONARY, redcap_dir=REDCAP)
    before = {r["role_label"]: r["unique_role_name"] for r in project.export_user_roles()}
    redcap = tmp_path / "redcap"
    shutil.copytree(REDCAP, redcap)
    rows = read_table(redcap / "user_roles.csv")
    rows[0]["reports"] = "0" if rows[0]["reports"] == "1" else "1"
    with (redcap / "user_roles.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    plan = deploy(connect(settings), DICTIONARY, redcap_dir=redcap)
    assert plan.changes["user roles"] == [f"update role {rows[0]['role_label']}"]
    after = {r["role_label"]: r for r in project.export_user_roles()}
    assert {k: v["unique_role_name"] for k, v in after.items()} == before
    assert str(after[rows[0]["role_label"]]["reports"]) == rows[0]["reports"]


def test_every_allocation_revealing_field_sits_on_a_form_only_unblinded_roles_open() -> None:
    fields = unblinded_fields(DICTIONARY)
    assert {"inf_dose_plan", "inf_dose_given", "ph_cellcnt", "ph_cells_kg", "ph_viab",
            "ph_lot", "ph_expdat"} <= set(fields)
    assert unblinded_forms(DICTIONARY) == {"pharmacy"}
    assert not any(DICTIONARY.form_of(f) == "infusion" for f in fields)
    for role in read_table(REDCAP / "user_roles.csv"):
        entry, export = (parse_form_rights(role[k])["pharmacy"] for k in ("forms", "forms_export"))
        if is_unblinded_role(role["role_label"]):
            assert entry == "1"
        else:
            assert (entry, export) == ("0", "0"), role["role_label"]


def test_check_names_a_blinded_role_that_may_open_the_pharmacy_form(tmp_path) -> None:
    redcap = tmp_path / "redcap"
    shutil.copytree(REDCAP, redcap)
    shutil.copy(ROOT / "data_dictionary.csv", tmp_path / "data_dictionary.csv")
    text = (redcap / "user_roles.csv").read_text()
    monitor = next(line for line in text.splitlines() if ",Monitor," in line)
    (redcap / "user_roles.csv").write_text(text.replace(
        monitor, monitor.replace("pharmacy:0", "pharmacy:2", 1)))
    problems = [str(p) for p in check_project(tmp_path / "data_dictionary.csv", redcap)]
    assert any('role "Monitor" is blinded but may open form "pharmacy"' in p
               and "user_roles.csv:5" in p for p in problems), problems


def test_sites_may_answer_a_query_but_only_monitors_close_and_only_the_sync_resolves() -> None:
    """`@IF` with `[user-role-label]` hides `dq_status` choices per role (REDCap 11.4+ action tag
    `@IF(condition, tags if true, tags if false)`); the roles it names exist in user_roles.csv."""
    annotation = DICTIONARY.annotation("dq_status")
    labels = {r["role_label"] for r in read_table(REDCAP / "user_roles.csv")}
    named = set(re.findall(r"\[user-role-label\] = '([^']+)'", annotation))
    assert named == {"Site coordinator", "Investigator", "Monitor"} and named <= labels
    assert re.search(r"'Investigator', @HIDECHOICE='3,4'", annotation)
    assert re.search(r"'Monitor', @HIDECHOICE='4'", annotation)
    assert [c for c, _ in DICTIONARY.choices("dq_status")] == ["1", "2", "3", "4"]
