"""Survey contents: links, queue links, access and return codes, participant lists.

Links are built from `--public-url`, as REDCap builds them from its base URL.
"""
from __future__ import annotations

import hashlib

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.render import ApiError, Reply

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PARTICIPANT_HEADER = ["email", "email_occurrence", "identifier", "record",
                      "invitation_scheduled_time", "invitation_sent_time", "response_status",
                      "survey_access_code", "survey_link"]


def _code(*parts: str, length: int) -> str:
    """A stable code for one record/instrument/event, like REDCap's stored hashes."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def _survey(api: ApiRequest) -> str:
    instrument = api.get("instrument")
    surveys = {s.get("form_name") for s in api.store.items(api.project.project_id, "survey")}
    if instrument not in surveys:
        raise ApiError(400, f"The instrument '{instrument}' is not enabled as a survey.")
    return instrument


def _base(api: ApiRequest) -> str:
    return (api.public_url or "http://127.0.0.1/").rstrip("/") + "/surveys/"


def _parts(api: ApiRequest) -> tuple[str, ...]:
    return (str(api.project.project_id), api.get("record"), _survey(api), api.get("event"),
            api.get("repeat_instance", "1"))


def link(api: ApiRequest) -> Reply:
    return Reply(f"{_base(api)}?s={_code(*_parts(api), length=10)}", media_type="text/plain")


def queue_link(api: ApiRequest) -> Reply:
    code = _code(str(api.project.project_id), api.get("record"), length=10)
    return Reply(f"{_base(api)}?sq={code}", media_type="text/plain")


def access_code(api: ApiRequest) -> Reply:
    return Reply(_code("access", *_parts(api), length=9), media_type="text/plain")


def return_code(api: ApiRequest) -> Reply:
    return Reply(_code("return", *_parts(api), length=8), media_type="text/plain")


def participants(api: ApiRequest) -> Reply:
    """One participant per record holding data on the survey's event."""
    design = api.project
    instrument = _survey(api)
    event = design.event_by_name(api.get("event")) if design.is_longitudinal else None
    event_id = event.event_id if event else design.default_event_id()
    records = sorted({d["record"] for d in api.store.data_rows(design.project_id)
                      if d["event_id"] == event_id})
    rows = []
    for record in records:
        parts = (str(design.project_id), record, instrument, api.get("event"), "1")
        rows.append({"email": "", "email_occurrence": 1, "identifier": "", "record": record,
                     "invitation_scheduled_time": "", "invitation_sent_time": "",
                     "response_status": 0, "survey_access_code": _code("access", *parts,
                                                                       length=9),
                     "survey_link": f"{_base(api)}?s={_code(*parts, length=10)}"})
    return render.table(rows, api.fmt, PARTICIPANT_HEADER, root="items")
