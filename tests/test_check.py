"""`ecrf check`: one fault at a time in a small valid project, each found with its exact message.

The base project (tests/data/mini) is a three-instrument longitudinal project that passes with
no problem; each case changes one thing and expects exactly the problems that change causes.
"""
from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.crf.check import Problem, check_project, format_problems
from sync.cli import cli
from sync.crf.contract import (
    CONTRACT_EVENTS, CONTRACT_FIELDS, TRIAL_CONTRACT, Contract, ContractEvent, ContractField,
)
from sync.crf.redcap_spec import DD_HEADERS

MINI = Path(__file__).parent / "data" / "mini"
ROOT = Path(__file__).parent.parent
Edit = Callable[[Path], None]


def cell(field: str, header: str, value: str) -> Edit:
    """Set one cell of the dictionary row of `field`."""
    def edit(project: Path) -> None:
        path = project / "data_dictionary.csv"
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        [row] = [r for r in rows if r[0] == field]
        row[DD_HEADERS.index(header)] = value
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    return edit


def text(file: str, old: str, new: str, count: int = 1) -> Edit:
    """Replace text in one file of the project (the dictionary or a redcap/ file)."""
    def edit(project: Path) -> None:
        path = project / file
        content = path.read_text()
        assert old in content, f"{old!r} not in {file}"
        path.write_text(content.replace(old, new, count))
    return edit


DD = "data_dictionary.csv"
MAPPING, REPEATING = "redcap/instrument_event_mapping.csv", "redcap/repeating_instruments.csv"
A, B, D, F = DD_HEADERS[0], DD_HEADERS[1], DD_HEADERS[3], DD_HEADERS[5]
H, I, J, L = DD_HEADERS[7], DD_HEADERS[8], DD_HEADERS[9], DD_HEADERS[11]

FAULTS = [
    pytest.param(text(DD, "Field Note", "Notes"), [
        'data_dictionary.csv:1: column "Notes": column 7 is "Notes", expected "Field Note"'],
        id="misnamed-header"),
    pytest.param(text(DD, ",Field Annotation", ""), [
        "data_dictionary.csv:1: 17 columns, expected REDCap's 18 headers from "
        '"Variable / Field Name" to "Field Annotation"'], id="header-missing-a-column"),
    pytest.param(text(DD, "vit_note,vitals,,notes,Comments,,,,,,,,,,,,,",
                      "vit_note,vitals,notes,Comments"), [
        "data_dictionary.csv:21: the row has 4 cells, the header 18; a cell holds an unquoted "
        "comma or a line break? (row not checked)"], id="row-with-missing-cells"),
    pytest.param(cell("rr", A, "RR"), [
        f'data_dictionary.csv:10: column "{A}": field "RR": variable name "RR" may hold only '
        'lower-case letters, digits and _ (REDCap would rename it "rr")'], id="upper-case-name"),
    pytest.param(cell("vit_note", A, "2note"), [
        f'data_dictionary.csv:21: column "{A}": field "2note": variable name "2note" must start '
        "with a letter"], id="name-starts-with-digit"),
    pytest.param(cell("vit_note", A, "vit_note_"), [
        f'data_dictionary.csv:21: column "{A}": field "vit_note_": variable name "vit_note_" '
        "must not end with _"], id="name-ends-with-underscore"),
    pytest.param(cell("vit_note", A, "vit___note"), [
        f'data_dictionary.csv:21: column "{A}": field "vit___note": a variable name must not '
        "contain ___ (REDCap keeps it for checkbox export columns)"], id="name-with-triple-underscore"),
    pytest.param(cell("vit_note", A, "v" * 101), [
        f'data_dictionary.csv:21: column "{A}": field "{"v" * 101}": variable name is 101 '
        "characters long; REDCap allows 100"], id="name-too-long"),
    pytest.param(cell("vit_note", A, "action"), [
        f'data_dictionary.csv:21: column "{A}": field "action": "action" is a name REDCap '
        "reserves"], id="reserved-name"),
    pytest.param(cell("vit_note", A, "enrolment_complete"), [
        f'data_dictionary.csv:21: column "{A}": field "enrolment_complete": "enrolment_complete" '
        'clashes with the complete field REDCap adds to instrument "enrolment"'],
        id="form-status-clash"),
    pytest.param(cell("vit_note", A, "vdat"), [
        f'data_dictionary.csv:21: column "{A}": field "vdat": the name is already used at row 9'],
        id="duplicate-name"),
    pytest.param(text(DD, ",adverse_event,", ",Adverse_event,", -1), [
        f'data_dictionary.csv:22: column "{B}": field "ae_term": form name "Adverse_event" may '
        'hold only lower-case letters, digits and _ (REDCap would rename it "adverse_event")',
        'redcap/instrument_event_mapping.csv: instrument "Adverse_event" is not mapped to any event',
        'redcap/instrument_event_mapping.csv:5: column "form": instrument "adverse_event" is not '
        "in the data dictionary",
        'redcap/repeating_instruments.csv:2: column "form_name": instrument "adverse_event" is '
        "not in the data dictionary"], id="form-name-upper-case"),
    pytest.param(cell("record_id", D, "notes"), [
        f'data_dictionary.csv:2: column "{D}": field "record_id": the first field is the record '
        'ID and must be of type text, not "notes"'], id="record-id-not-text"),
    pytest.param(cell("oxygen", D, "select_one"), [
        f'data_dictionary.csv:19: column "{D}": field "oxygen": unknown field type "select_one"; '
        "REDCap knows calc, checkbox, descriptive, dropdown, file, notes, radio, slider, sql, "
        "text, truefalse, yesno"], id="unknown-field-type"),
    pytest.param(cell("ae_term", H, "integr"), [
        f'data_dictionary.csv:22: column "{H}": field "ae_term": unknown validation type "integr"'],
        id="unknown-validation"),
    pytest.param(cell("sex", H, "integer"), [
        f'data_dictionary.csv:7: column "{H}": field "sex": validation "integer" is allowed only '
        "on text fields, not radio"], id="validation-on-radio"),
    pytest.param(cell("rr", I, "five"), [
        f'data_dictionary.csv:10: column "{I}": field "rr": "five" is not an integer '
        '(validation "integer")'], id="min-not-an-integer"),
    pytest.param(cell("fio2", I, "101"), [
        f'data_dictionary.csv:14: column "{J}": field "fio2": maximum "100" is below minimum '
        '"101"'], id="min-above-max"),
    pytest.param(cell("icdat", I, "2024-02-30"), [
        f'data_dictionary.csv:4: column "{I}": field "icdat": "2024-02-30" is not a valid date '
        '(y-m-d) value (validation "date_ymd")'], id="impossible-date-minimum"),
    pytest.param(cell("comfort", J, "99.5"), [
        f'data_dictionary.csv:20: column "{J}": field "comfort": slider bound "99.5" must be '
        "an integer"], id="slider-bound-not-integer"),
    pytest.param(cell("sex", F, ""), [
        f'data_dictionary.csv:7: column "{F}": field "sex": a radio field needs choices '
        "(code, label | code, label)"], id="radio-without-choices"),
    pytest.param(cell("oxygen", F, "0, None | 1 x, Nasal cannula | 2, Mask"), [
        f'data_dictionary.csv:19: column "{F}": field "oxygen": choice code "1 x" may hold only '
        "digits, letters, . _ and - (or be a number)"], id="choice-code-with-space"),
    pytest.param(cell("sex", F, "1, Male | 1, Female"), [
        f'data_dictionary.csv:7: column "{F}": field "sex": choice code "1" is used twice'],
        id="duplicate-choice-code"),
    pytest.param(cell("sex", F, ", Male | 2, Female"), [
        f'data_dictionary.csv:7: column "{F}": field "sex": choice "Male" has no code'],
        id="choice-without-code"),
    pytest.param(cell("pregnant", F, "1, Yes | 0, No"), [
        f'data_dictionary.csv:8: column "{F}": field "pregnant": a yesno field has no choices; '
        "REDCap clears this cell"], id="choices-on-yesno"),
    pytest.param(cell("pf_ratio", F, ""), [
        f'data_dictionary.csv:15: column "{F}": field "pf_ratio": a calc field needs its '
        "equation here"], id="calc-without-equation"),
    pytest.param(cell("ae_desc", B, "enrolment"), [
        f'data_dictionary.csv:28: column "{B}": field "ae_desc": instrument "enrolment" '
        "continues here after other instruments (last seen at row 8); its rows must be "
        "contiguous"], id="form-not-contiguous"),
    pytest.param(cell("initials", DD_HEADERS[10], "yes"), [
        f'data_dictionary.csv:3: column "{DD_HEADERS[10]}": field "initials": "yes" must be y '
        "or blank"], id="identifier-not-y"),
    pytest.param(cell("sex", DD_HEADERS[13], "center"), [
        f'data_dictionary.csv:7: column "{DD_HEADERS[13]}": field "sex": "center" must be one '
        "of LV, LH, RV, RH or blank"], id="bad-alignment"),
    pytest.param(cell("oxygen", DD_HEADERS[15], "support_grid"), [
        f'data_dictionary.csv:19: column "{DD_HEADERS[15]}": field "oxygen": a matrix group '
        "holds only radio or checkbox fields, not dropdown"], id="matrix-of-dropdown"),
    pytest.param(cell("spo2_ra", L, "[spo2] <> '' and"), [
        f'data_dictionary.csv:12: column "{L}": field "spo2_ra": the branching logic does not '
        "parse: logic syntax error at line 1, column 14: unexpected 'a'; expected '+' or '-', "
        "'and', ',', '=', '<>' or '!=', '*' or '/', 'or', '<', '<=', '>' or '>=', ')'\n"
        "  [spo2] <> '' and\n               ^"], id="logic-does-not-parse"),
    pytest.param(cell("pregnant", L, "[gender] = '2'"), [
        f'data_dictionary.csv:8: column "{L}": field "pregnant": the branching logic\'s [gender] '
        '(line 1, column 1) names field "gender", which is not in the dictionary'],
        id="logic-unknown-field"),
    pytest.param(cell("preg_check", L, "[screening_arm_9][pregnant] = '1'"), [
        f'data_dictionary.csv:18: column "{L}": field "preg_check": the branching logic\'s '
        "[screening_arm_9][pregnant] (line 1, column 1) names event \"screening_arm_9\", which "
        "is not in events.csv"], id="logic-unknown-event"),
    pytest.param(cell("preg_check", L, "[logs_arm_1][pregnant] = '1'"), [
        f'data_dictionary.csv:18: column "{L}": field "preg_check": the branching logic\'s '
        "[logs_arm_1][pregnant] (line 1, column 1) reads instrument \"enrolment\" on event "
        '"logs_arm_1", where it is not designated'], id="logic-form-not-on-event"),
    pytest.param(cell("cough_days", L, "[symptoms(3)] = '1'"), [
        f'data_dictionary.csv:17: column "{L}": field "cough_days": the branching logic\'s '
        '[symptoms(3)] (line 1, column 1) names choice "3", which checkbox "symptoms" does not '
        "have"], id="logic-unknown-checkbox-code"),
    pytest.param(cell("cough_days", L, "[symptoms] = '1'"), [
        f'data_dictionary.csv:17: column "{L}": field "cough_days": the branching logic\'s '
        '[symptoms] (line 1, column 1) must name one choice of checkbox "symptoms", as '
        "[symptoms(code)]"], id="logic-checkbox-without-code"),
    pytest.param(cell("pf_ratio", F, "[pao2] / ([fio3] / 100)"), [
        f'data_dictionary.csv:15: column "{F}": field "pf_ratio": the calculation\'s [fio3] '
        '(line 1, column 11) names field "fio3", which is not in the dictionary'],
        id="calc-unknown-field"),
    pytest.param(cell("ae_desc", B, "ae_guide"), [
        'redcap/instrument_event_mapping.csv: instrument "ae_guide" is not mapped to any event'],
        id="instrument-not-mapped"),
    pytest.param(text(MAPPING, "1,day_7_arm_1,vitals", "1,day_8_arm_1,vitals"), [
        'redcap/instrument_event_mapping.csv:4: column "unique_event_name": event "day_8_arm_1" '
        "is not in events.csv"], id="mapping-unknown-event"),
    pytest.param(text(MAPPING, "1,day_7_arm_1,vitals", "1,day_7_arm_1,labs"), [
        'redcap/instrument_event_mapping.csv:4: column "form": instrument "labs" is not in the '
        "data dictionary"], id="mapping-unknown-instrument"),
    pytest.param(text(REPEATING, "logs_arm_1,adverse_event", "day_7_arm_1,adverse_event"), [
        'redcap/repeating_instruments.csv:2: column "form_name": instrument "adverse_event" '
        'repeats on event "day_7_arm_1" but is not mapped to it'], id="repeating-not-mapped"),
    pytest.param(text(REPEATING, "[ae_term]", "[ae_trm]"), [
        'redcap/repeating_instruments.csv:2: column "custom_form_label": the label pipes '
        "[ae_trm], which is not a field of the data dictionary"],
        id="repeating-label-pipes-unknown-field"),
    pytest.param(text("redcap/events.csv", "day_7_arm_1,,7,", "day_7_arm_1,,seven,"), [
        'redcap/events.csv:3: column "day_offset": event "day_7_arm_1": day_offset "seven" must '
        "be a number (days)"], id="event-offset-not-numeric"),
    pytest.param(text("redcap/events.csv", "Logs,1,logs_arm_1", "Logs,1,day_7_arm_1"), [
        'redcap/events.csv:4: column "unique_event_name": event "day_7_arm_1" is listed twice',
        'redcap/instrument_event_mapping.csv: instrument "adverse_event" is not mapped to any event',
        'redcap/instrument_event_mapping.csv:5: column "unique_event_name": event "logs_arm_1" '
        "is not in events.csv",
        'redcap/repeating_instruments.csv:2: column "event_name": event "logs_arm_1" is not in '
        "events.csv"], id="duplicate-event-name"),
]


def _project(tmp_path: Path, edit: Edit | None = None) -> tuple[Path, Path]:
    project = tmp_path / "project"
    shutil.copytree(MINI, project)
    if edit:
        edit(project)
    return project / "data_dictionary.csv", project / "redcap"


def _run_cli(dictionary: Path, redcap: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", str(dictionary), "--redcap-dir", str(redcap), *extra])
    return result.exit_code, result.output


def test_the_mini_project_has_no_problem(tmp_path: Path) -> None:
    dictionary, redcap = _project(tmp_path)
    assert check_project(dictionary, redcap, contract=None) == []
    assert _run_cli(dictionary, redcap, "--no-contract") == (0, "0 errors, 0 warnings\n")


@pytest.mark.parametrize(("edit", "expected"), FAULTS)
def test_one_fault_is_found_with_its_message(tmp_path: Path, edit: Edit, expected: list[str]) -> None:
    dictionary, redcap = _project(tmp_path, edit)
    problems = check_project(dictionary, redcap, contract=None)
    assert [str(p) for p in problems] == expected
    count = f"{len(expected)} error{'s' * (len(expected) != 1)}, 0 warnings"
    assert _run_cli(dictionary, redcap, "--no-contract") == (1, "\n".join([*expected, count]) + "\n")


def test_legacy_validation_is_only_a_warning_and_exits_zero(tmp_path: Path) -> None:
    dictionary, redcap = _project(tmp_path, cell("rr", H, "int"))
    problems = check_project(dictionary, redcap, contract=None)
    assert problems == [Problem("data_dictionary.csv", 10, H, 'field "rr": REDCap converts the '
                                'legacy validation "int" to "integer"', "warning")]
    assert _run_cli(dictionary, redcap, "--no-contract") == (0, (
        f'data_dictionary.csv:10: warning: column "{H}": field "rr": REDCap converts the legacy '
        'validation "int" to "integer"\n0 errors, 1 warning\n'))


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    def two_faults(project: Path) -> None:
        cell("sex", F, "1, Male | 1, Female")(project)
        cell("rr", I, "five")(project)
    dictionary, redcap = _project(tmp_path, two_faults)
    assert [(p.row, p.column) for p in check_project(dictionary, redcap, contract=None)] == [
        (7, F), (10, I)]


def test_a_missing_dictionary_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    problems = check_project(tmp_path / "data_dictionary.csv", tmp_path / "redcap", contract=None)
    assert format_problems(problems) == (
        f"data_dictionary.csv: file not found ({tmp_path / 'data_dictionary.csv'})\n"
        "1 error, 0 warnings")


# -- the contract ------------------------------------------------------------------------------

MINI_CONTRACT = Contract(
    fields=(
        ContractField("record_id", "enrolment", ("screening_arm_1",), ("text",)),
        ContractField("age", "enrolment", ("screening_arm_1",), ("text",), "integer", readonly=True),
        ContractField("sex", "enrolment", ("screening_arm_1",), ("radio",),
                      choices=(("1", "Male"), ("2", "Female"))),
        ContractField("fio2", "vitals", ("screening_arm_1", "day_7_arm_1"), ("text",), "integer",
                      validation_min="21", validation_max="100"),
        ContractField("pf_ratio", "vitals", ("screening_arm_1",), ("calc",),
                      calculation="[pao2] / ([fio2] / 100)"),
        ContractField("ae_grade", "adverse_event", ("logs_arm_1",), ("radio",),
                      choices=tuple((str(g), None) for g in range(1, 6))),
    ),
    events=(ContractEvent("screening_arm_1", "Screening"), ContractEvent("day_7_arm_1", "Day 7"),
            ContractEvent("logs_arm_1", "Logs")),
    repeating=(("logs_arm_1", "adverse_event"),),
)

CONTRACT_FAULTS = [
    pytest.param(cell("fio2", J, "99"), [
        f'data_dictionary.csv:14: column "{J}": field "fio2": the contract\'s max is "100"'],
        id="contract-range"),
    pytest.param(cell("sex", F, "1, Male | 2, Female | 3, Other"), [
        f'data_dictionary.csv:7: column "{F}": field "sex": the contract\'s codes are "1, Male | '
        '2, Female"'], id="contract-codes"),
    pytest.param(cell("age", DD_HEADERS[17], ""), [
        f'data_dictionary.csv:6: column "{DD_HEADERS[17]}": field "age": the sync writes this '
        "field: it needs @READONLY"], id="contract-readonly"),
    pytest.param(cell("age", H, "number"), [
        f'data_dictionary.csv:6: column "{H}": field "age": the contract\'s validation is '
        '"integer"'], id="contract-validation"),
    pytest.param(cell("ae_grade", D, "dropdown"), [
        f'data_dictionary.csv:25: column "{D}": field "ae_grade": the contract makes it radio'],
        id="contract-type"),
    pytest.param(cell("fio2", A, "fio2_pct"), [
        f'data_dictionary.csv: column "{A}": contract field "fio2" (instrument "vitals") is '
        "missing",
        f'data_dictionary.csv:15: column "{F}": field "pf_ratio": the calculation\'s [fio2] '
        '(line 1, column 11) names field "fio2", which is not in the dictionary'],
        id="contract-field-missing"),
    pytest.param(text("redcap/instrument_event_mapping.csv", "1,day_7_arm_1,vitals\n", ""), [
        'redcap/instrument_event_mapping.csv: the contract puts instrument "vitals" (field '
        '"fio2") on event "day_7_arm_1"'], id="contract-mapping"),
    pytest.param(text("redcap/repeating_instruments.csv", "logs_arm_1,adverse_event,[ae_term]\n", ""), [
        'redcap/repeating_instruments.csv: the contract makes instrument "adverse_event" repeat '
        'on event "logs_arm_1"'], id="contract-repeating"),
]


def test_the_mini_project_keeps_its_mini_contract(tmp_path: Path) -> None:
    dictionary, redcap = _project(tmp_path)
    assert check_project(dictionary, redcap, contract=MINI_CONTRACT) == []


@pytest.mark.parametrize(("edit", "expected"), CONTRACT_FAULTS)
def test_a_contract_fault_is_found(tmp_path: Path, edit: Edit, expected: list[str]) -> None:
    dictionary, redcap = _project(tmp_path, edit)
    assert [str(p) for p in check_project(dictionary, redcap, contract=MINI_CONTRACT)] == expected


def test_a_contract_label_difference_is_a_warning(tmp_path: Path) -> None:
    dictionary, redcap = _project(tmp_path, cell("sex", F, "1, Man | 2, Female"))
    assert check_project(dictionary, redcap, contract=MINI_CONTRACT) == [Problem(
        "data_dictionary.csv", 7, F, 'field "sex": the contract labels code 1 "Male", not "Man"',
        "warning")]


def test_the_trial_contract_lists_every_row_of_crf_contract_md() -> None:
    names = [f.variable for f in CONTRACT_FIELDS]
    assert len(names) == len(set(names)) == 107
    assert [e.unique_event_name for e in CONTRACT_EVENTS] == [
        "screening_arm_1", "day_0_arm_1", "day_3_arm_1", "day_6_arm_1", "day_14_arm_1",
        "day_28_arm_1", "day_90_arm_1", "logs_arm_1"]
    by_name = {f.variable: f for f in CONTRACT_FIELDS}
    assert by_name["fio2"] == ContractField("fio2", "respiratory", ("screening_arm_1",),
                                            ("text",), "integer", validation_min="21",
                                            validation_max="100")
    assert by_name["inf_start"] == ContractField(
        "inf_start", "infusion", ("day_0_arm_1", "day_3_arm_1", "day_6_arm_1"), ("text",), "time")
    assert by_name["exc9"].choices == (("1", "Present"), ("0", "Absent"))
    assert by_name["dq_status"].field_type == "radio"
    assert by_name["elig_calc"].field_type == "radio|dropdown"


def test_the_trial_dictionary_and_redcap_files_pass() -> None:
    if not (ROOT / "data_dictionary.csv").exists():
        pytest.skip("data_dictionary.csv is not written yet (helper H3)")
    problems = check_project(ROOT / "data_dictionary.csv", ROOT / "redcap", TRIAL_CONTRACT)
    assert [str(p) for p in problems if p.severity == "error"] == []
    exit_code, output = _run_cli(ROOT / "data_dictionary.csv", ROOT / "redcap")
    assert exit_code == 0, output


CONTRACT_MD = ROOT.parent / "shared" / "crf-contract.md"


def _first_table(text: str, heading: str) -> list[list[str]]:
    """Cells of the first table under `heading` in crf-contract.md (header and rule skipped)."""
    section = text.split(heading, 1)[1]
    lines = section[section.index("\n|"):].strip().splitlines()
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table[2:]


def _names(cell: str) -> list[str]:
    """`a`, `b` -> [a, b]; `inc1` .. `inc4` -> [inc1, inc2, inc3, inc4]."""
    if ".." in cell:
        first, last = re.findall(r"`([a-z_]+)(\d+)`", cell)
        return [f"{first[0]}{n}" for n in range(int(first[1]), int(last[1]) + 1)]
    return re.findall(r"`([a-z0-9_]+)`", cell)


@pytest.mark.skipif(not CONTRACT_MD.exists(), reason=f"{CONTRACT_MD} is not beside the repository")
def test_the_contract_data_holds_every_field_and_event_of_crf_contract_md() -> None:
    text = CONTRACT_MD.read_text(encoding="utf-8")
    wanted: dict[str, str] = {}
    for cells in _first_table(text, "## Fields the checks read"):
        form = _names(cells[1])[0]
        wanted.update({name: form for name in _names(cells[0])})
    for cells in _first_table(text, "## Fields the sync writes"):
        wanted.update({name: wanted.get(name, "eligibility") for name in _names(cells[0])})
    for cells in _first_table(text, "## Data queries"):
        wanted.update({name: "dq_query" for name in _names(cells[0])})
    assert {f.variable: f.form for f in CONTRACT_FIELDS} == wanted
    events = [_names(cells[1])[0] for cells in _first_table(text, "## Events")]
    assert [e.unique_event_name for e in CONTRACT_EVENTS] == events
