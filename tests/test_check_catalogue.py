"""`ecrf check` reads the rule catalogue: each one-fault `redcap/rules.csv` is caught at its row
and column, and the trial's own catalogue passes (through `ecrf check`: tests/test_check.py)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sync.crf.check_catalogue import catalogue_problems
from sync.crf.dictionary import load_dictionary

ROOT = Path(__file__).resolve().parents[1]
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


def _catalogue_with(tmp_path: Path, rule_id: str, column: str, value: str) -> Path:
    """A copy of the trial's catalogue whose rule `rule_id` has `column` set to `value`."""
    path = tmp_path / "rules.csv"
    with (ROOT / "redcap" / "rules.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0])
    for row in rows:
        if row["rule_id"] == rule_id:
            row[column] = value
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _catalogue_problems(path: Path) -> list[str]:
    return [f"{w.file}:{w.row}: column \"{w.column}\": {message}"
            for w, message, _ in catalogue_problems(path, DICTIONARY, "redcap/rules.csv")]


def _row(rule_id: str) -> int:
    with (ROOT / "redcap" / "rules.csv").open(newline="", encoding="utf-8") as handle:
        return [r["rule_id"] for r in csv.DictReader(handle)].index(rule_id) + 2


@pytest.mark.parametrize(("rule_id", "column", "value", "message"), [
    ("UNIT_HGB", "logic", "[hgb] < 30 and (", 'column "logic": the logic does not parse: '),
    ("UNIT_HGB", "logic", "[hgbb] < 30", 'column "logic": the logic\'s [hgbb] (line 1, column 1) '
                                         'names field "hgbb", which is not in the dictionary'),
    ("DOSE_INELIGIBLE", "logic", "[inf_given] = '1' and [screening_arm_9][elig_calc] <> '1'",
     'column "logic": the logic\'s [screening_arm_9][elig_calc] (line 1, column 23) names event '
     '"screening_arm_9", which is not in events.csv'),
    ("INF_ORDER", "event", "day_0_arm_1 day_33_arm_1",
     'column "event": event "day_33_arm_1" is not in events.csv'),
    ("UNIT_HGB", "instrument", "screening_lab", 'column "instrument": instrument '
                                                '"screening_lab" is not in the data dictionary'),
    ("UNIT_HGB", "field", "hgbb", 'column "field": field "hgbb" is not in the data dictionary'),
    ("SAE_LATE", "python", "SAE_LAET", 'column "python": python "SAE_LAET": no coded rule '
                                       'registered as "SAE_LAET"'),
    ("SAE_LATE", "message", "Serious AE {ae_trm} reported late.",
     'column "message": placeholder "{ae_trm}" is not a value coded rule "SAE_LATE" provides'),
    ("UNIT_HGB", "message", "Haemoglobin {hgb_value} looks like g/dL.",
     'column "message": placeholder "{hgb_value}" is not a value the record provides'),
    ("UNIT_HGB", "message", "Haemoglobin {hgb looks like g/dL.",
     'column "message": the message cannot be filled: '),
    ("UNIT_HGB", "severity", "high", 'column "severity": severity "high": Input should be '),
])
def test_a_one_fault_catalogue_is_caught_at_its_row_and_column(tmp_path, rule_id, column, value,
                                                                message):
    found = _catalogue_problems(_catalogue_with(tmp_path, rule_id, column, value))
    assert len(found) == 1, found
    assert found[0].startswith(f"redcap/rules.csv:{_row(rule_id)}: {message}"), found


def test_a_repeated_rule_id_is_caught_where_it_repeats(tmp_path):
    found = _catalogue_problems(_catalogue_with(tmp_path, "UNIT_TBIL", "rule_id", "UNIT_HGB"))
    assert found == [f'redcap/rules.csv:{_row("UNIT_HGB")}: column "rule_id": rule "UNIT_HGB" '
                     f'is already defined on row {_row("UNIT_TBIL")}']


def test_the_trial_catalogue_has_no_fault(tmp_path):
    assert _catalogue_problems(_catalogue_with(tmp_path, "", "rule_id", "")) == []
