"""REDCap's rate limit: past `page_hit_threshold_per_minute` requests in a minute from one
address, the address is banned for good (redcap-behaviour.md §4, `Logging.php` l.1426-1461).

Every later call from it gets 429 with "Your IP address ... has been banned" and no
Retry-After, until an administrator lifts the ban (`ecrf server unban`). The threshold is a
setting of the database (`ecrf server rate-limit`); 0, the embedded server's default, is off,
because one test session sends thousands of calls a minute from 127.0.0.1.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Awaitable, Callable, MutableMapping

from starlette.middleware import Middleware

from sync.server.store import Store

THRESHOLD = "page_hit_threshold_per_minute"
BANNED = "banned_ip:"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


def ban_message(address: str) -> str:
    return (f"Your IP address ({address}) has been banned due to suspected abuse: more than the "
            "allowed number of requests per minute. An administrator must remove the ban.")


def banned(store: Store, address: str) -> bool:
    return store.setting(BANNED + address) == "1"


def lift_ban(store: Store, address: str) -> bool:
    was = banned(store, address)
    store.set_setting(BANNED + address, "0")
    return was


def ban(store: Store, address: str) -> None:
    store.set_setting(BANNED + address, "1")


def set_threshold(store: Store, per_minute: int) -> None:
    store.set_setting(THRESHOLD, str(max(0, per_minute)))


async def send_ban(send: Callable[..., Awaitable[None]], address: str) -> None:
    """REDCap's answer to a banned address: 429, plain text, no Retry-After."""
    body = ban_message(address).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"text/plain; charset=UTF-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """ASGI middleware counting requests per address per clock minute."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app, self.store = app, store
        self.hits: dict[tuple[str, int], int] = defaultdict(int)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("unknown", 0))[0]
        if banned(self.store, address):
            await send_ban(send, address)
            return
        limit = int(self.store.setting(THRESHOLD) or 0)
        if limit:
            minute = int(time.time() // 60)
            self.hits = defaultdict(int, {k: v for k, v in self.hits.items() if k[1] == minute})
            self.hits[(address, minute)] += 1
            if self.hits[(address, minute)] > limit:
                ban(self.store, address)
                await send_ban(send, address)
                return
        await self.app(scope, receive, send)


def rate_limit_middleware(store: Store) -> list[Middleware]:
    return [Middleware(RateLimit, store=store)]
