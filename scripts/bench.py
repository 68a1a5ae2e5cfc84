#!/usr/bin/env python
"""Benchmark of the nightly sync and the data cut on synthetic trials against the embedded server.

For each size (subjects, every event of the demo trial): a fresh `ecrf serve`, the CRF deployed
and the demo records loaded into two projects. On the first, the sync runs in a child process
(full run, an unchanged night, a night after 1% of the subjects changed), which reports its
own time, API calls, records pulled and written and peak memory. The server logs as REDCap does
(every export, the sync's own included, is a log entry), so the API calls of the unchanged and
the 1%-changed nights are what a real REDCap would see. On the second, the same I/O is done raw
with PyCap, in the same batches: export every record, import exactly the cells the sync wrote.
The ratio "sync / raw" is what the sync costs on top of the unavoidable API traffic. Then the
data cut of the first project runs as a user runs it (`ecrf export --out DIR --config FILE`, in
a child process that reports its own peak memory), against a raw PyCap export of the same
records: "cut / raw export". With `--rules`, rule evaluation vectorised against row by row
(scripts/bench_logic.py's rules and records). Not a test: figures depend on the machine.

Usage: .venv/bin/python scripts/bench.py [--sizes 1000,10000,30000] [--batch-size 500] [--rules]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
from pydantic import SecretStr
from redcap import Project

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"ratio": "<= 1.25x at 10,000", "rerun_written": "0", "rerun_calls": "<= 4",
         "change_pulled": "= 1% changed", "speedup": ">= 50x",
         "peak_mib": "<= 400 MiB at 10,000, 30,000 <= 10% above 10,000 (#17)",
         "cut_peak_mib": "<= 400 MiB at 10,000, 30,000 <= 10% above 10,000 (#17)",
         "cut_ratio": "<= 1.5x (#17)"}


def child(settings_json: str) -> None:
    """One `run_sync` in this process; prints its counts, seconds and peak RSS as JSON."""
    from sync.config import Settings
    from sync.job import run_sync
    from sync.memory import steady_allocator
    steady_allocator()  # as the `ecrf` command sets it
    settings = Settings(**json.loads(settings_json))
    started = time.perf_counter()
    summary = run_sync(settings)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), "full": summary.full_pull,
                      "run_id": summary.run_id, "exit_code": summary.exit_code,
                      **summary.counts()}))


def peak_mib() -> float:
    """This process's peak resident memory. Linux's ru_maxrss would include the parent's
    memory at fork time (it survives exec); the kernel's VmHWM belongs to this program only."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cut_child(args_json: str) -> None:
    """`ecrf export ARGS` in this process, as the `ecrf` command runs it; then its seconds and
    peak RSS as JSON on the last line."""
    from sync.cli import cli
    started = time.perf_counter()
    try:
        cli.main(args=json.loads(args_json), prog_name="ecrf", standalone_mode=False)
    finally:
        print(json.dumps({"seconds": time.perf_counter() - started, "peak_mib": peak_mib()}))


def run_cut(settings, out: Path) -> dict:
    """The data cut of `settings`' project in a child process, as a user runs it."""
    config = out.parent / f"{out.name}.toml"
    config.write_text(f'state_path = "{settings.state_path}"\n'
                      f"rule_hold_share = {settings.rule_hold_share}\n"
                      f'redcap_dir = "{settings.redcap_dir}"\n'
                      f"timeout_seconds = {settings.timeout_seconds}\n"
                      f"batch_size = {settings.batch_size}\n")
    env = {**os.environ, "REDCAP_API_URL": settings.redcap_api_url,
           "REDCAP_API_TOKEN": settings.redcap_api_token.get_secret_value()}
    args = ["export", "--out", str(out), "--config", str(config)]
    done = subprocess.run([sys.executable, __file__, "--cut-child", json.dumps(args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cut child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def raw_export(settings, batch_size: int) -> float:
    """Seconds for PyCap alone to export every record, in the sync's batches."""
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value(),
                      timeout=600)
    started = time.perf_counter()
    ids = list(dict.fromkeys(r["record_id"] for r in project.export_records(
        format_type="json", fields=["record_id"])))
    for start in range(0, len(ids), batch_size):
        project.export_records(format_type="json", records=ids[start:start + batch_size])
    return time.perf_counter() - started


def run_child(settings) -> dict:
    values = {"REDCAP_API_URL": settings.redcap_api_url,
              "REDCAP_API_TOKEN": settings.redcap_api_token.get_secret_value(),
              "state_path": str(settings.state_path), "redcap_dir": str(settings.redcap_dir),
              "dictionary_path": str(settings.dictionary_path),
              "batch_size": settings.batch_size, "rule_hold_share": settings.rule_hold_share,
              "timeout_seconds": settings.timeout_seconds}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(values)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"sync child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def new_project(server, workdir: Path, name: str, records: pd.DataFrame, batch_size: int):
    from sync.config import Settings
    from sync.connection import connect
    from sync.demo import load_records
    from sync.crf.deploy import deploy
    from sync.crf.dictionary import load_dictionary
    token = server.create_project(title=name)
    # The demo trial repeats each rule's firing case every 40 subjects, so from a few hundred
    # subjects on the rule guard (#15.3) holds SUPPORT_END_BEFORE_START, every run would exit
    # 6 and no night would be incremental; a share of 1 holds nothing, as `--accept-rule` would.
    settings = Settings(REDCAP_API_URL=server.url, REDCAP_API_TOKEN=SecretStr(token),
                        state_path=workdir / f"{name}.sqlite", redcap_dir=ROOT / "redcap",
                        dictionary_path=ROOT / "data_dictionary.csv", batch_size=batch_size,
                        timeout_seconds=600, rule_hold_share=1.0)
    deploy(connect(settings), load_dictionary(settings.dictionary_path, settings.redcap_dir))
    load_records(settings, records, batch_size=batch_size)
    return settings


def raw_io(settings, payload: list[dict], batch_size: int) -> float:
    """Seconds for PyCap alone: every record out, the sync's cells in, in the sync's batches."""
    exported = raw_export(settings, batch_size)
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value(),
                      timeout=600)
    started = time.perf_counter()
    by_record: dict[str, list[dict]] = {}
    for row in payload:
        by_record.setdefault(row["record_id"], []).append(row)
    records = list(by_record)
    for start in range(0, len(records), batch_size):
        rows = [row for r in records[start:start + batch_size] for row in by_record[r]]
        values = [{k: v for k, v in row.items() if v != "" or k in ("redcap_repeat_instrument",)}
                  for row in rows]
        project.import_records(values, return_content="count")
    return exported + time.perf_counter() - started


def sync_payload(settings, run_id: str) -> list[dict]:
    """The import rows of the sync's run `run_id`, rebuilt from its ledger."""
    from sync.ledger import Ledger
    from sync.write import payload_rows
    ledger = Ledger(settings.state_path)
    try:
        writes = ledger.writes(run_id)
    finally:
        ledger.close()
    cells = writes[writes["new_value"] != ""]
    return payload_rows(cells, "record_id")


def change_one_percent(settings, records: pd.DataFrame) -> int:
    """A site edit in 1% of the subjects: birth date cleared at screening, so that eligibility
    becomes undetermined and an ELIG_MISSING query opens."""
    subjects = sorted(records["record_id"].unique())
    chosen = subjects[::100] or subjects[:1]
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value(),
                      timeout=600)
    project.import_records([{"record_id": r, "redcap_event_name": "screening_arm_1",
                             "brthdat": ""} for r in chosen], overwrite="overwrite")
    return len(chosen)


def rule_speedup(n_subjects: int) -> tuple[float, float]:
    """Record-rule evaluations per second, vectorised (shared Evaluator) and row by row."""
    spec = importlib.util.spec_from_file_location("bench_logic",
                                                  ROOT / "scripts" / "bench_logic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from sync.logic import parse
    trees, meta, today = [parse(r) for r in module.RULES], module.metadata(), date(2024, 12, 31)
    frame = module.subjects(n_subjects)
    rows = module.subjects(min(n_subjects, 1000))
    vectorised = module._best(lambda: module._run_shared(frame, meta, today, trees), 3)
    by_row = module._best(lambda: module._run_rows(rows, meta, today, trees), 1)
    return (len(frame) * len(trees) / vectorised, len(rows) * len(trees) / by_row)


def phase(n: int, what: str, result=None):
    """Say on stderr what is done, so a long run's figures are seen as they come."""
    print(f"{time.strftime('%H:%M:%S')} {n:,} subjects: {what}"
          + (f": {json.dumps(result)}" if result is not None else ""), file=sys.stderr,
          flush=True)
    return result


def bench_size(n: int, batch_size: int, rules: bool) -> dict:
    from sync.demo.data import demo_records
    from tests.conftest import PROJECT_TOKEN, SUPER_TOKEN, RedcapServer, free_port
    records = demo_records(n)
    rows = len(records)
    with tempfile.TemporaryDirectory(prefix=f"ecrf-bench-{n}-") as where:
        workdir = Path(where)
        server = RedcapServer(f"http://127.0.0.1:{free_port()}/api/", PROJECT_TOKEN,
                              SUPER_TOKEN, workdir / "redcap.sqlite", workdir / "server.log")
        server.start()
        try:
            synced = new_project(server, workdir, "sync", records, batch_size)
            phase(n, "loaded")
            first = phase(n, "full sync", run_child(synced))
            again = phase(n, "unchanged night", run_child(synced))
            changed = change_one_percent(synced, records)
            after_change = phase(n, "1% changed", run_child(synced))
            raw_export_seconds = phase(n, "raw export", raw_export(synced, batch_size))
            cut = phase(n, "cut", run_cut(synced, workdir / "cut"))
            raw = new_project(server, workdir, "raw", records, batch_size)
            del records
            raw_seconds = phase(n, "raw export and import", raw_io(
                raw, sync_payload(synced, first["run_id"]), batch_size))
        finally:
            server.stop()
    vectorised, by_row = rule_speedup(n) if rules else (float("nan"), 1.0)
    return {"subjects": n, "rows": rows, "sync_s": first["seconds"], "raw_s": raw_seconds,
            "ratio": first["seconds"] / raw_seconds, "api_calls": first["api_calls"],
            "records_written": first["records_written"], "peak_mib": first["peak_mib"],
            "rerun_s": again["seconds"], "rerun_written": again["records_written"],
            "rerun_calls": again["api_calls"], "rerun_peak_mib": again["peak_mib"],
            "changed": changed, "change_peak_mib": after_change["peak_mib"],
            "change_s": after_change["seconds"], "change_calls": after_change["api_calls"],
            "change_written": after_change["records_written"],
            "change_pulled": after_change["records_pulled"], "change_full": after_change["full"],
            "raw_export_s": raw_export_seconds, "cut_s": cut["seconds"],
            "cut_ratio": cut["seconds"] / raw_export_seconds, "cut_peak_mib": cut["peak_mib"],
            "speedup": vectorised / by_row}


def print_table(results: list[dict]) -> None:
    columns = [("subjects", "subjects", "{:,}"), ("rows", "rows", "{:,}"),
               ("full sync s", "sync_s", "{:.2f}"), ("raw I/O s", "raw_s", "{:.2f}"),
               ("sync/raw", "ratio", "{:.2f}x"), ("calls", "api_calls", "{}"),
               ("peak MiB", "peak_mib", "{:.0f}"), ("rerun s", "rerun_s", "{:.2f}"),
               ("unchanged written", "rerun_written", "{}"),
               ("unchanged calls", "rerun_calls", "{}"),
               ("unchanged peak MiB", "rerun_peak_mib", "{:.0f}"),
               ("1% changed", "changed", "{}"), ("1% s", "change_s", "{:.2f}"),
               ("1% pulled", "change_pulled", "{}"), ("1% full pull", "change_full", "{}"),
               ("1% calls", "change_calls", "{}"), ("1% written", "change_written", "{}"),
               ("1% peak MiB", "change_peak_mib", "{:.0f}"),
               ("raw export s", "raw_export_s", "{:.2f}"), ("cut s", "cut_s", "{:.2f}"),
               ("cut/raw export", "cut_ratio", "{:.2f}x"),
               ("cut peak MiB", "cut_peak_mib", "{:.0f}"),
               ("rules vec/row", "speedup", "{:.0f}x")]
    print("| " + " | ".join(label for label, _, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for result in results:
        print("| " + " | ".join("-" if result[key] != result[key] else fmt.format(result[key])
                                for _, key, fmt in columns) + " |")
    print("goals: " + "; ".join(f"{k} {v}" for k, v in GOALS.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rules", action="store_true",
                        help="also time rule evaluation, vectorised against row by row")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cut-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.cut_child:
        cut_child(args.cut_child)
        return
    sys.path.insert(0, str(ROOT))
    results = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        results.append(bench_size(n, args.batch_size, args.rules))
        print(f"{n:,} subjects done: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
