"""The HTTP side of the server: form parsing, token check, dispatch and rendering (§5.1, §5.2).

Only this module knows starlette; handlers are plain functions of an `ApiRequest`.
"""
from __future__ import annotations

import hmac
import logging
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from sync.server import render
from sync.server.access import check_access
from sync.server.faults import fault_middleware
from sync.server.limits import rate_limit_middleware
from sync.server.guard import FailedTokens, Limits, RequestRefused, read_bounded
from sync.server.render import ApiError, Reply
from sync.server.store import API_USER, Design, Store, now

log = logging.getLogger(__name__)

MAX_BODY = Limits().max_body_bytes
FORMATS = ("json", "csv", "xml")
NO_PERMISSION = "You do not have permissions to use the API"
_ARRAY_KEY = re.compile(r"^([A-Za-z_]+)\[(\d*)\]$")
_TOKEN = re.compile(r"^[A-Za-z0-9]+$")


@dataclass
class ApiRequest:
    """One API call: its parameters, its project and the store behind it."""

    store: Store
    params: dict[str, str]
    arrays: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    design: Design | None = None
    public_url: str = ""
    is_super: bool = False
    username: str = API_USER
    started: str = field(default_factory=now)
    """When the request arrived: REDCap dates every log row of a request by its start (§1)."""

    @property
    def fmt(self) -> str:
        value = self.params.get("format", "xml").lower()
        return value if value in FORMATS else "xml"

    @property
    def return_format(self) -> str:
        value = self.params.get("returnFormat", "").lower()
        return value if value in FORMATS else self.fmt

    @property
    def project(self) -> Design:
        if self.design is None:
            raise ApiError(403, NO_PERMISSION)
        return self.design

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)

    def list(self, name: str) -> list[str]:
        """An array parameter: `name[0]=a&name[1]=b`, or a comma-separated string."""
        if name in self.arrays:
            return [v for v in self.arrays[name] if v != ""]
        text = self.params.get(name, "")
        return [v.strip() for v in text.split(",") if v.strip()] if text else []

    def integer(self, name: str) -> int | None:
        """A whole-number parameter, None when absent; anything else is a 400 naming it."""
        text = self.params.get(name, "").strip()
        if not text:
            return None
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise ApiError(400, f'The value of the parameter "{name}" is not valid: '
                                f"{text[:40]!r} is not a whole number")
        return int(text)

    def flag(self, name: str) -> bool:
        """REDCap's booleans: true only for '1' or 'true' (§5.1)."""
        return self.params.get(name, "").strip().lower() in ("1", "true")

    def reload(self) -> Design:
        self.design = self.store.design(self.project.project_id)
        return self.design


Handler = Callable[[ApiRequest], Reply]


def safe_file_name(name: str) -> str:
    """The base name of an uploaded file, without folders, control characters or dot-names."""
    base = posixpath.basename(name.replace("\\", "/"))
    base = "".join(c for c in base if c.isprintable() and c not in '"<>|:*?')
    return base.strip(" .")[:255] or "file"


async def _read_form(request: Request, limits: Limits
                     ) -> tuple[dict[str, str], dict[str, list[str]], dict[str, tuple[str, bytes]]]:
    form = await request.form(max_files=100, max_fields=limits.max_fields,
                              max_part_size=limits.max_field_bytes)
    params: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[key] = (safe_file_name(value.filename or key), await value.read())
            continue
        match = _ARRAY_KEY.match(key)
        if match:
            arrays.setdefault(match.group(1), []).append(value)
        else:
            params[key] = value
    return params, arrays, files


def _authenticate(api: ApiRequest, super_token: str | None) -> None:
    token = api.params.get("token", "").strip()
    if not token or not _TOKEN.match(token):
        raise ApiError(403, NO_PERMISSION)
    if super_token and hmac.compare_digest(token, super_token):
        api.is_super = True
        return
    found = None
    for project_id, known in api.store.all_tokens():  # every token compared: no early exit
        if hmac.compare_digest(token, known):
            found = project_id
    if found is not None:
        api.design = api.store.design(found)
        return
    for project_id, username, known in api.store.user_tokens():
        if hmac.compare_digest(token, known):
            found = (project_id, username)
    if found is None:
        raise ApiError(403, NO_PERMISSION)
    api.design, api.username = api.store.design(found[0]), found[1]


def _refusal(status: int, reason: str) -> Response:
    """A request refused before its form was read, as the web server in front of REDCap would."""
    return Response(reason, status_code=status, media_type="text/plain")


def _route(api: ApiRequest, handlers: dict[tuple[str, str], Handler]) -> Reply:
    content = api.get("content")
    if not any(c == content for c, _ in handlers):
        raise ApiError(400, 'The value of the parameter "content" is not valid')
    action = api.get("action") or ("import" if "data" in api.params else "export")
    if api.is_super and (content, action) != ("project", "import"):
        raise ApiError(403, NO_PERMISSION)  # super tokens only create projects (API help, imp_proj)
    handler = handlers.get((content, action))
    if handler is None:
        raise ApiError(400, 'The value of the parameter "action" is not valid')
    if not api.is_super:
        check_access(api, content, action)
    return handler(api)


def make_app(db_path: str, token: str | None = None, super_token: str | None = None,
             public_url: str = "", limits: Limits | None = None) -> Starlette:
    """The ASGI app serving REDCap's API at `/api/` from the SQLite file at `db_path`."""
    from sync.server.content import HANDLERS
    from sync.server.content.project import ensure_first_project

    limits = limits or Limits(max_body_bytes=MAX_BODY)
    store = Store(db_path)
    ensure_first_project(store, token)
    failed_tokens = FailedTokens(limits)

    def handle(api: ApiRequest, address: str) -> Reply:
        wait = math.ceil(failed_tokens.wait_seconds(address))
        if wait:
            reply = render.error(ApiError(429, f"Too many failed API token attempts from your "
                                               f"IP address ({address}); try again in {wait} "
                                               "seconds"), api.return_format)
            reply.headers["Retry-After"] = str(wait)
            return reply
        try:
            _authenticate(api, super_token)
        except ApiError:
            if api.params.get("token"):  # a guess, not a probe without a token
                failed_tokens.failed(address)
            raise
        return _route(api, HANDLERS)

    async def api_endpoint(request: Request) -> Response:
        if request.method != "POST":
            return Response("The requested method is not implemented.", status_code=501)
        try:
            # starlette's form parser reuses a body already read
            request._body = await read_bounded(request.stream(), request.headers.get(
                "content-length"), request.headers.get("content-type", ""), limits)
            params, arrays, files = await _read_form(request, limits)
        except RequestRefused as exc:
            return _refusal(exc.status, exc.reason)
        except HTTPException as exc:  # a malformed multipart body
            return _refusal(400, str(exc.detail))
        except ClientDisconnect:
            return _refusal(400, "The client went away before the request was complete")
        api = ApiRequest(store, params, arrays, files, public_url=public_url)
        address = request.client.host if request.client else ""
        try:
            reply = await run_in_threadpool(handle, api, address)
        except ApiError as exc:
            reply = render.error(exc, api.return_format)
        except Exception:  # a bug must still answer like a server, and be logged
            log.exception("request failed: content=%s", params.get("content"))
            reply = render.error(ApiError(500, "An internal error occurred"), api.return_format)
        body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
        media = reply.media_type
        if (media.startswith("text/") or media == "application/json") and "charset" not in media:
            media += "; charset=UTF-8"
        return Response(body, status_code=reply.status, headers={**reply.headers,
                                                                  "content-type": media})

    routes = [Route(path, api_endpoint, methods=["GET", "POST", "PUT", "DELETE"])
              for path in ("/api/", "/api")]
    app = Starlette(routes=routes, middleware=rate_limit_middleware(store) + fault_middleware())
    app.state.store = store
    return app
