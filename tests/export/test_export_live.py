"""`ecrf export` against the embedded REDCap server over HTTP: the cut evaluates the rule
catalogue on exactly the records it exports, names where they came from, and regenerates byte
for byte with the same `--as-of`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner
from redcap import Project

from sync.cli import cli
from sync.export import Manifest
from sync.job import run_export, run_sync
from tests.test_faults import new_trial

AS_OF = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def test_cut_holds_what_a_sync_would_write_and_regenerates_byte_for_byte(redcap_server,
                                                                         tmp_path):
    settings = new_trial(redcap_server, tmp_path / "state.sqlite")
    first = run_export(settings, tmp_path / "a", now=AS_OF, formats=("csv", "xpt"))
    dry = run_sync(settings, dry_run=True, now=AS_OF.replace(tzinfo=None))
    assert first.pending_sync_cells == dry.cells_written > 0
    assert first.queries["Open"] == dry.queries_opened > 0
    assert first.source["sync_run"] is None and first.source["changed_records"] is None
    assert first.source["project_url"] == settings.redcap_api_url
    assert first.source["project_id"]
    token = settings.redcap_api_token.get_secret_value()
    env = {"REDCAP_API_URL": settings.redcap_api_url, "REDCAP_API_TOKEN": token}
    config = tmp_path / "ecrf.toml"
    config.write_text(f'state_path = "{settings.state_path}"\nredcap_dir = "{settings.redcap_dir}"\n'
                      f'rule_hold_min_records = {settings.rule_hold_min_records}\n')
    result = CliRunner().invoke(cli, ["export", "--out", str(tmp_path / "b"), "--config",
                                      str(config), "--format", "csv,xpt",
                                      "--as-of", "2026-11-20T09:30:00"], env=env)
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "b") == files(tmp_path / "a")


def test_cut_after_a_sync_names_the_run_and_the_records_changed_since(redcap_server, tmp_path):
    settings = new_trial(redcap_server, tmp_path / "state.sqlite")
    run = run_sync(settings, now=AS_OF.replace(tzinfo=None))
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": "01-002", "redcap_event_name": "screening_arm_1",
                             "height": "171"}])
    manifest = run_export(settings, tmp_path / "cut", now=AS_OF, formats=("csv",))
    assert manifest.source["sync_run"] == run.run_id
    assert manifest.source["changed_records"] == ["01-002"]
    assert Manifest.read(tmp_path / "cut" / "manifest.json") == manifest
    archived = (tmp_path / "cut" / "raw" / "records.csv").read_text()
    assert "01-002" in archived and "171" in archived


def test_cut_after_a_sync_evaluates_what_a_sync_would_and_holds_what_a_full_evaluation_holds(
        redcap_server, tmp_path, caplog):
    """After a sync every record it left alone already holds what it writes, so the cut
    evaluates only the records changed since, as a dry run would; its files are those of a cut
    that evaluates every record (one that knows of no sync), but for the manifest's source."""
    settings = new_trial(redcap_server, tmp_path / "state.sqlite")
    run_sync(settings, now=AS_OF.replace(tzinfo=None))
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    project.import_records([{"record_id": "01-002", "redcap_event_name": "screening_arm_1",
                             "brthdat": "1950-03-04"}])
    caplog.set_level("INFO", logger="sync.job")
    after = run_export(settings, tmp_path / "after", now=AS_OF)
    total = len(project.export_records(fields=["record_id"], events=["screening_arm_1"]))
    assert f"the last sync left 1 of {total} records to evaluate" in caplog.text
    dry = run_sync(settings, dry_run=True, now=AS_OF.replace(tzinfo=None))
    assert after.pending_sync_cells == dry.cells_written > 0
    unknown = settings.model_copy(update={"state_path": tmp_path / "elsewhere.sqlite"})
    whole = run_export(unknown, tmp_path / "whole", now=AS_OF)
    assert whole.source["sync_run"] is None and after.source["sync_run"]
    assert (whole.pending_sync_cells, whole.queries) == (after.pending_sync_cells,
                                                         after.queries)
    ours, theirs = files(tmp_path / "after"), files(tmp_path / "whole")
    assert ours.pop("manifest.json") != theirs.pop("manifest.json")
    assert ours == theirs


def test_cut_after_a_sync_with_other_settings_evaluates_every_record_as_the_sync_would(
        redcap_server, tmp_path, caplog):
    """Reading inclusion 3 on all respiratory values changes the run's fingerprint, so the
    next sync pulls every record again ("rules, settings or tool version changed"); so does
    the cut's evaluation."""
    settings = new_trial(redcap_server, tmp_path / "state.sqlite")
    run_sync(settings, now=AS_OF.replace(tzinfo=None))
    stricter = settings.model_copy(update={"i3_respiratory_reading": "all"})
    caplog.set_level("INFO", logger="sync.job")
    cut = run_export(stricter, tmp_path / "cut", now=AS_OF)
    assert "the last sync left" not in caplog.text
    dry = run_sync(stricter, dry_run=True, now=AS_OF.replace(tzinfo=None))
    assert dry.full_pull and cut.pending_sync_cells == dry.cells_written > 0


def test_cut_pulled_in_small_batches_is_the_cut_pulled_at_once(redcap_server, tmp_path):
    """`batch_size` subjects at a time through the whole cut (#17.2), de-identified too; a kit
    infused in two subjects of different batches is a KIT_REUSED query in both cuts (the cut
    reads the other batches' kits as the sync does, `sync.batches`)."""
    settings = new_trial(redcap_server, tmp_path / "state.sqlite")
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    infused = [row for row in project.export_records(fields=["record_id", "inf_given", "inf_kit"])
               if row["inf_given"] == "1" and row["inf_kit"]]
    first, last = infused[0], infused[-1]
    assert first["record_id"] != last["record_id"]
    project.import_records([{"record_id": last["record_id"],
                             "redcap_event_name": last["redcap_event_name"],
                             "inf_kit": first["inf_kit"]}])
    for name, options in (("blinded", {}), ("deidentified", {"deidentify": True})):
        whole = run_export(settings.model_copy(update={"batch_size": 10_000}),
                           tmp_path / f"{name}-whole", now=AS_OF, **options)
        batched = run_export(settings.model_copy(update={"batch_size": 4}),
                             tmp_path / f"{name}-batched", now=AS_OF, **options)
        assert batched == whole
        assert files(tmp_path / f"{name}-batched") == files(tmp_path / f"{name}-whole")
    listing = (tmp_path / "blinded-batched" / "status" / "queries.csv").read_text()
    assert f"Kit {first['inf_kit']} infused" in listing and last["record_id"] in listing
