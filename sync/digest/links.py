"""Addresses in REDCap's web pages, built from the API URL as REDCap builds them."""
from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from sync.connection import split_credentials


def public_base(api_url: str) -> str:
    """The REDCap folder above `api/`, without user name, password, query or fragment.

    Examples:
        >>> public_base("https://dm:secret@redcap.example.org/redcap/api/?x=1")
        'https://redcap.example.org/redcap/'
    """
    parts = urlsplit(split_credentials(api_url)[0])
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if path.endswith("/api/"):
        path = path[: -len("api/")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def data_entry_link(api_url: str, redcap_version: str, project_id: str, record: str,
                    event_id: str, form: str, instance: str) -> str:
    """REDCap's data entry page of one form and instance of one record (`DataEntry/index.php`).

    Examples:
        >>> data_entry_link("https://r.org/api/", "15.7.6", "12", "01-004", "41", "adverse_event", "2")
        'https://r.org/redcap_v15.7.6/DataEntry/index.php?pid=12&id=01-004&event_id=41&page=adverse_event&instance=2'
    """
    params = {"pid": project_id, "id": record}
    if event_id:
        params["event_id"] = event_id
    params["page"] = form
    params["instance"] = instance or "1"
    return f"{public_base(api_url)}redcap_v{redcap_version}/DataEntry/index.php?{urlencode(params)}"
