"""One REDCap project reached through PyCap, with the retries a nightly job needs.

PyCap sends one POST per call and does not look at HTTP status codes: a 500 with an HTML page
surfaces as a JSON decode error, a 200 with a proxy's login page as "data". A `requests`
response hook (passed through PyCap's request kwargs) classifies every response before PyCap
sees it, and `Connection.call` retries what is worth retrying with exponential backoff and
jitter, honouring `Retry-After`, within a bounded time budget, each retry a warning line. A
REDCap that cannot be reached at all (refused, unknown host, no answer within the connect
timeout) before any call succeeded is a wrong URL or a down server: that fails at once. A
429 is not worth retrying: REDCap bans an address that passes its rate limit for good
(redcap-behaviour.md §4), and a 403 has causes other than the token (§2), which the message
names from REDCap's own words.
"""
from __future__ import annotations

import codecs
import ipaddress
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

import requests
from redcap import Project
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from sync.config import Settings
from sync.errors import AddressBanned, ConfigError, RedcapApiError, RedcapRefused

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})
FORBIDDEN_CAUSES = (
    ("API Import/Update privileges",
     "the token's user lacks the API Import/Update right on this project; a project user-rights "
     "administrator must grant it"),
    ("API Export privileges",
     "the token's user lacks the API Export right on this project; a project user-rights "
     "administrator must grant it"),
    ('"Logging" privileges',
     "the token's user lacks the Logging right, which the sync needs to read what changed; a "
     "project user-rights administrator must grant it"),
    ("data export rights",
     "the token's user has no data export rights on this project's instruments; the sync needs "
     "full data export rights"),
    ("privileges have expired",
     "the token's user rights on this project have expired; a project user-rights "
     "administrator must extend them"),
    ("Analysis/Cleanup",
     "the project is in Analysis/Cleanup status, where REDCap takes no data"),
)


class TransientResponse(requests.RequestException):
    """A response worth asking again for: 408, 5xx, a 429 that says when to come back (a proxy's
    or the embedded server's brake; REDCap's own ban has no Retry-After), or a 200 whose body is
    not what was asked."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class TokenRefused(requests.RequestException):
    """REDCap answered 403: the token is wrong, revoked, or lacks the right for this call."""


class Banned(requests.RequestException):
    """REDCap answered 429: this address passed the rate limit and is banned."""


def forbidden_cause(message: str) -> str:
    """What a 403 most likely means, read from REDCap's message (redcap-behaviour.md §2)."""
    for words, cause in FORBIDDEN_CAUSES:
        if words.lower() in message.lower():
            return f"{cause} (REDCap: {message})"
    return (f"REDCap refused the API token ({message}). Check REDCAP_API_TOKEN and that the "
            "token's user still has API rights on this project.")


def _requested_format(response: requests.Response) -> str | None:
    body = response.request.body if response.request is not None else None
    if not body:
        return None
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    found: dict[str, str] = {}
    for pair in text.split("&"):  # not parse_qs: an import's data would be decoded for nothing
        name, sep, value = pair.partition("=")
        if sep and name in ("returnFormat", "format") and name not in found:
            found[name] = unquote_plus(value)
    for key in ("returnFormat", "format"):
        if key in found:
            return found[key]
    return None


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def classify_response(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """`requests` hook: raise for responses PyCap would misread, pass everything else through."""
    status = response.status_code
    if status == 429 and _retry_after_seconds(response) is None:
        raise Banned(response.text.strip()[:300] or "HTTP 429")
    if status in RETRYABLE_STATUS or status == 429:
        raise TransientResponse(f"HTTP {status}", _retry_after_seconds(response))
    if status == 403:
        raise TokenRefused(_error_text(response) or "HTTP 403")
    if status == 200 and _requested_format(response) == "json" and response.content:
        try:
            parsed = json.loads(response.content)
        except ValueError:
            raise TransientResponse(
                f"HTTP 200 but the body is not JSON (starts {response.text[:60]!r})") from None
        response.json = lambda **_: parsed  # type: ignore[method-assign]  # PyCap's read: parsed once
    return response


def _error_text(response: requests.Response) -> str:
    try:
        payload = response.json()
        if isinstance(payload, dict) and "error" in payload:
            return str(payload["error"])
    except ValueError:
        pass
    return response.text.strip()[:300]


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its user information (`user:password@`), and that user and password.

    Only the URL without them is ever written anywhere (ledger, digest links, logs, messages).
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


def check_url_is_safe(url: str, insecure: bool, allow_credentials: bool = False) -> None:
    """Refuse to send a token in clear text to anything but this machine, unless told to, and
    a URL that carries a user name or password, unless told to."""
    shown, credentials = split_credentials(url)
    parts = urlsplit(shown)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"REDCAP_API_URL {shown!r} is not an http(s) URL ending in /api/")
    if not shown.endswith("/api/"):
        raise ConfigError(f"REDCAP_API_URL {shown!r} must end with /api/ (REDCap's API endpoint)")
    if credentials and not allow_credentials:
        raise ConfigError(
            f"REDCAP_API_URL carries a user name or password (before the @ of {shown!r}); they "
            "would be sent to the server and could end up in logs. Remove them, or pass "
            "--allow-url-credentials (setting allow_url_credentials) if a proxy needs them; they "
            "are then sent as HTTP Basic authentication and written nowhere")
    if parts.scheme == "https" or insecure:
        return
    host = parts.hostname
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    if not local:
        raise ConfigError(
            f"REDCAP_API_URL uses plain http:// to {host}, which would send the API token "
            "unencrypted; use https://, or pass --insecure if you really mean it")


@dataclass
class Connection:
    """A PyCap project plus the retry policy; every API call of the sync goes through `call`."""

    project: Project
    timeout_seconds: float
    retry_budget_seconds: float
    connect_timeout_seconds: float = 10.0
    calls: int = 0
    reached: bool = False
    """Whether REDCap has answered anything on this connection yet."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one PyCap call, retrying transient failures until the time budget is spent."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            with self._counting:  # a read-ahead thread exports while the run writes
                self.calls += 1
            try:
                result = func(*args, **kwargs)
                self.reached = True
                return result
            except TokenRefused as exc:
                raise RedcapApiError(f"{what}: {forbidden_cause(str(exc))}") from None
            except Banned as exc:
                raise AddressBanned(
                    f"{what}: REDCap banned this machine's address for sending too many requests "
                    f"({exc}). Nothing more was sent, and retrying would only prolong the ban: a "
                    "REDCap administrator must lift it (Control Center); then run the sync "
                    "again.") from None
            except (TransientResponse, requests.Timeout, requests.ConnectionError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                self.reached = self.reached or isinstance(exc, TransientResponse)
                if not self.reached and _cannot_connect(exc):
                    raise RedcapApiError(
                        f"{what}: cannot connect to {self._host} ({_connect_problem(exc)}, "
                        f"connect timeout {self.connect_timeout_seconds:g} s). Check "
                        "REDCAP_API_URL, the network and that REDCap is up.") from None
                delay = self._backoff(attempt, exc)
                if time.monotonic() - started + delay > self.retry_budget_seconds:
                    raise RedcapApiError(
                        f"{what}: REDCap did not answer properly after {attempt} attempts over "
                        f"{time.monotonic() - started:.0f} s (last problem: {_describe(exc)}). "
                        "Nothing more was written; the next run will continue from here.") from None
                log.warning("%s: %s; retrying in %.1f s (attempt %d, REDCap at %s, %.0f s budget)",
                            what, _describe(exc), delay, attempt, self._host,
                            self.retry_budget_seconds)
                self.sleep(delay)
            except requests.RequestException as exc:
                message = _redcap_message(exc)
                raise RedcapRefused(f"{what}: REDCap answered with an error: {message}",
                                    message) from None

    def _post(self, params: dict[str, str], **options: Any) -> requests.Response:
        """One POST of `params` to the API, JSON in and out, outside PyCap."""
        return requests.post(self.project.url, auth=self.auth, data={
            "token": self.project.token, "format": "json", "returnFormat": "json", **params},
            timeout=(self.connect_timeout_seconds, self.timeout_seconds), **options)

    def post(self, what: str, **params: str) -> Any:
        """One API call PyCap has no method for (e.g. Import Project Info), JSON in and out."""

        def send() -> Any:
            response = self._post(params, hooks={"response": [classify_response]})
            try:
                body = response.json() if response.content else None
            except ValueError:
                body = None
            if response.status_code >= 400 or (isinstance(body, dict) and "error" in body):
                raise requests.RequestException(
                    body.get("error") if isinstance(body, dict) else response.text[:300])
            return body

        return self.call(what, send)

    def export_items(self, what: str, take: Callable[[Iterator[dict]], T], **params: str) -> T:
        """One export REDCap answers with a JSON array, handed to `take` item by item as it
        arrives, so a large answer (REDCap's log after a full sync: about 100 MB at 10,000
        subjects) is never held whole. PyCap reads every answer whole, hence this path. A
        retried call starts `take` again from the first item."""

        def send() -> T:
            with self._post(params, stream=True) as response:
                if response.status_code != 200:
                    classify_response(response)
                    raise requests.RequestException(_error_text(response))
                return take(json_array_items(response.iter_content(_STREAM_CHUNK)))

        return self.call(what, send)

    @property
    def _host(self) -> str:
        return urlsplit(self.project.url).netloc

    def _backoff(self, attempt: int, exc: Exception) -> float:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after
        return min(60.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


_STREAM_CHUNK = 1 << 16


def json_array_items(chunks: Iterable[bytes]) -> Iterator[dict]:
    """The objects of a JSON array sent in `chunks` of UTF-8, each as soon as it is whole.

    A body that is not an array of objects is not what was asked (a proxy's page: worth asking
    again) unless it is REDCap's `{"error": ...}`, which is raised as REDCap's refusal."""
    decoder, text = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")()
    source = iter(chunks)
    buffer, at, ended, started = "", 0, False, False

    def more() -> bool:
        nonlocal buffer, at, ended
        if ended:
            return False
        chunk = next(source, None)
        ended = chunk is None
        buffer = buffer[at:] + text.decode(chunk or b"", final=ended)
        at = 0
        return True

    def skip_space() -> str:
        nonlocal at
        while True:
            while at < len(buffer) and buffer[at] in " \t\r\n":
                at += 1
            if at < len(buffer) or not more():
                return buffer[at] if at < len(buffer) else ""

    def not_json(what: str) -> TransientResponse:
        return TransientResponse(f"HTTP 200 but the body is not a JSON array ({what})")

    first = skip_space()
    if first == "{":
        while more():
            pass
        try:
            answer = json.loads(buffer[at:])
        except ValueError:
            raise not_json(f"starts {buffer[at:at + 60]!r}") from None
        if isinstance(answer, dict) and "error" in answer:
            raise requests.RequestException(answer["error"])
        raise not_json(f"starts {buffer[at:at + 60]!r}")
    if first != "[":
        raise not_json(f"starts {buffer[at:at + 60]!r}" if first else "empty")
    at += 1
    while True:
        mark = skip_space()
        if mark == "]":
            at += 1
            break
        if started:
            if mark != ",":
                raise not_json(f"{mark!r} where a comma was due" if mark else "cut short")
            at += 1
            skip_space()
        while True:
            try:
                item, end = decoder.raw_decode(buffer, at)
                break
            except ValueError:
                if not _read_double(more, lambda: len(buffer) - at):
                    raise not_json("cut short or malformed") from None
        if not isinstance(item, dict):
            raise not_json(f"an item is {type(item).__name__}, not an object")
        at, started = end, True
        yield item
    if skip_space():
        raise not_json("text after the array")


def _read_double(more: Callable[[], bool], size: Callable[[], int]) -> bool:
    """Read until the unparsed text has doubled (a long item is not parsed again per chunk);
    False when nothing more came."""
    wanted, grew = 2 * size(), False
    while size() < wanted and more():
        grew = True
    return grew


def _cannot_connect(exc: Exception) -> bool:
    """No connection was made: refused, unknown host, the connect timeout passed, or TLS failed."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, (NewConnectionError, ConnectTimeoutError))


def _connect_problem(exc: Exception) -> str:
    text = str(exc).lower()
    if isinstance(exc, requests.exceptions.SSLError):
        return "its TLS certificate is not accepted"
    if isinstance(exc, requests.ConnectTimeout) or "timed out" in text:
        return "no answer"
    if "resolve" in text or "name or service" in text or "nodename" in text:
        return "the host name does not resolve"
    return "connection refused" if "refused" in text else "no connection"


def _redcap_message(exc: requests.RequestException) -> str:
    """REDCap's own error text: PyCap raises with the decoded `{"error": ...}` body."""
    payload = exc.args[0] if exc.args else ""
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return str(payload or exc)


def _describe(exc: Exception) -> str:
    if isinstance(exc, TransientResponse):
        return exc.reason
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke before the whole answer arrived"
    return type(exc).__name__


def connect(settings: Settings) -> Connection:
    """Open the project named by the settings, after checking the URL and token look right."""
    check_url_is_safe(settings.redcap_api_url, settings.insecure, settings.allow_url_credentials)
    url, auth = split_credentials(settings.redcap_api_url)
    token = settings.redcap_api_token.get_secret_value()
    if len(token) != 32 or not token.isalnum():
        raise ConfigError("REDCAP_API_TOKEN is not set or is not a 32-character REDCap API token")
    project = Project(url, token,
                      timeout=(settings.connect_timeout_seconds, settings.timeout_seconds),
                      hooks={"response": [classify_response]}, **({"auth": auth} if auth else {}))
    return Connection(project, settings.timeout_seconds, settings.retry_budget_seconds,
                      settings.connect_timeout_seconds, auth=auth)
