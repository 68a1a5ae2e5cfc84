"""An embedded REDCap-API-compatible server: SQLite-backed, served by uvicorn at `/api/`.

`make_app` builds the ASGI app; `serve` runs it. The tests and the demo talk to it with PyCap.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from sync.errors import ConfigError
from sync.server.app import make_app
from sync.server.content.project import ensure_first_project
from sync.server.guard import Limits, timed_protocol
from sync.server.store import Store, new_token, open_private

__all__ = ["Limits", "check_token", "make_app", "open_log", "project_token", "read_token",
           "serve"]

TOKEN_ENV = {32: "ECRF_SERVE_TOKEN", 64: "ECRF_SERVE_SUPER_TOKEN"}


def read_token(path: str | None, length: int) -> tuple[str | None, bool]:
    """A token from its file, else its environment variable (never the command line).

    A file that does not exist yet receives a new token, created readable by its owner only;
    the flag says so. A file others can read is refused, as the database is.
    """
    env, option = TOKEN_ENV[length], "--token-file" if length == 32 else "--super-token-file"
    if path is None:
        value = os.environ.get(env, "").strip() or None
        check_token(value, length, env)
        return value, False
    if not os.path.exists(path):
        value = new_token(length)
        open_private(path)
        Path(path).write_text(value + "\n", encoding="ascii")
        return value, True
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(f"{option} {path} can be read by other users of this machine "
                          f"(mode {mode:o}); make it private with: chmod 600 {path}")
    value = Path(path).read_text(encoding="ascii", errors="replace").strip()
    check_token(value, length, f"{option} {path}")
    return value, False


def check_token(token: str | None, length: int = 32, where: str = "the token") -> None:
    """Tokens shaped as REDCap issues them: 32 (project) or 64 (super) upper-case hex chars."""
    if token is not None and not re.fullmatch(f"[0-9A-F]{{{length}}}", token):
        raise ConfigError(f"{where} must hold {length} upper-case hexadecimal characters, "
                          f"as REDCap issues them (it holds {len(token)} characters)")


def project_token(db_path: str | Path, token: str | None = None) -> tuple[str, bool]:
    """The first project's API token, creating the file and project on first use; the flag
    is true when this call made a new token (a new file and no token given)."""
    store = Store(db_path)
    is_new = token is None and store.first_token() is None
    return ensure_first_project(store, token), is_new


def open_log(path: str) -> None:
    """Send this process's stdout and stderr to `path`, created readable by its owner only."""
    open_private(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8080,
          token: str | None = None, super_token: str | None = None,
          public_url: str = "", limits: Limits | None = None) -> None:
    """Serve the API at `http://host:port/api/` until interrupted."""
    import uvicorn

    check_token(token, 32)
    check_token(super_token, 64)
    limits = limits or Limits()
    app = make_app(str(db_path), token=token, super_token=super_token,
                   public_url=public_url or f"http://{host}:{port}/", limits=limits)
    uvicorn.run(app, host=host, port=port, log_level="warning",
                http=timed_protocol(limits.request_timeout))
