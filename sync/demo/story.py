"""What the demo shows: the decisions of the first sync, then a day of site and monitor work.

After the first sync the demo prints an eligibility table for a few subjects (criteria met,
failing, undetermined) and three queries as a site user reads them. It then plays a site user
answering the first, a site user correcting the data behind the second, and a monitor closing
the third, all through the API as REDCap's pages would save them, so that the second sync can
show the correction resolved and the other two left as the people left them.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sync.connection import Connection
from sync.eligibility import SCREENING_EVENT
from sync.queries import ANSWERED, CLOSED, QUERY_EVENT, QUERY_INSTRUMENT

CRITERIA = [f"inc{n}" for n in range(1, 5)] + [f"exc{n}" for n in range(1, 10)]
DECISIONS = {"1": "eligible", "0": "not eligible", "": "undetermined"}
CORRECTABLE = {"IE_MISMATCH": "ie_yn"}
"""Rules whose query the demo's site user can correct, and the field it corrects."""
SITE_ANSWER = "Source document checked: the value is as recorded."


@dataclass
class Scene:
    """The three queries the demo plays with (digest rows), by what happens to each."""

    answered: pd.Series
    corrected: pd.Series
    closed: pd.Series

    def items(self) -> list[tuple[str, pd.Series]]:
        return [("answered by the site", self.answered),
                ("corrected by the site", self.corrected),
                ("closed by the monitor", self.closed)]


def screening_rows(conn: Connection) -> pd.DataFrame:
    fields = ["record_id", *CRITERIA, "elig_calc", "elig_fail", "elig_missing"]
    rows = conn.call("export eligibility", conn.project.export_records, format_type="json",
                     fields=fields, events=[SCREENING_EVENT])
    frame = pd.DataFrame(rows).fillna("").astype(str)
    frame = frame[frame.get("redcap_repeat_instrument", "") == ""] if len(frame) else frame
    return frame.reindex(columns=fields, fill_value="").set_index("record_id")


def eligibility_table(screening: pd.DataFrame, per_outcome: int = 2) -> str:
    """A few subjects of each outcome: how many criteria are met, which fail, which are open."""
    chosen = pd.concat([screening[screening["elig_calc"] == code].head(per_outcome)
                        for code in ("1", "0", "")])
    lines = [("subject", "decision", "criteria met", "failing", "undetermined")]
    for record, row in chosen.iterrows():
        met = sum(row[f"inc{n}"] == "1" for n in range(1, 5)) + sum(
            row[f"exc{n}"] == "0" for n in range(1, 10))
        lines.append((str(record), DECISIONS.get(row["elig_calc"], row["elig_calc"]),
                      f"{met} of {len(CRITERIA)}", row["elig_fail"] or "-",
                      row["elig_missing"] or "-"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)


def choose_scene(digest_rows: pd.DataFrame) -> Scene | None:
    """Three open queries of three rules, the second one a rule the site can correct."""
    open_rows = digest_rows[digest_rows["status"] == "Open"]
    fixable = open_rows[open_rows["rule"].isin(CORRECTABLE)]
    if fixable.empty:
        return None
    corrected = fixable.iloc[0]
    others = open_rows[~open_rows["rule"].isin([corrected["rule"]])].drop_duplicates("rule")
    if len(others) < 2:
        return None
    return Scene(answered=others.iloc[0], corrected=corrected, closed=others.iloc[1])


def as_site_reads_it(row: pd.Series) -> str:
    """A query as REDCap shows it on the form: where, the field's label, then the text."""
    where = " / ".join(p for p in (row["event"], row["form"]) if p)
    instance = f" #{row['instance']}" if row["instance"] else ""
    return (f"  {row['subject']}, {where}{instance}, field \"{row['field']}\" "
            f"(value {row['value'] or 'blank'}):\n    {row['text']}")


def _query_cells(row: pd.Series, **cells: str) -> dict[str, str]:
    return {"record_id": row["subject"], "redcap_event_name": QUERY_EVENT,
            "redcap_repeat_instrument": QUERY_INSTRUMENT,
            "redcap_repeat_instance": row["query_instance"], **cells}


def play(conn: Connection, scene: Scene, screening: pd.DataFrame) -> list[str]:
    """Save what the site user and the monitor do, as REDCap's data entry pages would."""
    fixed = scene.corrected
    field = CORRECTABLE[fixed["rule"]]
    decision = screening.loc[fixed["subject"], "elig_calc"]
    conn.call("site and monitor edits", conn.project.import_records, [
        _query_cells(scene.answered, dq_status=ANSWERED, dq_response=SITE_ANSWER),
        {"record_id": fixed["subject"], "redcap_event_name": SCREENING_EVENT, field: decision},
        _query_cells(scene.closed, dq_status=CLOSED)])
    return [f"  the site answers {scene.answered['subject']}'s {scene.answered['rule']} query: "
            f"\"{SITE_ANSWER}\" (status Answered)",
            f"  the site corrects {fixed['subject']}'s {field} to {decision} "
            f"({DECISIONS[decision]}, as the criteria say)",
            f"  the monitor closes {scene.closed['subject']}'s {scene.closed['rule']} query "
            "(status Closed)"]


def statuses_now(scene: Scene, digest_rows: pd.DataFrame) -> tuple[dict[str, str], str]:
    """Each played query's status after the second sync, and the lines that show it."""
    now = digest_rows.set_index(["subject", "query_instance"])
    found: dict[str, str] = {}
    lines = []
    for what, row in scene.items():
        current = now.loc[(row["subject"], row["query_instance"])]
        found[what] = str(current["status"])
        response = f", response \"{current['response']}\"" if current["response"] else ""
        lines.append(f"  {row['subject']} {row['rule']} ({what}): {current['status']}{response}")
    return found, "\n".join(lines)
