"""An embedded REDCap-API-compatible server: SQLite-backed, served by uvicorn at `/api/`.

`make_app` builds the ASGI app; `serve` runs it. The tests and the demo talk to it with PyCap.
"""
from __future__ import annotations

import re
from pathlib import Path

from sync.errors import ConfigError
from sync.server.app import make_app
from sync.server.content.project import ensure_first_project
from sync.server.store import Store

__all__ = ["check_tokens", "make_app", "project_token", "serve"]


def check_tokens(token: str | None, super_token: str | None) -> None:
    """Tokens shaped as REDCap issues them: 32 (project) or 64 (super) upper-case hex chars."""
    for name, value, length in (("--token", token, 32), ("--super-token", super_token, 64)):
        if value is not None and not re.fullmatch(f"[0-9A-F]{{{length}}}", value):
            raise ConfigError(f"{name} must be {length} upper-case hexadecimal characters, "
                              f"as REDCap issues them (got {len(value)} characters)")


def project_token(db_path: str | Path, token: str | None = None) -> str:
    """The first project's API token, creating the file and project on first use."""
    check_tokens(token, None)
    return ensure_first_project(Store(db_path), token)


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8080,
          token: str | None = None, super_token: str | None = None,
          public_url: str = "") -> None:
    """Serve the API at `http://host:port/api/` until interrupted."""
    import uvicorn

    check_tokens(token, super_token)
    app = make_app(str(db_path), token=token, super_token=super_token,
                   public_url=public_url or f"http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
