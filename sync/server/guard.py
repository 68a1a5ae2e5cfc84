"""What keeps one client from hurting the others on a shared host: request limits checked while
the body streams in (before any parser sees it), a deadline for a whole request, and a brake on
clients that guess tokens.

Over-limit requests get the 4xx a web server in front of REDCap would give (413, 408, 429).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The server's request limits; every one is a setting of `ecrf serve`."""

    max_body_bytes: int = 64 * MIB
    max_fields: int = 100_000
    max_field_bytes: int = 32 * MIB
    request_timeout: float = 60.0
    max_failed_tokens: int = 20
    failed_token_window: float = 60.0


class RequestRefused(Exception):
    """A request over a limit: its HTTP status and the plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _multipart_boundary(content_type: str) -> bytes | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "boundary" and value:
            return b"\r\n--" + value.strip('"').encode("latin-1")
    return None


class BodyMeter:
    """Counts bytes, form fields and the longest field of a body as it streams in.

    URL-encoded fields are split by `&`; multipart parts by their boundary, whose part sizes
    the multipart parser bounds itself (`max_part_size`) on a body already known to be small.
    """

    def __init__(self, limits: Limits, content_type: str) -> None:
        self.limits = limits
        kind = content_type.split(";")[0].strip().lower()
        self.urlencoded = kind == "application/x-www-form-urlencoded"
        self.boundary = _multipart_boundary(content_type) if kind == "multipart/form-data" else None
        self.size = 0
        self.fields = 1
        self.current_field = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limits.max_body_bytes:
            raise RequestRefused(413, "Request body too large")
        if self.urlencoded:
            self._feed_urlencoded(chunk)
        elif self.boundary:
            window = self.tail + chunk
            self.fields += window.count(self.boundary) - self.tail.count(self.boundary)
            self.tail = window[-(len(self.boundary) - 1):]
        if self.fields > self.limits.max_fields:
            raise RequestRefused(413, f"Request has more than {self.limits.max_fields} form fields")

    def _feed_urlencoded(self, chunk: bytes) -> None:
        separators = chunk.count(b"&")
        if not separators:
            self.current_field += len(chunk)
        else:
            self.fields += separators
            if self.fields > self.limits.max_fields:
                return
            first, last = chunk.index(b"&"), chunk.rindex(b"&")
            longest = max(self.current_field + first,
                          max(map(len, chunk[first + 1:last].split(b"&"))) if last > first else 0)
            if longest > self.limits.max_field_bytes:
                self._too_long()
            self.current_field = len(chunk) - last - 1
        if self.current_field > self.limits.max_field_bytes:
            self._too_long()

    def _too_long(self) -> None:
        raise RequestRefused(413, f"A form field is longer than {self.limits.max_field_bytes} bytes")


async def read_bounded(stream: AsyncIterator[bytes], declared_length: str | None,
                       content_type: str, limits: Limits) -> bytes:
    """The whole body, refused (`RequestRefused`) as soon as it breaks a limit."""
    try:
        if int(declared_length or 0) > limits.max_body_bytes:
            raise RequestRefused(413, "Request body too large")
    except ValueError:
        raise RequestRefused(400, "Content-Length is not a number") from None
    meter, chunks = BodyMeter(limits, content_type), []
    async for chunk in stream:
        meter.feed(chunk)
        chunks.append(chunk)
    return b"".join(chunks)


class FailedTokens:
    """Failed token attempts per client address in a sliding window; over the limit, refuse."""

    def __init__(self, limits: Limits, clock=time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()  # handlers run in a thread pool

    def _recent(self, address: str) -> deque[float]:
        failures, oldest = self._failures[address], self.clock() - self.limits.failed_token_window
        while failures and failures[0] <= oldest:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def wait_seconds(self, address: str) -> float:
        """0 when `address` may try a token now; else how long until it may."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.limits.max_failed_tokens:
                return 0.0
            return max(0.0, failures[0] + self.limits.failed_token_window - self.clock())

    def failed(self, address: str) -> None:
        with self._lock:
            self._failures[address].append(self.clock())


def timed_protocol(request_timeout: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a deadline: a request (headers and body) must arrive
    whole within `request_timeout` seconds of its first byte, or of the connection opening;
    otherwise the client gets 408 and the connection is closed. Handlers may take longer."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _deadline = None

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None:
                self._arm()
            super().data_received(data)
            if self.conn.their_state is not h11.SEND_BODY and self.conn.their_state is not h11.IDLE:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(request_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                reason = b"Request timed out: the whole request must arrive within %d s" % (
                    int(request_timeout))
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain;"
                                     b" charset=UTF-8\r\nconnection: close\r\ncontent-length: "
                                     + str(len(reason)).encode() + b"\r\n\r\n" + reason)
            self.transport.close()

    return TimedH11Protocol
