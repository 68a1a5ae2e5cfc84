"""A rule that fires on most records is a mistake until proven otherwise.

Between evaluating the rules and writing the queries: a rule that would open new queries on more
than a set share of the records it evaluated (and evaluated at least a set number of them) has
none of its new queries written; the data manager reads the run's message, checks the rule, and
accepts it for one run with `ecrf sync --accept-rule RULE`. Queries the rule already has keep
their lifecycle (answered, resolved, re-opened) as usual.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import pandas as pd

from sync.crf.dictionary import Dictionary
from sync.eligibility import Eligibility
from sync.rule_checks import RuleData
from sync.rules import Rule

NEW_FINDING = "new finding"


@dataclass(frozen=True)
class Tripped:
    """A rule that would open queries on `records` of the `evaluated` records."""

    rule: str
    records: int
    evaluated: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self, share: float, accepted: bool) -> str:
        what = (f"rule {self.rule} would open queries on {self.records} of the {self.evaluated} "
                f"records it evaluated (more than {share:.0%})")
        if accepted:
            return f"{what}; accepted for this run (--accept-rule {self.rule}), queries written"
        return (f"{what}; none of its new queries were written. Check the rule in "
                f"rules.csv; if it is right, run `ecrf sync --accept-rule {self.rule}` once")


def records_evaluated(records: pd.DataFrame, dictionary: Dictionary, rules: list[Rule],
                      eligibility: Eligibility) -> dict[str, int]:
    """Per rule, how many records hold a row of the rule's events and instrument."""
    pk = dictionary.record_id_field
    keys = [c for c in ("redcap_event_name", "redcap_repeat_instrument") if c in records.columns]
    frame = records[[pk, *keys]].rename(columns={pk: "record_id"})
    for column in ("redcap_event_name", "redcap_repeat_instrument"):
        if column not in frame.columns:
            frame = frame.assign(**{column: ""})
    frame = frame.fillna("")
    data = RuleData(frame, dictionary, eligibility)
    ids = frame["record_id"].to_numpy()
    return {rule.rule_id: len(set(ids[data.mask(rule.events, rule.instrument)]))
            for rule in rules}


def tripped_rules(transitions: pd.DataFrame, evaluated: dict[str, int], share: float,
                  min_records: int) -> list[Tripped]:
    """Rules whose new queries would land on more than `share` of the records evaluated."""
    new = transitions[transitions["reason"] == NEW_FINDING]
    return _tripped(new.groupby("rule_id")["record_id"].nunique().to_dict(), evaluated, share,
                    min_records)


def _tripped(new: Mapping[str, int], evaluated: Mapping[str, int], share: float,
             min_records: int) -> list[Tripped]:
    tripped = []
    for rule, records in new.items():
        seen = evaluated.get(str(rule), 0)
        if seen >= min_records and records > share * seen:
            tripped.append(Tripped(str(rule), int(records), seen))
    return sorted(tripped, key=lambda t: t.rule)


@dataclass
class Tally:
    """Per rule, over every batch of a run: the records it evaluated and the records its new
    queries would open on. Batches hold whole records, so per-batch counts add up; the share is
    judged on the whole run, before any new query of a tripped rule is written."""

    evaluated: Counter = field(default_factory=Counter)
    new: Counter = field(default_factory=Counter)

    def add(self, evaluated: Mapping[str, int], new_findings: pd.DataFrame) -> None:
        self.evaluated.update(evaluated)
        if not new_findings.empty:
            self.new.update(new_findings.groupby("rule_id", observed=True)["record_id"]
                            .nunique().to_dict())

    def tripped(self, share: float, min_records: int) -> list[Tripped]:
        return _tripped(self.new, self.evaluated, share, min_records)
