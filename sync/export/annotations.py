"""The dictionary's `SDTM: ...` field annotations read as mapping targets.

An annotation such as `SDTM: LB.LBORRES WHERE LBTESTCD=WBC AND LBCAT=HAEMATOLOGY;
LBORRESU=10^9/L` names a domain, a variable, the conditions of the row it fills and constants
that come with it. The same text documents the annotated CRF, so the SDTM-like domains follow
the dictionary rather than a second, hand-kept mapping.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sync.export.meta import CutField, CutSchema

_TARGET = re.compile(r"^(?P<domain>[A-Z]{2,8})\.(?P<variable>[A-Z][A-Z0-9]{0,7})(?P<rest>.*)$")
_NOTE = re.compile(r"\(([^()]*)\)")
_ASCII = {"µ": "u", "μ": "u", "≥": ">=", "≤": "<=", "×": "x", "°": "", "–": "-", "—": "-",
          "’": "'", "‘": "'", "“": '"', "”": '"', "₂": "2"}

CONTROLLED_TERMS: dict[str, dict[str, str]] = {
    "SEX": {"1": "M", "2": "F"},
    "AEOUT": {"1": "RECOVERED/RESOLVED", "2": "RECOVERING/RESOLVING",
              "3": "NOT RECOVERED/NOT RESOLVED", "4": "RECOVERED/RESOLVED WITH SEQUELAE",
              "5": "FATAL", "6": "UNKNOWN"},
    "AEACN": {"1": "DOSE NOT CHANGED", "2": "DRUG INTERRUPTED", "3": "DRUG WITHDRAWN",
              "4": "NOT APPLICABLE", "9": "UNKNOWN"},
}
"""CDISC terms for coded fields whose REDCap labels differ from the controlled terminology."""
CODE_AS_IS: frozenset[str] = frozenset({"AETOXGR"})


@dataclass(frozen=True)
class Target:
    """One SDTM variable a field fills: `domain.variable`, its WHERE conditions and constants."""

    domain: str
    variable: str
    where: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    note: str = ""
    value: str = ""
    """A literal after `=` in the target itself (`DS.DSDECOD=DEATH`)."""


def _target(part: str) -> Target | None:
    match = _TARGET.match(part)
    if match is None:
        return None
    rest = match.group("rest")
    notes = _NOTE.findall(rest)
    rest = _NOTE.sub("", rest).strip()
    value = ""
    if rest.startswith("="):
        value, _, rest = rest[1:].partition(" WHERE ")
        value, rest = value.strip(), ("WHERE " + rest if rest else "")
    where: dict[str, str] = {}
    if rest.startswith("WHERE "):
        for condition in rest[len("WHERE "):].split(" AND "):
            key, _, val = condition.partition("=")
            where[key.strip()] = val.strip()
    return Target(domain=match.group("domain"), variable=match.group("variable"), where=where,
                  note=" ".join(n.strip() for n in notes), value=value)


def targets(cut_field: CutField) -> list[Target]:
    """The SDTM targets of a field's annotation, qualifiers attached to the target before them."""
    found: list[Target] = []
    for part in (p.strip() for p in cut_field.sdtm.split(";")):
        target = _target(part)
        if target is not None and found and target.value and not target.where \
                and target.domain == found[-1].domain:
            found[-1].constants[target.variable] = target.value
        elif target is not None:
            found.append(target)
        elif found and "=" in part:
            key, _, val = part.partition("=")
            found[-1].constants[key.strip()] = val.strip()
    return found


def ascii_text(text: str) -> str:
    """XPT v5 is ASCII: common symbols spelled out, accents dropped, the rest removed."""
    for symbol, plain in _ASCII.items():
        text = text.replace(symbol, plain)
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"\s+", " ", folded).strip()


def ascii_texts(values: pd.Series) -> pd.Series:
    """`ascii_text` of every value (text), worked out once per distinct value."""
    return values.map({value: ascii_text(value) for value in dict.fromkeys(values)})


def sdtm_array(values: np.ndarray, cut_field: CutField, variable: str) -> np.ndarray:
    """Raw strings as an SDTM variable holds them: Y/N, controlled terms, ISO 8601 dates
    (blank where blank or not a term), each distinct value converted once."""
    terms: dict[str, str] | None = None
    if cut_field.field_type in ("yesno", "truefalse"):
        terms = {"1": "Y", "0": "N"}
    elif cut_field.kind == "code" and variable not in CODE_AS_IS:
        terms = CONTROLLED_TERMS.get(variable) or {
            code: ascii_text(label).upper() for code, label in cut_field.choices}

    def convert(value: object) -> str:
        if not isinstance(value, str):
            return "" if terms is not None or value is None or value != value \
                or cut_field.kind == "datetime" else str(value)
        if value == "":
            return ""
        if terms is not None:
            return terms.get(value, "")
        return value.replace(" ", "T") if cut_field.kind == "datetime" else value

    found = {value: convert(value) for value in dict.fromkeys(values)}
    return np.array([found[value] for value in values], dtype=object)


def sdtm_values(values: pd.Series, cut_field: CutField, variable: str) -> pd.Series:
    """`sdtm_array` of a column, as a column."""
    return pd.Series(sdtm_array(values.to_numpy(dtype=object), cut_field, variable),
                     index=values.index, name=values.name, dtype=object)


def short_test_name(cut_field: CutField) -> str:
    """A finding's test name from the field label: unit and numbering dropped, ASCII, <= 40."""
    label = re.sub(r"\s*\([^()]*\)\s*$", "", cut_field.label)
    label = re.sub(r"^[A-Z]?\d+\.\s*", "", label)
    return ascii_text(label)[:40]


def codelist(cut_field: CutField, variable: str) -> dict[str, str]:
    """Term -> decode of a coded field as an SDTM variable holds it (`M` -> `Male`)."""
    if cut_field.kind != "code" or not cut_field.choices:
        return {}
    codes = pd.Series([code for code, _ in cut_field.choices])
    terms = sdtm_values(codes, cut_field, variable)
    return {term: label for term, (_, label) in zip(terms, cut_field.choices) if term}


def unwritten_domains(schema: CutSchema, written: set[str]) -> list[str]:
    """Domains the CRF annotates that are not in `written` (the annotated CRF and the cut must
    agree); `NOT SUBMITTED` is no domain."""
    return sorted({t.domain for f in schema.fields for t in targets(f)} - written - {"NOT"})
