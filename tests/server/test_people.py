"""Users, roles and data access groups (`user`, `userRole`, `userRoleMapping`, `dag`,
`userDagMapping`) as far as PyCap's suite uses them."""
from __future__ import annotations

from pathlib import Path

SIMPLE = (Path(__file__).resolve().parents[1] / "data" / "classic_project.xml").read_text()


def test_the_token_user_has_api_rights(new_project):
    users = new_project().export_users()
    assert [(u["username"], u["api_export"], u["api_import"]) for u in users] == [
        ("api_user", 1, 1)]


def test_users_are_added_and_deleted(new_project):
    project = new_project()
    assert project.import_users([{"username": "monitor", "email": "m@example.org"}]) == 1
    assert [u["username"] for u in project.export_users()] == ["api_user", "monitor"]
    assert project.delete_users(["monitor"]) == 1
    assert [u["username"] for u in project.export_users()] == ["api_user"]


def test_roles_from_odm_and_role_assignment(new_project):
    project = new_project(SIMPLE)
    roles = project.export_user_roles()
    assert [(r["unique_role_name"], r["role_label"], r["stats_and_charts"], r["forms"])
            for r in roles] == [("U-7KM2Q4TR9W", "Site monitor", "1", {"demographics": 1})]
    assert project.import_user_role_assignment(
        [{"username": "api_user", "unique_role_name": "U-7KM2Q4TR9W"}]) == 1
    assert project.export_user_role_assignment() == [
        {"username": "api_user", "unique_role_name": "U-7KM2Q4TR9W", "data_access_group": ""}]


def test_dags_get_unique_names(new_project):
    project = new_project(SIMPLE)
    assert project.import_dags([{"data_access_group_name": "Site 01 Beijing",
                                 "unique_group_name": ""}]) == 1
    assert [(d["data_access_group_name"], d["unique_group_name"])
            for d in project.export_dags()] == [("Site 02 Lyon", "site_02_lyon"),
                                                ("Site 01 Beijing", "site_01_beijing")]
    assert project.delete_dags(["site_01_beijing"]) == 1
    assert project.import_user_dag_assignment(
        [{"username": "api_user", "redcap_data_access_group": "site_02_lyon"}]) == 1
    assert project.export_user_dag_assignment() == [
        {"username": "api_user", "redcap_data_access_group": "site_02_lyon"}]
