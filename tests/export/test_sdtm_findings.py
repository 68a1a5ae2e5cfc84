"""The cut's SDTM findings domains (#14.3): every domain the annotated CRF points at, CDISC test
codes and standard units, one record per natural key, baseline flags, on the demo trial.

The demo trial fills no ECG, physical examination, status log or pregnancy report; the cut here is
of the demo trial with those forms filled for two subjects, as a site would.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.crf.dictionary import load_dictionary
from sync.export.cut import DOMAIN_ORDER
from sync.export.findings import FINDINGS_DOMAINS, findings_domain, natural_key
from sync.export.findings_terms import UNIT_CODES, ct_unit, standardise, valid_testcd
from sync.export.meta import schema_of
from sync.export.sdtm import STUDYID, SdtmSource
from sync.export.tables import form_columns, normalise_raw, repeating_forms, rows_of_form
from tests.test_export import ROOT, SALT, cut_into, load, synced_records

ECG = {"eg_perf": "1", "eg_dat": "2024-03-05", "eg_tim": "08:10", "eg_hr": "88",
       "eg_qtcf": "431", "eg_interp": "2"}
EXAM = {"pe_perf": "1", "pe_dat": "2024-03-05", "pe_gen": "1", "pe_skin": "1", "pe_resp": "3",
        "pe_cv": "1", "pe_abd": "1", "pe_neuro": "1"}
STATUS = [("2024-03-08", "5"), ("2024-03-09", "4")]
PREGNANCY = {"pr_dat": "2024-04-20", "pr_who": "2", "pr_lmp": "2024-03-30", "pr_out": "1"}
FILLED = ("01-001", "01-002")


def _site_filled(records: pd.DataFrame) -> pd.DataFrame:
    """The demo trial with an ECG and an examination at screening, Day 0 labs marked pre-dose,
    two status-log days and a pregnancy report for each subject in FILLED."""
    raw = records.copy()
    for column in [*ECG, *EXAM, *PREGNANCY, "st_dat", "st_score"]:
        if column not in raw:
            raw[column] = ""
    added = []
    for record in FILLED:
        screening = raw.index[(raw["record_id"] == record)
                              & (raw["redcap_event_name"] == "screening_arm_1")
                              & (raw["redcap_repeat_instrument"] == "")][0]
        for column, value in (ECG | EXAM).items():
            raw.loc[screening, column] = value
        day0 = (raw["record_id"] == record) & (raw["redcap_event_name"] == "day_0_arm_1")
        raw.loc[day0 & (raw["lb_dat"] != ""), "lb_predose"] = "1"
        blank = {c: "" for c in raw.columns} | {"record_id": record,
                                                  "redcap_event_name": "logs_arm_1"}
        for instance, (day, score) in enumerate(STATUS, start=1):
            added.append(blank | {"redcap_repeat_instrument": "status_log",
                                  "redcap_repeat_instance": str(instance), "st_dat": day,
                                  "st_score": score})
        added.append(blank | {"redcap_repeat_instrument": "pregnancy_report",
                              "redcap_repeat_instance": "1"} | PREGNANCY)
    return pd.concat([raw, pd.DataFrame(added)], ignore_index=True)


@pytest.fixture(scope="module")
def dictionary():
    return load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


@pytest.fixture(scope="module")
def records():
    return _site_filled(synced_records())


@pytest.fixture(scope="module")
def sdtm(tmp_path_factory, records, dictionary) -> dict[str, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("findings") / "cut"
    cut_into(folder, records, dictionary, formats=("xpt",))
    return {code: load(folder / "sdtm" / f"{code.lower()}.xpt") for code in DOMAIN_ORDER
            if code != "EX"}  # blinded: EX only after unblinding


def _subject(code: str, frame: pd.DataFrame, record: str) -> pd.DataFrame:
    return frame[frame["USUBJID"] == f"{STUDYID}-{record}"]


def test_every_domain_the_crf_points_at_is_written(sdtm):
    for code in ("MB", "QS", "FA", "TU", "TR", "EG", "PE", "RP", "DD"):
        frame = sdtm[code]
        assert len(frame), code
        assert {"STUDYID", "DOMAIN", "USUBJID", f"{code}SEQ", f"{code}TESTCD", f"{code}TEST",
                f"{code}ORRES", f"{code}STRESC"} <= set(frame.columns), code
        assert set(frame["DOMAIN"]) == {code}


def test_ecg_and_examination_rows_hold_the_crf_values_in_cdisc_terms(sdtm, records):
    eg = _subject("EG", sdtm["EG"], "01-001").set_index("EGTESTCD")
    assert eg.loc["EGHRMN", ["EGORRES", "EGORRESU", "EGSTRESN", "EGSTRESU"]].tolist() == \
        ["88", "beats/min", 88.0, "beats/min"]
    assert eg.loc["QTCFAG", ["EGTEST", "EGORRESU", "EGSTRESU"]].tolist() == \
        ["QTcF Interval, Aggregate", "ms", "ms"]  # the CRF says msec; CDISC's unit is ms
    assert eg.loc["INTP", ["EGORRES", "EGSTRESC"]].tolist() == \
        ["ABNORMAL, NOT CLINICALLY SIGNIFICANT", "ABNORMAL"]
    assert set(eg["EGDTC"]) == {"2024-03-05T08:10"} and set(eg["VISIT"]) == {"SCREENING"}
    pe = _subject("PE", sdtm["PE"], "01-002").set_index("PETESTCD")
    assert sorted(pe.index) == ["ABDOMEN", "CV", "GENAPP", "NEURO", "RESP", "SKIN"]
    assert pe.loc["RESP", ["PEORRES", "PESTRESC"]].tolist() == \
        ["ABNORMAL, CLINICALLY SIGNIFICANT", "ABNORMAL"]


def test_ordinal_scale_scores_are_derived_and_logged_per_day(sdtm, records):
    qs = sdtm["QS"]
    assessed = records[(records["cs_dead"] != "")]
    who = qs[qs["QSTESTCD"] == "WHOCPS01"]
    assert len(who) == len(assessed)  # the calc is not written to REDCap: the cut derives it
    assert set(who["QSCAT"]) == {"WHO CLINICAL PROGRESSION SCALE"}
    dead = assessed[assessed["cs_dead"] == "1"]
    for record in dead["record_id"]:
        scores = _subject("QS", who, record)
        assert 10.0 in set(scores["QSSTRESN"]), record
    logged = _subject("QS", qs, "01-001")
    logged = logged[logged["QSDTC"].isin([d for d, _ in STATUS])
                    & (logged["QSTESTCD"] == "NIAIDO01")]
    assert logged[["QSDTC", "QSSTRESC", "QSSTRESN"]].values.tolist() == \
        [[day, score, float(score)] for day, score in STATUS]


def test_virology_retests_name_the_screening_virus(sdtm, records):
    mb = sdtm["MB"]
    screening = records[(records["redcap_event_name"] == "screening_arm_1")
                        & (records["redcap_repeat_instrument"] == "")].set_index("record_id")
    organisms = {"sarscov2_res": "SARSCOV2", "adeno_res": "ADENOVIR", "flu_res": "INFLUVIR",
                 "othvir_res": "VRIDENT"}
    checked = 0
    for record, row in screening.iterrows():
        first = next((code for name, code in organisms.items() if row[name] == "1"), "VRIDENT")
        retests = _subject("MB", mb, record)
        retests = retests[retests["VISIT"] != "SCREENING"]
        if len(retests):
            assert set(retests["MBTESTCD"]) == {first}, record
            checked += 1
    assert checked
    viral_load = mb[mb["MBTSTDTL"] == "VIRAL LOAD"]
    assert len(viral_load) == (records["vir_load"] != "").sum()
    assert set(viral_load["MBSTRESU"]) == {"log10 copies/mL"}
    not_done = mb[mb["MBSTAT"] == "NOT DONE"]
    assert len(not_done) and (not_done["MBORRES"] == "").all()


def test_lesions_link_tr_to_tu_and_pregnancy_and_death_have_their_records(sdtm, records):
    tu, tr = sdtm["TU"], sdtm["TR"]
    assert set(zip(tr["USUBJID"], tr["TRLNKID"])) == set(zip(tu["USUBJID"], tu["TULNKID"]))
    assert len(tu) == tu["USUBJID"].nunique()
    volumes = tr[tr["TRTESTCD"] == "VOLUME"]
    assert len(volumes) == (records["img_lesion_ml"] != "").sum() + \
        (records["fi_lesion_ml"] != "").sum()
    rp = _subject("RP", sdtm["RP"], "01-002").set_index("RPTESTCD")
    assert rp.loc["PREGST", ["RPORRES", "RPDTC"]].tolist() == ["Y", PREGNANCY["pr_dat"]]
    assert rp.loc["LMPSTDTC", ["RPORRES", "RPDTC"]].tolist() == \
        [PREGNANCY["pr_lmp"], PREGNANCY["pr_dat"]]
    dd = sdtm["DD"]
    died = records[records["dth_dat"] != ""]
    assert set(dd["USUBJID"]) == {f"{STUDYID}-{r}" for r in died["record_id"]}
    assert dd["VISITNUM"].isna().all()  # the death form sits on the log event, at no visit


def test_testcd_and_test_are_one_to_one_and_cdisc_shaped(sdtm):
    for code in FINDINGS_DOMAINS + ("TU",):
        frame = sdtm[code]
        tests = frame.groupby(f"{code}TESTCD")[f"{code}TEST"].nunique()
        codes = frame.groupby(f"{code}TEST")[f"{code}TESTCD"].nunique()
        assert tests.max() == 1 and codes.max() == 1, code
        assert all(valid_testcd(c) for c in tests.index), (code, list(tests.index))
        assert frame[f"{code}TEST"].str.len().max() <= 40, code


def test_standard_units_are_cdisc_units_and_follow_the_conversion(sdtm):
    for code in FINDINGS_DOMAINS:
        frame = sdtm[code]
        if f"{code}STRESU" not in frame:
            continue
        assert set(frame[f"{code}STRESU"]) - {""} <= set(UNIT_CODES), code
        assert set(frame[f"{code}ORRESU"]) - {""} <= set(UNIT_CODES), code
        numeric = frame[frame[f"{code}STRESN"].notna() & (frame[f"{code}ORRESU"] != "")]
        for _, row in numeric.iterrows():
            expected = standardise(float(row[f"{code}ORRES"]), row[f"{code}ORRESU"],
                                   row[f"{code}TESTCD"])
            assert (round(row[f"{code}STRESN"], 4), row[f"{code}STRESU"]) == expected
    lb = sdtm["LB"]
    ranged = lb[(lb["LBORNRLO"] != "") & (lb["LBORRESU"] != "")]
    assert len(ranged)
    for _, row in ranged.iterrows():
        assert row["LBSTNRLO"] == standardise(float(row["LBORNRLO"]), row["LBORRESU"],
                                              row["LBTESTCD"])[0]


@pytest.mark.parametrize("value, unit, test, expected", [
    (98.6, "F", "TEMP", (37.0, "C")), (1.0, "mg/dL", "CREAT", (88.42, "umol/L")),
    (1.0, "mg/dL", "BILI", (17.1, "umol/L")), (13.5, "g/dL", "HGB", (135.0, "g/L")),
    (10.0, "kPa", "PO2", (75.0062, "mmHg")), (431.0, "msec", "QTCFAG", (431.0, "ms")),
    (0.5, "ng/mL", "PCT", (0.5, "ug/L")), (36.8, "C", "TEMP", (36.8, "C"))])
def test_conversion_table_gives_the_standard_unit(value, unit, test, expected):
    assert standardise(value, unit, test) == expected
    assert expected[1] in UNIT_CODES and ct_unit(unit) in UNIT_CODES


def test_natural_key_is_unique_in_every_findings_domain(sdtm):
    for code in FINDINGS_DOMAINS + ("TU",):
        frame = sdtm[code]
        key = natural_key(code, frame)
        assert not frame.duplicated(key).any(), (code, key)
    vs = sdtm["VS"]
    # two SpO2 at one visit on one day (vital signs and respiratory forms) are told apart
    assert vs.loc[vs["VSTESTCD"] == "OXYSAT", "VSREPNUM"].notna().any()


def test_baseline_flag_is_the_last_result_before_the_first_dose(sdtm):
    first = sdtm["DM"].set_index("USUBJID")["RFXSTDTC"]
    flagged_any = 0
    for code in FINDINGS_DOMAINS:
        frame = sdtm[code]
        flags = frame[frame[f"{code}LOBXFL"] == "Y"]
        flagged_any += len(flags)
        group = [c for c in natural_key(code, frame) if c not in (
            "VISITNUM", f"{code}TPTNUM", f"{code}DTC", f"{code}SPID", f"{code}REPNUM")]
        assert not flags.duplicated(group).any(), code
        for _, row in flags.iterrows():
            dose = first[row["USUBJID"]]
            assert dose and row[f"{code}ORRES"] != "", code
            assert row[f"{code}DTC"][:10] <= dose[:10], (code, row[f"{code}DTC"], dose)
            same = frame[(frame[group] == row[group]).all(axis=1)]
            later = same[(same[f"{code}DTC"].str[:10] > row[f"{code}DTC"][:10])
                         & (same[f"{code}DTC"].str[:10] < dose[:10])
                         & (same[f"{code}ORRES"] != "")]
            assert later.empty, (code, row["USUBJID"], row[f"{code}TESTCD"])
    assert flagged_any
    never_dosed = set(first[first == ""].index)
    for code in FINDINGS_DOMAINS:
        frame = sdtm[code]
        assert not (frame["USUBJID"].isin(never_dosed) & (frame[f"{code}LOBXFL"] == "Y")).any()


def test_findings_of_a_batch_of_subjects_are_the_findings_of_the_whole_cut(records, dictionary):
    """A streaming cut builds each domain per batch of whole subjects and appends them."""
    schema = schema_of(dictionary)
    raw = normalise_raw(records, schema)
    repeating = repeating_forms(dictionary, raw)
    subjects = list(dict.fromkeys(raw["record_id"]))
    halves = [raw[raw["record_id"].isin(subjects[:15])], raw[raw["record_id"].isin(subjects[15:])]]
    for code in FINDINGS_DOMAINS:
        whole = findings_domain(SdtmSource(raw=raw, schema=schema, repeating=repeating), code)
        parts = [findings_domain(SdtmSource(raw=h, schema=schema, repeating=repeating), code)
                 for h in halves]
        appended = pd.concat([p.frame for p in parts], ignore_index=True)
        columns = [c for c in whole.frame if c in appended]
        pd.testing.assert_frame_equal(whole.frame[columns], appended[columns], check_dtype=False,
                                      obj=code)


def test_a_forms_rows_hold_its_own_columns_and_read_other_fields_as_the_export_has_them(
        records, dictionary):
    """Each form's rows carry only that form's columns (every column per form was most of an
    SDTM batch's memory); another form's field on the same rows (the visit's date, a calc's
    input) reads as the export holds it, on a batch of subjects as on the whole cut."""
    schema = schema_of(dictionary)
    raw = normalise_raw(records, schema)
    repeating = repeating_forms(dictionary, raw)
    batch = raw[raw["record_id"].isin(list(dict.fromkeys(raw["record_id"]))[10:20])]
    for part in (raw, batch):
        source = SdtmSource(raw=part, schema=schema, repeating=repeating)
        for form in dict.fromkeys(f.form for f in schema.fields):
            rows, every = source.rows(form), rows_of_form(part, schema, form, repeating)
            assert list(rows.columns) == form_columns(part, schema, form)
            assert len(rows.columns) < len(part.columns) / 4
            assert rows.index.equals(every.index)
            for name in part.columns:
                assert source.column(rows, name).tolist() == every[name].tolist(), (form, name)
            assert source.column(rows, "no_such_field").eq("").all()
            pd.testing.assert_frame_equal(source.every_column(rows), every)


def test_deidentified_findings_keep_no_free_text(tmp_path, records, dictionary):
    folder = tmp_path / "cut"
    cut_into(folder, records, dictionary, formats=("xpt",), deidentify=True, secret_salt=SALT)
    dd = load(folder / "sdtm" / "dd.xpt")
    causes = set(records["dth_cause"]) - {""}
    assert causes and not causes & set(dd.get("DDORRES", pd.Series(dtype=str)))
    cause = dd[dd["DDTESTCD"] == "PRCDTH"]  # the coded category stays, as the result
    assert len(cause) == len(causes) and (cause["DDORRES"] == cause["DDSTRESC"]).all()
    assert not (Path(folder) / "sdtm" / "define.xml").read_text().count("Respiratory failure")


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
       st.sampled_from(sorted(UNIT_CODES)), st.sampled_from(["TEMP", "CREAT", "HGB", "PO2", ""]))
def test_a_standard_result_is_in_a_cdisc_unit_and_standardising_twice_changes_nothing(
        value, unit, test):
    standard, standard_unit = standardise(value, unit, test)
    assert standard_unit in UNIT_CODES
    assert standardise(standard, standard_unit, test) == (standard, standard_unit)


def test_a_crf_collecting_another_unit_gives_results_in_the_standard_unit(dictionary, records):
    """A site CRF that collects temperature in F and creatinine in mg/dL (annotation and label
    say so): --ORRES/--ORRESU as collected, --STRESN/--STRESU in C and umol/L."""
    metadata = dictionary.metadata.copy()
    for name, label, annotation in (
            ("temp", "Temperature (F)", "SDTM: VS.VSORRES WHERE VSTESTCD=TEMP; VSORRESU=F"),
            ("crea", "Serum creatinine (mg/dL)",
             "SDTM: LB.LBORRES WHERE LBTESTCD=CREAT; LBORRESU=mg/dL")):
        row = metadata["field_name"] == name
        metadata.loc[row, ["field_label", "field_annotation"]] = [label, annotation]
    schema = schema_of(dataclasses.replace(dictionary, metadata=metadata))
    raw = records.copy()
    celsius = pd.to_numeric(raw["temp"].replace("", pd.NA), errors="coerce")
    raw["temp"] = (celsius * 9 / 5 + 32).map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    micromolar = pd.to_numeric(raw["crea"].replace("", pd.NA), errors="coerce")
    raw["crea"] = (micromolar / 88.42).map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    raw = normalise_raw(raw, schema)
    source = SdtmSource(raw=raw, schema=schema, repeating=repeating_forms(dictionary, raw))
    vs = findings_domain(source, "VS").frame
    temps = vs[(vs["VSTESTCD"] == "TEMP") & (vs["VSORRESU"] == "F")]
    assert len(temps) == (raw["temp"] != "").sum() > 0
    assert set(temps["VSSTRESU"]) == {"C"}
    for _, row in temps.iterrows():
        assert abs(row["VSSTRESN"] - (float(row["VSORRES"]) - 32) * 5 / 9) < 1e-3
        assert 34 < row["VSSTRESN"] < 42
    lb = findings_domain(source, "LB").frame
    creatinine = lb[(lb["LBTESTCD"] == "CREAT") & (lb["LBORRESU"] == "mg/dL")]
    assert len(creatinine) == (raw["crea"] != "").sum() > 0
    assert set(creatinine["LBSTRESU"]) == {"umol/L"}
    assert (abs(creatinine["LBSTRESN"] - creatinine["LBORRES"].astype(float) * 88.42)
            < 1e-3).all()


def test_labs_marked_pre_dose_sit_at_the_pre_dose_time_point(sdtm, records):
    lb = _subject("LB", sdtm["LB"], "01-001")
    day0 = lb[(lb["VISIT"] == "DAY 0") & (lb["LBCAT"] != "")]  # the labs form (blood gases: no)
    assert len(day0) and set(day0["LBTPT"]) == {"PRE-DOSE"}
    vs = sdtm["VS"]
    pre_dose = vs.loc[vs["VSTPT"] == "PRE-DOSE", "VSTPTNUM"]
    assert set(day0["LBTPTNUM"]) == set(pre_dose)  # one number per time point across domains
    assert set(lb.loc[(lb["VISIT"] != "DAY 0") & (lb["LBTESTCD"] != "HCG"), "LBTPT"]) == {""}
