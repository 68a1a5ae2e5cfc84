"""Define-XML 2.1 (`define.xml`) for the SDTM datasets, and a stylesheet-free HTML view of it.

Datasets with their key variables and classes, variables with labels, types, lengths and
origins (collected ones point at their page of the annotated CRF, derived ones at a method),
value-level metadata for the findings domains (one entry per test code), and codelists with
their NCI codelist codes where the variable has a CDISC one. Written with the standard library
only, in a fixed order, so the same cut gives the same bytes.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from html import escape

import numpy as np
import pandas as pd

from sync.export.annotations import codelist
from sync.export.findings import annotated_pairs, result_fields
from sync.export.meta import CutSchema
from sync.export.sdtm import STUDYID
from sync.export.tables import CutTable
from sync.export.xpt import XptDataset, XptVariable

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.1"
XLINK = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
CT_VERSION = "2025-09-26"
"""The SDTM controlled terminology package the terms follow (named in the manifest too)."""
CLASSES = {"DM": "SPECIAL PURPOSE", "IE": "FINDINGS", "VS": "FINDINGS", "LB": "FINDINGS",
           "EC": "INTERVENTIONS", "CM": "INTERVENTIONS", "AE": "EVENTS", "DS": "EVENTS",
           "SV": "SPECIAL PURPOSE", "TS": "TRIAL DESIGN", "TA": "TRIAL DESIGN",
           "TE": "TRIAL DESIGN", "TV": "TRIAL DESIGN", "TI": "TRIAL DESIGN",
           "EX": "INTERVENTIONS", "SU": "INTERVENTIONS", "PR": "INTERVENTIONS", "MH": "EVENTS",
           "HO": "EVENTS", "DV": "EVENTS",
           **dict.fromkeys(("MB", "QS", "FA", "TU", "TR", "EG", "PE", "RP", "DD"), "FINDINGS"),
           "SE": "SPECIAL PURPOSE", "RELREC": "RELATIONSHIP"}
REFERENCE_DATA = frozenset({"TS", "TA", "TE", "TV", "TI"})
STRUCTURES = {"DM": "One record per subject",
              "IE": "One record per inclusion/exclusion criterion not met per subject",
              "VS": "One record per vital sign measurement per time point per visit per subject",
              "LB": "One record per lab test per time point per visit per subject",
              "EC": "One record per protocol-specified study treatment, collected-dosing interval, "
                    "per subject, per mood",
              "CM": "One record per recorded intervention occurrence per subject",
              "AE": "One record per adverse event per subject",
              "DS": "One record per disposition status or protocol milestone per subject",
              "SV": "One record per actual visit per subject",
              "TS": "One record per trial summary parameter value",
              "TA": "One record per planned element per arm", "TE": "One record per planned element",
              "TV": "One record per planned visit per arm", "TI": "One record per I/E criterion",
              "EX": "One record per protocol-specified study treatment, constant-dosing interval, "
                    "per subject",
              "MH": "One record per medical history event per subject",
              "SU": "One record per substance type per reported occurrence per subject",
              "PR": "One record per recorded procedure per occurrence per subject",
              "HO": "One record per healthcare encounter per subject",
              "DV": "One record per protocol deviation per subject",
              "MB": "One record per microbiology specimen finding per time point per visit "
                    "per subject",
              "QS": "One record per questionnaire per question per time point per visit "
                    "per subject",
              "FA": "One record per finding, per object, per time point, per visit per subject",
              "TU": "One record per identified tumor or lesion per subject",
              "TR": "One record per tumor or lesion measurement per visit per subject",
              "EG": "One record per ECG observation per replicate per time point per visit "
                    "per subject",
              "PE": "One record per body system or abnormality per visit per subject",
              "RP": "One record per finding or result per time point per visit per subject",
              "DD": "One record per finding per subject",
              "SE": "One record per actual Element per subject",
              "RELREC": "One record per related record, group of records or dataset"}
SUPP_STRUCTURE = "One record per IDVAR, IDVARVAL, and QNAM value per subject"
MANDATORY_LINKS = ("RDOMAIN", "QNAM", "QLABEL", "QVAL", "QORIG", "RELID")
"""SUPP--/RELREC variables SDTMIG 3.4 requires."""
SUPP_KEYS = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM"]
KEYS = {"DM": ["STUDYID", "USUBJID"],
        "IE": ["STUDYID", "USUBJID", "IETESTCD"],
        "VS": ["STUDYID", "USUBJID", "VSTESTCD", "VISITNUM", "VSTPTNUM", "VSDTC", "VSSEQ"],
        "LB": ["STUDYID", "USUBJID", "LBTESTCD", "LBCAT", "VISITNUM", "LBDTC", "LBSEQ"],
        "EC": ["STUDYID", "USUBJID", "ECTRT", "ECSTDTC", "ECSEQ"],
        "CM": ["STUDYID", "USUBJID", "CMTRT", "CMSTDTC", "CMSEQ"],
        "AE": ["STUDYID", "USUBJID", "AETERM", "AESTDTC", "AESEQ"],
        "DS": ["STUDYID", "USUBJID", "DSDECOD", "DSSTDTC", "DSSEQ"],
        "SV": ["STUDYID", "USUBJID", "VISITNUM"], "TS": ["STUDYID", "TSPARMCD", "TSSEQ"],
        "TA": ["STUDYID", "ARMCD", "TAETORD"], "TE": ["STUDYID", "ETCD"],
        "TV": ["STUDYID", "VISITNUM"], "TI": ["STUDYID", "IETESTCD"],
        "EX": ["STUDYID", "USUBJID", "EXTRT", "EXSTDTC", "EXSEQ"],
        "MH": ["STUDYID", "USUBJID", "MHTERM", "MHSTDTC", "MHSEQ"],
        "SU": ["STUDYID", "USUBJID", "SUTRT", "SUSTDTC", "SUSEQ"],
        "PR": ["STUDYID", "USUBJID", "PRTRT", "PRSTDTC", "PRSEQ"],
        "HO": ["STUDYID", "USUBJID", "HOTERM", "HOSTDTC", "HOSEQ"],
        "DV": ["STUDYID", "USUBJID", "DVTERM", "DVSTDTC", "DVSEQ"],
        **{code: ["STUDYID", "USUBJID", f"{code}TESTCD", f"{code}TSTDTL", f"{code}CAT",
                  f"{code}OBJ", f"{code}LNKID", "VISITNUM", f"{code}DTC", f"{code}SEQ"]
           for code in ("MB", "QS", "FA", "TU", "TR", "EG", "PE", "RP", "DD")},
        "SE": ["STUDYID", "USUBJID", "ETCD", "SESTDTC"],
        "RELREC": ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELID"]}
CODELIST_CODES: dict[str, tuple[str, str]] = {
    "SEX": ("C66731", "Sex"), "AGEU": ("C66781", "Age Unit"), "EPOCH": ("C99079", "Epoch"),
    "AEOUT": ("C66768", "Outcome of Event"), "AEACN": ("C66767", "Action Taken with Study Treatment"),
    "IECAT": ("C66797", "Category of Inclusion/Exclusion"), "DSCAT": ("C74558", "Category of Disposition Event"),
    "VSTESTCD": ("C66741", "Vital Signs Test Code"), "LBTESTCD": ("C65047", "Laboratory Test Code"),
    "VSTEST": ("C67153", "Vital Signs Test Name"), "LBTEST": ("C67154", "Laboratory Test Name"),
    "ARMNRS": ("C142179", "Arm Null Reason"), "DSDECOD": ("C66727", "Completion/Reason for Non-Completion"),
    "CMROUTE": ("C66729", "Route of Administration"), "LBNRIND": ("C78736", "Reference Range Indicator"),
    "AEENRTPT": ("C66728", "Relation to Reference Period"),
    "EGTESTCD": ("C71153", "ECG Test Code"), "EGTEST": ("C71152", "ECG Test Name"),
    "MBTESTCD": ("C120527", "Microbiology Test Code"),
    "MBTEST": ("C120528", "Microbiology Test Name"),
    "RPTESTCD": ("C106479", "Reproductive System Findings Test Code"),
    "RPTEST": ("C106478", "Reproductive System Findings Test Name"),
    "DDTESTCD": ("C116108", "Death Details Test Code"),
    "DDTEST": ("C116107", "Death Details Test Name"),
    "TRTESTCD": ("C96779", "Tumor or Lesion Properties Test Code"),
    "TRTEST": ("C96778", "Tumor or Lesion Properties Test Name"),
    "TUTESTCD": ("C96784", "Tumor Identification Test Code"),
    "TUTEST": ("C96783", "Tumor Identification Test Name"),
    "FATESTCD": ("C101832", "Findings About Test Code"),
    "FATEST": ("C101833", "Findings About Test Name"),
    **{name: ("C66742", "No Yes Response") for name in (
        "AESER", "AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE", "ECOCCUR",
        "ECPRESP", "IEORRES", "IESTRESC", "DTHFL", "MHPRESP", "MHOCCUR", "SUPRESP", "SUOCCUR",
        "PRPRESP", "PROCCUR", "HOPRESP", "HOOCCUR", "CMPRESP", "CMOCCUR")},
    **{name: ("C66728", "Relation to Reference Period") for name in (
        "CMENRTPT", "MHENRTPT", "SUENRTPT", "PRENRTPT", "HOENRTPT", "SUSTRTPT")},
    "EXROUTE": ("C66729", "Route of Administration"), "EXDOSFRM": ("C66726", "Pharmaceutical Dosage Form"),
    **{name: ("C66789", "Not Done") for name in ("MHSTAT", "CMSTAT", "SUSTAT", "PRSTAT", "HOSTAT")},
}
"""NCI codelist C-codes of SDTMIG 3.4 variables (checked against CDISC CORE's variable map)."""
CODELIST_CODES |= {  # variables of the other domains with a CDISC codelist (CORE's SDTMIG 3.4 map)
    **{f"{d}ROUTE": ("C66729", "Route of Administration") for d in ("PR", "SU")},
    **{f"{d}DOSU": ("C71620", "Unit") for d in ("EX", "CM", "SU", "PR")},
    **{f"{d}SPEC": ("C78734", "Specimen Type") for d in ("LB", "MB")},
    **{f"{d}METHOD": ("C85492", "Method") for d in ("MB", "PE", "TR")},
    "EGMETHOD": ("C71151", "ECG Test Method")}
TERM_CODES: dict[str, str] = {
    "M": "C20197", "F": "C16576", "Y": "C49488", "N": "C49487", "YEARS": "C29848",
    "SCREENING": "C48262", "TREATMENT": "C101526", "FOLLOW-UP": "C99158",
    "INCLUSION": "C25532", "EXCLUSION": "C25370", "FATAL": "C48275",
    "RECOVERED/RESOLVED": "C49498", "RECOVERING/RESOLVING": "C49496",
    "NOT RECOVERED/NOT RESOLVED": "C49494", "RECOVERED/RESOLVED WITH SEQUELAE": "C49495",
    "DOSE NOT CHANGED": "C49504", "DRUG INTERRUPTED": "C49501", "DRUG WITHDRAWN": "C49502",
    "NOT APPLICABLE": "C48660", "HEIGHT": "C25347", "WEIGHT": "C25208", "TEMP": "C25206",
    "ONGOING": "C53279", "BEFORE": "C25629", "NOT DONE": "C49484",
    "RESP": "C49678", "SYSBP": "C25298", "DIABP": "C25299", "HR": "C49677", "OXYSAT": "C60832",
    "EGHRMN": "C119259", "QTCFAG": "C117786", "INTP": "C41255", "VRIDENT": "C120680",
    "CHILDPOT": "C106508", "BCMETHOD": "C106501", "PREGST": "C106561", "LMPSTDTC": "C81257",
    "EDLVRDTC": "C81247", "PRCDTH": "C99531", "VOLUME": "C25335", "LESIDENT": "C94189",
}
"""NCI C-codes of the terms above (SDTM CT); a term not listed is written without one."""
NY_DECODES = {"Y": "Yes", "N": "No"}


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, _q(ODM, tag))
    translated = ET.SubElement(element, _q(ODM, "TranslatedText"), {XML_LANG: "en"})
    translated.text = text
    return element


def _data_type(variable: XptVariable, values: pd.Series) -> str:
    if variable.type == "Num":
        numbers = pd.to_numeric(values, errors="coerce").dropna()
        return "integer" if (numbers == numbers.round()).all() else "float"
    return "datetime" if variable.name.endswith("DTC") else "text"


def _origin(parent: ET.Element, origin: str, schema: CutSchema, method: str | None) -> None:
    if origin.startswith("CRF: "):
        element = ET.SubElement(parent, _q(DEF, "Origin"), {"Type": "Collected",
                                                          "Source": "Investigator"})
        form = schema.form_of(origin.removeprefix("CRF: ").split(" ")[0])
        if form:
            ref = ET.SubElement(element, _q(DEF, "DocumentRef"), {"leafID": "LF.acrf"})
            ET.SubElement(ref, _q(DEF, "PDFPageRef"), {"PageRefs": form,
                                                      "Type": "NamedDestination"})
    elif method is not None:
        ET.SubElement(parent, _q(DEF, "Origin"), {"Type": "Derived"})
    else:
        ET.SubElement(parent, _q(DEF, "Origin"), {"Type": "Assigned"})


def _is_derived(origin: str) -> bool:
    return origin.startswith("Derived")


class _Define:
    """Collects the parts of MetaDataVersion in the order the schema wants them."""

    def __init__(self) -> None:
        self.value_lists: list[ET.Element] = []
        self.where_clauses: dict[str, ET.Element] = {}
        self.groups: list[ET.Element] = []
        self.items: list[ET.Element] = []
        self.codelists: dict[str, ET.Element] = {}
        self.methods: dict[str, ET.Element] = {}
        self.leaves: list[ET.Element] = []

    def method(self, oid: str, description: str) -> str:
        if oid not in self.methods:
            element = ET.Element(_q(ODM, "MethodDef"), {"OID": oid, "Name": oid[3:],
                                                        "Type": "Computation"})
            _text(element, "Description", description.removeprefix("Derived: ") or "Derived")
            self.methods[oid] = element
        return oid

    def codelist(self, variable: str, dataset: str, terms: dict[str, str]) -> str:
        code = CODELIST_CODES.get(variable)
        oid = f"CL.{variable}" if code else f"CL.{dataset}.{variable}"
        if oid in self.codelists:
            existing = self.codelists[oid]
            known = {e.get("CodedValue") for e in existing}
            for term, decode in terms.items():
                if term not in known:
                    self._term(existing, term, decode)
            return oid
        element = ET.Element(_q(ODM, "CodeList"), {
            "OID": oid, "Name": code[1] if code else f"{dataset} {variable}", "DataType": "text",
            **({_q(DEF, "StandardOID"): "STD.CT.SDTM"} if code else {})})
        for term, decode in sorted(terms.items()):
            self._term(element, term, decode)
        if code:
            ET.SubElement(element, _q(ODM, "Alias"), {"Name": code[0], "Context": "nci:ExtCodeID"})
        self.codelists[oid] = element
        return oid

    def value_ref(self, value_list: ET.Element, order: int, item_oid: str, where: str,
                  variable_oid: str, value: str, method: str | None = None) -> None:
        """One value-level entry: the ItemRef and the clause `variable = value` that selects it."""
        ref = ET.SubElement(value_list, _q(ODM, "ItemRef"), {
            "ItemOID": item_oid, "OrderNumber": str(order), "Mandatory": "No",
            **({"MethodOID": method} if method else {})})
        ET.SubElement(ref, _q(DEF, "WhereClauseRef"), {"WhereClauseOID": where})
        clause = ET.Element(_q(DEF, "WhereClauseDef"), {"OID": where})
        check = ET.SubElement(clause, _q(ODM, "RangeCheck"), {
            "SoftHard": "Soft", _q(DEF, "ItemOID"): variable_oid, "Comparator": "EQ"})
        ET.SubElement(check, _q(ODM, "CheckValue")).text = value
        self.where_clauses.setdefault(where, clause)

    @staticmethod
    def _term(codelist: ET.Element, term: str, decode: str) -> None:
        aliases = [a for a in codelist if a.tag == _q(ODM, "Alias")]
        for alias in aliases:
            codelist.remove(alias)
        item = ET.SubElement(codelist, _q(ODM, "CodeListItem"), {"CodedValue": term})
        _text(item, "Decode", decode or term)
        if term in TERM_CODES and codelist.get(_q(DEF, "StandardOID")):  # CDISC lists only
            ET.SubElement(item, _q(ODM, "Alias"), {"Name": TERM_CODES[term],
                                                   "Context": "nci:ExtCodeID"})
        codelist.extend(aliases)


def _variable(define: _Define, dataset: XptDataset, variable: XptVariable, frame: pd.DataFrame,
              schema: CutSchema, oid: str, name: str, label: str) -> ET.Element:
    values = frame[variable.source_name] if variable.source_name in frame else pd.Series(dtype=str)
    data_type = _data_type(variable, values)
    attributes = {"OID": oid, "Name": name, "DataType": data_type, "SASFieldName": name}
    if data_type in ("text", "integer", "float"):
        attributes["Length"] = str(variable.length if data_type == "text" else 8)
    item = ET.Element(_q(ODM, "ItemDef"), attributes)
    _text(item, "Description", label)
    terms = dict(variable.codelist)
    if variable.name in ("EPOCH", "AGEU", "ARMNRS") or variable.name.endswith("TESTCD"):
        terms |= {str(v): str(v) for v in values.dropna().unique() if str(v)}
    elif CODELIST_CODES.get(variable.name, ("",))[0] in ("C66742", "C66728", "C66789"):
        terms = {str(v): NY_DECODES.get(str(v), str(v))  # terms several fields fill
                 for v in values.dropna().unique() if str(v)} | terms
    if variable.name.endswith("TESTCD") and f"{variable.name[:-2]}" in frame:
        pairs = dict(zip(frame[variable.name], frame[variable.name[:-2]]))
        terms = {code: pairs.get(code, code) for code in terms}
    if terms:
        ET.SubElement(item, _q(ODM, "CodeListRef"),
                      {"CodeListOID": define.codelist(variable.name, dataset.name, terms)})
    method = (define.method(f"MT.{dataset.name}.{variable.name}", variable.origin)
              if _is_derived(variable.origin) else None)
    _origin(item, variable.origin, schema, method)
    return item


def _supp_value_list(define: _Define, dataset: XptDataset, table: CutTable, schema: CutSchema,
                     qval: XptVariable) -> str | None:
    """Value-level metadata of a SUPP-- dataset's QVAL: one ItemDef per QNAM, its origin the CRF
    pages of the fields annotated with it (or a method, when the field is derived)."""
    frame, name = table.frame, dataset.name
    if frame.empty:
        return None
    oid = f"VL.{name}.QVAL"
    value_list = ET.Element(_q(DEF, "ValueListDef"), {"OID": oid})
    qnams, qvals = frame["QNAM"].to_numpy(dtype=object), frame["QVAL"].astype(str).to_numpy()
    for order, qnam in enumerate(dict.fromkeys(qnams), start=1):
        first = int(np.flatnonzero(qnams == qnam)[0])
        where, item_oid = f"WC.{name}.QNAM.{qnam}", f"IT.{name}.QVAL.{qnam}"
        fields = [f for f, t in annotated_pairs(schema) if t.domain == name
                  and t.variable == "QVAL" and t.where.get("QNAM") == qnam]
        derived = bool(fields) and frame["QORIG"].iat[first] == "DERIVED"
        method = (define.method(f"MT.{name}.{qnam}", f"{fields[0].name}: REDCap calculation "
                                f"{fields[0].calculation}".strip()) if derived else None)
        define.value_ref(value_list, order, item_oid, where, f"IT.{name}.QNAM", str(qnam), method)
        item = ET.Element(_q(ODM, "ItemDef"), {
            "OID": item_oid, "Name": str(qnam), "DataType": "datetime" if fields and fields[
                0].kind in ("date", "datetime") else "text",
            "Length": str(max([1] + [len(v) for v in qvals[qnams == qnam]])),
            "SASFieldName": str(qnam)})
        _text(item, "Description", str(frame["QLABEL"].iat[first]))
        terms = codelist(fields[0], "QVAL") if fields else {}
        if terms:
            ET.SubElement(item, _q(ODM, "CodeListRef"), {
                "CodeListOID": define.codelist(f"{qnam}", name, terms)})
        if method:
            ET.SubElement(item, _q(DEF, "Origin"), {"Type": "Derived"})
        else:
            origin = ET.SubElement(item, _q(DEF, "Origin"), {"Type": "Collected",
                                                             "Source": "Investigator"})
            forms = " ".join(dict.fromkeys(f.form for f in fields))
            if forms:
                document = ET.SubElement(origin, _q(DEF, "DocumentRef"), {"leafID": "LF.acrf"})
                ET.SubElement(document, _q(DEF, "PDFPageRef"), {"PageRefs": forms,
                                                               "Type": "NamedDestination"})
        define.items.append(item)
    define.value_lists.append(value_list)
    return oid


def _value_list(define: _Define, dataset: XptDataset, table: CutTable, schema: CutSchema,
                result: XptVariable) -> str | None:
    """Value-level metadata of a findings result: one ItemDef per test code."""
    frame, code = table.frame, dataset.name
    testcd = f"{code}TESTCD"
    if testcd not in frame or frame.empty:
        return None
    oid = f"VL.{code}.{result.name}"
    value_list = ET.Element(_q(DEF, "ValueListDef"), {"OID": oid})
    tests = frame[testcd].to_numpy(dtype=object)
    texts = frame[result.source_name].astype(str).to_numpy(dtype=object)
    names = frame[f"{code}TEST"].to_numpy(dtype=object) if f"{code}TEST" in frame else None
    units_of = frame[f"{code}ORRESU"].to_numpy(dtype=object) if f"{code}ORRESU" in frame \
        else None
    for order, test in enumerate(sorted(frame[testcd].dropna().unique()), start=1):
        at = np.flatnonzero(tests == test)  # the test's rows, without a frame per test
        where = f"WC.{code}.{testcd}.{test}"
        item_oid = f"IT.{code}.{result.name}.{test}"
        define.value_ref(value_list, order, item_oid, where, f"IT.{code}.{testcd}", str(test))
        values = texts[at]
        numeric = pd.to_numeric(pd.Series(values, dtype=object).replace("", pd.NA),
                                errors="coerce")
        data_type = ("integer" if numeric.notna().all() and (numeric == numeric.round()).all()
                     else "float" if numeric.notna().all() else "text")
        item = ET.Element(_q(ODM, "ItemDef"), {
            "OID": item_oid, "Name": result.name, "DataType": data_type,
            "Length": str(max([1] + [len(v) for v in values])), "SASFieldName": result.name})
        test_name = str(names[at[0]]) if names is not None else str(test)
        units = sorted({u for u in units_of[at] if u}) if units_of is not None else []
        _text(item, "Description", test_name + (f" ({', '.join(units)})" if units else ""))
        origin = table.sources.get(result.source_name, "CRF")
        fields = result_fields(schema, code, str(test))
        _origin(item, f"CRF: {fields[0]}" if fields else origin, schema,
                None if fields else "derived")
        define.items.append(item)
    define.value_lists.append(value_list)
    return oid


def define_xml(datasets: list[XptDataset], domains: list[CutTable], schema: CutSchema,
               created: str, tag: str = "") -> str:
    """Define-XML 2.1 text for the written XPT datasets (same order as written)."""
    for prefix, uri in (("", ODM), ("def", DEF), ("xlink", XLINK)):
        ET.register_namespace(prefix, uri)
    root = ET.Element(_q(ODM, "ODM"), {
        "FileOID": f"DEFINE.{STUDYID}", "FileType": "Snapshot", "ODMVersion": "1.3.2",
        "CreationDateTime": created.removesuffix("Z"), "Originator": "ecrf export",
        "SourceSystem": "ecrf", _q(DEF, "Context"): "Other"})
    study = ET.SubElement(root, _q(ODM, "Study"), {"OID": f"ST.{STUDYID}"})
    globals_ = ET.SubElement(study, _q(ODM, "GlobalVariables"))
    for tag_name in ("StudyName", "StudyDescription", "ProtocolName"):
        ET.SubElement(globals_, _q(ODM, tag_name)).text = STUDYID
    version = ET.SubElement(study, _q(ODM, "MetaDataVersion"), {
        "OID": f"MDV.{STUDYID}.SDTMIG.3.4", "Name": "SDTM data definitions",
        _q(DEF, "DefineVersion"): "2.1.0"})
    standards = ET.SubElement(version, _q(DEF, "Standards"))
    ET.SubElement(standards, _q(DEF, "Standard"), {"OID": "STD.SDTMIG.3.4", "Name": "SDTMIG",
                                                  "Type": "IG", "Version": "3.4",
                                                  "Status": "Final"})
    ET.SubElement(standards, _q(DEF, "Standard"), {
        "OID": "STD.CT.SDTM", "Name": "CDISC/NCI", "Type": "CT", "PublishingSet": "SDTM",
        "Version": CT_VERSION, "Status": "Final"})
    crf = ET.SubElement(version, _q(DEF, "AnnotatedCRF"))
    ET.SubElement(crf, _q(DEF, "DocumentRef"), {"leafID": "LF.acrf"})
    define = _Define()
    tables = {t.name: t for t in domains}
    for dataset in datasets:
        table = tables[dataset.name]
        name = dataset.name
        supp = name.startswith("SUPP")
        group = ET.Element(_q(ODM, "ItemGroupDef"), {
            "OID": f"IG.{name}", "Name": name, "Repeating": "No" if name == "DM" else "Yes",
            "IsReferenceData": "Yes" if name in REFERENCE_DATA else "No",
            "SASDatasetName": name, "Domain": name.removeprefix("SUPP"), "Purpose": "Tabulation",
            _q(DEF, "Structure"): SUPP_STRUCTURE if supp else STRUCTURES.get(
                name, "One record per subject"),
            _q(DEF, "StandardOID"): "STD.SDTMIG.3.4",
            _q(DEF, "ArchiveLocationID"): f"LF.{name}"})
        _text(group, "Description", dataset.label)
        keys = [k for k in (SUPP_KEYS if supp else KEYS.get(name, []))
                if any(v.name == k for v in dataset.variables)]
        for order, variable in enumerate(dataset.variables, start=1):
            oid = f"IT.{dataset.name}.{variable.name}"
            attributes = {"ItemOID": oid, "OrderNumber": str(order),
                          "Mandatory": "Yes" if variable.name in (
                              "STUDYID", "DOMAIN", "USUBJID", f"{dataset.name}SEQ",
                              f"{dataset.name}TESTCD", f"{dataset.name}TEST", *MANDATORY_LINKS)
                          else "No"}
            if variable.name in keys:
                attributes["KeySequence"] = str(keys.index(variable.name) + 1)
            if _is_derived(variable.origin):
                attributes["MethodOID"] = f"MT.{dataset.name}.{variable.name}"
            ET.SubElement(group, _q(ODM, "ItemRef"), attributes)
            item = _variable(define, dataset, variable, table.frame, schema, oid, variable.name,
                             variable.label)
            if variable.name in (f"{dataset.name}ORRES", f"{dataset.name}STRESC") or (
                    supp and variable.name == "QVAL"):
                value_list = (_supp_value_list(define, dataset, table, schema, variable) if supp
                              else _value_list(define, dataset, table, schema, variable))
                if value_list:
                    ET.SubElement(item, _q(DEF, "ValueListRef"), {"ValueListOID": value_list})
            define.items.append(item)
        ET.SubElement(group, _q(DEF, "Class"), {
            "Name": "RELATIONSHIP" if supp else CLASSES.get(dataset.name, "FINDINGS")})
        leaf = ET.SubElement(group, _q(DEF, "leaf"), {"ID": f"LF.{dataset.name}",
                                                     _q(XLINK, "href"): dataset.file})
        ET.SubElement(leaf, _q(DEF, "title")).text = dataset.file
        define.groups.append(group)
    version.extend(define.value_lists + list(define.where_clauses.values()) + define.groups
                   + define.items
                   + list(define.codelists.values()) + list(define.methods.values()))
    leaf = ET.SubElement(version, _q(DEF, "leaf"), {"ID": "LF.acrf",
                                                   _q(XLINK, "href"): f"../acrf/index{tag}.html"})
    ET.SubElement(leaf, _q(DEF, "title")).text = "Annotated CRF"
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def define_html(datasets: list[XptDataset]) -> str:
    """A plain HTML view of the define: one table of variables per dataset."""
    parts = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
             "<title>Define-XML: SDTM datasets</title>\n</head>\n<body>\n"
             "<h1>SDTM datasets (SDTMIG 3.4)</h1>\n"]
    for dataset in datasets:
        parts.append(f'<h2 id="{escape(dataset.name)}">{escape(dataset.name)}: '
                     f"{escape(dataset.label)} ({dataset.rows} records, "
                     f'<a href="{escape(dataset.file)}">{escape(dataset.file)}</a>)</h2>\n'
                     "<table border=\"1\">\n<tr><th>Variable</th><th>Label</th><th>Type</th>"
                     "<th>Length</th><th>Origin</th><th>Terms</th></tr>\n")
        for v in dataset.variables:
            terms = "; ".join(f"{escape(t)} = {escape(d)}" for t, d in sorted(v.codelist.items()))
            parts.append(f"<tr><td>{escape(v.name)}</td><td>{escape(v.label)}</td>"
                         f"<td>{v.type}</td><td>{v.length}</td><td>{escape(v.origin)}</td>"
                         f"<td>{terms}</td></tr>\n")
        parts.append("</table>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)
