"""`ecrf check` of the rule catalogue (`redcap/rules.csv`): every fault, at its row and column.

The sync reads the catalogue with `sync.rules.load_rules`, which stops at the first fault; a data
manager editing it wants them all at once: the columns, each rule's own constraints (id,
category, severity, logic or python), repeated ids, logic that parses and names fields, events
and choice codes that exist, the rule's event, instrument and field, coded rules that exist,
and message placeholders the rule can fill.
"""
from __future__ import annotations

import string
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from sync.crf.check_rules import Found, Where, reference_problems, written
from sync.crf.dictionary import Dictionary, read_csv_table
from sync.eligibility import decide_eligibility
from sync.errors import DictionaryError, LogicSyntaxError
from sync.logic import parse, referenced_fields
from sync.rule_checks import CODED_RULES, KEY_COLUMNS, RuleData
from sync.rules import RULE_COLUMNS, Rule

__all__ = ["catalogue_problems"]


def catalogue_problems(path: Path, dictionary: Dictionary, file: str) -> Iterator[Found]:
    """Every fault of the catalogue at `path` (none when there is no catalogue), named `file`."""
    if not path.exists():
        return
    try:
        table = read_csv_table(path)
    except DictionaryError as exc:
        yield Where(file, 1), str(exc).split(": ", 1)[-1], "error"
        return
    if list(table.columns) != list(RULE_COLUMNS):
        yield (Where(file, 1), f"the columns are {', '.join(table.columns)}; expected "
                               f"{', '.join(RULE_COLUMNS)}", "error")
        return
    seen: dict[str, int] = {}
    coded = _CodedColumns(dictionary)
    for row, values in table.iterrows():
        cells = {k: str(v).strip() for k, v in values.items()}
        rule_id = cells["rule_id"]
        if rule_id in seen:
            yield (Where(file, row, "rule_id"), f'rule "{rule_id}" is already defined on row '
                                                f"{seen[rule_id]}", "error")
        seen.setdefault(rule_id, int(row))
        yield from _model_problems(file, int(row), cells)
        yield from _place_problems(file, int(row), cells, dictionary)
        yield from _logic_problems(file, int(row), cells, dictionary)
        yield from _placeholder_problems(file, int(row), cells, dictionary, coded)


def _model_problems(file: str, row: int, cells: dict[str, str]) -> Iterator[Found]:
    try:
        Rule(**cells)
    except ValidationError as exc:
        for error in exc.errors():
            column = str(error["loc"][0]) if error["loc"] else None
            value = f' "{cells.get(column, "")}"' if column else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            yield Where(file, row, column), f"{column or 'rule'}{value}: {message}", "error"


def _place_problems(file: str, row: int, cells: dict[str, str],
                    dictionary: Dictionary) -> Iterator[Found]:
    """The rule's event(s), instrument and field exist."""
    for event in cells["event"].split():
        if event not in dictionary.event_names:
            yield Where(file, row, "event"), f'event "{event}" is not in events.csv', "error"
    instrument = cells["instrument"]
    if instrument and instrument not in dictionary.forms:
        yield (Where(file, row, "instrument"), f'instrument "{instrument}" is not in the data '
                                               "dictionary", "error")
    field = cells["field"]
    if field and field not in dictionary.fields:
        yield Where(file, row, "field"), f'field "{field}" is not in the data dictionary', "error"


def _logic_problems(file: str, row: int, cells: dict[str, str],
                    dictionary: Dictionary) -> Iterator[Found]:
    if not cells["logic"]:
        return
    try:
        tree = parse(cells["logic"])
    except LogicSyntaxError as exc:
        yield Where(file, row, "logic"), f"the logic does not parse: {exc}", "error"
        return
    for ref in referenced_fields(tree):
        for message in reference_problems(dictionary, ref.event, ref.field, ref.code):
            yield (Where(file, row, "logic"), f"the logic's {written(ref.event, ref.field, ref.code)} "
                                              f"(line {ref.line}, column {ref.column}) {message}",
                   "error")


def _placeholder_problems(file: str, row: int, cells: dict[str, str], dictionary: Dictionary,
                          coded: _CodedColumns) -> Iterator[Found]:
    """Each `{name}` of the message is a value the rule's findings carry.

    A logic rule's findings carry the record's columns; a coded rule's, the columns its
    function returns, learnt by running it on an empty export (a function that returns only
    the key columns there is not checked).
    """
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(cells["message"]) if name]
    except ValueError as exc:
        yield Where(file, row, "message"), f"the message cannot be filled: {exc}", "error"
        return
    python = cells["python"]
    if python in CODED_RULES:
        known = coded(python)
        if known is None:
            return
        provided = known
    elif not python:
        provided = frozenset(KEY_COLUMNS) | {
            c for f in dictionary.fields for c in dictionary.export_field_names(f)}
    else:
        return
    for name in names:
        if name != "field" and name not in provided:
            source = f'coded rule "{python}"' if python else "the record"
            yield (Where(file, row, "message"), f'placeholder "{{{name}}}" is not a value '
                                                f"{source} provides", "error")


class _CodedColumns:
    """Columns each coded rule returns on an export with the dictionary's columns and no rows;
    None when it returns only the key columns there, or cannot run on this dictionary."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary

    @cached_property
    def _empty(self) -> RuleData:
        columns = list(KEY_COLUMNS) + [c for c in self.dictionary.export_columns()
                                       if c not in KEY_COLUMNS]
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return RuleData(frame, self.dictionary, decide_eligibility(frame))

    def __call__(self, python: str) -> frozenset[str] | None:
        try:
            found = frozenset(CODED_RULES[python](self._empty).columns)
        except Exception:  # noqa: BLE001 - a rule that cannot run here is not judged
            return None
        return found if found - set(KEY_COLUMNS) else None
