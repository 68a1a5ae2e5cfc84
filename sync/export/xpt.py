"""SAS transport v5 files and the define-like metadata that describes them.

XPT v5 allows names of 8 characters, labels of 40 and character values of 200 bytes, in ASCII;
pyreadstat checks only the names, so the rest is enforced here. pyreadstat stamps the header
records with the wall clock; those stamps are rewritten to the cut time so that the same data
gives the same bytes.
"""
from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from sync.export.annotations import ascii_text
from sync.export.meta import CutError
from sync.export.sdtm import STUDYID, dataset_label
from sync.export.tables import CutTable, text_codes

MAX_NAME, MAX_LABEL, MAX_VALUE = 8, 40, 200
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_STAMP = re.compile(rb"^\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d$")
_HEADERS = (b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!",
            b"HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!")

LABELS: dict[str, str] = {
    "STUDYID": "Study Identifier", "DOMAIN": "Domain Abbreviation",
    "USUBJID": "Unique Subject Identifier", "SUBJID": "Subject Identifier for the Study",
    "RFICDTC": "Date/Time of Informed Consent", "RFXSTDTC": "Date/Time of First Study Treatment",
    "BRTHDTC": "Date/Time of Birth", "AGE": "Age", "AGEU": "Age Units", "SEX": "Sex",
    "DTHDTC": "Date/Time of Death", "EPOCH": "Epoch", "SITEID": "Study Site Identifier",
    "COUNTRY": "Country", "RFSTDTC": "Subject Reference Start Date/Time",
    "RFENDTC": "Subject Reference End Date/Time", "RFXENDTC": "Date/Time of Last Study Treatment",
    "ECPRESP": "Pre-Specified", "DSSCAT": "Subcategory for Disposition Event",
    "TSPARMCD": "Trial Summary Parameter Short Name", "TSPARM": "Trial Summary Parameter",
    "TSVAL": "Parameter Value", "TAETORD": "Planned Order of Element within Arm",
    "ETCD": "Element Code", "ELEMENT": "Description of Element", "TABRANCH": "Branch",
    "TATRANS": "Transition Rule", "TESTRL": "Rule for Start of Element",
    "TEENRL": "Rule for End of Element", "VISITDY": "Planned Study Day of Visit",
    "TVSTRL": "Visit Start Rule", "SVSTDTC": "Start Date/Time of Observation",
    "SVENDTC": "End Date/Time of Observation",
    "ARMCD": "Planned Arm Code",
    "ARM": "Description of Planned Arm", "ACTARMCD": "Actual Arm Code",
    "ACTARM": "Description of Actual Arm", "ARMNRS": "Reason Arm and/or Actual Arm is Null", "DTHFL": "Subject Death Flag", "VISITNUM": "Visit Number",
    "VISIT": "Visit Name", "IETESTCD": "Inclusion/Exclusion Criterion Short Name",
    "IETEST": "Inclusion/Exclusion Criterion", "IECAT": "Inclusion/Exclusion Category",
    "IEORRES": "I/E Criterion Original Result", "IESTRESC": "I/E Criterion Result in Std Format",
    "ECTRT": "Name of Treatment", "ECOCCUR": "Occurrence", "ECREASOC": "Reason for Occur Value",
    "ECREFID": "Reference ID", "ECDOSE": "Dose", "ECDOSU": "Dose Units",
    "ECVAMT": "Treatment Vehicle Amount", "ECVAMTU": "Treatment Vehicle Amount Units",
    "ECADJ": "Reason for Dose Adjustment", "AETERM": "Reported Term for the Adverse Event",
    "AEENRTPT": "End Relative to Reference Time Point", "AETOXGR": "Standard Toxicity Grade",
    "AESER": "Serious Event", "AESDTH": "Results in Death", "AESLIFE": "Is Life Threatening",
    "AESHOSP": "Requires or Prolongs Hospitalization",
    "AESDISAB": "Persist or Signif Disability/Incapacity",
    "AESCONG": "Congenital Anomaly or Birth Defect",
    "AESMIE": "Other Medically Important Serious Event", "AEREL": "Causality",
    "AEACN": "Action Taken with Study Treatment", "AEOUT": "Outcome of Adverse Event",
    "CMTRT": "Reported Name of Drug, Med, or Therapy", "CMINDC": "Indication",
    "CMCLAS": "Medication Class", "CMDSTXT": "Dose Description",
    "CMROUTE": "Route of Administration", "DSTERM": "Reported Term for the Disposition Event",
    "DSDECOD": "Standardized Disposition Term", "DSCAT": "Category for Disposition Event",
    "LBORNRLO": "Reference Range Lower Limit in Orig Unit",
    "LBORNRHI": "Reference Range Upper Limit in Orig Unit", "LBNRIND": "Reference Range Indicator",
    "MHTERM": "Reported Term for the Medical History", "MHCAT": "Category for Medical History",
    "MHPRESP": "Medical History Event Pre-Specified", "MHOCCUR": "Medical History Occurrence",
    "SUTRT": "Reported Name of Substance", "SUPRESP": "SU Pre-Specified",
    "SUOCCUR": "SU Occurrence", "PRTRT": "Reported Name of Procedure",
    "PRCAT": "Category", "HOTERM": "Healthcare Encounter Term",
    "HOPRESP": "Pre-Specified Healthcare Encounter", "HOOCCUR": "Healthcare Encounter Occurrence",
    "DVTERM": "Protocol Deviation Term", "DVCAT": "Category for Protocol Deviation",
    "CMCAT": "Category for Medication", "CMPRESP": "CM Pre-Specified", "CMOCCUR": "CM Occurrence",
}
SUFFIX_LABELS: dict[str, str] = {
    "SEQ": "Sequence Number", "SPID": "Sponsor-Defined Identifier", "TESTCD": "Test Short Name",
    "TEST": "Test Name", "CAT": "Category", "ORRES": "Result or Finding in Original Units",
    "ORRESU": "Original Units", "STRESC": "Character Result/Finding in Std Format",
    "STRESN": "Numeric Result/Finding in Standard Units", "STRESU": "Standard Units",
    "TPT": "Planned Time Point Name", "STDTC": "Start Date/Time", "ENDTC": "End Date/Time",
    "DTC": "Date/Time of Collection", "DY": "Study Day of Visit/Collection/Exam",
    "STDY": "Study Day of Start of Observation", "ENDY": "Study Day of End of Observation",
    "TPTNUM": "Planned Time Point Number", "ENTPT": "End Reference Time Point",
    "ENRTPT": "End Relative to Reference Time Point", "PRESP": "Pre-Specified",
    "OCCUR": "Occurrence", "STAT": "Completion Status", "DOSE": "Dose", "DOSU": "Dose Units",
    "DOSFRM": "Dose Form", "ROUTE": "Route of Administration", "TRT": "Name of Treatment",
    "EVDTYP": "Medical History Event Date Type", "STRTPT": "Start Relative to Reference Time Point",
    "STTPT": "Start Reference Time Point",
}


def variable_label(name: str) -> str:
    """The SDTM label of a variable (by name, else by its `--` suffix), at most 40 characters."""
    return (LABELS.get(name) or SUFFIX_LABELS.get(name[2:]) or name)[:MAX_LABEL]


def xpt_name(name: str, taken: set[str]) -> str:
    """An XPT v5 name for `name`: upper case letters, digits and `_`, 8 long, unique in `taken`."""
    base = re.sub(r"[^A-Z0-9_]", "", name.upper()) or "VAR"
    if base[0].isdigit():
        base = "V" + base
    candidate, number = base[:MAX_NAME], 1
    while candidate in taken:
        suffix = str(number)
        candidate, number = base[: MAX_NAME - len(suffix)] + suffix, number + 1
    taken.add(candidate)
    return candidate


def sas_stamp(moment: datetime) -> bytes:
    """`ddMMMyy:hh:mm:ss`, the 16-byte date-time of XPT header records, locale-free."""
    return (f"{moment.day:02d}{_MONTHS[moment.month - 1]}{moment.year % 100:02d}:"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}").encode("ascii")


def pin_timestamps(path: Path, moment: datetime) -> None:
    """Rewrite the created/modified stamps of the library and member headers to `moment`."""
    data = bytearray(path.read_bytes())
    stamp = sas_stamp(moment)
    for header in _HEADERS:
        start = data.find(header)
        if start < 0:
            raise CutError(f"{path.name}: no {header[20:41].decode().strip()} record to pin")
        for offset in (start + 80 + 64, start + 160):
            if not _STAMP.match(bytes(data[offset:offset + 16])):
                raise CutError(f"{path.name}: unexpected header layout at byte {offset}")
            data[offset:offset + 16] = stamp
    path.write_bytes(bytes(data))


@dataclass
class XptVariable:
    """One variable of a written XPT file, as the define file lists it."""

    dataset: str
    name: str
    source_name: str
    label: str
    type: str
    length: int
    origin: str
    truncated: int = 0
    codelist: dict[str, str] = field(default_factory=dict)
    """Term -> decode for coded variables (XPT has no value labels, so they live here)."""


@dataclass
class XptDataset:
    """One written XPT file."""

    name: str
    label: str
    file: str
    rows: int
    variables: list[XptVariable] = field(default_factory=list)


@dataclass
class CharacterColumn:
    """A character column as its distinct XPT values (ASCII, at most `MAX_VALUE` long) and,
    per row, which one: the text work is done once per distinct value, not once per cell."""

    distinct: list[str]
    codes: np.ndarray
    too_long: int
    """Values longer than `MAX_VALUE` before they were cut."""

    @classmethod
    def of(cls, values: pd.Series | np.ndarray, distinct: list[str] | None = None
           ) -> CharacterColumn:
        """From values (`text_codes`), or from `codes` into `distinct` text."""
        if distinct is None:
            codes, distinct = text_codes(values)
        else:
            codes = np.asarray(values)
        full = [v if v.isascii() and v.isprintable() and "  " not in v else ascii_text(v)
                for v in distinct]
        long = np.array([len(v) > MAX_VALUE for v in full] or [False])
        return cls(distinct=[v[:MAX_VALUE] for v in full], codes=codes,
                   too_long=int(long[codes].sum()))

    @property
    def width(self) -> int:
        """The longest value's length, at least 1."""
        return max([1] + [len(v) for v in self.distinct])

    def series(self, index: pd.Index) -> pd.Series:
        return pd.Series(np.array(self.distinct, dtype=object)[self.codes], index=index,
                         dtype=object)

    def fixed(self, length: int) -> np.ndarray:
        """The values as ASCII bytes padded with blanks to `length`, one per row."""
        padded = np.array([v.encode("ascii")[:length].rstrip(b"\0").ljust(length)
                           for v in self.distinct]
                          or [b" " * length], dtype=f"S{length}")
        return padded[self.codes]


def _character(values: pd.Series) -> tuple[pd.Series, int]:
    column = CharacterColumn.of(values)
    return column.series(values.index), column.too_long


def write_xpt(table: CutTable, path: Path, moment: datetime,
              codelists: dict[str, dict[str, str]] | None = None) -> XptDataset:
    """Write a domain as XPT v5 (pinned stamps) and describe it for the define file."""
    codelists = codelists or {}
    taken: set[str] = set()
    dataset = XptDataset(name=table.name, label=dataset_label(table.name)[:40],
                         file=path.name, rows=len(table.frame))
    frame = pd.DataFrame(index=table.frame.index)
    for column in table.frame.columns:
        name = xpt_name(column, taken)
        numeric = table.kinds.get(column) == "number"
        if numeric:
            frame[name] = pd.to_numeric(table.frame[column], errors="coerce").astype("float64")
            truncated, length = 0, 8
        else:
            frame[name], truncated = _character(table.frame[column])
            length = max([1] + [len(v) for v in frame[name]])
        dataset.variables.append(XptVariable(
            dataset=table.name, name=name, source_name=column,
            label=ascii_text(table.labels.get(column) or variable_label(name))[:MAX_LABEL],
            type="Num" if numeric else "Char", length=length,
            origin=table.sources.get(column, "CRF"), truncated=truncated,
            codelist=codelists.get(column, {})))
    _longer_than_a_card(frame, {v.name for v in dataset.variables if v.type == "Char"})
    path.parent.mkdir(parents=True, exist_ok=True)
    pyreadstat.write_xport(
        frame, str(path), file_label=dataset.label, table_name=table.name[:MAX_NAME],
        column_labels={v.name: v.label for v in dataset.variables}, file_format_version=5)
    pin_timestamps(path, moment)
    return dataset


def _longer_than_a_card(frame: pd.DataFrame, character: set[str]) -> None:
    """Widen the widest character variable (trailing blanks, which readers drop) so a record is
    longer than one 80-byte card.

    pandas' XPT reader, which CDISC CORE uses, takes every blank 8-byte word of the last card for
    padding when records fit in a card: a file whose last record ends in blanks (SUPPDV's QEVAL)
    then reads one record short, or empty.
    """
    widths = {c: 8 if c not in character else max([1] + [len(v) for v in frame[c]])
              for c in frame.columns}
    short = 81 - sum(widths.values())
    if short <= 0 or frame.empty or not character:
        return
    widest = max(character, key=lambda c: widths[c])
    first = frame.index[0]
    frame.loc[first, widest] = frame.loc[first, widest].ljust(widths[widest] + short)


def define_document(datasets: list[XptDataset], cut_time: str) -> str:
    """The define-like metadata (define.json): datasets, variables, labels, types, origins.

    `source_name` differs from `name` where a variable was renamed to fit XPT v5 (the rename map);
    `truncated` counts character values cut to 200 bytes.
    """
    document = {
        "standard": "SDTM-like (not validated against SDTMIG)", "study": STUDYID,
        "cut_time": cut_time, "xpt_version": 5,
        "datasets": [{"name": d.name, "label": d.label, "file": d.file, "rows": d.rows,
                      "variables": [asdict(v) for v in d.variables]} for d in datasets],
        "rename_map": {f"{v.dataset}.{v.source_name}": v.name for d in datasets
                       for v in d.variables if v.source_name != v.name},
    }
    return json.dumps(document, sort_keys=True, indent=2) + "\n"


@dataclass
class XptColumn:
    """One variable of a streamed XPT file: its name, label, and width in bytes (8 if numeric)."""

    name: str
    label: str
    numeric: bool
    length: int


def ibm_doubles(values: np.ndarray) -> np.ndarray:
    """IEEE doubles as 8-byte IBM hexadecimal floats (big-endian), missing as SAS `.`.

    Exact: an IBM fraction holds 56 bits, at least 53 of them significant, as many as IEEE's.
    """
    values = np.asarray(values, dtype="float64")
    bits = values.view(">u8" if values.dtype.byteorder == ">" else "<u8").astype(np.uint64)
    sign = bits >> np.uint64(63)
    exponent = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    fraction = (bits & np.uint64((1 << 52) - 1)) | np.uint64(1 << 52)
    shift = (exponent - 763) % 4
    ibm_exponent = np.clip((exponent - 763 - shift) // 4, 0, 127).astype(np.uint64)
    out = (sign << np.uint64(63)) | (ibm_exponent << np.uint64(56)) | (fraction << shift.astype(np.uint64))
    out = np.where(values == 0, np.uint64(0), out)
    out = np.where(np.isnan(values), np.uint64(0x2E) << np.uint64(56), out)
    return out.astype(">u8")


def _card(text: str) -> bytes:
    return text.encode("ascii").ljust(80)


def _namestr(number: int, column: XptColumn, position: int) -> bytes:
    """A variable's 140-byte NAMESTR record, laid out and filled as pyreadstat fills it."""
    return (struct.pack(">hhhh", 1 if column.numeric else 2, 0, column.length, number)
            + column.name.encode("ascii").ljust(8) + column.label.encode("ascii").ljust(40)
            + b" " * 8 + struct.pack(">hhh", 0, 0, 1 if column.numeric else 0) + b"\0\0"
            + b" " * 8 + struct.pack(">hhl", 0, 0, position) + b"\0" * 52)


def xpt_header(name: str, label: str, columns: list[XptColumn], moment: datetime) -> bytes:
    """Every header record of a one-member XPT v5 file, up to and including the OBS header:
    byte for byte what pyreadstat writes (SAS 6.06 on bsd4.2), stamped with `moment`."""
    stamp = sas_stamp(moment).decode("ascii")
    positions = np.cumsum([0] + [c.length for c in columns]).tolist()
    namestrs = b"".join(_namestr(number, column, position) for number, (column, position)
                        in enumerate(zip(columns, positions), start=1))
    return b"".join([
        _card("HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + "0" * 30),
        _card(f"{'SAS':8}{'SAS':8}{'SASLIB':8}{'6.06':8}{'bsd4.2':8}{'':24}{stamp}"),
        _card(stamp),
        _card("HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!" + "0" * 17 + "1600000000140"),
        _card("HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!" + "0" * 30),
        _card(f"{'SAS':8}{name[:MAX_NAME]:8}{'SASDATA':8}{'6.06':8}{'bsd4.2':8}{'':24}{stamp}"),
        _card(f"{stamp}{'':16}{label[:MAX_LABEL]:40}"),
        _card(f"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000{len(columns):04d}"
              + "0" * 20),
        namestrs + b" " * (-len(namestrs) % 80),
        _card("HEADER RECORD*******OBS     HEADER RECORD!!!!!!!" + "0" * 30)])


def xpt_rows(frame: pd.DataFrame, columns: list[XptColumn]) -> bytes:
    """Observation records of `frame` (columns named as `columns`), fixed width, no padding."""
    return xpt_records(len(frame), columns, lambda column: frame[column.name])


def xpt_records(rows: int, columns: list[XptColumn],
                values: Callable[[XptColumn], pd.Series | np.ndarray | CharacterColumn]) -> bytes:
    """Observation records of `rows` rows, filled one column at a time from `values` (character
    values already cut to their width, or a `CharacterColumn`), so only one column is ever held
    at a time."""
    dtype = np.dtype([(c.name, ">u8" if c.numeric else f"S{c.length}") for c in columns])
    records = np.zeros(rows, dtype=dtype)
    if not rows:
        return b""
    for column in columns:
        found = values(column)
        if column.numeric:
            records[column.name] = ibm_doubles(
                found if isinstance(found, np.ndarray) and found.dtype == np.float64 else
                pd.to_numeric(found, errors="coerce").astype("float64").to_numpy())
        elif isinstance(found, CharacterColumn):
            records[column.name] = found.fixed(column.length)
        else:
            text = np.array([v.encode("ascii") for v in found], dtype=f"S{column.length}")
            records[column.name] = np.char.ljust(text, column.length)
        del found
    return records.tobytes()


def write_xpt_stream(path: Path, name: str, label: str, columns: list[XptColumn],
                     chunks: Iterable[bytes], moment: datetime) -> None:
    """Write an XPT v5 file from its observation records (`xpt_records`), chunk by chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("wb") as handle:
        handle.write(xpt_header(name, label, columns, moment))
        for chunk in chunks:
            handle.write(chunk)
            written += len(chunk)
        handle.write(b" " * (-written % 80))
