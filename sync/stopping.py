"""A signal's request to stop the run, kept until the run reaches a point where it stops.

The signal handler raises `RunStopped` at once, but an exception raised from a handler lands
wherever the main thread happens to be, and a library's own `except Exception` fallback (pandas
has several) can swallow it: the run then went on and ended as succeeded. So the request is also
kept here, and the job checks it between batches and before it records a run as succeeded.
"""
from __future__ import annotations

from sync.errors import RunStopped

_requested: list[str] = []


def request(reason: str) -> None:
    """Ask the run to stop, saying why (the text of its `RunStopped`)."""
    _requested.append(reason)


def clear() -> None:
    _requested.clear()


def check() -> None:
    """Raise `RunStopped` when a stop was asked for."""
    if _requested:
        raise RunStopped(_requested[0])
