"""Stage 3: the rule catalogue (`redcap/rules.csv`) and its engine, RAW records in, findings out.

Rules are data: each row names where a finding attaches and how it reads to a site user. A
rule REDCap logic can say is evaluated by `sync.logic`; a rule it cannot say is a Python
function registered under the rule's id (`sync.rule_checks.CODED_RULES`). When a rule has
both, the Python function decides and the logic is what `export_dq_csv` gives REDCap's Data
Quality module.
"""
from __future__ import annotations

import csv
import functools
import logging
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from sync.crf.dictionary import Dictionary
from sync.eligibility import Eligibility
from sync.errors import DictionaryError, LogicSyntaxError
from sync.logic import Evaluator, FieldRef, parse, referenced_fields
from sync.rule_checks import CODED_RULES, KEY_COLUMNS, STEROID_LIMIT_MG, RuleData
from sync.typed import TypingProblem
from sync import value_checks  # noqa: F401  (registers CALC_STALE and INVALID_VALUE)

log = logging.getLogger(__name__)

RULE_COLUMNS: tuple[str, ...] = (
    "rule_id", "category", "severity", "event", "instrument", "field", "logic", "message",
    "python", "description")
FINDING_COLUMNS: tuple[str, ...] = (
    "rule_id", "category", "severity", "record_id", "redcap_event_name",
    "redcap_repeat_instrument", "redcap_repeat_instance", "field", "message")
"""The findings frame: these columns in this order, every one pandas `string` dtype."""
DQ_HEADER: tuple[str, ...] = ("rule_name", "rule_logic", "real_time_execution")
Category = Literal["eligibility", "safety", "consistency", "missing_data"]
Severity = Literal["critical", "major", "minor"]


class Rule(BaseModel):
    """One row of `redcap/rules.csv`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    category: Category
    severity: Severity
    event: str = ""
    instrument: str = ""
    field: str = ""
    logic: str = ""
    message: str
    python: str = ""
    description: str = ""

    @field_validator("rule_id")
    @classmethod
    def _id_is_a_name(cls, value: str) -> str:
        if not value or not value.replace("_", "").isalnum() or value != value.upper():
            raise ValueError("must be upper-case letters, digits and underscores")
        return value

    @field_validator("python")
    @classmethod
    def _python_is_registered(cls, value: str) -> str:
        if value and value not in CODED_RULES:
            raise ValueError(f'no coded rule registered as "{value}"')
        return value

    @model_validator(mode="after")
    def _logic_or_python(self) -> Rule:
        if not self.logic and not self.python:
            raise ValueError("a rule needs logic or python")
        return self

    @property
    def events(self) -> tuple[str, ...]:
        """The events the rule looks at (space-separated in the file; empty means every)."""
        return tuple(self.event.split())

    @property
    def placeholders(self) -> list[str]:
        """Names in the message template (`{ae_rpt_dtc}` -> `ae_rpt_dtc`)."""
        return [name for _, name, _, _ in string.Formatter().parse(self.message) if name]


def load_rules(path: Path, dictionary: Dictionary | None = None) -> list[Rule]:
    """Read and validate the catalogue: ids unique, categories and severities known, logic
    parses, fields exist (when a dictionary is given). Errors name the file, line and column.

    Examples:
        >>> [rule.rule_id for rule in load_rules(Path("redcap/rules.csv"))][:2]
        ['ELIG_MISSING', 'IE_MISMATCH']
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            if header != list(RULE_COLUMNS):
                raise DictionaryError(f"{path}, line 1: columns are {', '.join(header)}; "
                                      f"expected {', '.join(RULE_COLUMNS)}")
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise DictionaryError(f"{path}: rule catalogue not found") from None
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        rule = _rule(path, line, row)
        if rule.rule_id in seen:
            raise DictionaryError(f'{path}, line {line}, column rule_id: "{rule.rule_id}" '
                                  f"already defined on line {seen[rule.rule_id]}")
        seen[rule.rule_id] = line
        _check_logic(path, line, rule, dictionary)
        rules.append(rule)
    return rules


def _rule(path: Path, line: int, row: dict[str, str | None]) -> Rule:
    try:
        return Rule(**{k: (v or "").strip() for k, v in row.items() if k is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        column = ".".join(str(p) for p in error["loc"]) or "row"
        raise DictionaryError(f"{path}, line {line}, column {column}: {error['msg']}") from None


def _check_logic(path: Path, line: int, rule: Rule, dictionary: Dictionary | None) -> None:
    """Logic parses; the rule's fields, events and instrument exist in the project."""
    referenced: list[tuple[str, str]] = [("field", rule.field)] if rule.field else []
    if rule.logic:
        try:
            tree = parse(rule.logic)
        except LogicSyntaxError as exc:
            raise DictionaryError(f"{path}, line {line}, column logic: {exc}") from None
        referenced += [("logic", ref.field) for ref in referenced_fields(tree)]
    if not rule.python:
        referenced += [("message", name) for name in rule.placeholders]
    if dictionary is None:
        return
    known = set(dictionary.fields)
    for column, name in referenced:
        if name not in known:
            raise DictionaryError(
                f'{path}, line {line}, column {column}: no field named "{name}" in the data '
                f"dictionary (rule {rule.rule_id})")
    unknown = [e for e in rule.events if e not in dictionary.event_names]
    if unknown:
        raise DictionaryError(f'{path}, line {line}, column event: no event named '
                              f'"{unknown[0]}" (rule {rule.rule_id})')
    if rule.instrument and rule.instrument not in dictionary.forms:
        raise DictionaryError(f'{path}, line {line}, column instrument: no instrument named '
                              f'"{rule.instrument}" (rule {rule.rule_id})')


def run_rules(records: pd.DataFrame, dictionary: Dictionary, rules: list[Rule],
              eligibility: Eligibility,
              typing_problems: Sequence[TypingProblem] | None = None,
              steroid_limit_mg: float = STEROID_LIMIT_MG,
              across: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run every rule over the RAW export and return one tidy findings frame.

    Columns the export lacks (fields of forms nobody entered) count as blank.
    `typing_problems`, from `sync.typed`, spares INVALID_VALUE typing the export again.
    `across`: when `records` is one batch, what rules comparing records read of every record
    (`sync.batches.across_records`).

    Examples:
        >>> findings = run_rules(records, dictionary, load_rules(path), decide_eligibility(records))
        >>> list(findings.columns) == list(FINDING_COLUMNS)
        True
    """
    if not records.index.equals(pd.RangeIndex(len(records))):
        records = records.reset_index(drop=True)
    absent = [c for c in dictionary.export_columns() if c not in records.columns]
    if absent:
        records = pd.concat([records.fillna(""),
                             pd.DataFrame("", index=records.index, columns=absent)], axis=1)
    typed = [c for c, t in records.dtypes.items() if t != object]
    if typed:
        records = records.astype({c: str for c in typed})
    records = pd.DataFrame(records.to_numpy(dtype=object), index=records.index,
                           columns=records.columns)  # one block: row selections stay cheap
    data = RuleData(records, dictionary, eligibility,
                    None if typing_problems is None else tuple(typing_problems), steroid_limit_mg,
                    across)
    parts = [part for part in (_run_one(rule, data) for rule in rules) if part]
    if not parts:
        return _empty_findings()
    return pd.DataFrame({column: pd.array([value for part in parts
                                           for value in part.get(column) or [None] * part.size],
                                          dtype="string")
                         for column in FINDING_COLUMNS})


def rule_summary(rules: list[Rule], findings: pd.DataFrame) -> pd.DataFrame:
    """One row per rule in catalogue order: rule_id, category, severity, findings, records."""
    counts = findings.groupby("rule_id")["record_id"].agg(["size", "nunique"])
    summary = pd.DataFrame({"rule_id": [r.rule_id for r in rules],
                            "category": [r.category for r in rules],
                            "severity": [r.severity for r in rules]})
    summary["findings"] = summary["rule_id"].map(counts["size"]).fillna(0).astype(int)
    summary["records"] = summary["rule_id"].map(counts["nunique"]).fillna(0).astype(int)
    return summary


def _empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in FINDING_COLUMNS})


class _Fired(dict):
    """One rule's findings as columns of text (lists), `size` rows long."""

    size: int = 0


def _run_one(rule: Rule, data: RuleData) -> _Fired:
    if rule.python:
        fired = CODED_RULES[rule.python](data)
        if rule.events and not fired.empty:
            fired = fired[fired["redcap_event_name"].isin(rule.events)]
    else:
        fired = _run_logic(rule, data)
    out = _Fired()
    if fired.empty:
        return out
    fired = fired.fillna("").astype(str)
    out.update((column, fired[column].tolist()) for column in fired.columns)
    out.size = len(fired)
    out.setdefault("field", [rule.field] * out.size)
    columns = list(out)
    out["message"] = [_message(rule, dict(zip(columns, row))) for row in zip(*out.values())]
    out.update(rule_id=[rule.rule_id] * out.size, category=[rule.category] * out.size,
               severity=[rule.severity] * out.size)
    return out


def _message(rule: Rule, values: dict[str, str]) -> str:
    try:
        return rule.message.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise DictionaryError(f"rule {rule.rule_id}: the message names {exc}, which the rule "
                              "does not provide") from None


def _run_logic(rule: Rule, data: RuleData) -> pd.DataFrame:
    """Rows of the rule's events and instrument where its logic is true."""
    rows = data.rows(rule.events, rule.instrument, _logic_columns(rule, data))
    if rows.empty:
        return rows[list(KEY_COLUMNS)]
    frame = data.records if _reads_other_events(rule.logic) else rows
    codes = ",".join(data.dictionary.missing_data_codes)
    mask = Evaluator(frame, data.dictionary.metadata, missing_data_codes=codes,
                     catalogue=data.logic_fields).truth(rule.logic)
    mask = pd.Series(mask, index=frame.index).reindex(rows.index)
    return rows.loc[mask.fillna(False).astype(bool).to_numpy(), _fired_columns(rule, rows)]


def _logic_columns(rule: Rule, data: RuleData) -> list[str]:
    """The columns a logic rule reads of its rows: the record, the row keys and data access
    group, every export column of the fields its logic names, and what its findings carry."""
    records = data.records
    fields = {ref.field for ref in _references(rule.logic)}
    wanted = {records.columns[0], data.dictionary.record_id_field, "redcap_data_access_group",
              *_fired_columns(rule, records), *fields}
    return [c for c in records.columns if c in wanted or c.split("___")[0] in fields]


def _fired_columns(rule: Rule, rows: pd.DataFrame) -> list[str]:
    """The columns a finding of a logic rule reads: its key, `field` and its message's names
    (a finding row copied whole would drag every column of the export along)."""
    named = (re.split(r"[.\[]", name, maxsplit=1)[0] for name in rule.placeholders)
    wanted = dict.fromkeys((*KEY_COLUMNS, "field", *named))
    return [column for column in wanted if column in rows.columns]


def _reads_other_events(logic: str) -> bool:
    """Event-prefixed fields are read from other rows, so the logic needs the whole export."""
    return any(ref.event for ref in _references(logic))


@functools.lru_cache(maxsize=1024)
def _references(logic: str) -> tuple[FieldRef, ...]:
    """The field references of a rule's logic (every batch of a run asks again)."""
    return tuple(referenced_fields(parse(logic)))


def export_dq_csv(rules: list[Rule], out: Path) -> int:
    """Write REDCap's Data Quality custom-rule CSV for the rules REDCap logic can express.

    Returns the number of rules written. Upload it under Data Quality > Upload rules.

    Examples:
        >>> export_dq_csv(load_rules(Path("redcap/rules.csv")), Path("dq_rules.csv"))
        14
    """
    rows = [(f"{rule.rule_id}: {rule.description or rule.message}", rule.logic,
             "y" if rule.severity == "critical" else "n") for rule in rules if rule.logic]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(DQ_HEADER)
        writer.writerows(rows)
    return len(rows)
