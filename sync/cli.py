"""The `ecrf` command: thin click adapters over the library, one per verb.

Only this module knows about click; every command calls one library function and turns an
`EcrfError` into a message and an exit code.
"""
from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import click

from sync import __version__
from sync.errors import EcrfError
from sync.memory import steady_allocator

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


class _StderrLines(logging.Handler):
    """Log lines to stderr as it is when written: above the progress bar on a terminal, so
    every retry stays visible."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


@click.group()
@click.version_option(__version__, prog_name="ecrf")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """eCRF tools for NCT06416709: embedded REDCap server, CRF checks, nightly sync, data cuts."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    if not any(isinstance(h, _StderrLines) for h in root.handlers):
        lines = _StderrLines()
        lines.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(lines)


# Commands are registered below, one block per verb (server, check, deploy, sync, ...).


# -- check: the data dictionary and redcap/ before they go to REDCap -----------------------

@cli.command("check")
@click.argument("dictionary", default="data_dictionary.csv", type=click.Path(dir_okay=False))
@click.option("--redcap-dir", default="redcap", type=click.Path(file_okay=False), show_default=True,
              help="REDCap project files (events, arms, mapping, repeating instruments).")
@click.option("--no-contract", is_flag=True,
              help="Skip the CRF contract (for dictionaries of other projects).")
@reports_errors
def check_command(dictionary: str, redcap_dir: str, no_contract: bool) -> None:
    """List every problem REDCap's upload would raise, and more: logic, events, the CRF contract.

    Exit code 0 when there is no error (warnings are printed), 1 when there is any.

    Example: ecrf check data_dictionary.csv --redcap-dir redcap
    """
    from pathlib import Path
    from sync.crf.check import check_project, format_problems, has_errors
    from sync.crf.contract import TRIAL_CONTRACT
    problems = check_project(Path(dictionary), Path(redcap_dir),
                             contract=None if no_contract else TRIAL_CONTRACT)
    click.echo(format_problems(problems))
    if has_errors(problems):
        raise SystemExit(1)


# -- sync and deploy: the nightly job and the project definition --------------------------

def _settings(config: str | None, **overrides: object):
    from sync.config import load_settings
    from pathlib import Path
    context = click.get_current_context(silent=True)
    if context is not None:
        overrides.setdefault("allow_url_credentials", context.meta.get(_URL_CREDENTIALS))
    return load_settings(Path(config) if config else None, **overrides)


_URL_CREDENTIALS = "ecrf.allow_url_credentials"


def _remember_url_credentials(context: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        context.meta[_URL_CREDENTIALS] = True


allow_url_credentials = click.option(
    "--allow-url-credentials", is_flag=True, expose_value=False,
    callback=_remember_url_credentials,
    help="Accept a user name and password in REDCAP_API_URL (sent as HTTP Basic auth, written nowhere).")


@contextmanager
def _stops_as_a_failed_run() -> Iterator[None]:
    """SIGTERM, SIGHUP and Ctrl-C raise `RunStopped` in the run, which then ends as any failed
    run does: its error on stderr, its JSON with --json, and a failed run in `ecrf runs`, not
    one left "running" for ever. The imports already sent stay written (as after any crash).
    Only the main thread may set handlers: a caller running the command in another thread
    keeps its own."""
    import signal
    import threading
    from sync import stopping
    from sync.errors import RunStopped
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(number: int, frame: object) -> None:
        reason = (f"stopped by {signal.Signals(number).name} before it finished; what it wrote "
                  "stays written, and the next run finishes the job")
        stopping.request(reason)  # checked between batches, should a library swallow the raise
        raise RunStopped(reason)

    wanted = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    stopping.clear()
    before = {number: signal.signal(number, stop) for number in wanted}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        stopping.clear()


class _RichProgress:
    """A progress bar per stage on a terminal; silent when stderr is not one (cron)."""

    def __init__(self) -> None:
        from rich.progress import Progress
        self._bar = Progress(transient=False)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "_RichProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, stage: str, total: int) -> None:
        self._tasks[stage] = self._bar.add_task(stage, total=total)

    def advance(self, stage: str, amount: int) -> None:
        if stage in self._tasks:
            self._bar.advance(self._tasks[stage], amount)


def _print_summary(summary, run: dict | None, as_json: bool) -> None:
    import json
    if as_json:
        place = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
                 "redcap_repeat_instance", "field"]
        refused = summary.not_written[[*place, "message"]]
        not_given_back = summary.not_given_back[[*place, "new_value", "message"]]
        click.echo(json.dumps({**(run or {}), "run_id": summary.run_id, "mode": summary.mode,
                               "full_pull": summary.full_pull, "cursor": summary.cursor,
                               **summary.counts(),
                               "not_written": refused.astype(str).to_dict("records"),
                               "not_given_back": not_given_back.astype(str).to_dict("records"),
                               "recreated": summary.recreated,
                               "recreated_before": summary.recreated_before},
                              sort_keys=True))
    else:
        click.echo(summary.describe())


def _recorded_run(state_path, run_id: str | None) -> dict | None:
    from sync.run_history import read_run
    return read_run(state_path, run_id) if state_path and run_id else None


def _sync_failed(exc: BaseException, settings, config: str | None, started: str, mode: str,
                 as_json: bool) -> None:
    """Report a failed run (with --json, only its JSON object on stdout) and exit with its code.

    A run that failed before its settings loaded is kept where the settings would have kept it,
    when that file can be opened; the report says when a run could not be kept.
    """
    import json
    import os
    import traceback
    from pathlib import Path
    from sync.connection import split_credentials
    from sync.errors import StateFileError
    from sync.ledger import ProjectKey
    from sync.run_history import record_unstarted, unrecorded_object, unstarted_state_path
    exit_code = getattr(exc, "exit_code", 1)
    message = str(exc) if isinstance(exc, EcrfError) else f"{type(exc).__name__}: {exc}"
    run_id, state, why_not = getattr(exc, "run_id", None), getattr(exc, "state_path", None), ""
    if settings is None:
        url = split_credentials(os.environ.get("REDCAP_API_URL", ""))[0]
        state = unstarted_state_path(Path(config) if config else None, url)
        run_id, why_not = record_unstarted(state, ProjectKey(url, "", ""), mode, started,
                                           message, exit_code)
    elif run_id is None:
        why_not = getattr(exc, "why_not", "") or "its state file could not be used"
    if not isinstance(exc, EcrfError):
        traceback.print_exception(exc)
    click.echo(f"Error: {message}", err=True)
    if why_not and not isinstance(exc, StateFileError):
        click.echo(f"This run is not in the run history: {why_not}", err=True)
    if as_json:
        run = None
        try:
            run = _recorded_run(state, run_id)
        except EcrfError as ledger_exc:
            why_not = str(ledger_exc)
        click.echo(json.dumps(run or unrecorded_object(started, exit_code, message, why_not, mode),
                              sort_keys=True))
    raise SystemExit(exit_code)


@cli.command("sync")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML); default ecrf.toml if present.")
@click.option("--dry-run", is_flag=True, help="Print every cell that would be written; write nothing.")
@click.option("--full", is_flag=True, help="Pull every record, not only those changed since the last run.")
@click.option("--record", "records", multiple=True, help="Only this record (repeatable); the cursor is not moved.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout: one object for the run, also on failure.")
@click.option("--accept-rule", "accept_rules", multiple=True, metavar="RULE",
              help="Write this rule's new queries in this run even if it fires on most records (repeatable).")
@click.option("--insecure", is_flag=True, default=None, help="Allow plain http:// to a non-local host.")
@allow_url_credentials
def sync_command(config: str | None, dry_run: bool, full: bool, records: tuple[str, ...],
                 as_json: bool, accept_rules: tuple[str, ...], insecure: bool | None) -> None:
    """Run the nightly sync: eligibility, calculations and data queries written back into REDCap.

    Exit codes: 0 done, 1 failed, 2 bad configuration or dictionary, 3 REDCap unreachable or
    refusing, 4 another run holds the lock, 5 finished with cells REDCap refused (listed),
    6 a rule fired on most records and its new queries were held back (--accept-rule RULE
    accepts it once), 7 a record a person deleted or renamed during an import was re-created
    by it and waits to be deleted (listed). Every run is kept: see `ecrf runs`.

    Example: REDCAP_API_URL=https://redcap.example.org/api/ REDCAP_API_TOKEN=... ecrf sync
    """
    import sys
    from sync.job import NoProgress, run_sync
    from sync.ledger import utc_now_ms
    steady_allocator()
    started, mode, settings = utc_now_ms(), "dry-run" if dry_run else "write", None
    try:
        with _stops_as_a_failed_run():
            settings = _settings(config, insecure=insecure)
            if sys.stderr.isatty() and not as_json:
                with _RichProgress() as progress:
                    summary = run_sync(settings, dry_run=dry_run, full=full,
                                       only_records=list(records) or None, progress=progress,
                                       accept_rules=accept_rules)
            else:
                summary = run_sync(settings, dry_run=dry_run, full=full,
                                   only_records=list(records) or None, progress=NoProgress(),
                                   accept_rules=accept_rules)
    except Exception as exc:
        _sync_failed(exc, settings, config, started, mode, as_json)
    if dry_run and not summary.changes.empty and not as_json:
        click.echo(summary.changes.to_string(index=False))
    run = _recorded_run(summary.state_path, summary.run_id) if as_json else None
    _print_summary(summary, run, as_json)
    if summary.exit_code:
        raise SystemExit(summary.exit_code)


# -- runs: what every sync did, from the ledger ------------------------------------------

def _history(config: str | None):
    from sync.connection import split_credentials
    from sync.run_history import load_history
    settings = _settings(config)
    return load_history(settings.state_path, split_credentials(settings.redcap_api_url)[0])


@cli.group("runs", invoke_without_command=True)
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML); names the project and state file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run on stdout, nothing else.")
@click.option("--last", "limit", type=int, default=None, help="Only the latest N runs.")
@click.pass_context
@reports_errors
def runs_group(ctx: click.Context, config: str | None, as_json: bool, limit: int | None) -> None:
    """List past sync runs: start, duration, mode, pull, records, queries, API calls, outcome.

    The runs of the project at REDCAP_API_URL (all runs of the state file, when `state_path`
    names one).

    Example: ecrf runs --last 10
    """
    ctx.obj = {"config": config}
    if ctx.invoked_subcommand is not None:
        return
    import json
    from sync.run_history import format_runs
    runs = [run for run, _ in _history(config)]
    runs = runs[-limit:] if limit else runs
    if as_json:
        for run in runs:
            click.echo(json.dumps(run, sort_keys=True))
    else:
        click.echo(format_runs(runs))


@runs_group.command("show")
@click.argument("run")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML); names the project and state file.")
@click.option("--json", "as_json", is_flag=True, help="The run as one JSON object, its writes included.")
@click.pass_context
@reports_errors
def runs_show_command(ctx: click.Context, run: str, config: str | None, as_json: bool) -> None:
    """Show one run and every cell it wrote, with old and new value and the rule behind it.

    RUN is a run id, a unique start of one, or `last`.

    Example: ecrf runs show last
    """
    import json
    from sync.errors import ConfigError
    from sync.ledger import Ledger
    from sync.run_history import find_run, format_run
    found = find_run(_history(config or (ctx.obj or {}).get("config")), run)
    if found is None:
        raise ConfigError(f"no run {run!r} in the run history (ecrf runs lists them)")
    details, path = found
    ledger = Ledger(path)
    try:
        writes = ledger.writes(details["run_id"])
    finally:
        ledger.close()
    if as_json:
        cells = writes.drop(columns=["run_id"]).to_dict("records")
        click.echo(json.dumps({**details, "writes": cells}, sort_keys=True))
    else:
        click.echo(format_run(details, writes))


@cli.command("deploy")
@click.argument("dictionary", default="data_dictionary.csv", type=click.Path(dir_okay=False))
@click.option("--redcap-dir", default="redcap", type=click.Path(file_okay=False), show_default=True)
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML).")
@click.option("--force", is_flag=True, help="Apply changes that orphan entered data (removed fields, codes).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--insecure", is_flag=True, default=None, help="Allow plain http:// to a non-local host.")
@allow_url_credentials
@reports_errors
def deploy_command(dictionary: str, redcap_dir: str, config: str | None, force: bool,
                   dry_run: bool, insecure: bool | None) -> None:
    """Push the data dictionary and redcap/ to the project at REDCAP_API_URL, in REDCap's order.

    Runs `ecrf check` first and sends nothing on an error. Idempotent: parts that already match
    are not sent. Refuses changes that would orphan data unless --force; never deletes events,
    arms or mapped data on a project with records; sends nothing in production status.

    Example: ecrf deploy data_dictionary.csv --redcap-dir redcap --dry-run
    """
    from pathlib import Path
    from sync.connection import connect
    from sync.crf.deploy import check_files, deploy
    from sync.crf.dictionary import load_dictionary
    check_files(Path(dictionary), Path(redcap_dir))
    local = load_dictionary(Path(dictionary), Path(redcap_dir))
    plan = deploy(connect(_settings(config, insecure=insecure)), local, force=force,
                  dry_run=dry_run, redcap_dir=Path(redcap_dir))
    click.echo(plan.describe())
    if not plan.empty:
        click.echo("(dry run: nothing was changed)" if dry_run else "Deployed.")


@cli.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the server's database, the sync state and the cut go (default: a new temporary directory).")
@click.option("--subjects", default=40, show_default=True, type=click.IntRange(min=1),
              help="Synthetic subjects to load (exactly this many).")
@reports_errors
def demo_command(workdir: str | None, subjects: int) -> None:
    """Run the whole job end to end on the embedded server with the synthetic demo trial.

    Starts `ecrf serve`, deploys the CRF, loads demo records, syncs and shows what it decided,
    plays a site answering and correcting and a monitor closing queries, syncs again, writes
    the monitors' digest and a data cut.

    Example: ecrf demo --subjects 40
    """
    import tempfile
    from pathlib import Path
    from sync.demo import run_demo
    where = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ecrf-demo-"))
    result = run_demo(where, subjects=subjects, say=click.echo)
    click.echo(f"demo finished; everything it wrote is in {result.workdir}")


@cli.group("queries")
def queries_group() -> None:
    """Data queries the sync keeps in REDCap's dq_query instrument."""


@queries_group.command("report")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML).")
@click.option("--insecure", is_flag=True, default=None, help="Allow plain http:// to a non-local host.")
@allow_url_credentials
@reports_errors
def queries_report_command(out: str, config: str | None, insecure: bool | None) -> None:
    """Write the monitors' digest: one offline HTML file, summary by site and rule, every query
    with its labels, value, text, status, age and response, filter and sort, links into REDCap.

    Example: ecrf queries report --out queries.html
    """
    from pathlib import Path
    from sync.connection import connect
    from sync.digest import queries_report
    settings = _settings(config, insecure=insecure)
    digest = queries_report(connect(settings), settings.redcap_dir / "rules.csv")
    Path(out).write_text(digest.html, encoding="utf-8")
    click.echo(f"{len(digest.rows)} queries ({digest.active} open or answered) written to {out}")


@cli.command("serve")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False),
              help="SQLite file holding the server's projects (created owner-only if missing).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="File holding the first project's API token; a missing file receives a new "
                   "one. Default: $ECRF_SERVE_TOKEN.")
@click.option("--super-token-file", type=click.Path(dir_okay=False),
              help="File holding the 64-char super token that may create projects; a missing "
                   "file receives a new one. Default: $ECRF_SERVE_SUPER_TOKEN.")
@click.option("--token", "token_argument", hidden=True, help="Refused: use --token-file.")
@click.option("--super-token", "super_token_argument", hidden=True,
              help="Refused: use --super-token-file.")
@click.option("--public-url", default="", help="Base URL links (survey links) are built from.")
@click.option("--log-file", type=click.Path(dir_okay=False),
              help="Append the server's messages to this file (created owner-only).")
@click.option("--max-body-mib", default=64, show_default=True, type=click.IntRange(1),
              envvar="ECRF_SERVE_MAX_BODY_MIB", help="Largest request body, in MiB.")
@click.option("--max-fields", default=100_000, show_default=True, type=click.IntRange(1),
              envvar="ECRF_SERVE_MAX_FIELDS", help="Most form fields in one request.")
@click.option("--max-field-mib", default=32, show_default=True, type=click.IntRange(1),
              envvar="ECRF_SERVE_MAX_FIELD_MIB", help="Largest single form field, in MiB.")
@click.option("--request-timeout", default=60.0, show_default=True,
              type=click.FloatRange(0, min_open=True), envvar="ECRF_SERVE_REQUEST_TIMEOUT",
              help="Seconds a client has to send a whole request.")
@click.option("--max-failed-tokens", default=20, show_default=True, type=click.IntRange(1),
              envvar="ECRF_SERVE_MAX_FAILED_TOKENS",
              help="Wrong tokens one address may send per minute before it gets 429.")
@click.option("--faults", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Testing clients only: JSON file of faults to inject (sync/server/faults.py).")
@reports_errors
def serve_command(db_path: str, host: str, port: int, token_file: str | None,
                  super_token_file: str | None, token_argument: str | None,
                  super_token_argument: str | None, public_url: str, log_file: str | None,
                  max_body_mib: int, max_fields: int, max_field_mib: int,
                  request_timeout: float, max_failed_tokens: int, faults: str | None) -> None:
    """Serve a REDCap-API-compatible server at http://HOST:PORT/api/ from a SQLite file.

    Tokens never go on the command line (every user of the machine sees it in `ps`): give
    them in files or in the environment. Files the server writes are private to its owner.

    Example: ECRF_SERVE_TOKEN=$(cat ~/.ecrf-token) ecrf serve --db redcap.sqlite --port 8080
    """
    import os
    import sys
    from sync.errors import ConfigError
    from sync.server import open_log, project_token, read_token, serve
    from sync.server.guard import MIB, Limits
    for given, option, env in ((token_argument, "--token", "ECRF_SERVE_TOKEN"),
                               (super_token_argument, "--super-token", "ECRF_SERVE_SUPER_TOKEN")):
        if given is not None:
            raise ConfigError(f"{option} is refused: a token on the command line is visible to "
                              f"every user of this machine (ps). Put it in a file only you can "
                              f"read and pass {option}-file FILE, or set {env}")
    if faults:
        os.environ["ECRF_SERVER_FAULTS"] = faults
    token, token_written = read_token(token_file, 32)
    super_token, super_written = read_token(super_token_file, 64)
    os.umask(0o077)  # whatever the server or SQLite creates from here on is private
    first_token, made_here = project_token(db_path, token)
    for written, path in ((token_written, token_file), (super_written, super_token_file)):
        if written:
            click.echo(f"New token written to {path}")
    if made_here and sys.stdout.isatty():
        click.echo(f"API token of the first project (shown only this once): {first_token}")
    elif made_here:
        click.echo("The first project got a new API token, shown only on a terminal; to choose "
                   "it, start with --token-file FILE or ECRF_SERVE_TOKEN", err=True)
    if log_file:
        open_log(log_file)
    click.echo(f"Serving http://{host}:{port}/api/", err=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(f"Warning: {host} is reachable from other machines and the server has no TLS: "
                   "tokens and data travel in clear text. Keep it on 127.0.0.1 unless a TLS "
                   "reverse proxy is in front.", err=True)
    limits = Limits(max_body_bytes=max_body_mib * MIB, max_fields=max_fields,
                    max_field_bytes=max_field_mib * MIB, request_timeout=request_timeout,
                    max_failed_tokens=max_failed_tokens)
    serve(db_path, host, port, token, super_token, public_url, limits)


@cli.group("server")
def server_group() -> None:
    """Administer the embedded server's database: locks, project status, users, rate limit.

    What REDCap does from its web pages and its API cannot; safe while `ecrf serve` runs.
    """


def _lock_options(func: F) -> F:
    for option in reversed((
            click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, exists=True),
                         help="The server's SQLite file."),
            click.option("--project", "project_id", type=int, default=None, help="Project id (default: the first)."),
            click.option("--record", required=True, help="Record to lock or unlock."),
            click.option("--event", default="", help="Unique event name (with --form)."),
            click.option("--form", default="", help="Instrument; without it the whole record."),
            click.option("--instance", default=1, show_default=True, type=int,
                         help="Instance of a repeating form."))):
        func = option(func)
    return func


@server_group.command("lock")
@_lock_options
@reports_errors
def server_lock_command(db_path: str, project_id: int | None, record: str, event: str,
                        form: str, instance: int) -> None:
    """Lock a whole record, or one form of one event (and instance) of it.

    Example: ecrf server lock --db redcap.sqlite --record 01-004 --event screening_arm_1 --form eligibility
    """
    from sync.server.admin import LockTarget, set_lock
    from sync.server.store import Store
    click.echo(set_lock(Store(db_path), LockTarget(record, event, form, instance), True, project_id))


@server_group.command("unlock")
@_lock_options
@reports_errors
def server_unlock_command(db_path: str, project_id: int | None, record: str, event: str,
                          form: str, instance: int) -> None:
    """Unlock what `ecrf server lock` locked (the same options).

    Example: ecrf server unlock --db redcap.sqlite --record 01-004
    """
    from sync.server.admin import LockTarget, set_lock
    from sync.server.store import Store
    click.echo(set_lock(Store(db_path), LockTarget(record, event, form, instance), False, project_id))


@server_group.command("status")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--project", "project_id", type=int, default=None, help="Project id (default: the first).")
@click.option("--users-may-edit-events/--users-may-not-edit-events", default=None,
              help="REDCap's system setting enable_edit_prod_events (default: not).")
@click.argument("status", type=click.Choice(["development", "production"]))
@reports_errors
def server_status_command(db_path: str, project_id: int | None, users_may_edit_events: bool | None,
                          status: str) -> None:
    """Move a project to development or production status.

    In production the API refuses metadata, mapping, event and arm imports, as REDCap does.

    Example: ecrf server status --db redcap.sqlite production
    """
    from sync.server.admin import set_status
    from sync.server.store import Store
    click.echo(set_status(Store(db_path), status, project_id, users_may_edit_events))


@server_group.command("user")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--project", "project_id", type=int, default=None, help="Project id (default: the first).")
@click.option("--new-token", is_flag=True, help="Issue a new API token (one is issued on first use anyway).")
@click.option("--import/--no-import", "api_import", default=None, help="API Import/Update right.")
@click.option("--export/--no-export", "api_export", default=None, help="API Export right.")
@click.option("--logging/--no-logging", "logging_right", default=None, help="Logging right.")
@click.option("--dag", default=None, help="Unique data access group name ('' for none).")
@click.option("--export-rights", type=click.Choice(["full", "deidentified", "no-identifiers", "none"]),
              default=None, help="Data export rights on every instrument.")
@click.argument("username")
@reports_errors
def server_user_command(db_path: str, project_id: int | None, new_token: bool,
                        api_import: bool | None, api_export: bool | None,
                        logging_right: bool | None, dag: str | None, export_rights: str | None,
                        username: str) -> None:
    """Create or change a project user with its own API token and rights.

    Example: ecrf server user --db redcap.sqlite --no-import --export-rights deidentified monitor1
    """
    from sync.server.admin import set_user
    from sync.server.store import Store
    rights = {name: value for name, value in (("api_import", api_import), ("api_export", api_export),
                                              ("logging", logging_right)) if value is not None}
    summary, token = set_user(Store(db_path), username, project_id, new_api_token=new_token,
                              rights=rights, group=dag, export_rights=export_rights)
    click.echo(summary)
    if token:
        click.echo(f"API token: {token}")


@server_group.command("rate-limit")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--unban", "unban", default=None, metavar="ADDRESS", help="Lift the ban of this address.")
@click.argument("per_minute", type=int, required=False)
@reports_errors
def server_rate_limit_command(db_path: str, unban: str | None, per_minute: int | None) -> None:
    """Set REDCap's page_hit_threshold_per_minute (0: off, the default), or lift a ban.

    Past the threshold an address is banned for good (429, no Retry-After), as in REDCap.

    Example: ecrf server rate-limit --db redcap.sqlite 600
    """
    from sync.server.limits import lift_ban, set_threshold
    from sync.server.store import Store
    store = Store(db_path)
    if per_minute is not None:
        set_threshold(store, per_minute)
        click.echo(f"rate limit: {per_minute or 'off'} requests per minute per address")
    if unban:
        click.echo(f"{unban}: ban lifted" if lift_ban(store, unban) else f"{unban} was not banned")


@cli.group("rules")
def rules_group() -> None:
    """The rule catalogue (redcap/rules.csv) behind the sync's data queries."""


@rules_group.command("export")
@click.option("--out", default="dq_rules.csv", show_default=True, type=click.Path(dir_okay=False),
              help="CSV file to write, for REDCap's Data Quality > Upload rules.")
@click.option("--rules", "rules_path", default="redcap/rules.csv", show_default=True,
              type=click.Path(dir_okay=False), help="Rule catalogue to read.")
@reports_errors
def rules_export_command(out: str, rules_path: str) -> None:
    """Write the rules REDCap logic can express as a Data Quality custom-rule CSV.

    Example: ecrf rules export --out dq_rules.csv
    """
    from pathlib import Path
    from sync.rules import export_dq_csv, load_rules
    count = export_dq_csv(load_rules(Path(rules_path)), Path(out))
    click.echo(f"{count} rules written to {out}")


@cli.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New folder for the cut.")
@click.option("--deidentify", is_flag=True, help="Drop identifier fields and shift dates per subject.")
@click.option("--unblinded", is_flag=True, help="Keep allocation-revealing (@UNBLINDED) fields.")
@click.option("--unblinded-deidentified", is_flag=True,
              help="Confirm that an unblinded cut is also to be de-identified.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]),
              help="Cut time (UTC); the same data and --as-of give the same bytes.")
@click.option("--coding", type=click.Path(dir_okay=False, exists=True),
              help="CSV of domain,verbatim,code,term (MedDRA/WHODrug codes for AE and CM).")
@click.option("--format", "formats", default="csv,parquet,xpt", show_default=True,
              help="Comma-separated table formats: csv, parquet, xpt.")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML).")
@click.option("--insecure", is_flag=True, default=None, help="Allow plain http:// to a non-local host.")
@allow_url_credentials
@reports_errors
def export_command(out: str, deidentify: bool, unblinded: bool, unblinded_deidentified: bool,
                   as_of, coding: str | None, formats: str, config: str | None,
                   insecure: bool | None) -> None:
    """Write the sponsor's data cut: typed tables, codebook, status, queries, SDTM XPT, aCRF, manifest.

    Example: ecrf export --out cuts/2026-11-30 --deidentify --as-of 2026-11-30T00:00:00
    """
    from datetime import timezone
    from pathlib import Path
    from sync.export import FORMATS
    from sync.job import run_export
    steady_allocator()
    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown:
        raise click.BadParameter(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(sorted(FORMATS))}")
    manifest = run_export(_settings(config, insecure=insecure), Path(out), deidentify=deidentify,
                          formats=chosen, unblinded=unblinded,
                          unblinded_deidentified=unblinded_deidentified,
                          now=as_of.replace(tzinfo=timezone.utc) if as_of else None,
                          coding=Path(coding) if coding else None)
    name = "manifest-UNBLINDED.json" if unblinded else "manifest.json"
    click.echo(f"data cut of {manifest.records} subjects written to {out} (see {out}/{name})")
