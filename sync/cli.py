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
    from sync.check import check_project, format_problems, has_errors
    from sync.contract import TRIAL_CONTRACT
    problems = check_project(Path(dictionary), Path(redcap_dir),
                             contract=None if no_contract else TRIAL_CONTRACT)
    click.echo(format_problems(problems))
    if has_errors(problems):
        raise SystemExit(1)


# -- sync and deploy: the nightly job and the project definition --------------------------

def _settings(config: str | None, **overrides: object):
    from sync.config import load_settings
    from pathlib import Path
    return load_settings(Path(config) if config else None, **overrides)


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
        click.echo(json.dumps({**(run or {}), "run_id": summary.run_id, "mode": summary.mode,
                               "full_pull": summary.full_pull, "cursor": summary.cursor,
                               **summary.counts()}, sort_keys=True))
    else:
        click.echo(summary.describe())


def _recorded_run(state_path, run_id: str | None) -> dict | None:
    from sync.ledger import Ledger
    from sync.run_history import find_run
    if not run_id:
        return None
    ledger = Ledger(state_path)
    try:
        return find_run(ledger, run_id)
    finally:
        ledger.close()


def _sync_failed(exc: BaseException, settings, config: str | None, started: str, mode: str,
                 as_json: bool) -> None:
    """Report a failed run (with --json, only its JSON object on stdout) and exit with its code.

    A run that failed before its settings loaded is kept in the state file the settings would
    have named, when that file can be opened; the report says when it cannot.
    """
    import json
    import traceback
    from pathlib import Path
    from sync.config import Settings
    from sync.run_history import record_unstarted, state_path_hint, unrecorded_object
    exit_code = getattr(exc, "exit_code", 1)
    message = str(exc) if isinstance(exc, EcrfError) else f"{type(exc).__name__}: {exc}"
    run_id, why_not = getattr(exc, "run_id", None), ""
    if settings is None:
        state = state_path_hint(Path(config) if config else None,
                                Settings.model_fields["state_path"].get_default(call_default_factory=True))
        run_id, why_not = record_unstarted(state, mode, started, message, exit_code)
    else:
        state = settings.state_path
        if run_id is None:
            why_not = f"state file {state} cannot be used ({message})"
    if not isinstance(exc, EcrfError):
        traceback.print_exception(exc)
    click.echo(f"Error: {message}", err=True)
    if why_not:
        click.echo(f"This run is not in the run history: {why_not}", err=True)
    if as_json:
        run = None
        try:
            run = _recorded_run(state, run_id)
        except Exception as ledger_exc:
            why_not = f"state file {state} cannot be read: {ledger_exc}"
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
def sync_command(config: str | None, dry_run: bool, full: bool, records: tuple[str, ...],
                 as_json: bool, accept_rules: tuple[str, ...], insecure: bool | None) -> None:
    """Run the nightly sync: eligibility, calculations and data queries written back into REDCap.

    Exit codes: 0 done, 1 failed, 2 bad configuration or dictionary, 3 REDCap unreachable or
    refusing, 4 another run holds the lock, 6 a rule fired on most records and its new queries
    were held back (--accept-rule RULE accepts it once). Every run is kept: see `ecrf runs`.

    Example: REDCAP_API_URL=https://redcap.example.org/api/ REDCAP_API_TOKEN=... ecrf sync
    """
    import sys
    from sync.job import NoProgress, run_sync
    from sync.ledger import utc_now_ms
    started, mode, settings = utc_now_ms(), "dry-run" if dry_run else "write", None
    try:
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
    run = _recorded_run(settings.state_path, summary.run_id) if as_json else None
    _print_summary(summary, run, as_json)
    if summary.exit_code:
        raise SystemExit(summary.exit_code)


# -- runs: what every sync did, from the ledger ------------------------------------------

@cli.group("runs", invoke_without_command=True)
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML); names the state file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run on stdout, nothing else.")
@click.option("--last", "limit", type=int, default=None, help="Only the latest N runs.")
@click.pass_context
@reports_errors
def runs_group(ctx: click.Context, config: str | None, as_json: bool, limit: int | None) -> None:
    """List past sync runs: start, duration, mode, pull, records, queries, API calls, outcome.

    Example: ecrf runs --last 10
    """
    ctx.obj = {"config": config}
    if ctx.invoked_subcommand is not None:
        return
    import json
    from sync.ledger import Ledger
    from sync.run_history import format_runs, list_runs
    state = _settings(config).state_path
    if not state.exists():
        if not as_json:
            click.echo(f"no runs recorded yet (no state file {state})")
        return
    ledger = Ledger(state)
    try:
        runs = list_runs(ledger)
    finally:
        ledger.close()
    runs = runs[-limit:] if limit else runs
    if as_json:
        for run in runs:
            click.echo(json.dumps(run, sort_keys=True))
    else:
        click.echo(format_runs(runs))


@runs_group.command("show")
@click.argument("run")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML); names the state file.")
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
    state = _settings(config or (ctx.obj or {}).get("config")).state_path
    if not state.exists():
        raise ConfigError(f"no run {run!r}: no state file {state} (no run recorded yet)")
    ledger = Ledger(state)
    try:
        found = find_run(ledger, run)
        if found is None:
            raise ConfigError(f"no run {run!r} in {ledger.path} (ecrf runs lists them)")
        writes = ledger.writes(found["run_id"])
    finally:
        ledger.close()
    if as_json:
        cells = writes.drop(columns=["run_id"]).to_dict("records")
        click.echo(json.dumps({**found, "writes": cells}, sort_keys=True))
    else:
        click.echo(format_run(found, writes))


@cli.command("deploy")
@click.argument("dictionary", default="data_dictionary.csv", type=click.Path(dir_okay=False))
@click.option("--redcap-dir", default="redcap", type=click.Path(file_okay=False), show_default=True)
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML).")
@click.option("--force", is_flag=True, help="Apply even changes that would orphan data already entered.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--insecure", is_flag=True, default=None, help="Allow plain http:// to a non-local host.")
@reports_errors
def deploy_command(dictionary: str, redcap_dir: str, config: str | None, force: bool,
                   dry_run: bool, insecure: bool | None) -> None:
    """Push the data dictionary and redcap/ to the project at REDCAP_API_URL, in REDCap's order.

    Idempotent: parts that already match are not sent. Refuses changes that would orphan data
    unless --force.

    Example: ecrf deploy data_dictionary.csv --redcap-dir redcap --dry-run
    """
    from pathlib import Path
    from sync.connection import connect
    from sync.deploy import deploy
    from sync.dictionary import load_dictionary
    local = load_dictionary(Path(dictionary), Path(redcap_dir))
    plan = deploy(connect(_settings(config, insecure=insecure)), local, force=force,
                  dry_run=dry_run)
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
              help="SQLite file holding the server's projects (created if missing).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--token", default=None, help="API token of the first project (32 hex chars).")
@click.option("--super-token", default=None, help="64-char super token that may create projects.")
@click.option("--public-url", default="", help="Base URL links (survey links) are built from.")
@click.option("--faults", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Testing clients only: JSON file of faults to inject (sync/server/faults.py).")
@reports_errors
def serve_command(db_path: str, host: str, port: int, token: str | None,
                  super_token: str | None, public_url: str, faults: str | None) -> None:
    """Serve a REDCap-API-compatible server at http://HOST:PORT/api/ from a SQLite file.

    Example: ecrf serve --db redcap.sqlite --port 8080
    """
    import os
    from sync.server import project_token, serve
    if faults:
        os.environ["ECRF_SERVER_FAULTS"] = faults
    click.echo(f"API token: {project_token(db_path, token)}")
    click.echo(f"Serving http://{host}:{port}/api/", err=True)
    serve(db_path, host, port, token, super_token, public_url)


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
@click.option("--format", "formats", default="csv,parquet,xpt", show_default=True,
              help="Comma-separated table formats: csv, parquet, xpt.")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (TOML).")
@click.option("--insecure", is_flag=True, default=None, help="Allow plain http:// to a non-local host.")
@reports_errors
def export_command(out: str, deidentify: bool, formats: str, config: str | None,
                   insecure: bool | None) -> None:
    """Write the sponsor's data cut: typed tables, codebook, status, queries, SDTM XPT, aCRF, manifest.

    Example: ecrf export --out cuts/2026-11-30 --deidentify
    """
    from pathlib import Path
    from sync.export import FORMATS
    from sync.job import run_export
    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown:
        raise click.BadParameter(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(sorted(FORMATS))}")
    manifest = run_export(_settings(config, insecure=insecure), Path(out), deidentify=deidentify,
                          formats=chosen)
    click.echo(f"data cut of {manifest.records} subjects written to {out} (see {out}/manifest.json)")
