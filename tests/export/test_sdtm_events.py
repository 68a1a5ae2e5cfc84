"""The events, interventions and exposure domains of the cut (#14.3): MH, SU, PR, HO, DV, the
pre-specified CM records, and EX, which only an unblinded cut holds.

Each is checked the way a sponsor's programmer would: the SDTMIG 3.4 required and expected
variables are there, every record is told apart by its natural key, dates are ISO 8601 and study
days skip day 0, and nothing of the allocation or of free text reaches a cut that must not hold it.
"""
from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from sync.crf.dictionary import load_dictionary
from sync.export.domains_events import ACTIVE_TREATMENT, EVENT_BUILDERS, PLACEBO
from sync.export.meta import schema_of
from sync.export.sdtm import SdtmSource
from sync.export.tables import normalise_raw, repeating_forms
from tests.test_export import ROOT, SALT, cut_into, define_schema, synced_records

NY = {"Y", "N"}
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?$")
EPOCHS = {"SCREENING", "TREATMENT", "FOLLOW-UP"}
EXPECTED: dict[str, list[str]] = {
    "MH": ["MHTERM", "MHCAT", "MHPRESP", "MHOCCUR", "MHSTDTC", "MHSTDY", "MHENRTPT", "MHENTPT",
           "EPOCH", "VISITNUM", "VISIT"],
    "SU": ["SUTRT", "SUPRESP", "SUOCCUR", "SUDOSE", "SUDOSU", "SUENRTPT", "SUENTPT", "EPOCH"],
    "PR": ["PRTRT", "PRPRESP", "PROCCUR", "PRDOSE", "PRDOSU", "PRSTDTC", "PRSTDY", "PRDTC",
           "PRDY", "PRTPT", "PRTPTNUM", "EPOCH", "VISITNUM", "VISIT"],
    "HO": ["HOTERM", "HOPRESP", "HOOCCUR", "HOSTDTC", "HOENDTC", "HOSTDY", "HOENDY", "HODTC",
           "EPOCH"],
    "DV": ["DVTERM", "DVCAT", "DVSTDTC", "DVSTDY", "EPOCH"],
    "CM": ["CMTRT", "CMCAT", "CMPRESP", "CMOCCUR", "CMSTDTC", "CMDTC", "CMTPT", "EPOCH"],
    "EX": ["EXTRT", "EXDOSE", "EXDOSU", "EXDOSFRM", "EXROUTE", "EXSTDTC", "EXENDTC", "EXSTDY",
           "EXENDY", "EPOCH", "VISITNUM", "VISIT"],
}
"""SDTMIG 3.4 required (topic) and expected variables, and the timing the CRF collects."""
KEYS: dict[str, list[str]] = {
    "MH": ["USUBJID", "MHTERM", "MHCAT", "MHSTDTC", "VISITNUM", "MHSPID"],
    "SU": ["USUBJID", "SUTRT", "VISITNUM"],
    "PR": ["USUBJID", "PRTRT", "PRSTDTC", "PRDTC", "PRTPT", "VISITNUM", "PRSPID"],
    "HO": ["USUBJID", "HOTERM", "HOSTDTC", "HODTC", "VISITNUM", "HOSPID"],
    "DV": ["USUBJID", "DVSPID"],
    "CM": ["USUBJID", "CMTRT", "CMSTDTC", "CMDTC", "CMTPT", "VISITNUM", "CMSPID"],
    "EX": ["USUBJID", "EXTRT", "EXSTDTC", "VISITNUM"],
}
"""What tells two records of a subject apart (a natural key, SDTMIG 3.4 §3.2.1.1)."""


def load(path: Path) -> pd.DataFrame:
    frame, _ = pyreadstat.read_xport(str(path))
    return frame


@pytest.fixture(scope="module")
def dictionary():
    return load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


@pytest.fixture(scope="module")
def records():
    """The demo trial with one subject whose three bags held no cells (placebo) and one who
    does not know whether they were vaccinated."""
    raw = synced_records()
    raw.loc[raw.index[raw["vacc_yn"] != ""][1], "vacc_yn"] = "9"
    given = raw.index[raw["inf_dose_given"] != ""]
    placebo = raw.loc[given[0], "record_id"]
    raw.loc[(raw["record_id"] == placebo) & (raw["inf_dose_given"] != ""),
            ["inf_dose_given", "inf_dose_plan"]] = "0"
    return raw


@pytest.fixture(scope="module")
def blinded(tmp_path_factory, records, dictionary):
    folder = tmp_path_factory.mktemp("events") / "cut"
    return folder, cut_into(folder, records, dictionary, formats=("csv", "xpt"))


@pytest.fixture(scope="module")
def unblinded(tmp_path_factory, records, dictionary):
    folder = tmp_path_factory.mktemp("events") / "cut"
    return folder, cut_into(folder, records, dictionary, formats=("csv", "xpt"), unblinded=True)


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory, records, dictionary):
    folder = tmp_path_factory.mktemp("events") / "cut"
    return folder, cut_into(folder, records, dictionary, formats=("csv", "xpt"),
                            deidentify=True, secret_salt=SALT)


def domain(folder: Path, code: str, tag: str = "") -> pd.DataFrame:
    return load(folder / "sdtm" / f"{code.lower()}{tag}.xpt")


@pytest.mark.parametrize("code", ["MH", "SU", "PR", "HO", "DV", "CM"])
def test_each_domain_holds_the_sdtm_variables_and_one_record_per_natural_key(blinded, code):
    frame = domain(blinded[0], code)
    assert len(frame) > 0
    assert {"STUDYID", "DOMAIN", "USUBJID", f"{code}SEQ"} <= set(frame.columns)
    assert set(EXPECTED[code]) <= set(frame.columns), set(EXPECTED[code]) - set(frame.columns)
    assert set(frame["DOMAIN"]) == {code}
    assert (frame[EXPECTED[code][0]] != "").all(), "every record names its topic"
    seq = frame.groupby("USUBJID")[f"{code}SEQ"]
    assert (seq.transform(lambda s: list(s) == list(range(1, len(s) + 1)))).all()
    key = [c for c in KEYS[code] if c in frame]
    assert not frame.duplicated(key).any(), frame[frame.duplicated(key, keep=False)][key]
    for column in (c for c in frame.columns if c.endswith("DTC")):
        dates = frame[column][frame[column] != ""]
        assert dates.map(lambda d: bool(ISO_8601.match(d))).all(), (column, set(dates))
    for column in (c for c in frame.columns if re.fullmatch(rf"{code}(ST|EN)?DY", c)):
        assert not (frame[column] == 0).any(), f"{column}: SDTM has no day 0"
    dated = frame[[c for c in frame.columns if c.endswith("DTC")]].ne("").any(axis=1)
    assert set(frame.loc[dated, "EPOCH"]) <= EPOCHS and (frame.loc[dated, "EPOCH"] != "").all()
    for variable in (f"{code}PRESP", f"{code}OCCUR"):
        if variable in frame:
            assert set(frame[variable]) - {""} <= NY
    assert "LOGS" not in set(frame.get("VISIT", pd.Series(dtype=str)))


def test_prespecified_questions_are_pre_specified_records(blinded, records):
    folder, _ = blinded
    mh = domain(folder, "MH")
    asked = mh[mh["MHPRESP"] == "Y"]
    assert set(asked["MHOCCUR"]) <= NY and "ACTIVE TUBERCULOSIS" in set(asked["MHTERM"])
    subjects = records.loc[records["hbv_act"] != "", "record_id"].nunique()
    assert (mh["MHTERM"] == "ACTIVE HEPATITIS B INFECTION").sum() == subjects
    onset = mh[mh["MHCAT"] == "PRIMARY DIAGNOSIS"]
    assert set(onset["MHEVDTYP"]) == {"SYMPTOMS"} and (onset["MHSTDTC"] != "").all()
    logged = mh[mh["MHSPID"] != ""]
    assert set(logged["MHTERM"]) == set(records.loc[records["mh_term"] != "", "mh_term"])
    assert set(logged["MHENTPT"]) <= {"SCREENING", ""}
    cm = domain(folder, "CM")
    vaso = cm[cm["CMCAT"] == "VASOPRESSOR"]
    assert set(vaso["CMPRESP"]) == {"Y"} and set(vaso["CMOCCUR"]) <= NY
    assert set(vaso["CMTPT"]) == {"PRE-DOSE", ""}
    assert len(vaso) == sum((records[f] != "").sum() for f in ("vaso", "pd_vaso", "rs_vaso"))
    assert (cm["CMTRT"] == "Oseltamivir").any(), "the medication log is still there"
    vaccine = cm[cm["CMCAT"] == "VACCINE"]
    unknown = vaccine[vaccine["CMSTAT"] == "NOT DONE"]
    assert len(unknown) == 1 and unknown[["CMOCCUR", "CMPRESP"]].values.tolist() == [["", "Y"]]
    assert set(vaccine["CMOCCUR"]) == {"Y", "N", ""}
    su = domain(folder, "SU")
    smokers = su[su["SUOCCUR"] == "Y"]
    assert set(smokers["SUENRTPT"]) <= {"BEFORE", "ONGOING"} and (smokers["SUDOSE"] > 0).all()
    assert set(su.loc[su["SUOCCUR"] == "N", "SUENRTPT"]) == {""}


def test_procedures_and_encounters_follow_the_crf(blinded, records):
    folder, _ = blinded
    pr = domain(folder, "PR")
    imaging = pr[pr["PRTRT"].isin({"CHEST CT", "CHEST X-RAY"})]
    assert len(imaging) == (records["img_mod"] != "").sum() + (records["fi_mod"] != "").sum()
    assert (imaging["PRSTDTC"] != "").all()
    assert "NONE (ROOM AIR)" not in set(pr["PRTRT"])
    oxygen = pr[pr["PRTRT"] == "NASAL CANNULA OR FACE MASK"]
    assert set(oxygen["PRDOSU"]) == {"L/min"} and oxygen["PRDOSE"].notna().all()
    ho = domain(folder, "HO")
    stays = ho[ho["HOTERM"] == "HOSPITAL"]
    assert sorted(stays.loc[stays["HOSTDTC"] != "", "HOSTDTC"]) == sorted(
        records.loc[records["ho_admdat"] != "", "ho_admdat"])
    assert (ho["HOTERM"] == "HOSPITAL").any() and "HODISCH" not in ho
    at_visits = ho[ho["VISITNUM"].notna()]
    assert len(at_visits) == (records["cs_hosp"] != "").sum()
    assert not {"HOME", ""} & set(ho["HOTERM"])


def test_blinded_cut_writes_no_ex_and_says_ex_waits_for_unblinding(blinded):
    folder, manifest = blinded
    assert not list((folder / "sdtm").glob("ex*.xpt"))
    assert any("EX" in note and "unblinded" in note for note in manifest.notes)
    assert "EX (the actual treatment) is written only after unblinding" in (
        folder / "README.md").read_text()
    for path in (folder / "sdtm").glob("*.xpt"):
        frame = load(path)
        assert not {"EXTRT", "EXDOSE", "ECDOSE"} & set(frame.columns), path.name
        text = frame.astype(str).to_csv()
        assert ACTIVE_TREATMENT not in text and "10^6 CELLS" not in text, path.name
    define = (folder / "sdtm" / "define.xml").read_text()
    assert 'OID="IG.EX"' not in define and 'OID="IG.MH"' in define


def test_unblinded_cut_writes_ex_with_the_actual_treatment_of_each_dose_given(unblinded, records):
    folder, _ = unblinded
    tag = "-UNBLINDED"
    ex, ec = domain(folder, "EX", tag), domain(folder, "EC", tag)
    given = ec[ec["ECOCCUR"] == "Y"]
    assert len(ex) == len(given) > 0
    assert sorted(zip(ex["USUBJID"], ex["EXSTDTC"])) == sorted(zip(given["USUBJID"],
                                                                   given["ECSTDTC"]))
    placebo = ex[ex["EXDOSE"] == 0]
    assert set(placebo["EXTRT"]) == {PLACEBO} and placebo["USUBJID"].nunique() == 1
    assert set(ex.loc[ex["EXDOSE"] > 0, "EXTRT"]) == {ACTIVE_TREATMENT}
    assert set(ex["EXDOSU"]) == {"10^6 CELLS"} and set(ex["EXROUTE"]) == {"INTRAVENOUS"}
    assert sorted(ex["EXENDTC"]) == sorted(given["ECENDTC"].where(given["ECENDTC"] != "",
                                                                  given["ECSTDTC"]))
    assert set(ex["EPOCH"]) == {"TREATMENT"}
    assert not (ex[["EXSTDY", "EXENDY"]] == 0).any().any()
    assert not ex.duplicated(KEYS["EX"]).any()
    root = ET.parse(folder / "sdtm" / f"define{tag}.xml").getroot()
    ns = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}
    group = root.find(".//odm:ItemGroupDef[@OID='IG.EX']", ns)
    assert group.find("def:Class", ns).get("Name") == "INTERVENTIONS"
    assert [e for e in define_schema().iter_errors(str(folder / "sdtm" / f"define{tag}.xml"))] == []


def test_deidentified_cut_drops_free_text_and_shifts_every_date(deidentified, blinded, records):
    folder, _ = deidentified
    free_text = set(records.loc[records["mh_term"] != "", "mh_term"]) | set(
        records.loc[records["dv_term"] != "", "dv_term"])
    for code in ("MH", "DV", "PR", "HO", "SU", "CM"):
        text = domain(folder, code).astype(str).to_csv()
        assert not any(term in text for term in free_text), code
    real = domain(blinded[0], "MH")
    shifted = domain(folder, "MH")
    onset = (real["MHCAT"] == "PRIMARY DIAGNOSIS")
    assert len(shifted[shifted["MHCAT"] == "PRIMARY DIAGNOSIS"]) == onset.sum()
    assert not set(real.loc[onset, "MHSTDTC"]) & set(
        shifted.loc[shifted["MHCAT"] == "PRIMARY DIAGNOSIS", "MHSTDTC"])
    assert sorted(real.loc[onset, "MHSTDY"].dropna()) == sorted(
        shifted.loc[shifted["MHCAT"] == "PRIMARY DIAGNOSIS", "MHSTDY"].dropna())


def test_builders_read_one_batch_of_subjects_at_a_time(dictionary, records):
    """A streaming cut builds each batch of whole subjects alone: the batches' records are the
    whole cut's records."""
    schema = schema_of(dictionary)
    raw = normalise_raw(records, schema)
    repeating = repeating_forms(dictionary, raw)
    subjects = list(dict.fromkeys(raw["record_id"]))
    halves = [raw[raw["record_id"].isin(subjects[:17])], raw[raw["record_id"].isin(subjects[17:])]]
    for code, build in EVENT_BUILDERS.items():
        whole = build(SdtmSource(raw=raw, schema=schema, repeating=repeating)).frame
        parts = pd.concat([build(SdtmSource(raw=half, schema=schema, repeating=repeating)).frame
                           for half in halves], ignore_index=True)
        columns = sorted(set(whole.columns) & set(parts.columns))
        assert set(whole.columns) == set(parts.columns) or code in ("DV", "SU"), code
        assert whole[columns].fillna("").astype(str).equals(
            parts[columns].fillna("").astype(str)), code


def test_an_icu_stay_on_the_support_log_is_an_encounter_not_a_procedure(dictionary, records):
    """`PR.PRTRT; HO.HOTERM for ICU stays`: the ICU choice goes to HO, dated by the log."""
    raw = records.copy()
    log = raw.index[raw["redcap_repeat_instrument"] == "support_log"][0]
    raw.loc[log, ["sl_type", "sl_stdat", "sl_ongo", "sl_endat"]] = ["1", "2024-05-02", "1", ""]
    schema = schema_of(dictionary)
    typed = normalise_raw(raw, schema)
    source = SdtmSource(raw=typed, schema=schema, repeating=repeating_forms(dictionary, typed))
    subject = f"NCT06416709-{raw.loc[log, 'record_id']}"
    ho = EVENT_BUILDERS["HO"](source).frame
    icu = ho[(ho["USUBJID"] == subject) & (ho["HOSTDTC"] == "2024-05-02")]
    assert icu[["HOTERM", "HOENRTPT", "HOENTPT"]].values.tolist() == [
        ["INTENSIVE CARE UNIT", "ONGOING", "END OF STUDY"]]
    pr = EVENT_BUILDERS["PR"](source).frame
    assert not ((pr["USUBJID"] == subject) & (pr["PRSTDTC"] == "2024-05-02")).any()
    assert "ICU STAY" not in set(pr["PRTRT"])


def test_an_allocation_field_annotated_ex_extrt_names_the_treatment_only_when_unblinded(
        tmp_path, dictionary, records):
    metadata = dictionary.metadata.copy()
    extra = pd.DataFrame([{"field_name": "ph_arm", "form_name": "pharmacy", "field_type": "radio",
                           "field_label": "Product prepared",
                           "select_choices_or_calculations": "1, MSC | 2, Placebo",
                           "field_annotation": "@UNBLINDED SDTM: EX.EXTRT"}])
    copy = dataclasses.replace(dictionary, metadata=pd.concat(
        [metadata, extra.reindex(columns=metadata.columns, fill_value="")],
        ignore_index=True).fillna(""))
    raw = records.copy()
    raw["ph_arm"] = raw["inf_dose_given"].map(lambda d: "" if d == "" else "2" if d == "0"
                                              else "1")
    cut_into(tmp_path / "u", raw, copy, formats=("xpt",), unblinded=True)
    ex = load(tmp_path / "u" / "sdtm" / "ex-UNBLINDED.xpt")
    assert set(ex["EXTRT"]) == {"MSC", "PLACEBO"}
    assert set(ex.loc[ex["EXTRT"] == "PLACEBO", "EXDOSE"]) == {0}
    cut_into(tmp_path / "b", raw, copy, formats=("csv", "xpt"))
    assert not (tmp_path / "b" / "sdtm" / "ex.xpt").exists()
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            assert b"ph_arm" not in path.read_bytes(), path.name
