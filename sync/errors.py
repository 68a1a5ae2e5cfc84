"""Every failure the library reports, under one root, each with the place it happened.

The CLI turns any `EcrfError` into a one-line message and a non-zero exit code; nothing else
in the library prints or exits.
"""
from __future__ import annotations


class EcrfError(Exception):
    """Root of every error the project raises on purpose."""

    exit_code = 1


class ConfigError(EcrfError, ValueError):
    """The configuration file or environment is missing something or holds a bad value."""

    exit_code = 2


class DictionaryError(EcrfError, ValueError):
    """The data dictionary or a file of `redcap/` cannot be read."""

    exit_code = 2


class LogicSyntaxError(EcrfError, ValueError):
    """A REDCap logic expression does not parse; the message shows where, with a caret."""

    def __init__(self, message: str, *, text: str = "", line: int = 0, column: int = 0,
                 expected: tuple[str, ...] = ()) -> None:
        self.text, self.line, self.column, self.expected = text, line, column, expected
        super().__init__(message)


class RedcapApiError(EcrfError):
    """REDCap answered with an error, or not at all, after every retry."""

    exit_code = 3


class RedcapRefused(RedcapApiError):
    """REDCap answered a call with an error of its own (HTTP 400); `redcap_message` is its text."""

    def __init__(self, message: str, redcap_message: str = "") -> None:
        super().__init__(message)
        self.redcap_message = redcap_message


class AddressBanned(RedcapApiError):
    """REDCap answered 429: its rate limit banned this machine's address for good."""


class PullIncomplete(EcrfError):
    """REDCap returned fewer (or other) records than the sync asked for."""

    exit_code = 3


class WriteCountMismatch(EcrfError):
    """REDCap reported a different number of imported records than the sync sent."""

    exit_code = 3


class StateFileError(EcrfError):
    """The sync's state file is damaged, unwritable or on a full disk; the message names the file
    and what to do."""

    exit_code = 2


class RunStopped(EcrfError):
    """The run was told to stop (SIGTERM from systemd or kill, SIGHUP, Ctrl-C): it ends as a
    failed run, and what it wrote stays written; the next run finishes the job."""

    exit_code = 1


class LockHeld(EcrfError):
    """Another sync run holds the lock for this project."""

    exit_code = 4


EXIT_NOT_WRITTEN = 5
"""`ecrf sync` finished, but REDCap refused some cells (locked, out of range, ...); the run
summary and the ledger list them, and the next run tries them again."""
