"""Records that qualify or relate other records: SUPPQUAL (`SUPP--`) and RELREC.

A field annotated `SUPPAE.QVAL WHERE QNAM=AEINFREL` qualifies the AE record made from the same
form row: the same subject and, on a log, the same repeat instance (`--SPID`), on a visit the same
visit (`VISITNUM`). Where the form also makes parent records (a `WHERE` on its own annotations of
that domain, `VSTPT` included), only those are its parents: `ROOMAIR` on the respiratory form
qualifies the SpO2 and respiratory-rate records of that form, not the ones of the infusion
monitoring at the same visit. DM's qualifiers need no record (IDVAR blank). Every builder reads
one batch of whole subjects and the parent domains built from it, so `--SEQ` is the subject's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sync.export.annotations import (
    Target, ascii_text, ascii_texts, sdtm_values, unwritten_domains,
)
from sync.export.meta import CutField, CutSchema
from sync.export.sdtm import STUDYID, SdtmSource
from sync.export.tables import CutTable, natural_ranks

SUPP_COLUMNS = ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL", "QVAL",
                "QORIG", "QEVAL")
SUPP_LABELS = {"STUDYID": "Study Identifier", "RDOMAIN": "Related Domain Abbreviation",
               "USUBJID": "Unique Subject Identifier", "IDVAR": "Identifying Variable",
               "IDVARVAL": "Identifying Variable Value", "QNAM": "Qualifier Variable Name",
               "QLABEL": "Qualifier Variable Label", "QVAL": "Data Value", "QORIG": "Origin",
               "QEVAL": "Evaluator"}
RELREC_COLUMNS = ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELTYPE", "RELID")
RELREC_LABELS = {**{k: SUPP_LABELS[k] for k in RELREC_COLUMNS if k in SUPP_LABELS},
                 "RELTYPE": "Relationship Type", "RELID": "Relationship Identifier"}


def supp_targets(source: SdtmSource, parent: str) -> list[tuple[CutField, Target]]:
    """The fields annotated `SUPP<parent>.QVAL WHERE QNAM=...`, in dictionary order."""
    return [(f, t) for f, t in source.annotated
            if t.domain == f"SUPP{parent}" and t.variable == "QVAL" and t.where.get("QNAM")]


def _places(source: SdtmSource, form: str, values: pd.Series) -> pd.DataFrame:
    """Per raw row of `form`: USUBJID and where it sits (VISITNUM, or SPID on a log)."""
    rows = source.rows(form)
    place = pd.DataFrame({"USUBJID": source.usubjid(rows[source.schema.record_id]),
                          "QVAL": values}, index=rows.index)
    if form in source.repeating:
        place["SPID"] = rows["redcap_repeat_instance"].astype(str)
    else:
        place["VISITNUM"] = rows["redcap_event_name"].map(
            lambda e: float(source.visits[e][0]) if e in source.visits else None)
    return place


def _form_conditions(source: SdtmSource, form: str, parent: str) -> list[dict[str, str]] | None:
    """What marks the parent records `form` makes (one condition set each); None: any record.

    `DS.DSDECOD=INFORMED CONSENT OBTAINED` makes the consent record; `VS.VSORRES WHERE
    VSTESTCD=OXYSAT` a SpO2 record with no time point (unless the annotation names one).
    Annotations without a condition (a date, a time part) only fill the records the others make.
    """
    conditions: list[dict[str, str]] = []
    for cut_field, target in source.annotated:
        if cut_field.form != form or target.domain != parent:
            continue
        where = dict(target.where)
        if target.value:
            where[target.variable] = target.value
        if where:
            conditions.append(where | {f"{parent}TPT": where.get(f"{parent}TPT", "")})
    return conditions or None


def parent_records(source: SdtmSource, form: str, parent: CutTable,
                   places: pd.DataFrame, extra: dict[str, str]) -> pd.DataFrame:
    """`places` joined to the parent records made from the same form row: column `SEQ` added.

    `extra` conditions (the qualifier's own `WHERE`, such as `VSTESTCD=OXYSAT`) name the parent
    records themselves; without them, the records the form makes are its parents.
    """
    frame, code = parent.frame, parent.name
    seq = f"{code}SEQ"
    if frame.empty or seq not in frame:
        return places.iloc[0:0].assign(SEQ=pd.Series(dtype=float))
    candidates = frame
    tpt = f"{code}TPT"
    conditions = ([extra | {tpt: extra.get(tpt, "")}] if extra
                  else _form_conditions(source, form, code))
    if conditions:
        keep = pd.Series(False, index=frame.index)
        for condition in conditions:
            hit = pd.Series(True, index=frame.index)
            for variable, value in condition.items():
                if variable in frame:
                    hit &= frame[variable].fillna("").astype(str) == value
            keep |= hit
        candidates = frame[keep]
    keys = ["USUBJID"]
    parents = pd.DataFrame({"USUBJID": candidates["USUBJID"], "SEQ": candidates[seq]})
    spid = f"{code}SPID"
    if "SPID" in places and spid not in candidates:  # no parent record says which log row
        return places.iloc[0:0].assign(SEQ=pd.Series(dtype=float))
    if "SPID" in places:
        parents["SPID"] = candidates[spid].fillna("").astype(str).str.replace(
            r"\.0$", "", regex=True)
        keys.append("SPID")
    elif "VISITNUM" in places and "VISITNUM" in candidates:
        parents["PARENT_VISITNUM"] = pd.to_numeric(candidates["VISITNUM"], errors="coerce")
    linked = places.reset_index(drop=True).merge(parents, on=keys, how="inner")
    if "PARENT_VISITNUM" in linked:  # a record without a visit (a log's) is at every visit
        at = linked["PARENT_VISITNUM"]
        linked = linked[at.isna() | (at == linked["VISITNUM"])].drop(columns="PARENT_VISITNUM")
    return linked.reset_index(drop=True)


def _origin(cut_field: CutField) -> str:
    derived = cut_field.field_type == "calc" or "derived" in cut_field.sdtm.lower()
    return "DERIVED" if derived else "CRF"


def supplemental(source: SdtmSource, parent: CutTable) -> CutTable:
    """`SUPP<parent>`: one record per qualifier value and parent record it qualifies."""
    code = parent.name
    parts = []
    labels: dict[str, str] = {}
    for cut_field, target in supp_targets(source, code):
        qnam = target.where["QNAM"][:8]
        labels.setdefault(qnam, ascii_text(cut_field.label)[:40])
        rows = source.rows(cut_field.form)
        values = ascii_texts(sdtm_values(source.column(rows, cut_field.name), cut_field,
                                         "QVAL"))
        places = _places(source, cut_field.form, values)
        places = places[places["QVAL"] != ""]
        if places.empty:
            continue
        if code == "DM":
            linked = places.assign(IDVAR="", IDVARVAL="")
        else:
            extra = {k: v for k, v in target.where.items() if k != "QNAM"}
            linked = parent_records(source, cut_field.form, parent, places, extra)
            linked = linked.assign(IDVAR=f"{code}SEQ",
                                   IDVARVAL=linked["SEQ"].map(lambda s: f"{int(s)}"))
        parts.append(linked.assign(QNAM=qnam, QLABEL=labels[qnam], QORIG=_origin(cut_field)))
    frame = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=["USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL", "QVAL",
                                        "QORIG"]))
    frame = frame.assign(STUDYID=STUDYID, RDOMAIN=code, QEVAL="")
    frame = frame.drop_duplicates(["USUBJID", "IDVAR", "IDVARVAL", "QNAM"])
    qnams = {qnam: i for i, qnam in enumerate(labels)}
    order = np.lexsort((frame["QNAM"].map(qnams).to_numpy(dtype=np.int64),
                        np.array([int(v or 0) for v in frame["IDVARVAL"]], dtype=np.int64),
                        natural_ranks(frame["USUBJID"])))
    frame = frame.iloc[order][list(SUPP_COLUMNS)].reset_index(drop=True)
    return CutTable(name=f"SUPP{code}", frame=frame,
                    kinds={c: "string" for c in SUPP_COLUMNS}, labels=dict(SUPP_LABELS),
                    sources={"QVAL": "CRF: the field of each QNAM (value-level metadata)",
                             "IDVARVAL": f"Derived: {code}SEQ of the record made from the same "
                                         "form row" if code != "DM" else "Assigned"})


def _row_links(source: SdtmSource, built: dict[str, CutTable]) -> list[list[tuple[str, str, float]]]:
    """Records made from one row of a log form in more than one domain (an AE and the
    hospitalisation recorded on it): per row, its (USUBJID, domain, --SEQ)."""
    groups: list[list[tuple[str, str, float]]] = []
    for form in source.schema.forms:
        if form not in source.repeating:
            continue
        domains = list(dict.fromkeys(t.domain for f, t in source.annotated
                                     if f.form == form and t.domain in built
                                     and not t.domain.startswith("SUPP") and t.domain != "DM"))
        if len(domains) < 2:
            continue
        places = _places(source, form, pd.Series("", index=source.rows(form).index))
        places["ROW"] = range(len(places))
        found: dict[int, list[tuple[str, str, float]]] = {}
        for code in domains:
            linked = parent_records(source, form, built[code], places, {})
            for row, subject, seq in zip(linked["ROW"], linked["USUBJID"], linked["SEQ"]):
                found.setdefault(row, []).append((subject, code, seq))
        groups += [found[row] for row in sorted(found)
                   if len({code for _, code, _ in found[row]}) > 1]
    return groups


def _terms(table: CutTable) -> dict[str, list[tuple[str, float]]]:
    """Per subject, the (lower-case term, --SEQ) of an events domain's records."""
    frame, code = table.frame, table.name
    terms: dict[str, list[tuple[str, float]]] = {}
    if f"{code}TERM" in frame and f"{code}SEQ" in frame:
        for subject, term, seq in zip(frame["USUBJID"], frame[f"{code}TERM"], frame[f"{code}SEQ"]):
            if str(term).strip():
                terms.setdefault(subject, []).append((str(term).strip().lower(), seq))
    return terms


NAMED_BY_INDICATION = frozenset({"DS", "DV", "HO"})
"""Events domains whose terms are no indication (a disposition, a deviation, a stay)."""


def _named_links(built: dict[str, CutTable]) -> list[list[tuple[str, str, float]]]:
    """Records that name an event of the same subject: a medication whose indication is the
    term of an adverse event (or any other event, such as a medical history condition), a
    disposition whose AE reference (SUPPDS `DSAEREF`) holds the AE term."""
    groups: list[list[tuple[str, str, float]]] = []
    cm = built.get("CM")
    if cm is not None and "CMINDC" in cm.frame:
        for code, table in built.items():
            if code in NAMED_BY_INDICATION or code.startswith("SUPP"):
                continue
            terms = _terms(table)
            for subject, indication, seq in zip(cm.frame["USUBJID"], cm.frame["CMINDC"],
                                                cm.frame["CMSEQ"]):
                hits = [s for term, s in terms.get(subject, [])
                        if term == str(indication).strip().lower()]
                groups += [[(subject, code, s), (subject, "CM", seq)] for s in hits]
    supp, ae = built.get("SUPPDS"), built.get("AE")
    if supp is not None and ae is not None and not supp.frame.empty:
        terms = _terms(ae)
        refs = supp.frame[supp.frame["QNAM"] == "DSAEREF"]
        for subject, text, seq in zip(refs["USUBJID"], refs["QVAL"], refs["IDVARVAL"]):
            hits = [s for term, s in terms.get(subject, []) if term in str(text).lower()]
            groups += [[(subject, "AE", s), (subject, "DS", float(seq))] for s in hits]
    return groups


def related_records(source: SdtmSource, built: dict[str, CutTable]) -> CutTable:
    """RELREC: record-level relationships the CRF states, one RELID per related set."""
    rows: list[dict[str, str]] = []
    counters: dict[str, int] = {}
    seen: set[tuple[tuple[str, str, float], ...]] = set()
    for group in _row_links(source, built) + _named_links(built):
        key = tuple(sorted(set(group)))
        if key in seen:
            continue
        seen.add(key)
        subject = group[0][0]
        counters[subject] = counters.get(subject, 0) + 1
        for _, code, seq in key:
            rows.append({"STUDYID": STUDYID, "RDOMAIN": code, "USUBJID": subject,
                         "IDVAR": f"{code}SEQ", "IDVARVAL": f"{int(seq)}", "RELTYPE": "",
                         "RELID": str(counters[subject])})
    frame = pd.DataFrame(rows, columns=list(RELREC_COLUMNS))
    if not frame.empty:
        order = np.lexsort((np.array([int(v) for v in frame["RELID"]], dtype=np.int64),
                            natural_ranks(frame["USUBJID"])))
        frame = frame.iloc[order].reset_index(drop=True)
    return CutTable(name="RELREC", frame=frame, kinds={c: "string" for c in RELREC_COLUMNS},
                    labels=dict(RELREC_LABELS),
                    sources={"RELID": "Derived: records made from one row of a log form, or "
                                      "naming an event of the subject (CMINDC, DSAEREF)",
                             "IDVARVAL": "Derived: --SEQ of the related record"})


def linked_domains(source: SdtmSource, built: dict[str, CutTable]) -> dict[str, CutTable]:
    """`SUPP--` of every built domain the CRF annotates qualifiers for (in `built`'s order),
    then RELREC over all of them."""
    linked = {f"SUPP{code}": supplemental(source, table) for code, table in built.items()
              if supp_targets(source, code)}
    return linked | {"RELREC": related_records(source, built | linked)}


NO_RECORDS_NOTE = "SDTM datasets without records are not written: "
UNWRITTEN_NOTE = "CRF annotations point at domains this cut does not write yet: "


def domains_to_write(schema: CutSchema, built: list[CutTable]) -> tuple[list[CutTable], list[str]]:
    """The datasets to write and the manifest's notes on the rest: a dataset without records is
    left out (a sponsor submits none; CDISC CORE cannot read one: no first record names its
    domain), and an annotated domain no builder makes is named."""
    empty = [t.name for t in built if t.frame.empty]
    notes = [NO_RECORDS_NOTE + ", ".join(empty)] if empty else []
    unwritten = unwritten_domains(schema, {t.name for t in built})
    notes += [UNWRITTEN_NOTE + ", ".join(unwritten)] if unwritten else []
    return [t for t in built if t.name not in empty], notes
