"""The sponsor's data cut (`sync.export.write_cut`) on the real dictionary and the demo trial.

Every file is loaded back the way the sponsor would (pandas, pyarrow, pyreadstat) and checked
against the manifest; two cuts of the same data must be byte-identical; a de-identified cut must
hold no identifier field and no real date.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyreadstat
import pytest

from sync.demo.data import case_of, demo_records
from sync.crf.dictionary import load_dictionary
from sync.crf.project_access import unblinded_fields
from sync.queries import finding_key
from sync.export import CutError, Manifest, write_cut
from sync.export.cut import DOMAIN_ORDER
from sync.export.deidentify import pseudonym, shift_days
from sync.export.manifest import dictionary_sha256
from sync.export.sdtm import STUDYID

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "redcap" / "rules.csv"
CUT_TIME = datetime(2025, 1, 31, 12, 0, tzinfo=timezone.utc)
SALT = b"not-in-the-cut"
QUERY_COLUMNS = ("record_id", "redcap_event_name", "redcap_repeat_instrument",
                 "redcap_repeat_instance", "dq_key", "dq_rule", "dq_event", "dq_instrument",
                 "dq_instance", "dq_field", "dq_text", "dq_status", "dq_response", "dq_opened",
                 "dq_resolved")


def queries_for(raw: pd.DataFrame) -> list[tuple[str, ...]]:
    """Four queries in each state; the two on adverse events sit on the first two AE subjects.

    record, instance, rule, event, instrument, instance, field, text, status, opened, resolved.
    """
    answered, closed = ae_subjects(raw)[:2]
    return [
        ("01-011", "1", "IE_MISMATCH", "screening_arm_1", "", "", "ie_yn",
         "ie_yn = 1 but the criteria say not eligible (icdat 2024-05-13)", "1",
         "2025-01-01 10:00", ""),
        ("01-011", "2", "ELIG_MISSING", "screening_arm_1", "", "", "brthdat", "brthdat blank",
         "4", "2024-12-01 09:00", "2024-12-11 09:00"),
        (answered, "1", "SAE_LATE", "logs_arm_1", "adverse_event", "1", "ae_rpt_dtc",
         "reported late", "2", "2025-01-20 08:00", ""),
        (closed, "1", "AE_FATAL_GRADE", "logs_arm_1", "adverse_event", "1", "ae_out",
         "grade and outcome disagree", "3", "2025-01-10 08:00", ""),
    ]


def ae_subjects(raw: pd.DataFrame) -> list[str]:
    """Records with a first adverse event instance, in order."""
    events = raw[(raw["redcap_repeat_instrument"] == "adverse_event")
                 & (raw["redcap_repeat_instance"].astype(str) == "1")]
    return sorted(set(events["record_id"]))


def written_by_sync(record: str, brthdat: str, icdat: str) -> dict[str, str]:
    """What the sync writes for a demo subject: the outcome its demo case intends."""
    case = case_of(record)
    failing, missing = set(case.elig_fail.split(",")), set(case.elig_missing.split(","))
    values = {"elig_calc": case.elig_calc, "elig_fail": case.elig_fail,
              "elig_missing": case.elig_missing}
    for prefix, code, met, not_met, count in (("inc", "I", "1", "0", 4), ("exc", "E", "0", "1", 9)):
        for n in range(1, count + 1):
            criterion = f"{code}{n}"
            values[f"{prefix}{n}"] = ("" if criterion in missing
                                      else not_met if criterion in failing else met)
    if brthdat and icdat:
        born, signed = date.fromisoformat(brthdat), date.fromisoformat(icdat)
        values["age"] = str(signed.year - born.year
                            - ((signed.month, signed.day) < (born.month, born.day)))
    return values


def synced_records() -> pd.DataFrame:
    """The demo trial as REDCap holds it after a sync: eligibility written, four queries."""
    raw = demo_records(40, 7)
    screening = (raw["redcap_event_name"] == "screening_arm_1") & (raw["redcap_repeat_instrument"] == "")
    for index in raw.index[screening]:
        row = raw.loc[index]
        for column, value in written_by_sync(row["record_id"], row["brthdat"], row["icdat"]).items():
            raw.loc[index, column] = value
    rows = [dict(zip(QUERY_COLUMNS, (record, "logs_arm_1", "dq_query", instance,
                                     finding_key(rule, record, event, instrument, dq_instance,
                                                 field), rule, event, instrument,
                                     dq_instance, field, text, status, "", opened, resolved)))
            for record, instance, rule, event, instrument, dq_instance, field, text, status,
            opened, resolved in queries_for(raw)]
    return pd.concat([raw, pd.DataFrame(rows)], ignore_index=True).fillna("")


@pytest.fixture(scope="module")
def dictionary():
    return load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


@pytest.fixture(scope="module")
def records():
    return synced_records()


def cut_into(folder: Path, records: pd.DataFrame, dictionary, **options) -> Manifest:
    settings = dict(cut_time=CUT_TIME, redcap_version="15.7.6", log_cursor="2025-01-31 11:59",
                    rules_path=RULES, tool_version="0.1.0") | options
    return write_cut(records, dictionary, folder, **settings)


@pytest.fixture(scope="module")
def cut(tmp_path_factory, records, dictionary) -> tuple[Path, Manifest]:
    folder = tmp_path_factory.mktemp("cut") / "2025-01-31"
    return folder, cut_into(folder, records, dictionary)


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory, records, dictionary) -> tuple[Path, Manifest]:
    folder = tmp_path_factory.mktemp("deid") / "cut"
    return folder, cut_into(folder, records, dictionary, deidentify=True, secret_salt=SALT)


def load(path: Path) -> pd.DataFrame:
    """A cut file as the sponsor reads it."""
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    frame, _ = pyreadstat.read_xport(str(path))
    return frame


# -- manifest ----------------------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_checksum_and_row_count(cut):
    folder, manifest = cut
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written - {"manifest.json"} == set(manifest.files)
    for name, entry in manifest.files.items():
        path = folder / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, name
        if path.suffix in (".csv", ".parquet", ".xpt"):
            assert len(load(path)) == entry.rows, name
        else:
            assert entry.rows is None, name


def test_manifest_records_the_inputs_of_the_cut(cut, dictionary):
    folder, manifest = cut
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["cut_time"] == "2025-01-31T12:00:00Z"
    assert on_disk["redcap_version"] == "15.7.6"
    assert on_disk["tool_version"] == "0.1.0"
    assert on_disk["log_cursor"] == "2025-01-31 11:59"
    assert on_disk["records"] == 40
    assert on_disk["rules_sha256"] == hashlib.sha256(RULES.read_bytes()).hexdigest()
    assert on_disk["dictionary_sha256"] == dictionary_sha256(dictionary)
    assert on_disk["deidentified"] is False and on_disk["deidentification"] == {}
    assert set(on_disk["libraries"]) == {"pandas", "pyarrow", "pyreadstat"}
    assert Manifest.read(folder / "manifest.json") == manifest


def test_two_cuts_of_the_same_data_are_byte_identical(tmp_path, cut, records, dictionary):
    folder, manifest = cut
    time.sleep(1.1)  # pyreadstat stamps XPT headers with the wall clock, to the second
    again = cut_into(tmp_path / "again", records, dictionary)
    assert again.files == manifest.files
    for name in manifest.files:
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name
    assert (tmp_path / "again" / "manifest.json").read_bytes() == \
        (folder / "manifest.json").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # the .partial folder is gone


def test_a_cut_is_never_written_over_another(cut, records, dictionary):
    folder, _ = cut
    with pytest.raises(CutError, match="the cut folder is not empty"):
        cut_into(folder, records, dictionary)


# -- instrument tables -------------------------------------------------------------------------


def test_tables_are_typed_from_the_dictionary(cut):
    folder, _ = cut
    schema = pq.read_schema(folder / "tables" / "demographics.parquet")
    types = {name: schema.field(name).type for name in schema.names}
    assert types["record_id"] == pa.string()
    assert types["brthdat"] == pa.date32()
    assert types["age"] == pa.int64()
    assert types["sex"] == pa.int64() and types["sex_label"] == pa.string()
    assert schema.field("sex").metadata == {b"label": b"Sex", b"kind": b"integer"}
    queries = pq.read_schema(folder / "status" / "queries.parquet")
    assert queries.field("dq_opened").type == pa.timestamp("ms")
    respiratory = pq.read_table(folder / "tables" / "respiratory.parquet")
    assert respiratory.schema.field("pf_ratio").type == pa.float64()


def test_parquet_columns_carry_the_codebook_labels(cut):
    folder, _ = cut
    book = load(folder / "codebook.csv").set_index(["table", "variable"])["label"]
    for path in sorted((folder / "tables").glob("*.parquet")):
        schema = pq.read_schema(path)
        labels = [schema.field(name).metadata[b"label"].decode() for name in schema.names]
        assert labels == book.loc[path.stem].tolist(), path.stem


def screening_row(records: pd.DataFrame, record: str) -> pd.Series:
    """The raw screening row of one subject, as the demo trial made it."""
    return records[(records["record_id"] == record)
                   & (records["redcap_event_name"] == "screening_arm_1")
                   & (records["redcap_repeat_instrument"] == "")].iloc[0]


def test_codes_keep_their_labels_and_record_ids_their_leading_zeros(cut, records):
    folder, _ = cut
    source = screening_row(records, "01-001")
    table = load(folder / "tables" / "demographics.csv")
    assert table.iloc[0][["record_id", "redcap_event_name", "sex", "sex_label", "brthdat"]] \
        .tolist() == ["01-001", "screening_arm_1", source["sex"],
                      {"1": "Male", "2": "Female"}[source["sex"]], source["brthdat"]]
    parquet = load(folder / "tables" / "demographics.parquet")
    assert parquet.loc[0, "record_id"] == "01-001"
    assert parquet.loc[0, "brthdat"] == date.fromisoformat(source["brthdat"])
    assert parquet.loc[0, "sex"] == int(source["sex"])


def test_each_table_has_one_row_per_record_event_instance_with_data(cut, records):
    folder, _ = cut
    infusion = load(folder / "tables" / "infusion.csv")
    given = records[records["inf_given"] != ""]
    assert sorted(zip(infusion["record_id"], infusion["redcap_event_name"])) == \
        sorted(zip(given["record_id"], given["redcap_event_name"]))
    events = load(folder / "tables" / "adverse_event.csv")
    instances = records[records["redcap_repeat_instrument"] == "adverse_event"]
    assert sorted(zip(events["record_id"], events["redcap_repeat_instance"])) == \
        sorted(zip(instances["record_id"], instances["redcap_repeat_instance"]))
    assert set(load(folder / "tables" / "eligibility.csv")["redcap_event_name"]) == \
        {"screening_arm_1"}


def test_rows_with_unresolved_queries_are_marked(cut, records):
    folder, _ = cut
    answered, closed = ae_subjects(records)[:2]
    eligibility = load(folder / "tables" / "eligibility.csv").set_index("record_id")
    assert eligibility.loc["01-011", ["open_queries", "data_status"]].tolist() == ["1", "open queries"]
    assert eligibility.loc["01-012", ["open_queries", "data_status"]].tolist() == ["0", "clean"]
    events = load(folder / "tables" / "adverse_event.csv").set_index("record_id")
    first = events[events["redcap_repeat_instance"] == "1"]
    assert first.loc[answered, "data_status"] == "open queries"  # Answered is not clean
    assert first.loc[closed, "data_status"] == "clean"  # Closed is
    demographics = load(folder / "tables" / "demographics.csv").set_index("record_id")
    assert demographics.loc["01-011", "data_status"] == "clean"  # resolved brthdat query


# -- codebook, status, queries -----------------------------------------------------------------


def test_codebook_documents_every_variable_with_its_derivation(cut):
    folder, _ = cut
    book = load(folder / "codebook.csv").set_index(["table", "variable"])
    assert book.loc[("respiratory", "pf_ratio"), ["form", "label", "kind", "unit", "derivation"]] \
        .tolist() == ["respiratory", "PaO2/FiO2 ratio (mmHg)", "number", "mmHg",
                      "calc: [pao2] / ([fio2] / 100)"]
    assert book.loc[("eligibility", "elig_calc"), "derivation"] == "sync: eligibility"
    assert book.loc[("eligibility", "elig_calc"), "choices"] == "1, Eligible | 0, Not eligible"
    assert book.loc[("dq_query", "dq_status"), "derivation"] == "sync: queries"
    assert book.loc[("dq_query", "dq_response"), "derivation"] == ""
    assert book.loc[("screening_labs", "crp"), "unit"] == "mg/L"
    assert book.loc[("demographics", "sex_label"), "derivation"] == "choice label of sex"
    assert book.loc[("subjects", "doses_received"), "derivation"] == \
        "count of events with inf_given = 1"
    assert book.loc[("queries", "age_days"), "derivation"] == "cut_time - dq_opened, whole days"
    for table in (folder / "tables").glob("*.csv"):
        columns = list(load(table).columns)
        assert book.loc[table.stem].index.tolist() == columns, table.stem


def test_subject_status_gives_eligibility_doses_and_query_counts(cut, records):
    folder, _ = cut
    subjects = load(folder / "status" / "subjects.csv").set_index("record_id")
    assert len(subjects) == 40
    answered = ae_subjects(records)[0]
    assert subjects.loc[answered, "queries_answered"] == "1"
    doses = records[(records["record_id"] == "01-003") & (records["inf_given"] == "1")]
    assert case_of("01-003").elig_calc == "1" and len(doses) == 3
    assert subjects.loc["01-003"].to_dict() == {
        "elig_calc": "1", "elig_calc_label": "Eligible", "elig_fail": "", "elig_missing": "",
        "doses_received": "3", "queries_open": "0",
        "queries_answered": "1" if answered == "01-003" else "0",
        "queries_closed": "0", "queries_resolved": "0"}
    assert subjects.loc["01-011", ["elig_calc", "elig_fail", "queries_open", "queries_resolved"]] \
        .tolist() == ["0", case_of("01-011").elig_fail, "1", "1"]


def test_query_listing_gives_age_at_the_cut_and_lifecycle(cut):
    folder, _ = cut
    listing = load(folder / "status" / "queries.csv")
    first = listing[(listing["record_id"] == "01-011") & (listing["query_instance"] == "1")].iloc[0]
    assert first[["dq_rule", "dq_form", "dq_status", "dq_status_label", "dq_opened", "age_days",
                  "days_to_resolution"]].tolist() == \
        ["IE_MISMATCH", "eligibility", "1", "Open", "2025-01-01 10:00:00", "30", ""]
    resolved = listing[listing["dq_status_label"] == "Resolved"].iloc[0]
    assert resolved[["dq_resolved", "age_days", "days_to_resolution"]].tolist() == \
        ["2024-12-11 09:00:00", "61", "10"]


# -- SDTM-like domains -------------------------------------------------------------------------


def test_xpt_files_are_version_5_within_its_limits(cut):
    folder, _ = cut
    for path in sorted((folder / "sdtm").glob("*.xpt")):
        head = path.read_bytes()[:80]
        assert head.startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD"), path.name
        frame, meta = pyreadstat.read_xport(str(path))
        assert meta.table_name == path.stem.upper()
        assert all(len(name) <= 8 for name in frame.columns), path.name
        assert all(label and len(label) <= 40 for label in meta.column_labels), path.name
        for column in frame.select_dtypes(object):
            assert frame[column].str.len().max() <= 200 if len(frame) else True
        assert meta.creation_time == datetime(2025, 1, 31, 12, 0), path.name


def test_define_file_describes_every_dataset_and_variable(cut):
    folder, _ = cut
    define = json.loads((folder / "sdtm" / "define.json").read_text())
    names = [d["name"] for d in define["datasets"]]
    assert "EX" not in names  # blinded: the masked exposure is in EC
    assert names[0] == "DM" and {"IE", "EC", "AE", "CM", "VS", "LB", "DS", "SV", "TS", "TA", "TE",
                                 "TV", "TI"} <= set(names)
    assert sorted(f"{name.lower()}.xpt" for name in names) == sorted(
        p.name for p in (folder / "sdtm").glob("*.xpt"))
    for dataset in define["datasets"]:
        frame, meta = pyreadstat.read_xport(str(folder / "sdtm" / dataset["file"]))
        assert [v["name"] for v in dataset["variables"]] == list(frame.columns)
        assert [v["label"] for v in dataset["variables"]] == meta.column_labels
        assert dataset["rows"] == len(frame)
        for variable in dataset["variables"]:
            assert variable["type"] == ("Num" if frame[variable["name"]].dtype == float else "Char")
            assert variable["origin"]
            if variable["codelist"]:
                assert set(frame[variable["name"]]) - {""} <= set(variable["codelist"])
    variables = {(v["dataset"], v["name"]): v for d in define["datasets"] for v in d["variables"]}
    assert variables[("DM", "SEX")]["codelist"] == {"M": "Male", "F": "Female"}
    assert variables[("AE", "AESER")]["codelist"] == {"Y": "Yes", "N": "No"}
    assert variables[("AE", "AEOUT")]["codelist"]["RECOVERED/RESOLVED"] == "Recovered"
    assert variables[("AE", "AETOXGR")]["codelist"]["5"] == "Grade 5 Death"


def test_sdtm_domains_carry_the_trial_data(cut, records):
    folder, _ = cut
    dm = load(folder / "sdtm" / "dm.xpt").set_index("SUBJID")
    source = screening_row(records, "01-001")
    assert dm.loc["01-001", ["USUBJID", "SEX", "AGE", "AGEU", "BRTHDTC", "RFICDTC"]].tolist() == \
        ["NCT06416709-01-001", {"1": "M", "2": "F"}[source["sex"]], float(source["age"]),
         "YEARS", source["brthdat"], f'{source["icdat"]}T{source["ictim"]}']
    assert dm.loc["01-001", ["SITEID", "COUNTRY"]].tolist() == ["01", "CHN"]
    ie = load(folder / "sdtm" / "ie.xpt")
    assert case_of("01-011").elig_fail == "I1"
    assert ie[ie["USUBJID"] == "NCT06416709-01-011"][["IETESTCD", "IECAT", "IEORRES"]] \
        .values.tolist() == [["I01", "INCLUSION", "N"]]
    failing = sum(len(case_of(r).elig_fail.split(",")) for r in records["record_id"].unique()
                  if case_of(r).elig_fail)
    assert len(ie) == failing
    ec = load(folder / "sdtm" / "ec.xpt")
    assert (ec["ECOCCUR"] == "Y").sum() == (records["inf_given"] == "1").sum()
    ae = load(folder / "sdtm" / "ae.xpt")
    assert set(ae["AEOUT"]) <= {"RECOVERED/RESOLVED", "RECOVERING/RESOLVING",
                                "NOT RECOVERED/NOT RESOLVED",
                                "RECOVERED/RESOLVED WITH SEQUELAE", "FATAL", "UNKNOWN", ""}
    lb = load(folder / "sdtm" / "lb.xpt")
    crp = lb[(lb["USUBJID"] == "NCT06416709-01-001") & (lb["LBTESTCD"] == "CRP")
             & (lb["VISIT"] == "SCREENING")].iloc[0]
    source = records[(records["record_id"] == "01-001")
                     & (records["redcap_event_name"] == "screening_arm_1")].iloc[0]
    assert crp[["LBORRES", "LBORRESU", "LBORNRHI", "LBDTC"]].tolist() == \
        [source["crp"], "mg/L", source["crp_uln"], source["lbdat"]]


def test_sdtm_study_days_have_no_day_zero_and_epochs_follow_the_first_dose(cut):
    folder, _ = cut
    dm = load(folder / "sdtm" / "dm.xpt").set_index("USUBJID")
    for name in ("ec", "lb", "vs", "ae", "cm", "ds"):
        domain = load(folder / "sdtm" / f"{name}.xpt")
        dated = next(c for c in domain if c.endswith(("DTC",)) and c[2:] in ("DTC", "STDTC"))
        day = dated[:-3] + "DY"
        rows = domain[(domain[dated].str.len() >= 10)
                      & (domain["USUBJID"].map(dm["RFSTDTC"]).str.len() >= 10)]
        assert len(rows) and not (rows[day] == 0).any(), name
        for _, row in rows.head(50).iterrows():
            start = date.fromisoformat(dm.loc[row["USUBJID"], "RFSTDTC"][:10])
            delta = (date.fromisoformat(row[dated][:10]) - start).days
            assert row[day] == (delta + 1 if delta >= 0 else delta)
            assert row["EPOCH"] == ("SCREENING" if delta < 0 else row["EPOCH"])
    lb = load(folder / "sdtm" / "lb.xpt")
    assert lb.groupby("LBTESTCD")["LBTEST"].nunique().max() == 1
    assert lb.groupby("LBTEST")["LBTESTCD"].nunique().max() == 1


def test_annotated_crf_shows_label_variable_and_sdtm_annotation(cut):
    folder, _ = cut
    page = (folder / "acrf" / "respiratory.html").read_text()
    assert "<td>PaO2/FiO2 ratio (mmHg)</td>" in page
    assert '<span class="var">pf_ratio</span>' in page
    assert '<span class="sdtm">LB.LBORRES WHERE LBTESTCD=PO2FIO2; derived</span>' in page
    index = (folder / "acrf" / "index.html").read_text()
    assert '<a href="respiratory.html">respiratory</a>' in index


# -- de-identification -------------------------------------------------------------------------


def test_deidentified_cut_holds_no_identifier_free_text_or_kit_number(deidentified):
    folder, manifest = deidentified
    dropped = manifest.deidentification["fields_dropped"]
    assert set(dropped["identifier"]) == {"initials", "brthdat"}
    assert {"rand_kit", "inf_kit"} <= set(dropped["kit number"])
    assert {"ic_ver", "ae_narr", "dq_text", "dq_response", "dv_term"} <= \
        set(dropped["free text or notes"])
    gone = {name for names in dropped.values() for name in names}
    for name in manifest.files:
        path = folder / name
        if path.suffix in (".csv", ".parquet"):
            assert not gone & set(load(path).columns), name
    assert "BRTHDTC" not in load(folder / "sdtm" / "dm.xpt").columns
    every_byte = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    assert b"01-001" not in every_byte and SALT not in every_byte


def test_deidentified_subjects_get_stable_pseudonyms_in_pseudonym_order(deidentified, records):
    folder, _ = deidentified
    subjects = load(folder / "status" / "subjects.csv")["record_id"].tolist()
    real = list(dict.fromkeys(records["record_id"]))
    assert sorted(subjects) == subjects == sorted(pseudonym(r, SALT) for r in real)
    assert all(re.fullmatch(r"01-[0-9A-F]{10}", s) for s in subjects)
    keys = load(folder / "status" / "queries.csv")
    assert all(key.split("|")[1] == record for key, record in zip(keys["dq_key"], keys["record_id"]))


DATE = r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)"
STAMP = re.compile(rb"\d\d(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\d\d:\d\d:\d\d:\d\d")


def dates_in(text: str) -> list[date]:
    found = []
    for token in re.findall(DATE, text):
        try:
            found.append(date.fromisoformat(token))
        except ValueError:
            pass
    return found


def subject_cells(folder: Path, manifest: Manifest, subject_of) -> tuple[dict, list[date]]:
    """Date-like values of a cut: per subject, {(file, column, n-th row of the subject): dates},
    and every date-like value not tied to a subject (manifest, define, codebook, aCRF, XPT
    header stamps, file names)."""
    cells: dict[str, dict[tuple[str, str, int], list[date]]] = {}
    loose: list[date] = dates_in(" ".join(manifest.files)) + dates_in(
        (folder / "manifest.json").read_text())
    for name in manifest.files:
        path = folder / name
        if path.suffix == ".xpt":
            for stamp in STAMP.findall(path.read_bytes()):
                loose.append(datetime.strptime(stamp.decode()[:7], "%d%b%y").date())
        if path.suffix == ".parquet":  # the same values as the CSV; its metadata may differ
            loose += dates_in(str(pq.read_schema(path)))
            continue
        if path.suffix not in (".csv", ".xpt"):
            loose += dates_in(path.read_text(encoding="utf-8"))
            continue
        frame = load(path).astype(str)
        key = "record_id" if "record_id" in frame else "USUBJID" if "USUBJID" in frame else None
        if key is None:
            loose += dates_in(frame.to_csv())
            continue
        seen: dict[str, int] = {}
        for _, row in frame.iterrows():
            subject = subject_of(row[key])
            n = seen[subject] = seen.get(subject, -1) + 1
            if "QNAM" in row:  # a qualifier is known by its name and record, not its row
                n = (row["QNAM"], row["IDVARVAL"])
            for column, value in row.items():
                if dates_in(value):
                    cells.setdefault(subject, {})[(name, column, n)] = dates_in(value)
    return cells, loose


def test_attacker_recovers_no_subjects_date_offset(cut, deidentified, records):
    """The attacker holds the de-identified cut and public facts (the cut's date, a protocol's
    or consent form's version date). A subject's offset falls out of a pair of date-like values
    whose true difference is known but whose difference in the cut holds the offset:
    A. two values of one subject moved by different amounts (one not moved at all);
    B. a real date of a subject left anywhere outside the subject's rows;
    C. a date that is the same for every subject (a study-wide date), moved per subject;
    D. an interval computed on real dates (an age at the cut) beside a moved date.
    Checked with the truth in hand: the identified cut of the same data, cell by cell."""
    real_records = list(dict.fromkeys(records["record_id"]))
    by_pseudonym = {pseudonym(r, SALT): r for r in real_records}
    record_of = lambda value: value.removeprefix(f"{STUDYID}-")  # noqa: E731
    real, _ = subject_cells(cut[0], cut[1], record_of)
    shifted, loose = subject_cells(deidentified[0], deidentified[1],
                                   lambda value: by_pseudonym[record_of(value)])
    compared = 0
    for record, shifted_cells in shifted.items():
        days = shift_days(record, SALT)
        for place, moved in shifted_cells.items():  # A: every pair moves by the same days
            truth = real[record][place]
            assert len(truth) == len(moved), place
            assert {(t - m).days for t, m in zip(truth, moved)} == {days}, (record, place)
            compared += len(moved)
    assert compared > 3000
    real_dates = {d for cells in real.values() for ds in cells.values() for d in ds}
    assert not set(loose) & (real_dates | {CUT_TIME.date()})  # B
    constant: dict[tuple[str, str], set[date]] = {}
    for cells in real.values():
        for (name, column, _), values in cells.items():
            constant.setdefault((name, column), set()).update(values)
    for (name, column), values in constant.items():  # C
        holders = [r for r, cells in real.items() if any(k[:2] == (name, column) for k in cells)]
        if len(values) == 1 and len(holders) >= 2:
            moved = {d for r in holders for k, ds in shifted.get(r, {}).items()
                     if k[:2] == (name, column) for d in ds}
            assert len(moved) <= 1, f"study-wide date {name}:{column} moved per subject"
    for name in deidentified[1].files:  # D
        if not name.endswith(".csv"):
            continue
        frame = load(deidentified[0] / name)
        key = "record_id" if "record_id" in frame else "USUBJID" if "USUBJID" in frame else None
        if key is None:
            continue
        numbers = [c for c in frame if frame[c].str.fullmatch(r"-?\d+").sum() >= 3]
        stamps = [c for c in frame if frame[c].str.match(DATE).sum() >= 3]
        for number_column in numbers:
            for date_column in stamps:
                both = frame[frame[number_column].str.fullmatch(r"-?\d+")
                             & frame[date_column].str.match(DATE)]
                hits = sum(
                    (CUT_TIME.date() - date.fromisoformat(d[:10])).days - int(n)
                    == shift_days(by_pseudonym[record_of(s)], SALT)
                    for s, n, d in zip(both[key], both[number_column], both[date_column]))
                assert hits < max(3, len(both) / 2), f"{name}: {number_column} ~ {date_column}"


def test_deidentified_cut_keeps_intervals_within_a_subject(cut, deidentified):
    real = load(cut[0] / "tables" / "infusion.csv")
    shifted = load(deidentified[0] / "tables" / "infusion.csv")
    shifted["record_id"] = shifted["record_id"].map({pseudonym(r, SALT): r
                                                     for r in real["record_id"]})
    shifted = shifted.set_index(["record_id", "redcap_event_name"]).loc[
        list(zip(real["record_id"], real["redcap_event_name"]))].reset_index()
    given = real["inf_dat"] != ""
    shift = (pd.to_datetime(real["inf_dat"][given]) - pd.to_datetime(shifted["inf_dat"][given])).dt.days
    assert shift.between(1, 365).all()
    assert (shift.groupby(real["record_id"][given]).nunique() == 1).all()
    listing = load(deidentified[0] / "status" / "queries.csv")
    assert "age_days" not in listing
    assert sorted(listing["days_to_resolution"]) == \
        sorted(load(cut[0] / "status" / "queries.csv")["days_to_resolution"])


def test_deidentified_manifest_and_xpt_headers_give_no_real_time(deidentified):
    folder, manifest = deidentified
    assert manifest.cut_time is None and manifest.log_cursor is None
    _, meta = pyreadstat.read_xport(str(folder / "sdtm" / "dm.xpt"))
    assert meta.creation_time == datetime(1960, 1, 1)


def test_deidentified_cut_needs_a_salt(tmp_path, records, dictionary):
    with pytest.raises(CutError, match="needs a secret salt"):
        cut_into(tmp_path / "x", records, dictionary, deidentify=True)


def test_value_that_does_not_type_is_listed_and_the_cut_is_written(tmp_path, records,
                                                                   dictionary):
    broken = records.copy()
    broken.loc[0, "brthdat"] = "1975-02-30"
    broken.loc[1, "height"] = "1,80m"
    manifest = cut_into(tmp_path / "x", broken, dictionary, formats=("csv",))
    assert manifest.problems == 2
    listing = load(tmp_path / "x" / "status" / "problems.csv")
    assert listing.to_dict("records") == [
        {"record_id": "01-001", "redcap_event_name": "screening_arm_1",
         "redcap_repeat_instance": "", "field": "brthdat", "value": "1975-02-30",
         "problem": "not a date (%Y-%m-%d); left blank"},
        {"record_id": broken.loc[1, "record_id"], "redcap_event_name":
         broken.loc[1, "redcap_event_name"], "redcap_repeat_instance": "", "field": "height",
         "value": "1,80m", "problem": "not a number; left blank"}]
    demographics = load(tmp_path / "x" / "tables" / "demographics.csv").set_index("record_id")
    assert demographics.loc["01-001", "brthdat"] == ""
    hidden = cut_into(tmp_path / "y", broken, dictionary, formats=("csv",), deidentify=True,
                      secret_salt=SALT)
    assert hidden.problems == 1  # brthdat is an identifier: dropped, so not listed
    assert set(load(tmp_path / "y" / "status" / "problems.csv")["value"]) == {"(withheld)"}


def test_missing_data_codes_are_missing_values_with_the_code_beside_them(tmp_path, records,
                                                                         dictionary):
    coded = dataclasses.replace(dictionary, project={
        **dictionary.project, "missing_data_codes": "UNK, Unknown | NA, Not applicable"})
    raw = records.copy()
    screening = raw.index[raw["redcap_event_name"] == "screening_arm_1"]
    raw.loc[screening[0], "icdat"] = "UNK"
    raw.loc[screening[1], "height"] = "NA"
    manifest = cut_into(tmp_path / "x", raw, coded, formats=("csv", "parquet", "xpt"))
    assert manifest.problems == 0
    consent = load(tmp_path / "x" / "tables" / "informed_consent.csv")
    first = consent[consent["record_id"] == raw.loc[screening[0], "record_id"]].iloc[0]
    assert (first["icdat"], first["icdat_missing_code"]) == ("", "UNK")
    assert set(consent["icdat_missing_code"]) == {"", "UNK"}
    typed = pq.read_table(tmp_path / "x" / "tables" / "demographics.parquet").to_pandas()
    second = typed[typed["record_id"] == raw.loc[screening[1], "record_id"]].iloc[0]
    assert pd.isna(second["height"]) and second["height_missing_code"] == "NA"
    ds = load(tmp_path / "x" / "sdtm" / "ds.xpt")
    assert "UNK" not in set(ds["DSSTDTC"])


# -- blinding ----------------------------------------------------------------------------------


def with_allocation(dictionary, records):
    """A copy of the dictionary with an unblinded pharmacy form (an allocation field, a calc
    from it, a field shown by it) and one query on it; the records fill it at Day 0."""
    extra = pd.DataFrame([
        {"field_name": "ph_arm", "form_name": "pharmacy", "field_type": "radio",
         "field_label": "Product prepared", "select_choices_or_calculations": "1, MSC | 2, Placebo",
         "field_annotation": "@UNBLINDED SDTM: NOT SUBMITTED"},
        {"field_name": "ph_cells", "form_name": "pharmacy", "field_type": "calc",
         "field_label": "Cells", "select_choices_or_calculations": "if([ph_arm]='1', 40, 0)"},
        {"field_name": "inf_bag_note", "form_name": "infusion", "field_type": "yesno",
         "field_label": "Cell bag inspected?", "branching_logic": "[ph_arm] = '1'"},
    ]).reindex(columns=dictionary.metadata.columns, fill_value="")
    copy = dataclasses.replace(dictionary, metadata=pd.concat(
        [dictionary.metadata, extra], ignore_index=True).fillna(""))
    raw = records.copy()
    day0 = (raw["redcap_event_name"] == "day_0_arm_1") & (raw["redcap_repeat_instrument"] == "")
    raw["ph_arm"] = ""
    raw.loc[day0, "ph_arm"] = ["1" if i % 2 else "2" for i in range(int(day0.sum()))]
    raw["ph_cells"] = raw["ph_arm"].map({"1": "40", "2": "0", "": ""})
    raw["inf_bag_note"] = raw["ph_arm"].map({"1": "1", "2": "", "": ""})
    raw["pharmacy_complete"] = raw["ph_arm"].map(lambda v: "2" if v else "")
    query = raw[raw["redcap_repeat_instrument"] == "dq_query"].iloc[[0]].copy()
    query[["dq_key", "dq_field", "dq_text", "dq_instance", "redcap_repeat_instance"]] = [
        "PH|x", "ph_arm", "ph_arm is Placebo-coded", "", "99"]
    return copy, pd.concat([raw, query], ignore_index=True)


def test_allocation_field_and_all_derived_from_it_reach_no_blinded_cut(tmp_path, records,
                                                                       dictionary):
    copy, raw = with_allocation(dictionary, records)
    for options in ({}, {"deidentify": True, "secret_salt": SALT}):
        folder = tmp_path / f"cut{len(options)}"
        manifest = cut_into(folder, raw, copy, **options)
        assert manifest.blinding["status"] == "blinded"
        assert {"ph_arm", "ph_cells", "inf_bag_note"} <= set(manifest.blinding["fields_left_out"])
        assert "pharmacy" in manifest.blinding["instruments_left_out"]
        for path in folder.rglob("*"):
            if path.is_file() and path.name != "manifest.json":
                data = path.read_bytes()
                for word in (b"ph_arm", b"ph_cells", b"inf_bag_note", b"pharmacy", b"Placebo-coded"):
                    assert word not in data, (path.name, word)
        assert len(load(folder / "status" / "queries.csv")) == 4


def test_unblinded_cut_says_so_in_every_file_name_and_needs_asking_when_deidentified(
        tmp_path, records, dictionary):
    copy, raw = with_allocation(dictionary, records)
    manifest = cut_into(tmp_path / "u", raw, copy, unblinded=True, formats=("csv",))
    assert manifest.blinding["status"] == "UNBLINDED"
    names = [p.name for p in (tmp_path / "u").rglob("*") if p.is_file()]
    assert names and all("-UNBLINDED." in name for name in names), names
    assert "manifest-UNBLINDED.json" in names
    pharmacy = load(tmp_path / "u" / "tables" / "pharmacy-UNBLINDED.csv")
    assert set(pharmacy["ph_arm_label"]) - {""} == {"MSC", "Placebo"}  # Day 3, 6: no ph_arm
    with pytest.raises(CutError, match="not de-identified unless asked for"):
        cut_into(tmp_path / "d", raw, copy, unblinded=True, deidentify=True, secret_salt=SALT)
    assert cut_into(tmp_path / "d", raw, copy, unblinded=True, deidentify=True, secret_salt=SALT,
                    unblinded_deidentified=True, formats=("csv",)).deidentified


def test_dm_arms_follow_sdtm_for_a_blinded_transfer(cut, records):
    dm = load(cut[0] / "sdtm" / "dm.xpt").set_index("USUBJID")
    randomised = set(records.loc[records["rand_dat"] != "", "record_id"])
    for subject, row in dm.iterrows():
        record = subject.removeprefix(f"{STUDYID}-")
        if record in randomised:
            assert row["ARMCD"] == "BLINDED" and row["ARM"] == "BLINDED: MSC OR PLACEBO"
            assert (row["ACTARMCD"] == "BLINDED") == (row["RFXSTDTC"] != "")
            assert row["ARMNRS"] == ("" if row["RFXSTDTC"] else "ASSIGNED, NOT TREATED")
        else:
            assert row[["ARMCD", "ARM", "ACTARMCD", "ACTARM"]].tolist() == [""] * 4
            assert row["ARMNRS"] in ("SCREEN FAILURE", "NOT ASSIGNED")
    assert (dm["ARMNRS"] == "SCREEN FAILURE").any()


# -- for SAS and R users -----------------------------------------------------------------------


def test_every_table_has_sas_and_r_syntax_with_labels_and_formats(cut):
    folder, _ = cut
    sas = (folder / "read_tables.sas").read_text()
    r_script = (folder / "read_tables.R").read_text()
    for table in (folder / "tables").glob("*.csv"):
        assert f'infile "tables/{table.name}"' in sas
        assert f'read.csv("tables/{table.name}"' in r_script
    assert "value sex_ 1='Male' 2='Female' ;" in sas
    assert "format sex sex_. ;" in sas and "format icdat yymmdd10. ;" in sas
    assert "label sex = 'Sex' ;" in sas
    assert ('d[["sex.factor"]] <- factor(d[["sex"]], levels = c("1", "2"), '
            'labels = c("Male", "Female"))') in r_script
    assert 'd[["icdat"]] <- as.Date(d[["icdat"]])' in r_script


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
def test_r_syntax_reads_every_table_with_its_labels(cut):
    folder, _ = cut
    check = ('source("read_tables.R"); d <- cut$demographics; '
             'cat(nrow(d), attr(d$sex, "label"), levels(d$sex.factor), class(cut$informed_consent$icdat))')
    done = subprocess.run(["Rscript", "-e", check], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["40", "Sex", "Male", "Female", "Date"]


def test_every_cut_has_a_readme_saying_what_each_folder_holds(cut, deidentified):
    for folder, _ in (cut, deidentified):
        text = (folder / "README.md").read_text()
        for folder_name in ("tables/", "status/", "sdtm/", "acrf/", "raw/", "codebook",
                            "read_tables.sas", "read_tables.R", "manifest.json"):
            assert folder_name in text, folder_name
    assert "Cut time: withheld" in (deidentified[0] / "README.md").read_text()
    assert "Blinding: blinded" in (cut[0] / "README.md").read_text()


# -- Define-XML --------------------------------------------------------------------------------


def define_schema():
    """The Define-XML 2.1 schema as odmlib ships it."""
    import odmlib
    import xmlschema
    return xmlschema.XMLSchema(str(Path(odmlib.__file__).parent / "schemas" / "define" / "2.1"
                                   / "define2-1-0.xsd"))


def test_define_xml_is_valid_define_xml_2_1(cut, deidentified):
    schema = define_schema()
    for folder, _ in (cut, deidentified):
        errors = [str(e)[:300] for e in schema.iter_errors(str(folder / "sdtm" / "define.xml"))]
        assert errors == []


def test_define_xml_has_keys_value_level_metadata_codelists_origins_and_crf_pages(cut):
    folder, _ = cut
    ns = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}
    root = ET.parse(folder / "sdtm" / "define.xml").getroot()
    dm = root.find(".//odm:ItemGroupDef[@OID='IG.DM']", ns)
    keys = {ref.get("ItemOID"): ref.get("KeySequence") for ref in dm.findall("odm:ItemRef", ns)}
    assert keys["IT.DM.STUDYID"] == "1" and keys["IT.DM.USUBJID"] == "2"
    vlm = root.find(".//def:ValueListDef[@OID='VL.LB.LBORRES']", ns)
    assert len(vlm.findall("odm:ItemRef", ns)) == load(folder / "sdtm" / "lb.xpt")["LBTESTCD"].nunique()
    sex = root.find(".//odm:CodeList[@OID='CL.SEX']", ns)
    assert sex.find("odm:Alias", ns).get("Name") == "C66731"
    assert {i.get("CodedValue"): i.find("odm:Alias", ns).get("Name")
            for i in sex.findall("odm:CodeListItem", ns)} == {"M": "C20197", "F": "C16576"}
    sex_item = root.find(".//odm:ItemDef[@OID='IT.DM.SEX']", ns)
    page = sex_item.find("def:Origin/def:DocumentRef/def:PDFPageRef", ns)
    assert sex_item.find("def:Origin", ns).get("Type") == "Collected"
    assert page.get("PageRefs") == "demographics"
    assert (folder / "acrf" / "demographics.html").exists()
    derived = root.find(".//odm:ItemRef[@ItemOID='IT.DM.RFXSTDTC']", ns)
    assert root.find(f".//odm:MethodDef[@OID='{derived.get('MethodOID')}']", ns) is not None
    assert "<h2 id=\"DM\">" in (folder / "sdtm" / "define.html").read_text()


# -- dictionary coding -------------------------------------------------------------------------


def test_ae_and_cm_terms_are_coded_from_the_sponsors_file_and_the_rest_listed(tmp_path, records,
                                                                             dictionary):
    terms = sorted(set(records.loc[records["ae_term"] != "", "ae_term"]))
    coding = tmp_path / "coding.csv"
    coding.write_text("domain,verbatim,code,term\n" + "".join(
        f"AE,{term.upper()} ,100{i},PT {term}\n" for i, term in enumerate(terms[1:])))
    manifest = cut_into(tmp_path / "x", records, dictionary, coding=coding,
                        formats=("csv", "xpt"))
    ae = load(tmp_path / "x" / "sdtm" / "ae.xpt")
    coded = ae[ae["AETERM"] != terms[0]]
    assert (coded["AEDECOD"] == "PT " + coded["AETERM"]).all()
    assert (ae.loc[ae["AETERM"] == terms[0], "AEDECOD"] == "").all()
    uncoded = load(tmp_path / "x" / "status" / "uncoded_terms.csv")
    cm_terms = (records["cm_trt"] != "").sum()
    assert manifest.uncoded_terms == len(uncoded) == (records["ae_term"] == terms[0]).sum() + cm_terms
    assert set(uncoded.loc[uncoded["domain"] == "AE", "verbatim"]) == {terms[0]}
    table = load(tmp_path / "x" / "tables" / "adverse_event.csv")
    assert list(table.columns[table.columns.get_loc("ae_term"):][:3]) == \
        ["ae_term", "ae_term_decod", "ae_term_dcd"]


def test_trial_design_and_subject_visits_follow_the_crf(cut, dictionary):
    folder, _ = cut
    tv = load(folder / "sdtm" / "tv.xpt")
    assert tv[["VISIT", "VISITDY"]].values.tolist()[:3] == [["SCREENING", -3.0], ["DAY 0", 1.0],
                                                             ["DAY 3", 4.0]]
    assert "LOGS" not in set(tv["VISIT"])
    ta = load(folder / "sdtm" / "ta.xpt")
    dm = load(folder / "sdtm" / "dm.xpt")
    assert set(dm["ARMCD"]) - {""} <= set(ta["ARMCD"])
    assert set(load(folder / "sdtm" / "ti.xpt")["IETESTCD"]) >= set(load(folder / "sdtm" / "ie.xpt")["IETESTCD"])
    sv = load(folder / "sdtm" / "sv.xpt")
    assert not sv.duplicated(["USUBJID", "VISITNUM"]).any()
    assert (sv["SVSTDTC"] <= sv["SVENDTC"]).all()
    ts = load(folder / "sdtm" / "ts.xpt").set_index("TSPARMCD")["TSVAL"]
    assert ts["TBLIND"] == "DOUBLE BLIND" and ts["ACTSUB"] == "40"
