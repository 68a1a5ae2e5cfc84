"""What protects the API token and the trial's data: where the token can never turn up, how the
embedded server guards its door, and which URLs the sync refuses to send the token to.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner

from sync.cli import cli
from sync.config import load_settings
from sync.connection import check_url_is_safe
from sync.errors import ConfigError
from sync.ledger import user_state_dir
from sync.server import app as server_app
from tests.conftest import PROJECT_TOKEN
from tests.test_faults import fault_server, new_trial, set_faults  # noqa: F401  (fixture)

OWNER_ONLY = 0o600


def asgi_post(app: Any, body: bytes | Iterable[bytes] | dict[str, str],
              content_type: str = "application/x-www-form-urlencoded",
              client: tuple[str, int] = ("127.0.0.1", 5000), with_headers: bool = False) -> Any:
    """POST to the server's ASGI app in-process (no socket): its status and body text (and
    headers, lower-cased, `with_headers`).

    A dict is sent form-encoded; an iterable of chunks is sent without a Content-Length.
    """
    if isinstance(body, dict):
        body = urlencode(body).encode()
    chunks = [body] if isinstance(body, bytes) else list(body)
    headers = [(b"content-type", content_type.encode())]
    if isinstance(body, bytes):
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": "/api/", "raw_path": b"/api/",
             "root_path": "", "scheme": "http", "query_string": b"", "headers": headers,
             "server": ("127.0.0.1", 80), "client": client,
             "http_version": "1.1", "asgi": {"version": "3.0"}}
    status, out, answer_headers = 0, [], {}

    async def receive() -> dict:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers.update((k.decode().lower(), v.decode()) for k, v in message["headers"])
        else:
            out.append(message.get("body", b""))
    asyncio.run(app(scope, receive, send))
    text = b"".join(out).decode("utf-8", "replace")
    return (status, text, answer_headers) if with_headers else (status, text)


def write_config(path: Path, state: Path, **extra: object) -> Path:
    lines = [f'state_path = "{state}"', "batch_size = 3", "timeout_seconds = 5",
             "rule_hold_min_records = 1000",  # subjects chosen to fire rules: guard not under test
             "retry_budget_seconds = 3", *(f"{k} = {json.dumps(v)}" for k, v in extra.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def logged_runs(fault_server, tmp_path_factory):
    """Verbose sync runs (a retried fault, a revoked token, a clean run) and a data cut."""
    where = tmp_path_factory.mktemp("secret")
    settings = new_trial(fault_server, where / "state" / "state.sqlite")
    token = settings.redcap_api_token.get_secret_value()
    config = write_config(where / "ecrf.toml", settings.state_path)
    env = {"REDCAP_API_URL": settings.redcap_api_url, "REDCAP_API_TOKEN": token}
    runner = CliRunner()
    outputs, records = [], []
    handler = _Keep(records)
    logging.getLogger().addHandler(handler)
    old_umask = os.umask(0)  # the files must be private whatever the umask
    try:
        for faults, args in (([{"content": "record", "action": "import", "status": 500}], []),
                             ([{"kind": "revoke", "skip": 3, "count": None}], ["--full"]),
                             ([], ["--full"])):
            set_faults(fault_server, faults)
            outputs.append(runner.invoke(cli, ["-v", "sync", "--config", str(config), *args],
                                         env=env))
        set_faults(fault_server, [])
        outputs.append(runner.invoke(cli, ["-v", "export", "--out", str(where / "cut"),
                                           "--config", str(config), "--deidentify"], env=env))
    finally:
        os.umask(old_umask)
        logging.getLogger().removeHandler(handler)
    return token, where, outputs, records


class _Keep(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


def test_the_verbose_runs_did_log_retries_and_refusals(logged_runs):
    _, _, outputs, records = logged_runs
    assert [o.exit_code for o in outputs] == [0, 3, 0, 0]
    assert any("HTTP 500; retrying" in line for line in records)
    assert "refused the API token" in outputs[1].output


def test_the_token_appears_in_no_log_line_output_or_error(logged_runs):
    token, _, outputs, records = logged_runs
    assert [line for line in records if token in line] == []
    assert [o.output for o in outputs if token in o.output] == []


def test_the_token_appears_in_no_state_or_export_file(logged_runs):
    token, where, _, _ = logged_runs
    scanned = files_under(where / "state") + files_under(where / "cut")
    assert {p.name for p in scanned} >= {"state.sqlite", "manifest.json"}
    assert [p for p in scanned if token.encode() in p.read_bytes()] == []


def test_state_ledger_lock_and_salt_files_are_readable_by_their_owner_only(logged_runs):
    _, where, _, _ = logged_runs
    locks = files_under(user_state_dir() / "locks")  # the run lock is per project (#12.9)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in files_under(where / "state") + locks}
    assert {"state.sqlite", "deidentify.salt"} <= set(modes) and locks
    assert {name: mode for name, mode in modes.items() if mode != OWNER_ONLY} == {}


def test_no_exception_message_repeats_a_token_it_was_given(tmp_path, monkeypatch):
    secret = "SECRET0123456789SECRET0123456789"
    monkeypatch.setenv("REDCAP_API_TOKEN", secret + "X")
    bad = write_config(tmp_path / "bad.toml", tmp_path / "state.sqlite", batch_size_x=1)
    with pytest.raises(ConfigError) as raised:
        load_settings(bad)
    assert secret not in str(raised.value) and "batch_size_x" in str(raised.value)
    from sync.connection import connect
    with pytest.raises(ConfigError) as raised:
        connect(load_settings(None, state_path=tmp_path / "s.sqlite"))
    assert secret not in str(raised.value)
    assert secret not in repr(load_settings(None, state_path=tmp_path / "s.sqlite"))


def listening_addresses(port: int) -> set[str]:
    """Local addresses bound to `port` in LISTEN state, from the kernel's socket tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_the_embedded_server_listens_on_loopback_only_by_default(redcap_server):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux's /proc/net/tcp")
    port = int(redcap_server.url.rsplit(":", 1)[1].split("/")[0])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_tokens_are_compared_in_constant_time(tmp_path, monkeypatch):
    compared: list[tuple[str, str]] = []
    constant_time = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return constant_time(a, b)
    monkeypatch.setattr(server_app.hmac, "compare_digest", spy)
    app = server_app.make_app(str(tmp_path / "r.sqlite"), token=PROJECT_TOKEN)
    wrong = "F" * 32
    refused, _ = asgi_post(app, {"token": wrong, "content": "version"})
    accepted, _ = asgi_post(app, {"token": PROJECT_TOKEN, "content": "version"})
    assert (refused, accepted) == (403, 200)
    assert (wrong, PROJECT_TOKEN) in compared and (PROJECT_TOKEN, PROJECT_TOKEN) in compared


def test_a_body_over_the_limit_gets_a_clear_413_over_http(redcap_server):
    host, port = "127.0.0.1", int(redcap_server.url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     + f"Content-Length: {server_app.MAX_BODY + 1}\r\n\r\n".encode()
                     + b"token=" + PROJECT_TOKEN.encode())
        answer = b""
        while not answer.endswith(b"Request body too large") and len(answer) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head = answer.decode("latin-1")
    assert head.startswith("HTTP/1.1 413") and head.endswith("\r\n\r\nRequest body too large")


def test_a_chunked_body_over_the_limit_gets_413_too(tmp_path, monkeypatch):
    monkeypatch.setattr(server_app, "MAX_BODY", 1000)
    app = server_app.make_app(str(tmp_path / "r.sqlite"), token=PROJECT_TOKEN)
    assert asgi_post(app, [b"x" * 300] * 5) == (413, "Request body too large")
    assert asgi_post(app, [b"x" * 300] * 3)[0] == 403


@pytest.mark.parametrize("url, allowed", [
    ("https://redcap.example.org/api/", True),
    ("http://127.0.0.1:8080/api/", True),
    ("http://127.9.9.9/api/", True),
    ("http://localhost/api/", True),
    ("http://[::1]:8080/api/", True),
    ("http://redcap.example.org/api/", False),
    ("http://10.0.0.7/api/", False),
    ("http://0.0.0.0:8080/api/", False),
    ("http://localhost.example.org/api/", False),
    ("http://127.0.0.1.example.org/api/", False),
])
def test_plain_http_is_refused_except_to_this_machine(url, allowed):
    if allowed:
        check_url_is_safe(url, insecure=False)
    else:
        with pytest.raises(ConfigError, match="--insecure"):
            check_url_is_safe(url, insecure=False)
        check_url_is_safe(url, insecure=True)


def test_sync_refuses_plain_http_to_another_host_unless_insecure(redcap_server, tmp_path):
    """0.0.0.0 is not a loopback address, yet on Linux it reaches the server on 127.0.0.1."""
    settings = new_trial(redcap_server, tmp_path / "state.sqlite")
    port = redcap_server.url.rsplit(":", 1)[1].split("/")[0]
    env = {"REDCAP_API_URL": f"http://0.0.0.0:{port}/api/",
           "REDCAP_API_TOKEN": settings.redcap_api_token.get_secret_value()}
    config = str(write_config(tmp_path / "ecrf.toml", settings.state_path))
    refused = CliRunner().invoke(cli, ["sync", "--config", config, "--json"], env=env)
    assert refused.exit_code == 2
    assert "plain http:// to 0.0.0.0" in refused.stderr and "--insecure" in refused.stderr
    kept = json.loads(refused.stdout)
    assert (kept["outcome"], kept["exit_code"], kept["api_calls"]) == ("failed", 2, 0)
    allowed = CliRunner().invoke(cli, ["sync", "--config", config, "--json", "--insecure"],
                                 env=env)
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.output.splitlines()[-1])["records_written"] == 10


def test_a_new_token_for_the_projects_own_user_revokes_the_old_one(redcap_server):
    """A token thought leaked is replaced with `ecrf server user --new-token api_user`: the old
    one must stop working (it used to stay valid beside the new one); a change of rights alone
    keeps the token."""
    import requests

    def project_id(token: str) -> int:
        answer = requests.post(redcap_server.url, data={
            "token": token, "content": "project", "format": "json"}, timeout=10)
        return answer.json()["project_id"] if answer.ok else answer.status_code

    old = redcap_server.create_project()
    number = project_id(old)

    def user(*args: str) -> str:
        result = CliRunner().invoke(cli, ["server", "user", "--db", str(redcap_server.db_path),
                                          "--project", str(number), *args])
        assert result.exit_code == 0, result.output
        return result.output

    output = user("--new-token", "api_user")
    new = output.strip().rsplit("API token: ", 1)[1]
    assert "the old one is refused" in output
    assert (project_id(old), project_id(new)) == (403, number)
    output = user("--no-logging", "api_user")
    assert "API token" not in output and project_id(new) == number
