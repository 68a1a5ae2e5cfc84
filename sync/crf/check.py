"""`ecrf check`: every problem REDCap's dictionary upload would raise, and more, all at once.

In: `data_dictionary.csv` and `redcap/`; out: a list of `Problem`s (file, row, column, message,
severity) sorted by place. Dictionary rows are checked as REDCap 15.7.6 `MetaData::error_checking`
does (redcap-semantics.md §4); logic must parse and name fields, events and checkbox codes that
exist; `redcap/` must be consistent with the dictionary; the CRF contract must hold.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from sync.crf.check_catalogue import catalogue_problems
from sync.crf.check_rules import (
    ROW_RULES, Found, RowContext, Where, logic_problems, matrix_problems,
)
from sync.crf.contract import TRIAL_CONTRACT, Contract, ContractField
from sync.crf.dictionary import (
    REDCAP_FILES, Dictionary, normalise_metadata, read_csv_rows, read_csv_table, read_project_info,
)
from sync.errors import DictionaryError, LogicSyntaxError
from sync.logic import parse
from sync.crf.project_access import access_problems
from sync.crf.redcap_spec import DD_HEADERS, METADATA_KEYS, is_php_numeric

__all__ = ["Problem", "check_project", "format_problems", "has_errors"]

Severity = Literal["error", "warning"]
DICTIONARY_FILE = "data_dictionary.csv"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the project files, at a row (header = 1) and column of one file."""

    file: str
    row: int | None
    column: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        place = self.file + (f":{self.row}" if self.row is not None else "")
        label = "warning: " if self.severity == "warning" else ""
        column = f'column "{self.column}": ' if self.column else ""
        return f"{place}: {label}{column}{self.message}"


def has_errors(problems: Iterable[Problem]) -> bool:
    """True when any problem is an error (the exit code of `ecrf check` is then 1)."""
    return any(p.severity == "error" for p in problems)


def format_problems(problems: list[Problem]) -> str:
    """One line per problem, then a count: what a data manager reads after `ecrf check`."""
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    return "\n".join([*(str(p) for p in problems), counts])


def check_project(dictionary_path: Path = Path(DICTIONARY_FILE), redcap_dir: Path = Path("redcap"),
                  contract: Contract | None = TRIAL_CONTRACT) -> list[Problem]:
    """Check the dictionary, `redcap/` and (unless `contract` is None) the CRF contract.

    Never stops at the first problem; unreadable files become problems too.

    Examples:
        >>> problems = check_project(Path("data_dictionary.csv"), Path("redcap"))
        >>> print(format_problems(problems))
    """
    found: list[Problem] = []
    dictionary_file, redcap = dictionary_path.name, redcap_dir.name
    metadata = _read_dictionary(dictionary_path, dictionary_file, found)
    tables = _read_redcap(redcap_dir, found)
    project = _read_project(redcap_dir, found)
    if metadata is None:
        return _sorted(found, dictionary_file, redcap)
    frames = {name: (pd.DataFrame(columns=list(columns), dtype=object) if tables[name] is None
                     else tables[name].loc[:, list(columns)].reset_index(drop=True))
              for name, columns in REDCAP_FILES.items()}
    dictionary = Dictionary(
        metadata=normalise_metadata(metadata.reset_index(drop=True)),
        events=frames["events.csv"], arms=frames["arms.csv"],
        mapping=frames["instrument_event_mapping.csv"],
        repeating=frames["repeating_instruments.csv"], project=project)
    ctx = RowContext(dictionary, metadata, dictionary_file)
    found += _emit(_dictionary_problems(ctx))
    found += _emit(_redcap_problems(dictionary, tables, redcap))
    found += _emit(catalogue_problems(redcap_dir / "rules.csv", dictionary, f"{redcap}/rules.csv"))
    found += _emit(access_problems(dictionary, redcap_dir))
    if contract is not None:
        found += _emit(_contract_problems(ctx, contract, redcap))
    return _sorted(found, dictionary_file, redcap)


def _emit(places: Iterable[Found]) -> list[Problem]:
    return [Problem(w.file, w.row, w.column, message, severity) for w, message, severity in places]


def _sorted(problems: list[Problem], dictionary_file: str, redcap: str) -> list[Problem]:
    files = [dictionary_file, f"{redcap}/project.csv"] + [f"{redcap}/{n}" for n in REDCAP_FILES]
    files.append(f"{redcap}/rules.csv")
    columns = list(DD_HEADERS)

    def key(p: Problem) -> tuple[int, int, int]:
        file_rank = files.index(p.file) if p.file in files else len(files)
        column_rank = columns.index(p.column) if p.column in columns else -1
        return (file_rank, p.row or 0, column_rank)

    return sorted(problems, key=key)


# -- reading ---------------------------------------------------------------------------------

def _read_dictionary(path: Path, file: str, found: list[Problem]) -> pd.DataFrame | None:
    """The dictionary's rows under the METADATA_KEYS columns, indexed by spreadsheet row."""
    try:
        rows = read_csv_rows(path)
    except DictionaryError as exc:
        found.append(_problem_from(file, exc))
        return None
    if not rows:
        found.append(Problem(file, 1, None, "the file is empty; expected REDCap's 18 headers"))
        return None
    header = [h.strip() for h in rows[0]]
    found += _header_problems(file, header)
    positions = _column_positions(header)
    if positions is None:
        return None
    body: dict[int, list[str]] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            found.append(Problem(file, number, None, f"the row has {len(cells)} cells, the header "
                                                     f"{len(header)}; a cell holds an unquoted "
                                                     "comma or a line break? (row not checked)"))
            continue
        body[number] = [cells[i] for i in positions]
    return pd.DataFrame(list(body.values()), columns=list(METADATA_KEYS), index=list(body),
                        dtype=object)


def _header_problems(file: str, header: list[str]) -> list[Problem]:
    if len(header) != len(DD_HEADERS):
        return [Problem(file, 1, None, f"{len(header)} columns, expected REDCap's 18 headers "
                                       f'from "{DD_HEADERS[0]}" to "{DD_HEADERS[-1]}"')]
    return [Problem(file, 1, found, f'column {i} is "{found}", expected "{wanted}"')
            for i, (found, wanted) in enumerate(zip(header, DD_HEADERS), start=1) if found != wanted]


def _column_positions(header: list[str]) -> list[int] | None:
    """Where each of the 18 columns is: by name when all are there, else by position."""
    if all(name in header for name in DD_HEADERS):
        return [header.index(name) for name in DD_HEADERS]
    if len(header) == len(DD_HEADERS):
        return list(range(len(DD_HEADERS)))
    return None


def _read_redcap(redcap_dir: Path, found: list[Problem]) -> dict[str, pd.DataFrame | None]:
    tables: dict[str, pd.DataFrame | None] = {}
    for name, columns in REDCAP_FILES.items():
        path = redcap_dir / name
        tables[name] = None
        if not path.exists():
            continue
        try:
            tables[name] = read_csv_table(path, columns)
        except DictionaryError as exc:
            found.append(_problem_from(f"{redcap_dir.name}/{name}", exc))
    return tables


def _read_project(redcap_dir: Path, found: list[Problem]) -> dict[str, str]:
    try:
        return read_project_info(redcap_dir / "project.csv")
    except DictionaryError as exc:
        found.append(_problem_from(f"{redcap_dir.name}/project.csv", exc))
        return {}


def _problem_from(file: str, exc: DictionaryError) -> Problem:
    """A reading error (`events.csv:1: message`) as a Problem of `file`."""
    match = re.match(r"^[^:]+(?::(\d+))?: (.*)$", str(exc), re.S)
    row, message = (int(match[1]) if match and match[1] else None), (match[2] if match else str(exc))
    return Problem(file, row, None, message)


# -- the dictionary --------------------------------------------------------------------------

def _dictionary_problems(ctx: RowContext) -> Iterator[Found]:
    for rule in ROW_RULES:
        for row in ctx.rows:
            yield from rule(ctx, row)
    yield from _uniqueness(ctx)
    yield from _form_contiguity(ctx)
    yield from matrix_problems(ctx)
    yield from logic_problems(ctx)


def _uniqueness(ctx: RowContext) -> Iterator[Found]:
    first: dict[str, int] = {}
    for row in ctx.rows:
        name = ctx.raw(row, "field_name")
        if name in first:
            yield ctx.found(row, "field_name", f"the name is already used at row {first[name]}")
        elif name:
            first[name] = row


def _form_contiguity(ctx: RowContext) -> Iterator[Found]:
    """REDCap refuses an instrument whose rows are split by another's ("forms must be sequential")."""
    last: dict[str, int] = {}
    previous = ""
    for row in ctx.rows:
        form = ctx.raw(row, "form_name")
        if form and form != previous and form in last:
            yield ctx.found(row, "form_name", f'instrument "{form}" continues here after other '
                                              f"instruments (last seen at row {last[form]}); "
                                              "its rows must be contiguous")
        if form:
            last[form] = row
        previous = form


# -- redcap/ ---------------------------------------------------------------------------------

def _numbered(table: pd.DataFrame | None) -> Iterator[tuple[int, pd.Series]]:
    yield from () if table is None else table.iterrows()


def _redcap_problems(dictionary: Dictionary, tables: dict[str, pd.DataFrame | None],
                     redcap: str) -> Iterator[Found]:
    """events, arms, mapping and repeating instruments agree with each other and the dictionary."""
    files = {name: f"{redcap}/{name}" for name in REDCAP_FILES}
    events_file, mapping_file = files["events.csv"], files["instrument_event_mapping.csv"]
    if (tables["events.csv"] is None) != (tables["instrument_event_mapping.csv"] is None):
        missing = events_file if tables["events.csv"] is None else mapping_file
        yield _problem(missing, None, None, "the file is missing; a longitudinal project needs "
                                            "events.csv and instrument_event_mapping.csv")
    yield from _arm_problems(tables["arms.csv"], files["arms.csv"])
    yield from _event_problems(tables["events.csv"], dictionary, events_file)
    yield from _mapping_problems(tables["instrument_event_mapping.csv"], dictionary, mapping_file)
    yield from _repeating_problems(tables["repeating_instruments.csv"], dictionary,
                                   files["repeating_instruments.csv"])


def _problem(file: str, row: int | None, column: str | None, message: str,
             severity: Severity = "error") -> Found:
    return Where(file, row, column), message, severity


def _arm_problems(arms: pd.DataFrame | None, file: str) -> Iterator[Found]:
    seen: set[str] = set()
    for row, arm in _numbered(arms):
        number = arm["arm_num"]
        if not re.fullmatch(r"[1-9]\d*", number):
            yield _problem(file, row, "arm_num", f'arm number "{number}" must be a positive integer')
        elif number in seen:
            yield _problem(file, row, "arm_num", f"arm {number} is listed twice")
        if not arm["name"].strip():
            yield _problem(file, row, "name", f"arm {number} has no name")
        seen.add(number)


def _event_problems(events: pd.DataFrame | None, dictionary: Dictionary,
                    file: str) -> Iterator[Found]:
    seen: set[str] = set()
    arms = set(dictionary.arms["arm_num"])
    for row, event in _numbered(events):
        name = event["unique_event_name"]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            yield _problem(file, row, "unique_event_name", f'unique event name "{name}" may hold '
                                                           "only a-z, 0-9 and _, starting with a letter")
        elif name in seen:
            yield _problem(file, row, "unique_event_name", f'event "{name}" is listed twice')
        seen.add(name)
        if not event["event_name"].strip():
            yield _problem(file, row, "event_name", f'event "{name}" has no name')
        if arms and event["arm_num"] not in arms:
            yield _problem(file, row, "arm_num", f'event "{name}" is on arm "{event["arm_num"]}", '
                                                 "which is not in arms.csv")
        for column in ("day_offset", "offset_min", "offset_max"):
            value = event[column].strip()
            if value and not is_php_numeric(value):
                yield _problem(file, row, column, f'event "{name}": {column} "{value}" must be a '
                                                  "number (days)")
            elif value and column != "day_offset" and float(value) < 0:
                yield _problem(file, row, column, f'event "{name}": {column} "{value}" must not be '
                                                  "negative")
        yield from _piped_fields(dictionary, file, row, "custom_event_label",
                                 event["custom_event_label"])


def _mapping_problems(mapping: pd.DataFrame | None, dictionary: Dictionary,
                      file: str) -> Iterator[Found]:
    arm_of = dict(zip(dictionary.events["unique_event_name"], dictionary.events["arm_num"]))
    seen: set[tuple[str, str]] = set()
    for row, pair in _numbered(mapping):
        event, form, arm = pair["unique_event_name"], pair["form"], pair["arm_num"]
        if event not in arm_of:
            yield _problem(file, row, "unique_event_name", f'event "{event}" is not in events.csv')
        elif arm_of[event] != arm:
            yield _problem(file, row, "arm_num", f'event "{event}" is on arm {arm_of[event]}, '
                                                 f"not arm {arm}")
        if form not in dictionary.forms:
            yield _problem(file, row, "form", f'instrument "{form}" is not in the data dictionary')
        if (event, form) in seen:
            yield _problem(file, row, None, f'instrument "{form}" is mapped to event "{event}" '
                                            "twice", "warning")
        seen.add((event, form))
    if mapping is not None:
        for form in dictionary.forms:
            if not dictionary.events_of_form(form):
                yield _problem(file, None, None, f'instrument "{form}" is not mapped to any event')


def _repeating_problems(repeating: pd.DataFrame | None, dictionary: Dictionary,
                        file: str) -> Iterator[Found]:
    seen: set[tuple[str, str]] = set()
    longitudinal, events = dictionary.is_longitudinal, dictionary.event_names
    for row, item in _numbered(repeating):
        event, form = item["event_name"], item["form_name"]
        if longitudinal and event not in events:
            yield _problem(file, row, "event_name", f'event "{event}" is not in events.csv')
        if form and form not in dictionary.forms:
            yield _problem(file, row, "form_name", f'instrument "{form}" is not in the data '
                                                   "dictionary")
        elif form and longitudinal and event in events and form not in dictionary.forms_of_event(event):
            yield _problem(file, row, "form_name", f'instrument "{form}" repeats on event '
                                                   f'"{event}" but is not mapped to it')
        if (event, form) in seen:
            yield _problem(file, row, None, f'instrument "{form}" on event "{event}" is listed '
                                            "twice")
        seen.add((event, form))
        yield from _piped_fields(dictionary, file, row, "custom_form_label",
                                 item["custom_form_label"])


def _piped_fields(dictionary: Dictionary, file: str, row: int, column: str,
                  label: str) -> Iterator[Found]:
    """A custom label pipes `[field]` values in; each must be a field of the dictionary."""
    for name in re.findall(r"\[([a-z][a-z0-9_]*)\]", label):
        if name not in dictionary.fields:
            yield _problem(file, row, column, f'the label pipes [{name}], which is not a field '
                                              "of the data dictionary")


# -- the contract ----------------------------------------------------------------------------

def _contract_problems(ctx: RowContext, contract: Contract, redcap: str) -> Iterator[Found]:
    """Every contract field, event and repeating instrument present as the contract fixes it."""
    dictionary = ctx.dictionary
    first = contract.fields[0].variable if contract.fields else ""
    if first and ctx.rows and dictionary.record_id_field != first:
        yield ctx.found(ctx.rows[0], "field_name", f'the contract needs "{first}" as the record ID '
                                                    "field (the first row)")
    row_of = {ctx.raw(row, "field_name"): row for row in reversed(ctx.rows)}
    unmapped: dict[tuple[str, str], str] = {}
    for wanted in contract.fields:
        if wanted.variable not in row_of:
            yield _problem(ctx.file, None, DD_HEADERS[0], f'contract field "{wanted.variable}" '
                                                          f'(instrument "{wanted.form}") is missing')
            continue
        yield from _contract_field(ctx, row_of[wanted.variable], wanted)
        for event in wanted.events:
            if event in dictionary.event_names and event not in dictionary.events_of_form(
                    wanted.form):
                unmapped.setdefault((wanted.form, event), wanted.variable)
    for (form, event), variable in unmapped.items():
        yield _problem(f"{redcap}/instrument_event_mapping.csv", None, None,
                       f'the contract puts instrument "{form}" (field "{variable}") on event '
                       f'"{event}"')
    yield from _contract_events(dictionary, contract, redcap)


def _contract_field(ctx: RowContext, row: int, wanted: ContractField) -> Iterator[Found]:
    dictionary, variable = ctx.dictionary, wanted.variable
    have = {key: ctx.stored(row, key) for key in METADATA_KEYS}
    if have["form_name"] != wanted.form:
        yield ctx.found(row, "form_name", f'the contract puts it on instrument "{wanted.form}"')
    if have["field_type"] not in wanted.field_types:
        yield ctx.found(row, "field_type",
                        f'the contract makes it {" or ".join(wanted.field_types)}')
        return
    validation = dictionary.validation(variable)
    if validation != wanted.validation:
        expected = f'"{wanted.validation}"' if wanted.validation else "none"
        yield ctx.found(row, "text_validation_type_or_show_slider_number",
                        f"the contract's validation is {expected}")
    for key, bound in (("text_validation_min", wanted.validation_min),
                       ("text_validation_max", wanted.validation_max)):
        if bound and have[key] != bound:
            yield ctx.found(row, key, f'the contract\'s {key.rsplit("_", 1)[1]} is "{bound}"')
    if wanted.calculation and not _same_logic(have["select_choices_or_calculations"],
                                              wanted.calculation):
        yield ctx.found(row, "select_choices_or_calculations",
                        f'the contract\'s calculation is "{wanted.calculation}"')
    yield from _contract_choices(ctx, row, wanted)
    if wanted.readonly and variable not in dictionary.readonly_fields:
        yield ctx.found(row, "field_annotation", "the sync writes this field: it needs @READONLY")


def _contract_choices(ctx: RowContext, row: int, wanted: ContractField) -> Iterator[Found]:
    if not wanted.choices:
        return
    have = ctx.dictionary.choices(wanted.variable)
    codes = [code for code, _ in wanted.choices]
    if [code for code, _ in have] != codes:
        spelled = " | ".join(f"{c}, {label}" if label else c for c, label in wanted.choices)
        yield ctx.found(row, "select_choices_or_calculations",
                        f'the contract\'s codes are "{spelled}"')
        return
    for (code, label), (_, found) in zip(wanted.choices, have):
        if label is not None and label != found:
            yield ctx.found(row, "select_choices_or_calculations",
                            f'the contract labels code {code} "{label}", not "{found}"', "warning")


def _contract_events(dictionary: Dictionary, contract: Contract, redcap: str) -> Iterator[Found]:
    labels = dict(zip(dictionary.events["unique_event_name"], dictionary.events["event_name"]))
    for event in contract.events:
        if event.unique_event_name not in labels:
            yield _problem(f"{redcap}/events.csv", None, None,
                           f'contract event "{event.unique_event_name}" ({event.label}) is missing')
        elif labels[event.unique_event_name] != event.label:
            yield _problem(f"{redcap}/events.csv", None, "event_name",
                           f'event "{event.unique_event_name}" is called '
                           f'"{labels[event.unique_event_name]}"; the contract calls it '
                           f'"{event.label}"', "warning")
    repeating = set(zip(dictionary.repeating["event_name"], dictionary.repeating["form_name"]))
    for event, form in contract.repeating:
        if (event, form) not in repeating:
            yield _problem(f"{redcap}/repeating_instruments.csv", None, None,
                           f'the contract makes instrument "{form}" repeat on event "{event}"')


def _same_logic(found: str, wanted: str) -> bool:
    """Equal as parsed trees (spacing and positions aside); as text when either does not parse."""
    try:
        return parse(found) == parse(wanted)
    except LogicSyntaxError:
        return " ".join(found.split()) == " ".join(wanted.split())
