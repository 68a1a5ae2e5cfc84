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

import re

import numpy as np
import pandas as pd

from sync.export.annotations import Target, ascii_text, sdtm_array, unwritten_domains
from sync.export.meta import CutField, CutSchema
from sync.export.sdtm import STUDYID, SdtmSource
from sync.export.tables import CutTable, filled_text, natural_ranks

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


def _row_places(source: SdtmSource, form: str) -> tuple[np.ndarray, np.ndarray]:
    """Per raw row of `form`: (USUBJID, SPID as text on a log, else VISITNUM or NaN)."""
    rows = source.rows(form)
    records = rows[source.schema.record_id].to_numpy(dtype=object)
    subjects = {r: f"{STUDYID}-{r}" for r in dict.fromkeys(records)}
    usubjid = np.array([subjects[r] for r in records], dtype=object)
    if form in source.repeating:
        instances = rows["redcap_repeat_instance"].to_numpy(dtype=object)
        texts = {v: str(v) for v in dict.fromkeys(instances)}
        return usubjid, np.array([texts[v] for v in instances], dtype=object)
    visits = {e: float(source.visits[e][0]) if e in source.visits else np.nan
              for e in dict.fromkeys(rows["redcap_event_name"])}
    return usubjid, np.array([visits[e] for e in rows["redcap_event_name"]], dtype=float)


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


class _Index:
    """Parent records by the key of where they sit: per key (its code), their positions in the
    parent domain, in its order."""

    def __init__(self, keys: list[object], positions: np.ndarray) -> None:
        self.codes: dict[object, int] = {}
        coded = np.array([self.codes.setdefault(k, len(self.codes)) for k in keys],
                         dtype=np.int64)
        self.order = positions[np.argsort(coded, kind="stable")]
        self.counts = np.bincount(coded, minlength=len(self.codes))
        self.starts = np.cumsum(self.counts) - self.counts

    def join(self, keys: list[object]) -> tuple[np.ndarray, np.ndarray]:
        """(row, parent position) of every parent record under each row's key, rows in order."""
        coded = np.array([self.codes.get(k, -1) for k in keys], dtype=np.int64)
        rows = np.flatnonzero(coded >= 0)
        coded = coded[rows]
        sizes = self.counts[coded]
        rows = np.repeat(rows, sizes)
        first = np.repeat(self.starts[coded] - (np.cumsum(sizes) - sizes), sizes)
        return rows, self.order[first + np.arange(len(rows))]


class _Parents:
    """A parent domain's records as plain columns, each worked out once per domain: the text
    of a variable, and per form and condition the records by subject and place."""

    def __init__(self, parent: CutTable) -> None:
        self.frame, self.code = parent.frame, parent.name
        self._texts: dict[str, np.ndarray] = {}
        self._found: dict[tuple, tuple[_Index, _Index | None] | None] = {}

    def text(self, variable: str) -> np.ndarray:
        """A variable as text (blank where missing), as the parent records hold it."""
        if variable not in self._texts:
            self._texts[variable] = (self.frame[variable].fillna("").astype(str)
                                     .to_numpy(dtype=object))
        return self._texts[variable]

    def seqs(self, positions: np.ndarray) -> np.ndarray:
        return self.frame[f"{self.code}SEQ"].to_numpy()[positions]

    def linked(self, source: SdtmSource, form: str, extra: dict[str, str],
               subjects: np.ndarray, places: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, parent position) of every parent record each row of `form` qualifies, rows in
        order (`extra` conditions name the parent records); a record without a visit (a
        log's) is at every visit of its subject."""
        key = (form, tuple(extra.items()))
        if key not in self._found:
            self._found[key] = self._indexes(source, form, extra)
        found = self._found[key]
        if found is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        placed, anywhere = found
        if anywhere is None:
            return placed.join(list(zip(subjects.tolist(), places.tolist())))
        visits = places.tolist()
        rows, positions = placed.join([(s, v) if v == v else None
                                       for s, v in zip(subjects.tolist(), visits)])
        more_rows, more = anywhere.join(subjects.tolist())
        rows, positions = np.concatenate([rows, more_rows]), np.concatenate([positions, more])
        order = np.lexsort((positions, rows))
        return rows[order], positions[order]

    def _indexes(self, source: SdtmSource, form: str,
                 extra: dict[str, str]) -> tuple[_Index, _Index | None] | None:
        frame, code = self.frame, self.code
        seq, spid = f"{code}SEQ", f"{code}SPID"
        if frame.empty or seq not in frame:
            return None
        tpt = f"{code}TPT"
        conditions = ([extra | {tpt: extra.get(tpt, "")}] if extra
                      else _form_conditions(source, form, code))
        chosen = np.arange(len(frame))
        if conditions:
            keep = np.zeros(len(frame), dtype=bool)
            for condition in conditions:
                hit = np.ones(len(frame), dtype=bool)
                for variable, value in condition.items():
                    if variable in frame:
                        hit &= self.text(variable) == value
                keep |= hit
            chosen = np.flatnonzero(keep)
        subjects = frame["USUBJID"].to_numpy(dtype=object)[chosen].tolist()
        if form in source.repeating:  # no parent record says which log row: none
            if spid not in frame:
                return None
            texts = self.text(spid)[chosen].tolist()
            plain = {v: re.sub(r"\.0$", "", v) for v in dict.fromkeys(texts)}
            return _Index([(s, plain[v]) for s, v in zip(subjects, texts)], chosen), None
        visits = (pd.to_numeric(frame["VISITNUM"], errors="coerce")
                  .to_numpy(dtype=float, na_value=np.nan)[chosen]
                  if "VISITNUM" in frame else np.full(len(chosen), np.nan))
        known = ~np.isnan(visits)
        return (_Index([(s, v) for s, v, k in zip(subjects, visits.tolist(), known.tolist())
                        if k], chosen[known]),
                _Index([s for s, k in zip(subjects, known.tolist()) if not k], chosen[~known]))


def parent_records(source: SdtmSource, form: str, parent: CutTable,
                   places: pd.DataFrame, extra: dict[str, str]) -> pd.DataFrame:
    """`places` joined to the parent records made from the same form row: column `SEQ` added.

    `extra` conditions (the qualifier's own `WHERE`, such as `VSTESTCD=OXYSAT`) name the parent
    records themselves; without them, the records the form makes are its parents.
    """
    parents = _Parents(parent)
    at = places["SPID" if "SPID" in places else "VISITNUM"].to_numpy()
    rows, positions = parents.linked(source, form, extra,
                                     places["USUBJID"].to_numpy(dtype=object), at)
    seq = f"{parent.name}SEQ"
    return places.iloc[rows].reset_index(drop=True).assign(
        SEQ=pd.Series(parents.seqs(positions), dtype=parent.frame[seq].dtype) if len(rows)
        else pd.Series(dtype=float))


def _origin(cut_field: CutField) -> str:
    derived = cut_field.field_type == "calc" or "derived" in cut_field.sdtm.lower()
    return "DERIVED" if derived else "CRF"


def supplemental(source: SdtmSource, parent: CutTable) -> CutTable:
    """`SUPP<parent>`: one record per qualifier value and parent record it qualifies."""
    code = parent.name
    parents = _Parents(parent)
    parts: list[dict[str, np.ndarray]] = []
    labels: dict[str, str] = {}
    seen: dict[str, np.ndarray | set[object]] = {}
    for cut_field, target in supp_targets(source, code):
        qnam = target.where["QNAM"][:8]
        labels.setdefault(qnam, ascii_text(cut_field.label)[:40])
        rows = source.rows(cut_field.form)
        raw = sdtm_array(source.column(rows, cut_field.name).to_numpy(dtype=object), cut_field,
                         "QVAL")
        texts = {value: ascii_text(value) for value in dict.fromkeys(raw.tolist())}
        values = np.array([texts[v] for v in raw.tolist()], dtype=object)
        kept = np.flatnonzero(values != "")
        if not len(kept):
            continue
        subjects, at = (a[kept] for a in _row_places(source, cut_field.form))
        values = values[kept]
        if code == "DM":  # one record per subject and QNAM: the first value
            known = seen.setdefault(qnam, set())
            chosen = np.array([row for row, s in enumerate(subjects.tolist())
                               if s not in known and not known.add(s)], dtype=np.int64)
            numbers = np.zeros(len(chosen), dtype=np.int64)
        else:  # one record per parent record and QNAM: the first row that qualifies it
            extra = {k: v for k, v in target.where.items() if k != "QNAM"}
            chosen, positions = parents.linked(source, cut_field.form, extra, subjects, at)
            first = np.unique(positions, return_index=True)[1]
            done = seen.setdefault(qnam, np.zeros(len(parent.frame), dtype=bool))
            first = np.sort(first[~done[positions[first]]])
            done[positions[first]] = True
            chosen, numbers = chosen[first], parents.seqs(positions[first]).astype(np.int64)
        parts.append({"USUBJID": subjects[chosen], "IDVARVAL": numbers, "QVAL": values[chosen],
                      "QNAM": filled_text(len(chosen), qnam),
                      "QORIG": filled_text(len(chosen), _origin(cut_field))})
    columns = {name: np.concatenate([p[name] for p in parts]) if parts
               else np.zeros(0, dtype=np.int64 if name == "IDVARVAL" else object)
               for name in ("USUBJID", "IDVARVAL", "QVAL", "QNAM", "QORIG")}
    qnams = {qnam: i for i, qnam in enumerate(labels)}
    order = np.lexsort((np.array([qnams[q] for q in columns["QNAM"].tolist()], dtype=np.int64),
                        columns["IDVARVAL"], natural_ranks(columns["USUBJID"])))
    numbers = columns["IDVARVAL"][order].tolist()
    texts = {n: f"{n}" if code != "DM" else "" for n in dict.fromkeys(numbers)}
    size = len(order)
    frame = pd.DataFrame({
        "STUDYID": filled_text(size, STUDYID), "RDOMAIN": filled_text(size, code),
        "USUBJID": columns["USUBJID"][order],
        "IDVAR": filled_text(size, f"{code}SEQ" if code != "DM" else ""),
        "IDVARVAL": np.array([texts[n] for n in numbers], dtype=object),
        "QNAM": columns["QNAM"][order],
        "QLABEL": np.array([labels[q] for q in columns["QNAM"][order].tolist()], dtype=object),
        "QVAL": columns["QVAL"][order], "QORIG": columns["QORIG"][order],
        "QEVAL": filled_text(size, "")})
    return CutTable(name=f"SUPP{code}", frame=frame,
                    kinds={c: "string" for c in SUPP_COLUMNS}, labels=dict(SUPP_LABELS),
                    sources={"QVAL": "CRF: the field of each QNAM (value-level metadata)",
                             "IDVARVAL": f"Derived: {code}SEQ of the record made from the same "
                                         "form row" if code != "DM" else "Assigned"})


def _row_links(source: SdtmSource, built: dict[str, CutTable]) -> list[list[tuple[str, str, float]]]:
    """Records made from one row of a log form in more than one domain (an AE and the
    hospitalisation recorded on it): per row, its (USUBJID, domain, --SEQ)."""
    groups: list[list[tuple[str, str, float]]] = []
    every: dict[str, _Parents] = {}
    for form in source.schema.forms:
        if form not in source.repeating:
            continue
        domains = list(dict.fromkeys(t.domain for f, t in source.annotated
                                     if f.form == form and t.domain in built
                                     and not t.domain.startswith("SUPP") and t.domain != "DM"))
        if len(domains) < 2:
            continue
        subjects, at = _row_places(source, form)
        found: dict[int, list[tuple[str, str, float]]] = {}
        for code in domains:
            parents = every.setdefault(code, _Parents(built[code]))
            rows, positions = parents.linked(source, form, {}, subjects, at)
            for row, seq in zip(rows.tolist(), parents.seqs(positions).tolist()):
                found.setdefault(row, []).append((subjects[row], code, seq))
        groups += [found[row] for row in sorted(found)
                   if len({code for _, code, _ in found[row]}) > 1]
    return groups


def _terms(table: CutTable) -> dict[str, list[tuple[str, float]]]:
    """Per subject, the (lower-case term, --SEQ) of an events domain's records."""
    frame, code = table.frame, table.name
    terms: dict[str, list[tuple[str, float]]] = {}
    if f"{code}TERM" in frame and f"{code}SEQ" in frame:
        for subject, term, seq in zip(frame["USUBJID"].tolist(), frame[f"{code}TERM"].tolist(),
                                      frame[f"{code}SEQ"].tolist()):
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
        texts = {v: str(v).strip().lower() for v in dict.fromkeys(cm.frame["CMINDC"].tolist())}
        indications = [(subject, texts[indication], seq) for subject, indication, seq in zip(
            *(cm.frame[c].tolist() for c in ("USUBJID", "CMINDC", "CMSEQ")))]
        for code, table in built.items():
            if code in NAMED_BY_INDICATION or code.startswith("SUPP"):
                continue
            named: dict[tuple[str, str], list[float]] = {}
            for subject, pairs in _terms(table).items():
                for term, s in pairs:
                    named.setdefault((subject, term), []).append(s)
            if not named:
                continue
            for subject, indication, seq in indications:
                hits = named.get((subject, indication), ())
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
