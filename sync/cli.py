"""The `ecrf` command: thin click adapters over the library, one per verb.

Only this module knows about click; every command calls one library function and turns an
`EcrfError` into a message and an exit code.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, TypeVar

import click

from sync import __version__
from sync.errors import EcrfError

F = TypeVar("F", bound=Callable[..., object])


def reports_errors(func: F) -> F:
    """Turn an `EcrfError` into `Error: <message>` on stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except EcrfError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(__version__, prog_name="ecrf")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """eCRF tools for NCT06416709: embedded REDCap server, CRF checks, nightly sync, data cuts."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# Commands are registered below, one block per verb (server, check, deploy, sync, ...).
