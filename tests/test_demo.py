"""The demo shows what the tool decides (#15.8): eligibility, queries as sites read them, and a
day of site and monitor work that the second sync handles as the contract says."""
from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from sync.cli import cli
from sync.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_shows_decisions_and_a_site_day_the_second_sync_handles(tmp_path):
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", subjects=40, project_dir=ROOT, say=lines.append)
    text = "\n".join(lines)
    assert result.records_loaded == 40
    table = text.split("what it decided", 1)[1].split("three of the queries", 1)[0]
    decisions = {m.group(1) for m in re.finditer(r"^\s+\d\d-\d{3}\s+(eligible|not eligible|undetermined)\s",
                                                 table, re.M)}
    assert decisions == {"eligible", "not eligible", "undetermined"}
    assert re.search(r"not eligible\s+\d+ of 13\s+[IE]\d", table), "failing criteria named"
    site_view = text.split("as a site user reads them on the form:\n", 1)[1].split("a day at", 1)[0]
    assert len(re.findall(r"^  \d\d-\d{3}, ", site_view, re.M)) == 3
    assert result.played == {"answered by the site": "Answered",
                             "corrected by the site": "Resolved",
                             "closed by the monitor": "Closed"}
    first, second, third = result.summaries
    assert first.queries_opened > 3
    assert (second.queries_resolved, second.queries_opened, second.queries_reopened) == (1, 0, 0)
    assert third.cells_written == 0
    assert 'response "Source document checked' in text


def test_demo_loads_exactly_the_subjects_asked_for_and_shows_progress(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--subjects", "3", "--workdir",
                                      str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert re.findall(r"loading demo subjects: (\d+)/3", result.output)[-1] == "3"
    assert "loaded 3 demo subjects" in result.output
    assert "data cut of 3 subjects" in result.output, "REDCap holds exactly 3 subjects"
    assert "too few queries among these subjects" in result.output
