"""Values as REDCap validates them (#12.10): digits are 0-9 only, a date-time has no zone.

REDCap's number and integer validation (and PHP's `is_numeric`) take ASCII digits only, so
`٩٠` or `９０` is not 90 anywhere: eligibility leaves the criterion undetermined and every rule
reads it as not a number. A date-time with a zone suffix, or any other value its type cannot
read, is an invalid value: it opens an INVALID_VALUE query on that field and never crashes a
rule. Last, one such value stored in REDCap goes through a whole sync over real HTTP.
"""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redcap import Project

from sync.demo.data import demo_records
from sync.eligibility import decide_eligibility, parse_number
from sync.job import run_sync
from sync.typed import parse_datetimes, type_frame_with_problems
from test_eligibility import decide, missing
from test_rules import ae, catalogue, dictionary, run, screened  # noqa: F401  (fixtures)
from tests.test_sync import queries, trial

OTHER_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())
"""Decimal digits of every script but ASCII: Arabic-Indic, fullwidth, Devanagari, ..."""


@pytest.mark.parametrize("text", ["٩٠", "９０", "３２", "९०", "9٠"])
def test_numbers_with_other_digits_are_not_numbers(text):
    assert parse_number(text) is None


@given(st.lists(st.one_of(OTHER_DIGITS, st.sampled_from("0123456789")), min_size=1,
                max_size=6).filter(lambda chars: any(not c.isascii() for c in chars)))
def test_any_number_holding_a_digit_of_another_script_is_not_a_number(chars):
    assert parse_number("".join(chars)) is None
    assert parse_number("-" + "".join(chars) + ".5") is None


@pytest.mark.parametrize("rr", ["٩٠", "９０"])
def test_eligibility_does_not_read_other_digits_as_ninety(rr):
    # RR is the only I3(3) item this subject meets: RR 90 would make I3 met.
    assert decide(rr="90")["inc3"] == "1"
    values = decide(rr=rr)
    assert (values["inc3"], values["elig_calc"], values["elig_missing"]) == ("", "", "I3")
    assert ("I3", "rr") in missing(rr=rr)


@pytest.mark.parametrize("field", ["wbc", "crp", "hgb", "plt", "inr"])
def test_lab_thresholds_do_not_read_fullwidth_digits(field):
    assert decide(**{field: "１"})[f"exc{3 if field in ('wbc', 'crp') else 4}"] != "1"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(OTHER_DIGITS, st.sampled_from("0123456789.")), min_size=1,
                max_size=5).map("".join).filter(lambda t: not t.isascii()),
       st.sampled_from(["rr", "spo2", "pao2", "fio2", "wbc", "crea", "alt", "tbil", "plt"]))
def test_an_eligibility_input_with_other_digits_counts_as_not_entered(text, field):
    assert decide(**{field: text}) == decide(**{field: ""})
    assert missing(**{field: text}) == missing(**{field: ""})


@pytest.mark.parametrize("text", ["2025-03-12 10:00+02:00", "2025-03-12 10:00Z",
                                  "2025-03-12T10:00", "2025-03-12 10:00 CET", "١٠:٠٠",
                                  "2025-03-12 ١٠:٠٠", "yesterday", "2025-02-30 10:00"])
def test_a_datetime_with_a_zone_or_anything_else_is_not_a_datetime(text):
    assert parse_datetimes(pd.Series([text])).isna().all()


def test_plain_datetimes_with_or_without_seconds_are_read():
    parsed = parse_datetimes(pd.Series(["2025-03-12 10:00", "2025-03-12 9:05:30", ""]))
    assert [str(v) for v in parsed] == ["2025-03-12 10:00:00", "2025-03-12 09:05:30", "NaT"]


SAE = dict(ae_ser="1", ae_aware_dtc="2025-03-12 09:00", ae_rpt_dtc="2025-03-13 15:30")


def test_a_zoned_report_time_opens_an_invalid_value_query_and_no_late_sae(run):
    found = run({"SAE_LATE", "INVALID_VALUE"}, screened(),
                ae("1", **(SAE | {"ae_rpt_dtc": "2025-03-13 15:30+02:00"})))
    assert [(f["rule_id"], f["field"], f["redcap_repeat_instance"]) for f in found] == [
        ("INVALID_VALUE", "ae_rpt_dtc", "1")]
    assert '"2025-03-13 15:30+02:00"' in found[0]["message"]
    assert "time zone" in found[0]["message"]


def test_other_digits_in_a_screening_number_open_an_invalid_value_query(run):
    found = run({"INVALID_VALUE", "ELIG_MISSING"}, screened(rr="٩٠"))
    assert {(f["rule_id"], f["field"]) for f in found} == {("INVALID_VALUE", "rr"),
                                                          ("ELIG_MISSING", "rr")}


TYPED_CELLS = {"ae_aware_dtc": "ae", "ae_rpt_dtc": "ae", "ae_stdat": "ae", "ae_grade": "ae",
               "rr": "screening", "pao2": "screening", "icdat": "screening",
               "crea": "screening", "brthdat": "screening"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # `run` keeps no state
@given(st.dictionaries(st.sampled_from(sorted(TYPED_CELLS)),
                       st.one_of(st.text(max_size=20),
                                 st.builds(lambda d, z: f"{d:%Y-%m-%d %H:%M}{z}",
                                           st.datetimes(), st.sampled_from(
                                               ["Z", "+02:00", "-0500", " UTC", ""])),
                                 st.lists(OTHER_DIGITS, min_size=1, max_size=4).map("".join)),
                       min_size=1))
def test_no_stored_value_crashes_a_rule_and_every_unreadable_one_is_queried(run, dictionary,
                                                                            catalogue, values):
    screening = {k: v for k, v in values.items() if TYPED_CELLS[k] == "screening"}
    logged = {k: v for k, v in values.items() if TYPED_CELLS[k] == "ae"}
    rows = [screened(**screening), ae("1", **(SAE | logged))]
    found = run({r.rule_id for r in catalogue}, *rows)  # every rule, never a crash
    queried = {f["field"] for f in found if f["rule_id"] == "INVALID_VALUE"}
    frame = pd.DataFrame([{c: "" for c in dictionary.export_columns()} | r for r in rows])
    unreadable = {p.field for p in type_frame_with_problems(frame, dictionary)[1]}
    assert queried == unreadable


# -- over real HTTP: a zoned date-time stored in REDCap, synced -------------------------------

SAE_LATE = "01-036"


@pytest.fixture
def zoned(redcap_server, tmp_path):
    """The SAE subject with its report time stored with a zone suffix. REDCap refuses such a
    value on import, so it got there as it does in production: entered while the field had no
    date-time validation (here: the validation dropped, the value imported, the validation
    restored)."""
    records = demo_records(40)
    settings = trial(redcap_server, tmp_path / "state.sqlite",
                     records[records["record_id"] == SAE_LATE])
    run_sync(settings)
    project = Project(settings.redcap_api_url, settings.redcap_api_token.get_secret_value())
    metadata = project.export_metadata()
    loose = [dict(m, text_validation_type_or_show_slider_number="")
             if m["field_name"] == "ae_rpt_dtc" else m for m in metadata]
    project.import_metadata(loose)
    rows = project.export_records(records=[SAE_LATE], fields=["record_id", "ae_rpt_dtc"])
    row = next(r for r in rows if r["redcap_repeat_instrument"] == "adverse_event"
               and r["ae_rpt_dtc"])
    project.import_records([{**row, "ae_rpt_dtc": row["ae_rpt_dtc"] + "+02:00"}])
    project.import_metadata(metadata)
    return settings


def test_a_zoned_datetime_in_redcap_opens_a_query_and_the_sync_finishes(zoned):
    summary = run_sync(zoned)
    assert summary.typing_problems == 1
    rows = queries(zoned)
    invalid = rows[rows["dq_rule"] == "INVALID_VALUE"]
    assert invalid[["dq_field", "dq_status"]].values.tolist() == [["ae_rpt_dtc", "1"]]
    assert "+02:00" in invalid.iloc[0]["dq_text"]
    assert run_sync(zoned, full=True).cells_written == 0
