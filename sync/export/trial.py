"""Trial-design datasets (TS, TA, TE, TV, TI) and subject visits (SV) for the SDTM cut.

The design follows the CRF: visits and their target days come from the REDCap events
(`day_offset` +1 from day 0, since SDTM has no day 0), criteria from the eligibility fields.
A blinded transfer holds one arm (BLINDED) whose treatment element is the masked study product;
an unblinded cut would name the real arms only once an allocation field maps to DM.ARMCD.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sync.export.annotations import ascii_text
from sync.export.sdtm import BLINDED_ARM, BLINDED_ARMCD, STUDYID, SdtmSource, finish
from sync.export.tables import CutTable

ELEMENTS = (("SCRN", "Screening", "Informed consent", "First dose of study product",
             "SCREENING"),
            ("TRT", "Study product (MSC or placebo, blinded)", "First dose of study product",
             "Last dose of study product", "TREATMENT"),
            ("FU", "Follow-up", "Day after the last dose of study product", "End of study",
             "FOLLOW-UP"))
SUMMARY = (("TITLE", "Trial Title", "Stem Cell Treatment for Lung Injury Caused by Major "
            "Infectious Diseases"), ("REGID", "Registry Identifier", STUDYID),
           ("STYPE", "Study Type", "INTERVENTIONAL"), ("TBLIND", "Trial Blinding Schema",
                                                        "DOUBLE BLIND"),
           ("RANDOM", "Trial is Randomized", "Y"), ("TCNTRL", "Control Type", "PLACEBO"),
           ("AGEMIN", "Planned Minimum Age of Subjects", "P18Y"),
           ("SEXPOP", "Sex of Participants", "BOTH"), ("PLANSUB", "Planned Number of Subjects",
                                                        "80"),
           ("SDTIGVER", "SDTM IG Version", "3.4"), ("SDTMVER", "SDTM Version", "2.0"))


def _frame(code: str, rows: list[dict[str, object]], columns: list[str]) -> CutTable:
    frame = pd.DataFrame(rows, columns=columns)
    frame.insert(0, "STUDYID", STUDYID)
    frame.insert(1, "DOMAIN", code)
    numeric = {c for c in columns if c in ("TSSEQ", "TAETORD", "VISITNUM", "VISITDY")}
    return CutTable(name=code, frame=frame,
                    kinds={c: "number" if c in numeric else "string" for c in frame.columns},
                    sources={c: "Protocol" for c in frame.columns})


def trial_design(source: SdtmSource, subjects: int, criteria: list[tuple[str, str, str]],
                 offsets: dict[str, int]) -> list[CutTable]:
    """TS, TA, TE, TV and TI."""
    ts = _frame("TS", [{"TSSEQ": 1.0, "TSPARMCD": code, "TSPARM": name, "TSVAL": value}
                       for code, name, value in SUMMARY
                       + (("ACTSUB", "Actual Number of Subjects", str(subjects)),)],
                ["TSSEQ", "TSPARMCD", "TSPARM", "TSVAL"])
    ta = _frame("TA", [{"ARMCD": BLINDED_ARMCD, "ARM": BLINDED_ARM, "TAETORD": float(i + 1),
                        "ETCD": etcd, "ELEMENT": element, "TABRANCH": "",
                        "TATRANS": "", "EPOCH": epoch}
                       for i, (etcd, element, _, _, epoch) in enumerate(ELEMENTS)],
                ["ARMCD", "ARM", "TAETORD", "ETCD", "ELEMENT", "TABRANCH", "TATRANS", "EPOCH"])
    te = _frame("TE", [{"ETCD": etcd, "ELEMENT": element, "TESTRL": start, "TEENRL": end}
                       for etcd, element, start, end, _ in ELEMENTS],
                ["ETCD", "ELEMENT", "TESTRL", "TEENRL"])
    visits = [(event, number, label) for event, (number, label) in source.visits.items()
              if offsets.get(event, 0) < 999]
    tv = _frame("TV", [{"VISITNUM": float(number), "VISIT": ascii_text(label).upper(),
                        "VISITDY": float(_visit_day(offsets.get(event, 0))),
                        "TVSTRL": f"Day {offsets.get(event, 0)} of the protocol schedule"}
                       for event, number, label in visits],
                ["VISITNUM", "VISIT", "VISITDY", "TVSTRL"])
    ti = _frame("TI", [{"IETESTCD": code, "IETEST": test, "IECAT": category}
                       for code, test, category in criteria],
                ["IETESTCD", "IETEST", "IECAT"])
    return [ts, ta, te, tv, ti]


def _visit_day(offset: int) -> int:
    return offset + 1 if offset >= 0 else offset


def subject_visits(domains: list[CutTable]) -> CutTable:
    """SV: per subject and visit, the first and last date any domain records at it."""
    dated_rows: dict[tuple[str, float, str, object], None] = {}
    numbers = []
    for table in domains:
        frame = table.frame
        dated = next((c for c in (f"{table.name}DTC", f"{table.name}STDTC") if c in frame), None)
        if dated is None or "VISITNUM" not in frame or frame.empty:
            continue
        numbers.append(frame["VISITNUM"].iloc[:0])
        visits = frame["VISITNUM"].to_numpy(dtype=float, na_value=np.nan).tolist()
        dated_rows.update(dict.fromkeys(zip(frame["USUBJID"].tolist(), visits,
                                            frame["VISIT"].tolist(), frame[dated].tolist())))
    days: dict[tuple[str, float, str], list[str]] = {}
    for subject, visit, label, when in dated_rows:  # each distinct row once, in order
        if visit == visit and isinstance(when, str) and len(when) >= 10:
            span = days.setdefault((subject, visit, label), [when[:10], when[:10]])
            span[0], span[1] = min(span[0], when[:10]), max(span[1], when[:10])
    if not numbers:
        return finish("SV", pd.DataFrame(columns=["USUBJID"]), {}, seq=False)
    keys = sorted(days, key=lambda key: key[:2])
    frame = pd.DataFrame({
        "USUBJID": pd.Series([k[0] for k in keys], dtype=object),
        "VISITNUM": pd.Series([k[1] for k in keys], dtype=pd.concat(numbers).dtype),
        "VISIT": pd.Series([k[2] for k in keys], dtype=object),
        "SVSTDTC": pd.Series([days[k][0] for k in keys], dtype=object),
        "SVENDTC": pd.Series([days[k][1] for k in keys], dtype=object)})
    sources = {"SVSTDTC": "Derived: earliest date recorded at the visit",
               "SVENDTC": "Derived: latest date recorded at the visit",
               "VISITNUM": "Assigned: event order", "VISIT": "Assigned: event label"}
    return finish("SV", frame, sources, seq=False)
