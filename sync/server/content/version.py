"""`content=version`: the REDCap version this server imitates (§6.4)."""
from __future__ import annotations

from sync.server.app import ApiRequest
from sync.server.render import Reply

REDCAP_VERSION = "15.7.6"


def export(api: ApiRequest) -> Reply:
    return Reply(REDCAP_VERSION, media_type="text/plain")
