"""Shared fixtures: a live `ecrf serve` on a free loopback port, and fresh PyCap projects on it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from redcap import Project

PROJECT_TOKEN = "0123456789ABCDEF0123456789ABCDEF"
SUPER_TOKEN = "FEDCBA9876543210" * 4
EMPTY_ODM = """<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:redcap="https://projectredcap.org"
     ODMVersion="1.3.1" FileType="Snapshot"/>"""


@dataclass
class RedcapServer:
    """A running `ecrf serve`: where it answers, its tokens, its database and its log."""

    url: str
    token: str
    super_token: str
    db_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()

    def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync", "serve", "--db", str(self.db_path), "--port", str(port),
             "--log-file", str(self.log_path), *self.options],
            env={**os.environ, "ECRF_SERVE_TOKEN": self.token,
                 "ECRF_SERVE_SUPER_TOKEN": self.super_token})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ecrf serve exited:\n{self.log_path.read_text()}")
            try:
                requests.post(self.url, data={"content": "version"}, timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"ecrf serve did not answer:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def create_project(self, odm: str | None = None, title: str = "") -> str:
        """A new project on this server (super token, `content=project`); returns its token."""
        return create_project(self, odm, title)


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """XDG_STATE_HOME in a temporary folder: no test writes state or locks into the real home."""
    before = os.environ.get("XDG_STATE_HOME")
    where = tmp_path_factory.mktemp("xdg_state")
    os.environ["XDG_STATE_HOME"] = str(where)
    try:
        yield where
    finally:
        if before is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redcap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedcapServer]:
    """One server for the whole session; each test makes its own project with `new_project`."""
    where = tmp_path_factory.mktemp("redcap_server")
    server = RedcapServer(f"http://127.0.0.1:{free_port()}/api/", PROJECT_TOKEN, SUPER_TOKEN,
                          where / "redcap.sqlite", where / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if server.log().strip():
            sys.stderr.write(f"\n--- ecrf serve log ---\n{server.log()}")


def create_project(server: RedcapServer, odm: str | None = None, title: str = "") -> str:
    """Create a project through the super token (`content=project`); returns its token.

    From a test module, call `redcap_server.create_project(odm)`, or import this function as
    `from tests.conftest import create_project` (a bare `from conftest import ...` may find
    another directory's conftest).
    """
    title = title or f"test project {datetime.now():%H:%M:%S.%f}"
    reply = requests.post(server.url, data={
        "token": server.super_token, "content": "project", "format": "xml",
        "data": f"<item><project_title>{title}</project_title><purpose>0</purpose></item>",
        "odm": odm or EMPTY_ODM}, timeout=60)
    reply.raise_for_status()
    return reply.text[-32:]


@pytest.fixture
def new_project(redcap_server: RedcapServer) -> Callable[..., Project]:
    """Factory: `new_project(odm=None)` gives a PyCap `Project` on a fresh server project."""
    def make(odm: str | None = None) -> Project:
        return Project(redcap_server.url, redcap_server.create_project(odm))
    return make
