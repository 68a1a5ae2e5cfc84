"""Form status defaults, all-repeating events in flat exports, and record rename, as REDCap 15.7.6
does them (redcap-behaviour.md §1, §2)."""
from __future__ import annotations

import pytest
import requests

from tests.server.test_log import mini_project, record_rows


@pytest.fixture
def mini(redcap_server):
    return mini_project(redcap_server)


def gray_blank(project, **params) -> list[dict]:
    return requests.post(project.url, data={
        "token": project.token, "content": "record", "format": "json",
        "exportBlankForGrayFormStatus": "true", **params}).json()


def screened_with_an_event(project, record: str, instance: str) -> None:
    """A record with a Screening value and one adverse event at `instance` on Logs."""
    project.import_records([
        {"record_id": record, "redcap_event_name": "screening_arm_1", "sex": "1"},
        {"record_id": record, "redcap_event_name": "logs_arm_1",
         "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": instance,
         "ae_term": "Cough"}])


def test_import_sets_status_0_on_touched_forms_and_new_repeating_instances(mini):
    """§2: import sets `<form>_complete` to 0 on forms it touched and on new repeating
    instances (Records.php l.7180-7246); untouched forms stay without a status."""
    mini.import_records([
        {"record_id": "1", "redcap_event_name": "screening_arm_1", "sex": "1"},
        {"record_id": "1", "redcap_event_name": "logs_arm_1",
         "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": "new",
         "ae_term": "Cough"}])
    rows = {(r["redcap_event_name"], r["redcap_repeat_instance"]): r for r in gray_blank(mini)}
    screening = rows[("screening_arm_1", "")]
    assert (screening["enrolment_complete"], screening["vitals_complete"]) == ("0", "")
    assert rows[("logs_arm_1", 1)]["adverse_event_complete"] == "0"


def test_a_status_given_in_the_import_is_kept(mini):
    """§2: the default applies only to forms that had no status."""
    mini.import_records([{"record_id": "1", "redcap_event_name": "screening_arm_1",
                          "sex": "1", "enrolment_complete": "2"}])
    mini.import_records([{"record_id": "1", "redcap_event_name": "screening_arm_1",
                          "sex": "2"}])
    assert gray_blank(mini)[0]["enrolment_complete"] == "2"


def test_flat_export_drops_the_base_row_of_an_event_whose_forms_all_repeat(mini):
    """§2: when every form on an event repeats, its base row is removed (Records.php
    l.2505-2518): Logs holds only the repeating adverse_event."""
    screened_with_an_event(mini, "1", "1")
    rows = mini.export_records(format_type="json")
    assert [(r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"])
            for r in rows] == [("screening_arm_1", "", ""), ("logs_arm_1", "adverse_event", 1)]


def rename(project, record: str, new: str, **extra) -> requests.Response:
    return requests.post(project.url, data={
        "token": project.token, "content": "record", "action": "rename", "record": record,
        "new_record_name": new, **extra})


def test_rename_moves_every_value_answers_1_and_logs_an_update_on_the_new_name(mini):
    """§2 rename (`API/record/rename.php`): answers `1`; §1: logged as an UPDATE on the new
    name with `old_record = 'a', new_record = 'b'`."""
    screened_with_an_event(mini, "a", "2")
    before = mini.export_records(format_type="json")
    reply = rename(mini, "a", "b", arm="1")
    assert (reply.status_code, reply.text) == (200, "1")
    after = mini.export_records(format_type="json")
    assert after == [{**row, "record_id": "b"} for row in before]
    assert record_rows(mini)[0] == ("Update record (API) b (Screening)",
                                    "old_record = 'a', new_record = 'b'", "b")


def test_rename_refuses_an_unknown_record_or_a_taken_name(mini):
    mini.import_records([{"record_id": r, "redcap_event_name": "screening_arm_1"}
                         for r in ("a", "b")])
    assert rename(mini, "zz", "c").status_code == 400
    assert rename(mini, "a", "b").status_code == 400
    assert {r["record_id"] for r in mini.export_records(format_type="json")} == {"a", "b"}
