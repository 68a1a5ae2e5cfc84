"""Every eligibility threshold at and around its edge, through the embedded server over HTTP.

One project holds one subject per case: the demo trial's first eligible subject with one thing
changed. A single sync decides them all; each case then reads back the criterion it moves.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from redcap import Project

from sync.config import Settings
from sync.connection import connect
from sync.demo.data import demo_records
from sync.crf.deploy import deploy
from sync.crf.dictionary import load_dictionary
from sync.job import run_sync

ROOT = Path(__file__).resolve().parents[1]
BASE = demo_records(40).query("record_id == '01-001' and redcap_event_name == 'screening_arm_1'")
ICDAT = date.fromisoformat(BASE.iloc[0]["icdat"])
NEUTRAL_RESP = {"rr": "20", "spo2": "95"}


def days(n: int) -> str:
    return (ICDAT + timedelta(days=n)).isoformat()


def birthday(years: int, shift: int = 0) -> str:
    """A birth date whose `years`-th birthday falls `shift` days after consent."""
    return (ICDAT.replace(year=ICDAT.year - years) + timedelta(days=shift)).isoformat()


ONLY_SARS = {"adeno_res": "0", "adeno_dat": "", "sarscov2_res": "1"}

# (case, changed fields, criterion column, expected value)
CASES: list[tuple[str, dict[str, str], str, str]] = [
    ("age 18 on the consent day", {"brthdat": birthday(18)}, "inc1", "1"),
    ("age 18 the day after consent", {"brthdat": birthday(18, 1)}, "inc1", "0"),
    ("born 29 Feb, consent 28 Feb of year 18", {"brthdat": "2004-02-29", "icdat": "2022-02-28",
     "lbdat": "2022-02-28", "img_dat": "2022-02-27", "adeno_dat": "2022-02-20",
     "tbil_prev_dat": "2022-02-25", "crea_prev_dat": "2022-02-25"}, "inc1", "0"),
    ("born 29 Feb, consent 1 Mar of year 18", {"brthdat": "2004-02-29", "icdat": "2022-03-01",
     "lbdat": "2022-03-01", "img_dat": "2022-02-28", "adeno_dat": "2022-02-20",
     "tbil_prev_dat": "2022-02-25", "crea_prev_dat": "2022-02-25"}, "inc1", "1"),
    ("P/F exactly 200 (114/57)", {**NEUTRAL_RESP, "pao2": "114", "fio2": "57"}, "inc3", "0"),
    ("P/F just above 200", {**NEUTRAL_RESP, "pao2": "114.1", "fio2": "57"}, "inc3", "1"),
    ("P/F exactly 300", {**NEUTRAL_RESP, "pao2": "150", "fio2": "50"}, "inc3", "1"),
    ("P/F just above 300", {**NEUTRAL_RESP, "pao2": "150.1", "fio2": "50"}, "inc3", "0"),
    ("RR 30 alone", {"rr": "30", "spo2": "95", "pao2": "", "fio2": ""}, "inc3", "1"),
    ("SpO2 93 on room air alone", {"rr": "20", "spo2": "93", "pao2": "", "fio2": ""}, "inc3", "1"),
    ("specimen 14 days before consent", {**ONLY_SARS, "sarscov2_dat": days(-14)}, "inc3", "1"),
    ("specimen 15 days before consent", {**ONLY_SARS, "sarscov2_dat": days(-15)}, "inc3", "0"),
    ("specimen 3 days after consent", {**ONLY_SARS, "sarscov2_dat": days(3)}, "inc3", "1"),
    ("specimen 4 days after consent", {**ONLY_SARS, "sarscov2_dat": days(4)}, "inc3", "0"),
    ("positive result without its date", {**ONLY_SARS, "sarscov2_dat": ""}, "inc3", ""),
    ("WBC 12", {"wbc": "12"}, "exc3", "0"),
    ("WBC 12.1", {"wbc": "12.1"}, "exc3", "1"),
    ("WBC 4", {"wbc": "4"}, "exc3", "0"),
    ("WBC 3.9", {"wbc": "3.9"}, "exc3", "1"),
    ("WBC blank", {"wbc": ""}, "exc3", ""),
    ("CRP exactly 2 x ULN", {"crp": "20", "crp_uln": "10"}, "exc3", "0"),
    ("CRP above 2 x ULN", {"crp": "20.1", "crp_uln": "10"}, "exc3", "1"),
    ("PCT exactly 2 x ULN", {"pct": "1.0", "pct_uln": "0.5"}, "exc3", "0"),
    ("PCT above 2 x ULN", {"pct": "1.01", "pct_uln": "0.5"}, "exc3", "1"),
    ("ALT exactly 5 x ULN", {"alt": "200", "alt_uln": "40"}, "exc4", "1"),
    ("ALT below 5 x ULN", {"alt": "199.9", "alt_uln": "40"}, "exc4", "0"),
    ("bilirubin exactly 10 x ULN", {"tbil": "171", "tbil_uln": "17.1", "tbil_prev": ""}, "exc4", "1"),
    ("bilirubin below 10 x ULN", {"tbil": "170.9", "tbil_uln": "17.1", "tbil_prev": ""}, "exc4", "0"),
    ("creatinine 442", {"crea": "442", "crea_prev": ""}, "exc4", "1"),
    ("creatinine 441.9", {"crea": "441.9", "crea_prev": ""}, "exc4", "0"),
    ("creatinine rise exactly 44.2/day", {"crea": "144.2", "crea_prev": "100",
                                          "crea_prev_dat": days(-1)}, "exc4", "1"),
    ("creatinine rise 44.1/day", {"crea": "144.1", "crea_prev": "100",
                                  "crea_prev_dat": days(-1)}, "exc4", "0"),
    ("bilirubin rise exactly 17.1/day", {"tbil": "41.1", "tbil_prev": "24",
                                         "tbil_prev_dat": days(-1)}, "exc4", "1"),
    ("bilirubin rise 17.0/day", {"tbil": "41", "tbil_prev": "24",
                                 "tbil_prev_dat": days(-1)}, "exc4", "0"),
    ("previous creatinine on the same day is left out", {"crea": "300", "crea_prev": "100",
                                                         "crea_prev_dat": days(0)}, "exc4", "0"),
    ("PTA 40", {"pta": "40"}, "exc4", "1"),
    ("PTA 40.1", {"pta": "40.1"}, "exc4", "0"),
    ("INR 1.5", {"inr": "1.5"}, "exc4", "1"),
    ("INR 1.49", {"inr": "1.49"}, "exc4", "0"),
    ("Hb 60", {"hgb": "60"}, "exc4", "0"),
    ("Hb 59.9", {"hgb": "59.9"}, "exc4", "1"),
    ("platelets 60", {"plt": "60"}, "exc4", "0"),
    ("platelets 59", {"plt": "59"}, "exc4", "1"),
    ("MI or stroke 183 days before consent", {"cv_event_dat": days(-183)}, "exc4", "1"),
    ("MI or stroke 184 days before consent", {"cv_event_dat": days(-184)}, "exc4", "0"),
    ("mechanical ventilation", {"imv": "1"}, "inc4", "0"),
    ("vasopressors unknown", {"vaso": ""}, "inc4", ""),
    ("refused consent", {"ic_yn": "0"}, "exc5", "1"),
]


def record_id(n: int) -> str:
    return f"90-{n + 1:03d}"


@pytest.fixture(scope="module")
def decided(redcap_server, tmp_path_factory) -> pd.DataFrame:
    token = redcap_server.create_project()
    settings = Settings(REDCAP_API_URL=redcap_server.url, REDCAP_API_TOKEN=SecretStr(token),
                        state_path=tmp_path_factory.mktemp("state") / "state.sqlite",
                        redcap_dir=ROOT / "redcap")
    deploy(connect(settings), load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap"))
    rows = []
    for n, (_, changes, _, _) in enumerate(CASES):
        row = {k: v for k, v in BASE.iloc[0].items() if v != ""}
        row.update(changes, record_id=record_id(n))
        rows.append({k: v for k, v in row.items() if v != ""})
    project = Project(redcap_server.url, token)
    project.import_records(rows)
    run_sync(settings)
    exported = project.export_records(format_type="json", events=["screening_arm_1"])
    return pd.DataFrame(exported).set_index("record_id")


@pytest.mark.parametrize("n", range(len(CASES)), ids=[case[0] for case in CASES])
def test_criterion_at_its_threshold(decided, n):
    _, _, column, expected = CASES[n]
    assert decided.loc[record_id(n), column] == expected
