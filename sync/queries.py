"""Stage 4: the data-query lifecycle, findings + current dq_query rows in, a query plan out.

One `dq_query` instance per finding, found again by its stable key. The plan says which cells
to import and why; nothing here talks to REDCap. The sync never deletes a query, never writes
`dq_response`, and never reverts a status a site user (Answered) or a monitor (Closed) set
while the finding persists; when the values behind a persisting finding change, it rewrites
`dq_text` and stamps `dq_updated` so that nobody takes the old answer as settling it.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

QUERY_EVENT = "logs_arm_1"
QUERY_INSTRUMENT = "dq_query"
OPEN, ANSWERED, CLOSED, RESOLVED = "1", "2", "3", "4"
STATUS_LABELS = {OPEN: "Open", ANSWERED: "Answered", CLOSED: "Closed", RESOLVED: "Resolved"}
KEY_COLUMNS: tuple[str, ...] = (
    "record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")
QUERY_FIELDS: tuple[str, ...] = (
    "dq_key", "dq_rule", "dq_event", "dq_instrument", "dq_instance", "dq_field", "dq_text",
    "dq_status", "dq_opened", "dq_resolved", "dq_updated")
TRANSITION_COLUMNS: tuple[str, ...] = (
    "record_id", "instance", "dq_key", "rule_id", "from_status", "to_status", "reason")
DATETIME_FORMAT = "%Y-%m-%d %H:%M"


def finding_key(rule_id: str, record: str, event: str, instrument: str, instance: str | int,
                field: str) -> str:
    """The stable key of a finding: the same place and rule always give the same key.

    Examples:
        >>> finding_key("SAE_LATE", "01-004", "logs_arm_1", "adverse_event", 2, "ae_rpt_dtc")
        'SAE_LATE|01-004|logs_arm_1|adverse_event|2|ae_rpt_dtc'
    """
    parts = (rule_id, record, event, instrument, "" if instance is None else instance, field)
    return "|".join(str(part).strip() for part in parts)


@dataclass
class QueryPlan:
    """What the sync will write to dq_query, and the transition behind every change.

    `rows`: dq_query rows to import with overwriteBehavior=normal (keys plus the changed
    cells; "" elsewhere, which a normal import leaves alone). `blank_rows`: keys plus the
    cells to blank (every non-key cell in it), to import with overwriteBehavior=overwrite.
    `transitions`: one row per query whose status or text changes (TRANSITION_COLUMNS; a
    text rewrite keeps the status, so its from and to are the same).
    """

    rows: pd.DataFrame
    blank_rows: pd.DataFrame
    transitions: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.rows.empty and self.blank_rows.empty


def _finding_keys(findings: pd.DataFrame) -> pd.Series:
    columns = ["rule_id", "record_id", "redcap_event_name", "redcap_repeat_instrument",
               "redcap_repeat_instance", "field"]
    values = findings[columns].fillna("").astype(str)
    return pd.Series([finding_key(*row) for row in values.itertuples(index=False)],
                     index=findings.index, dtype=object)


def place_key(record: str, key: str) -> str:
    """A finding's identity inside its record: the key's rule, event, instrument, instance and
    field, not the record name it was stored under (a renamed record keeps its queries).

    Examples:
        >>> place_key("01-009", "IE_MISMATCH|01-004|screening_arm_1|||ie_yn")
        '01-009|IE_MISMATCH|screening_arm_1|||ie_yn'
    """
    parts = key.split("|")
    return "|".join([record, parts[0], *parts[-4:]]) if len(parts) >= 6 else f"{record}|{key}"


def _query_rows(existing: pd.DataFrame) -> pd.DataFrame:
    """The dq_query rows as strings with a numeric `instance`: the query columns, each present."""
    columns = ("record_id", "redcap_repeat_instance", *QUERY_FIELDS, "dq_response")
    rows = existing[[c for c in columns if c in existing.columns]].fillna("").astype(str)
    for column in columns:
        if column not in rows.columns:
            rows[column] = ""
    rows["instance"] = pd.to_numeric(rows["redcap_repeat_instance"], errors="coerce")
    return rows[rows["instance"].notna()]


def _current_queries(rows: pd.DataFrame) -> pd.DataFrame:
    """The latest instance per key (a key with several instances keeps the highest)."""
    current = rows[rows["dq_key"] != ""]
    current = current.assign(_place=[place_key(r, k) for r, k in
                                      zip(current["record_id"], current["dq_key"])])
    current = current.sort_values("instance").drop_duplicates("_place", keep="last")
    return current.set_index("_place")


def _row(record: str, instance: int, **cells: str) -> dict[str, str]:
    return {"record_id": record, "redcap_event_name": QUERY_EVENT,
            "redcap_repeat_instrument": QUERY_INSTRUMENT,
            "redcap_repeat_instance": str(instance), **cells}


def _open_new(finding: dict[str, str], key: str, instance: int, stamp: str) -> dict[str, str]:
    instrument = str(finding.get("redcap_repeat_instrument", "") or "")
    return _row(str(finding["record_id"]), instance, dq_key=key,
                dq_rule=str(finding["rule_id"]), dq_event=str(finding["redcap_event_name"]),
                dq_instrument=instrument,
                dq_instance=str(finding.get("redcap_repeat_instance", "") or "")
                if instrument else "",
                dq_field=str(finding["field"]), dq_text=str(finding["message"]),
                dq_status=OPEN, dq_opened=stamp)


def is_new(findings: pd.DataFrame, existing: pd.DataFrame) -> pd.Series:
    """Per finding, whether planning it would open a new query: no query of the record holds
    its key (`existing`: the dq_query rows of the findings' records)."""
    if findings.empty:
        return pd.Series(False, index=findings.index, dtype=bool)
    known = set(_current_queries(_query_rows(existing)).index)
    values = findings.astype(object).fillna("").astype(str)
    places = [place_key(r, k) for r, k in zip(values["record_id"], _finding_keys(values))]
    return pd.Series([p not in known for p in places], index=findings.index, dtype=bool)


def plan_queries(findings: pd.DataFrame, existing: pd.DataFrame, now: datetime, *,
                 checked_rules: Collection[str] | None = None) -> QueryPlan:
    """Plan the dq_query writes that bring the queries in line with today's findings.

    New finding: a new instance after the record's highest one, Open, dq_opened=now.
    Persisting finding: nothing written while its text (the values that fired it) is the
    same; a new text is written with dq_updated=now, the status left as it is. Resolved query
    whose finding is back: the same instance re-opens (status 1, dq_resolved blanked, dq_text
    refreshed and dq_updated stamped if it changed); a re-open that died between its two
    imports (Open or Answered with dq_resolved still set) is finished by blanking dq_resolved.
    Vanished finding: Open/Answered become Resolved with dq_resolved=now; Closed stays.
    A status blanked by hand is put right: Open while the finding persists, else Resolved.
    `checked_rules`, when given, limits resolving to queries of the rules that ran.

    Examples:
        >>> plan = plan_queries(findings, existing, datetime(2025, 3, 1, 2, 0))
        >>> plan.counts
        {'opened': 1, 'resolved': 0, 'reopened': 0, 'updated': 1, 'unchanged': 2}
    """
    planner = _Planner(_query_rows(existing), now.strftime(DATETIME_FORMAT))
    findings = findings.astype(object).fillna("").astype(str)
    todays = findings.assign(_key=_finding_keys(findings)).drop_duplicates("_key")
    todays = todays.set_index(pd.Index([place_key(r, k) for r, k in
                                        zip(todays["record_id"], todays["_key"])]))
    for place, finding in zip(todays.index, _records(todays)):
        planner.found(str(place), finding)
    vanished = planner.current[~planner.current.index.isin(todays.index)]
    for query in _records(vanished):
        planner.vanished(str(query["dq_key"]), query, checked_rules)
    return planner.plan()


class _Planner:
    """Collects the cells and transitions of one plan, allocating new instances per record."""

    def __init__(self, queries: pd.DataFrame, stamp: str) -> None:
        self.current = _current_queries(queries)
        self.places = dict(zip(self.current.index, _records(self.current)))
        self.stamp = stamp
        self.next_instance = queries.groupby("record_id")["instance"].max().astype(int).to_dict()
        self.rows: list[dict[str, str]] = []
        self.blanks: list[dict[str, str]] = []
        self.moves: list[dict[str, object]] = []
        self.counts = {"opened": 0, "resolved": 0, "reopened": 0, "updated": 0, "unchanged": 0}

    def found(self, place: str, finding: dict[str, str]) -> None:
        """A finding today: open a query, re-open a Resolved one, or leave the query alone."""
        key = str(finding["_key"])
        if place not in self.places:
            record = str(finding["record_id"])
            instance = self.next_instance.get(record, 0) + 1
            self.next_instance[record] = instance
            self.rows.append(_open_new(finding, key, instance, self.stamp))
            self._move(record, instance, key, str(finding["rule_id"]), "", OPEN, "new finding")
            self.counts["opened"] += 1
            return
        query = self.places[place]
        key = str(query["dq_key"])
        record, instance = query["record_id"], int(query["instance"])
        text = str(finding["message"])
        rewrite = {"dq_text": text, "dq_updated": self.stamp} if query["dq_text"] != text else {}
        if query["dq_status"] == "":
            self.rows.append(_row(record, instance, dq_status=OPEN, **rewrite))
            self._move(record, instance, key, query["dq_rule"], "", OPEN, "status was blanked")
            self.counts["reopened"] += 1
            return
        if query["dq_status"] != RESOLVED:
            if query["dq_status"] in (OPEN, ANSWERED) and query["dq_resolved"]:
                self.blanks.append(_row(record, instance, dq_resolved=""))
                self._move(record, instance, key, query["dq_rule"], query["dq_status"],
                           query["dq_status"], "finishing a re-open")
            if rewrite:
                self.rows.append(_row(record, instance, **rewrite))
                self._move(record, instance, key, query["dq_rule"], query["dq_status"],
                           query["dq_status"], "values changed")
                self.counts["updated"] += 1
            else:
                self.counts["unchanged"] += 1
            return
        self.rows.append(_row(record, instance, dq_status=OPEN, **rewrite))
        self.blanks.append(_row(record, instance, dq_resolved=""))
        self._move(record, instance, key, query["dq_rule"], RESOLVED, OPEN, "finding is back")
        self.counts["reopened"] += 1

    def vanished(self, key: str, query: dict[str, object],
                 checked_rules: Collection[str] | None) -> None:
        """A query whose finding is gone: Open/Answered become Resolved; others stay."""
        checked = checked_rules is None or query["dq_rule"] in checked_rules
        if not checked or query["dq_status"] not in (OPEN, ANSWERED, ""):
            self.counts["unchanged"] += 1
            return
        record, instance = query["record_id"], int(query["instance"])
        self.rows.append(_row(record, instance, dq_status=RESOLVED, dq_resolved=self.stamp))
        self._move(record, instance, key, query["dq_rule"], query["dq_status"], RESOLVED,
                   "finding no longer present")
        self.counts["resolved"] += 1

    def _move(self, record: str, instance: int, key: str, rule: str, before: str, after: str,
              reason: str) -> None:
        self.moves.append({"record_id": record, "instance": instance, "dq_key": key,
                           "rule_id": rule, "from_status": before, "to_status": after,
                           "reason": reason})

    def plan(self) -> QueryPlan:
        return QueryPlan(_frame(self.rows, (*KEY_COLUMNS, *QUERY_FIELDS)),
                         _frame(self.blanks, (*KEY_COLUMNS, "dq_resolved"), drop_blank=False),
                         _transitions(self.moves), self.counts)


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """`frame.to_dict("records")` of a frame of text and numbers, without boxing each cell."""
    columns = list(frame.columns)
    return [dict(zip(columns, row)) for row in zip(*(frame[c].tolist() for c in columns))]


def _frame(rows: list[dict[str, str]], columns: tuple[str, ...], *,
           drop_blank: bool = True) -> pd.DataFrame:
    """Rows as strings; with `drop_blank`, columns no row writes are left out."""
    frame = pd.DataFrame(rows, columns=list(columns)).fillna("")
    used = [c for c in columns
            if not drop_blank or c in KEY_COLUMNS or (frame[c] != "").any()]
    return frame[used].astype(str).reset_index(drop=True)


def _transitions(moves: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(moves, columns=list(TRANSITION_COLUMNS))
    frame["instance"] = frame["instance"].astype("Int64")
    return frame
