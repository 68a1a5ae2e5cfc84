"""The HTTP side of the server: form parsing, token check, dispatch and rendering (§5.1, §5.2).

Only this module knows starlette; handlers are plain functions of an `ApiRequest`.
"""
from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.server import render
from sync.server.access import check_access
from sync.server.faults import fault_middleware
from sync.server.limits import rate_limit_middleware
from sync.server.render import ApiError, Reply
from sync.server.store import API_USER, Design, Store

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
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

    def flag(self, name: str) -> bool:
        """REDCap's booleans: true only for '1' or 'true' (§5.1)."""
        return self.params.get(name, "").strip().lower() in ("1", "true")

    def reload(self) -> Design:
        self.design = self.store.design(self.project.project_id)
        return self.design


Handler = Callable[[ApiRequest], Reply]


async def _read_form(request: Request) -> tuple[dict[str, str], dict[str, list[str]],
                                                dict[str, tuple[str, bytes]]]:
    form = await request.form(max_files=100, max_fields=10_000_000, max_part_size=MAX_BODY)
    params: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[key] = (value.filename or key, await value.read())
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
    if super_token and len(token) == 64 and hmac.compare_digest(token, super_token):
        api.is_super = True
        return
    for project_id, known in api.store.all_tokens():
        if hmac.compare_digest(token, known):
            api.design = api.store.design(project_id)
            return
    for project_id, username, known in api.store.user_tokens():
        if hmac.compare_digest(token, known):
            api.design, api.username = api.store.design(project_id), username
            return
    raise ApiError(403, NO_PERMISSION)


def _body_too_large(request: Request) -> bool:
    return int(request.headers.get("content-length") or 0) > MAX_BODY


async def _read_body(request: Request) -> bool:
    """Read the body once, stopping at `MAX_BODY` (chunked uploads have no length header)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return False
        chunks.append(chunk)
    request._body = b"".join(chunks)  # starlette's form parser reuses a body already read
    return True


def _handle(api: ApiRequest, handlers: dict[tuple[str, str], Handler],
            super_token: str | None) -> Reply:
    _authenticate(api, super_token)
    return _route(api, handlers)


def _route(api: ApiRequest, handlers: dict[tuple[str, str], Handler]) -> Reply:
    content = api.get("content")
    if not any(c == content for c, _ in handlers):
        raise ApiError(400, 'The value of the parameter "content" is not valid')
    action = api.get("action") or ("import" if "data" in api.params else "export")
    if api.is_super and (content, action) not in (("project", "import"), ("version", "export")):
        raise ApiError(403, NO_PERMISSION)
    handler = handlers.get((content, action))
    if handler is None:
        raise ApiError(400, 'The value of the parameter "action" is not valid')
    if not api.is_super:
        check_access(api, content, action)
    return handler(api)


def make_app(db_path: str, token: str | None = None, super_token: str | None = None,
             public_url: str = "") -> Starlette:
    """The ASGI app serving REDCap's API at `/api/` from the SQLite file at `db_path`."""
    from sync.server.content import HANDLERS
    from sync.server.content.project import ensure_first_project

    store = Store(db_path)
    ensure_first_project(store, token)

    async def api_endpoint(request: Request) -> Response:
        if request.method != "POST":
            return Response("The requested method is not implemented.", status_code=501)
        if _body_too_large(request) or not await _read_body(request):
            return Response("Request body too large", status_code=413)
        params, arrays, files = await _read_form(request)
        api = ApiRequest(store, params, arrays, files, public_url=public_url)
        try:
            reply = await run_in_threadpool(_handle, api, HANDLERS, super_token)
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
