"""Fault injection for the embedded server: the failures a real REDCap (or its proxy) produces.

Switched on only by configuration: `ECRF_SERVER_FAULTS` names a JSON file of fault rules (or
holds the JSON itself, or `on` for none yet). When on, `POST /__faults__` with a JSON list
replaces the rules at runtime and `GET /__faults__` shows them with their hit counts; when off,
that path does not exist and the server is exactly the normal one.

A rule matches API calls by `content` and `action` (as REDCap derives it: `import` when a `data`
parameter is sent), lets `skip` matching calls through, then fails the next `count` matching
calls (`null`: every one after). `GET /__faults__` counts, per rule, the matching calls `seen`,
those `fired` on, and those the real API `answered` behind the fault. What a failing call gets:

- `status` (500, 502, 503, 504, 403 ...), with `retry_after` as a Retry-After header;
- `status: 429` is REDCap's rate limit (redcap-behaviour.md §4): the address is banned, this
  and every later call get 429 "Your IP address ... has been banned" with no Retry-After, until
  the rules are replaced (an administrator lifting the ban); with `retry_after` it is instead
  a proxy's throttle (429 with a Retry-After header, no ban);
  `when: "before"` (default) fails without running the call, `when: "after"` runs it (an import
  commits) and then answers the error instead of the reply;
- `delay` seconds of silence first (`when: "after"`: between the commit and the answer);
- `kind: "slow"`: the real reply, late by `delay` seconds (past the client's timeout, the
  server still commits what the client gave up on);
- `kind: "html"`: a 200 with an HTML error page, as a proxy or login portal sends;
- `kind: "truncate"`: the real reply cut in half (`Content-Length` of what is sent);
- `kind: "drop"`: the real reply's length announced, half of it sent, the connection closed;
- `kind: "revoke"`: REDCap's 403 for a token that has lost its API rights.

Every fault served is logged at WARNING, so the server log shows when it happened.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qs

from starlette.middleware import Middleware

from sync.errors import ConfigError
from sync.server.limits import send_ban

log = logging.getLogger(__name__)

ENV_VAR = "ECRF_SERVER_FAULTS"
FAULTS_PATH = "/__faults__"
KINDS = ("status", "html", "truncate", "drop", "revoke", "slow")
HTML_ERROR_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                   b"<body><h1>Bad Gateway</h1><p>The proxy server received an invalid response "
                   b"from an upstream server.</p></body></html>")
REVOKED = b'{"error":"You do not have permissions to use the API"}'
COUNTERS = ("seen", "fired", "answered")
_MULTIPART_FIELD = re.compile(rb'name="(content|action|data)"\r\n\r\n([^\r]*)')

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Fault:
    """One rule: which calls it matches, how many it lets through and fails, and how."""

    content: str = ""
    action: str = ""
    kind: str = "status"
    status: int = 500
    when: str = "before"
    skip: int = 0
    count: int | None = 1
    delay: float = 0.0
    retry_after: float | None = None
    seen: int = 0
    fired: int = 0
    answered: int = 0

    def matches(self, content: str, action: str) -> bool:
        return (not self.content or self.content == content) and \
            (not self.action or self.action == action)

    def take(self) -> bool:
        """Count one matching call; True when this call is to fail."""
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        self.fired += 1
        return True


def parse_faults(text: str, source: str = ENV_VAR) -> list[Fault]:
    """Fault rules from JSON (a list of objects, or one object), checked field by field."""
    if text.strip().lower() in ("", "on", "1", "true"):
        return []
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: fault rules are not valid JSON: {exc}") from None
    items = raw if isinstance(raw, list) else [raw]
    faults = []
    for number, item in enumerate(items, start=1):
        try:
            fault = Fault(**{k: v for k, v in item.items() if k not in COUNTERS})
        except (TypeError, AttributeError) as exc:
            raise ConfigError(f"{source}: fault rule {number}: {exc}") from None
        if fault.kind not in KINDS or fault.when not in ("before", "after"):
            raise ConfigError(f"{source}: fault rule {number}: kind must be one of "
                              f"{', '.join(KINDS)} and when 'before' or 'after'")
        faults.append(fault)
    return faults


def faults_from_env() -> list[Fault] | None:
    """The rules `ECRF_SERVER_FAULTS` configures, or None when fault injection is off."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    candidate = Path(value)
    if value.strip() and not value.lstrip().startswith(("[", "{")) and candidate.is_file():
        return parse_faults(candidate.read_text(encoding="utf-8"), str(candidate))
    return parse_faults(value)


def call_of(body: bytes, content_type: str) -> tuple[str, str]:
    """The `content` and `action` of an API call, read from its raw form body."""
    if content_type.startswith("multipart/"):
        fields = {m.group(1).decode(): m.group(2).decode("utf-8", "replace")
                  for m in _MULTIPART_FIELD.finditer(body)}
    else:
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        fields = {k: parsed[k][0] for k in ("content", "action", "data") if k in parsed}
    action = fields.get("action") or ("import" if "data" in fields else "export")
    return fields.get("content", ""), action


class FaultInjector:
    """ASGI middleware serving the configured faults in front of the API."""

    def __init__(self, app: ASGIApp, faults: list[Fault]) -> None:
        self.app, self.faults = app, faults
        self._release: asyncio.Event | None = None
        self.banned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == FAULTS_PATH:
            await self._control(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if _declared_length(headers) > _max_body():
            await self.app(scope, receive, send)  # the API refuses it (413) without reading it
            return
        if self.banned:
            await send_ban(send, (scope.get("client") or ("unknown", 0))[0])
            return
        body = await _read_all(receive)
        content, action = call_of(body, headers.get(b"content-type", b"").decode("latin-1"))
        fault = next((f for f in self.faults if f.matches(content, action) and f.take()), None)
        replay = _replay(body)
        if fault is None:
            await self.app(scope, replay, send)
            return
        log.warning("fault injected: %s on content=%s action=%s (call %d of the rule)",
                    fault.kind if fault.kind != "status" else fault.status, content, action,
                    fault.seen)
        await self._serve(fault, scope, replay, send)

    async def _serve(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        if fault.when == "before":
            await self._pause(fault.delay)
        if fault.kind in ("slow", "truncate", "drop") or fault.when == "after":
            status, headers, body = await _capture(self.app, scope, receive)
            fault.answered += 1
        if fault.when == "after":
            await self._pause(fault.delay)
        if fault.kind == "slow":
            await _respond(send, status, body, headers)
        elif fault.kind == "truncate":
            await _respond(send, status, body[:len(body) // 2], headers)
        elif fault.kind == "drop":
            await _respond(send, status, body[:len(body) // 2], headers, declared=len(body))
        elif fault.kind == "html":
            await _respond(send, 200, HTML_ERROR_PAGE, {b"content-type": b"text/html"})
        elif fault.status == 429 and fault.retry_after is None:
            self.banned = True
            await send_ban(send, (scope.get("client") or ("unknown", 0))[0])
        elif fault.kind == "revoke":
            await _respond(send, 403, REVOKED, {b"content-type": b"application/json"})
        else:
            extra = {b"retry-after": f"{fault.retry_after:g}".encode()} \
                if fault.retry_after is not None else {}
            await _respond(send, fault.status, f"HTTP {fault.status} (injected fault)".encode(),
                           {b"content-type": b"text/plain", **extra})

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the rules are replaced meanwhile (which releases every pending delay)."""
        if seconds <= 0:
            return
        if self._release is None:
            self._release = asyncio.Event()
        try:
            await asyncio.wait_for(self._release.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            try:
                self.faults = parse_faults((await _read_all(receive)).decode("utf-8"), FAULTS_PATH)
            except ConfigError as exc:
                await _respond(send, 400, str(exc).encode(), {b"content-type": b"text/plain"})
                return
            self.banned = False
            if self._release is not None:
                self._release.set()
            self._release = asyncio.Event()
        state = json.dumps([asdict(f) for f in self.faults]).encode()
        await _respond(send, 200, state, {b"content-type": b"application/json"})


def _declared_length(headers: dict[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length", b"0"))
    except ValueError:
        return 0


def _max_body() -> int:
    from sync.server.app import MAX_BODY
    return MAX_BODY


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a client that has sent everything waits, like ASGI's
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return receive


async def _capture(app: ASGIApp, scope: Scope, receive: Receive
                   ) -> tuple[int, dict[bytes, bytes], bytes]:
    """Run the real app and keep its answer instead of sending it."""
    status, headers, chunks = 500, {}, []

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = {k.lower(): v for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
    await app(scope, receive, send)
    headers.pop(b"content-length", None)
    return status, headers, b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, headers: dict[bytes, bytes],
                   declared: int | None = None) -> None:
    """Send a whole reply, or (with `declared` longer than `body`) one the connection cuts."""
    length = len(body) if declared is None else declared
    fields = {**headers, b"content-length": str(length).encode()}
    await send({"type": "http.response.start", "status": status,
                "headers": list(fields.items())})
    await send({"type": "http.response.body", "body": body})


def fault_middleware() -> list[Middleware]:
    """The fault injector when `ECRF_SERVER_FAULTS` is set; nothing otherwise."""
    faults = faults_from_env()
    return [] if faults is None else [Middleware(FaultInjector, faults=faults)]
