"""File repository, surveys and the PDF stand-in (`fileRepository`, `surveyLink`, ...)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests
from redcap import RedcapError

LONG = (Path(__file__).resolve().parents[1] / "data" / "longitudinal_project.xml").read_text()


def test_file_repository_round_trip(new_project):
    project = new_project()
    folder = project.create_folder_in_repository("scans")[0]["folder_id"]
    project.import_file_into_repository(file_name="ct.txt", file_object=io.BytesIO(b"lungs"),
                                        folder_id=folder)
    assert project.export_file_repository() == [{"folder_id": folder, "name": "scans"}]
    listing = project.export_file_repository(folder_id=folder)
    assert [f["name"] for f in listing] == ["ct.txt"]
    content, meta = project.export_file_from_repository(doc_id=listing[0]["doc_id"])
    assert (content, meta["name"]) == (b"lungs", "ct.txt")
    project.delete_file_from_repository(doc_id=listing[0]["doc_id"])
    assert project.export_file_repository(folder_id=folder) == []


def test_survey_links_use_the_public_url_and_codes_have_redcaps_lengths(new_project,
                                                                          redcap_server):
    project = new_project(LONG)
    link = project.export_survey_link(instrument="contact_info", event="enrollment_arm_1",
                                      record="1")
    assert link.startswith("http://127.0.0.1:") and "/surveys/?s=" in link
    assert len(project.export_survey_access_code(record="1", instrument="contact_info",
                                                 event="enrollment_arm_1")) == 9
    assert len(project.export_survey_return_code(record="1", instrument="contact_info",
                                                 event="enrollment_arm_1")) == 8
    assert project.export_survey_queue_link(record="1").split("?")[1].startswith("sq=")


def test_survey_calls_for_a_non_survey_instrument_fail(new_project):
    project = new_project(LONG)
    with pytest.raises(RedcapError, match="is not enabled as a survey"):
        project.export_survey_link(instrument="demographics", event="enrollment_arm_1",
                                   record="1")


def test_pdf_export_is_a_pdf(new_project):
    content, _ = new_project().export_pdf()
    assert content.startswith(b"%PDF-")


def test_generate_next_record_name(new_project):
    project = new_project()
    project.import_records([{"record_id": "7"}, {"record_id": "b"}])
    reply = requests.post(project.url, data={"token": project.token,
                                             "content": "generateNextRecordName"})
    assert reply.text == "8"
