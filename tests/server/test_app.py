"""The HTTP envelope: token check, error shapes per returnFormat, method (§5.1, §5.2)."""
from __future__ import annotations

import requests


def test_wrong_token_is_403_with_redcaps_message(redcap_server):
    reply = requests.post(redcap_server.url, data={"token": "0" * 32, "content": "record",
                                                   "format": "json"})
    assert (reply.status_code, reply.json()) == (
        403, {"error": "You do not have permissions to use the API"})


def test_missing_token_is_403_in_csv_shape(redcap_server):
    reply = requests.post(redcap_server.url, data={"content": "record", "format": "csv"})
    assert (reply.status_code, reply.text) == (
        403, "ERROR: You do not have permissions to use the API")


def test_unknown_content_is_400_in_xml_shape(redcap_server):
    reply = requests.post(redcap_server.url, data={"token": redcap_server.token,
                                                   "content": "nonsense"})
    assert reply.status_code == 400
    assert reply.text == ('<?xml version="1.0" encoding="UTF-8" ?>\n<hash>\n  <error>The value '
                          'of the parameter "content" is not valid</error>\n</hash>')


def test_get_is_not_implemented(redcap_server):
    reply = requests.get(redcap_server.url)
    assert (reply.status_code, reply.text) == (501, "The requested method is not implemented.")


def test_version_is_plain_text(redcap_server):
    reply = requests.post(redcap_server.url, data={"token": redcap_server.token,
                                                   "content": "version"})
    assert reply.text == "15.7.6"


def test_bodies_over_64_mib_are_refused(redcap_server):
    reply = requests.post(redcap_server.url, data=b"x" * (64 * 1024 * 1024 + 1),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 413


def test_array_parameters_in_php_style(new_project):
    project = new_project()
    project.import_records([{"record_id": r} for r in ("1", "2", "3")])
    reply = requests.post(project.url, data={"token": project.token, "content": "record",
                                             "format": "json", "records[0]": "3",
                                             "records[1]": "1", "fields": "record_id"})
    assert reply.json() == [{"record_id": "1"}, {"record_id": "3"}]
