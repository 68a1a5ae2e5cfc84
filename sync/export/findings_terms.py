"""CDISC terms of the findings domains: test codes and names, and units with their standard.

The CRF's annotations name a test in the trial's words (`MBTESTCD=SARS-CoV-2`, `PETESTCD=SKIN`);
the cut writes the CDISC test code and name (SDTM CT, checked against the NCI packages CDISC CORE
caches) or, where CT has no term for the test, a sponsor term kept within the test-code rules
(8 characters, letters, digits and `_`). One code, one name: TESTCD <-> TEST is one-to-one.
"""
from __future__ import annotations

import math
import re

Term = tuple[str, str, dict[str, str]]
"""(TESTCD, TEST, qualifiers the test implies such as FAOBJ or MBTSTDTL)."""

TEST_NAMES: dict[str, dict[str, str]] = {
    "VS": {"HEIGHT": "Height", "WEIGHT": "Weight", "TEMP": "Temperature", "HR": "Heart Rate",
           "PULSE": "Pulse Rate", "RESP": "Respiratory Rate",
           "SYSBP": "Systolic Blood Pressure", "DIABP": "Diastolic Blood Pressure",
           "OXYSAT": "Oxygen Saturation", "BMI": "Body Mass Index"},
    "LB": {"WBC": "Leukocytes", "NEUT": "Neutrophils", "LYM": "Lymphocytes",
           "HGB": "Hemoglobin", "PLAT": "Platelets", "ALT": "Alanine Aminotransferase",
           "AST": "Aspartate Aminotransferase", "BILI": "Bilirubin", "CREAT": "Creatinine",
           "UREA": "Urea", "ALB": "Albumin", "LDH": "Lactate Dehydrogenase",
           "PT": "Prothrombin Time", "INR": "Prothrombin Intl. Normalized Ratio",
           "PTACT": "Prothrombin Activity", "APTT": "Activated Partial Thromboplastin Time",
           "FIBRINO": "Fibrinogen", "DDIMER": "D-Dimer", "CRP": "C Reactive Protein",
           "PCT": "Procalcitonin", "IL6": "Interleukin 6", "FERRITIN": "Ferritin",
           "PO2": "Partial Pressure Oxygen", "PCO2": "Partial Pressure Carbon Dioxide",
           "PH": "pH", "FIO2": "Fraction of Inspired Oxygen",
           "PO2FIO2": "PP Arterial O2/Fraction Inspired O2", "LACTICAC": "Lactic Acid",
           "HCG": "Choriogonadotropin Beta"},
}
"""CDISC test names (VSTEST/LBTEST) per test code."""

TERMS: dict[str, dict[str, Term]] = {
    "MB": {
        "SARS-CoV-2": ("SARSCOV2", "SARS-CoV-2", {}),
        "ADENOVIRUS": ("ADENOVIR", "Adenovirus", {}),
        "INFLUENZA VIRUS": ("INFLUVIR", "Influenza Virus", {}),
        "OTHER RESPIRATORY VIRUS": ("VRIDENT", "Viral Identification", {}),
    },
    "QS": {
        "WHOCPS": ("WHOCPS01", "WHO Clinical Progression Scale Score",
                   {"QSCAT": "WHO CLINICAL PROGRESSION SCALE"}),
        "NIAIDOS": ("NIAIDO01", "NIAID Ordinal Scale Score", {"QSCAT": "NIAID ORDINAL SCALE"}),
    },
    "FA": {
        **{code: ("OCCUR", "Occurrence Indicator", {"FAOBJ": obj}) for code, obj in (
            ("VIRPNEUM", "VIRAL PNEUMONIA"), ("INFREACT", "INFUSION RELATED REACTION"),
            ("FEVER", "FEVER OR CHILLS"), ("URTICAR", "URTICARIA OR RASH"),
            ("BRONCHSP", "BRONCHOSPASM OR DYSPNEA"), ("HYPOTENS", "HYPOTENSION"),
            ("HYPOXEM", "WORSENING HYPOXEMIA"), ("ARRHYTH", "ARRHYTHMIA"),
            ("CARDARR", "CARDIAC ARREST OR DEATH"), ("SYMPTOM", "SYMPTOMS"),
            ("ASSIST", "ASSISTANCE WITH DAILY ACTIVITIES"),
            ("MEDCARE", "ONGOING MEDICAL CARE"), ("ACTLIMIT", "LIMITATION OF ACTIVITIES"),
            ("HOMEO2", "HOME OXYGEN"))},
        "LESVOLPC": ("LESVOLPC", "Lesion Volume as Percent of Lung Volume",
                     {"FAOBJ": "LUNG LESIONS"}),
        "CHANGE": ("CHGPREV", "Change From Previous Assessment",
                   {"FAOBJ": "CHEST IMAGING FINDINGS"}),
    },
    "TR": {
        "LESVOL": ("VOLUME", "Volume", {}),
        "LESVOLPC": ("LESVOLPC", "Lesion Volume as Percent of Lung Volume", {}),
    },
    "EG": {"EGHRMN": ("EGHRMN", "ECG Mean Heart Rate", {}),
           "QTCFAG": ("QTCFAG", "QTcF Interval, Aggregate", {}),
           "INTP": ("INTP", "Interpretation", {})},
    "PE": {"GENERAL": ("GENAPP", "General Appearance", {}), "SKIN": ("SKIN", "Skin", {}),
           "RESPIRATORY": ("RESP", "Respiratory System", {}),
           "CARDIOVASCULAR": ("CV", "Cardiovascular System", {}),
           "ABDOMEN": ("ABDOMEN", "Abdomen", {}),
           "NEUROLOGICAL": ("NEURO", "Nervous System", {})},
    "RP": {"CHILDPOT": ("CHILDPOT", "Childbearing Potential", {}),
           "BCMETHOD": ("BCMETHOD", "Birth Control Method", {}),
           "LACTSTAT": ("LACTSTAT", "Lactation Status", {}),
           "PREGST": ("PREGST", "Pregnant During the Study", {}),
           "LMPSTDTC": ("LMPSTDTC", "Last Menstrual Period Start Date", {}),
           "EDLVRDTC": ("EDLVRDTC", "Estimated Date of Delivery", {}),
           "PREGOUT": ("PREGOUT", "Pregnancy Outcome", {})},
    "DD": {"PRCDTH": ("PRCDTH", "Primary Cause of Death", {}),
           "AUTOPSY": ("AUTOPIND", "Autopsy Performed Indicator", {}),
           "AUTOPFND": ("AUTOPFND", "Autopsy Findings", {})},
}
"""Per domain, the annotation's test code -> the CDISC term the cut writes."""

MB_DETAILS: dict[str, str] = {"": "DETECTION", "CT": "CYCLE THRESHOLD", "VIRLOAD": "VIRAL LOAD"}
"""MBTSTDTL of the virology results: detection, Ct value and viral load of the same organism."""

_TESTCD = re.compile(r"^[A-Z_][A-Z0-9_]{0,7}$")


def term(domain: str, annotated: str, fallback_name: str) -> Term:
    """The CDISC term of a test as the CRF annotates it (VS/LB keep their codes)."""
    if annotated in TERMS.get(domain, {}):
        return TERMS[domain][annotated]
    code = re.sub(r"[^A-Z0-9_]", "", annotated.upper())[:8]
    return code, TEST_NAMES.get(domain, {}).get(code, fallback_name), {}


def valid_testcd(code: str) -> bool:
    """SDTM's rule for --TESTCD: at most 8 characters, letters, digits, `_`, no leading digit."""
    return bool(_TESTCD.match(code))


UNIT_SPELLING: dict[str, str] = {"msec": "ms", "sec": "s", "ng/mL": "ug/L", "pg/mL": "ng/L",
                                 "ratio": "", "bpm": "beats/min", "mcg/L": "ug/L", "lb": "LB"}
"""A unit as a CRF prints it -> the CDISC UNIT submission value of the same quantity."""

CONVERSIONS: dict[tuple[str, str], tuple[str, float, float]] = {
    ("", "F"): ("C", 5 / 9, -32 * 5 / 9), ("", "LB"): ("kg", 0.45359237, 0.0),
    ("", "in"): ("cm", 2.54, 0.0), ("", "kPa"): ("mmHg", 7.50062, 0.0),
    ("", "g/dL"): ("g/L", 10.0, 0.0),
    ("CREAT", "mg/dL"): ("umol/L", 88.42, 0.0), ("BILI", "mg/dL"): ("umol/L", 17.1, 0.0),
    ("UREA", "mg/dL"): ("mmol/L", 0.1665, 0.0), ("GLUC", "mg/dL"): ("mmol/L", 0.0555, 0.0),
    ("ALB", "g/dL"): ("g/L", 10.0, 0.0), ("HGB", "g/dL"): ("g/L", 10.0, 0.0),
}
"""(test code or any, collected unit) -> (standard unit, factor, offset): standard = x*f + o."""

UNIT_CODES: dict[str, str] = {
    "C": "C42559", "F": "C44277", "beats/min": "C49673", "breaths/min": "C49674",
    "mmHg": "C49670", "%": "C25613", "kg": "C28252", "cm": "C49668", "10^9/L": "C67255",
    "g/L": "C42576", "U/L": "C67456", "umol/L": "C48508", "mmol/L": "C64387", "s": "C42535",
    "mg/L FEU": "C158291", "mg/L": "C64572", "ug/L": "C67306", "ng/L": "C67327", "mL": "C28254",
    "ms": "C41140", "log10 copies/mL": "C117972", "kg/m2": "C49671", "mg/dL": "C67015",
    "g/dL": "C64783", "kPa": "C67284", "in": "C48500", "LB": "C48531",
}
"""NCI C-codes of the CDISC UNIT terms the cut writes (SDTM CT 2025-09-26, codelist C71620)."""


def ct_unit(unit: str) -> str:
    """The CDISC spelling of a collected unit (`msec` -> `ms`, `ratio` -> none)."""
    return UNIT_SPELLING.get(unit, unit)


def standardise(value: float, unit: str, testcd: str) -> tuple[float, str]:
    """A numeric result in its standard unit: (standard value, standard unit)."""
    unit = ct_unit(unit)
    rule = CONVERSIONS.get((testcd, unit)) or CONVERSIONS.get(("", unit))
    if rule is None or math.isnan(value):
        return value, unit
    standard, factor, offset = rule
    return round(value * factor + offset, 4), standard
