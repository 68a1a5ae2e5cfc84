"""Bad input, generated: values REDCap must accept or refuse exactly as it does, values the sync
must type without crashing, and broken project files that must be reported by file and line.

Most cases run in-process against the server's own import validation (§5.3 of
redcap-semantics.md: normalise, then REDCap's PHP regex); a few hundred go through the server's
ASGI app in-process, and a few dozen through PyCap over real HTTP.
"""
from __future__ import annotations

import json
import re
import string
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st
from redcap import Project

from sync.cli import cli
from sync.crf.dictionary import load_dictionary
from sync.crf.redcap_spec import METADATA_KEYS
from sync.server import app as server_app
from sync.server.content.values import GENERIC, normalise, validation_error
from sync.typed import type_frame_with_problems
from tests.conftest import PROJECT_TOKEN
from tests.test_security import asgi_post

ROOT = Path(__file__).resolve().parents[1]
BULK = settings(max_examples=1500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
CHOICES = "1, Yes | 2, No | 99, Unknown | -1, Refused | a_b, Other"
FIELDS = {  # name: (field type, validation, choices)
    "f_int": ("text", "integer", ""), "f_num": ("text", "number", ""),
    "f_date": ("text", "date_ymd", ""), "f_dt": ("text", "datetime_ymd", ""),
    "f_choice": ("radio", "", CHOICES), "f_text": ("text", "", ""),
}
DATE_MESSAGE = ("Invalid date format. (NOTE: Dates must be imported here only in Y-M-D format, "
                "regardless of the specific date format designated for this field.)")


def meta(name: str) -> dict[str, str]:
    kind, validation, choices = FIELDS[name]
    return {**{key: "" for key in METADATA_KEYS}, "field_name": name, "form_name": "fuzz",
            "field_type": kind, "text_validation_type_or_show_slider_number": validation,
            "select_choices_or_calculations": choices, "field_label": name}


# Text with ASCII digits only: PHP's \d (no /u flag) does not match other scripts' digits;
# those are tested on their own below.
NUMBERISH = st.text(alphabet=st.sampled_from(list("0123456789+-.eE /:T\n ab")), max_size=14)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")) |
                   st.sampled_from(string.digits), max_size=20)


def stored(name: str, value: str, date_format: str = "YMD") -> tuple[str, str]:
    """What the server would store for `value`, and its error message ('' when accepted)."""
    clean = normalise(meta(name), value, date_format)
    return clean, validation_error(meta(name), clean, date_format)


@BULK
@given(st.one_of(NUMBERISH, ANY_TEXT, st.integers().map(str)))
def test_integer_fields_take_exactly_signed_ascii_digit_strings(value):
    clean, error = stored("f_int", value)
    assert clean == value
    if re.fullmatch(r"[-+]?[0-9]+\n?", value):
        assert error == "" and int(value) == int(value.strip())
    else:
        assert error == GENERIC


@BULK
@given(st.one_of(NUMBERISH, ANY_TEXT,
                 st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.6f}")))
def test_number_fields_take_exactly_php_style_decimals(value):
    _, error = stored("f_num", value)
    php_number = re.fullmatch(r"[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\n?", value)
    assert error == ("" if php_number else GENERIC)
    if not error:
        float(value)


def rendered_dates() -> st.SearchStrategy[tuple[date, str, str]]:
    """A date and how a site might type it: (date, text, dateFormat it is valid in)."""
    shapes = [("%Y-%m-%d", "YMD"), ("%Y/%m/%d", "YMD"), ("{y}-{m}-{d}", "YMD"),
              ("%m/%d/%Y", "MDY"), ("%d/%m/%Y", "DMY")]
    return st.tuples(st.dates(date(1900, 1, 1), date(2099, 12, 31)), st.sampled_from(shapes)) \
        .map(lambda pair: (pair[0], pair[0].strftime(pair[1][0]).format(
            y=pair[0].year, m=pair[0].month, d=pair[0].day), pair[1][1]))


@BULK
@given(rendered_dates())
def test_real_dates_are_stored_as_y_m_d_in_the_formats_redcap_accepts(case):
    day, text, valid_in = case
    clean, error = stored("f_date", text, valid_in)
    # Y/M/D passes REDCap's regex; whether clean_date_ymd then turns it into Y-M-D is [K] in
    # redcap-semantics.md §5.3, so either stored form is accepted here.
    allowed = {day.isoformat(), text} if "/" in text and valid_in == "YMD" else {day.isoformat()}
    assert error == "" and clean in allowed
    if valid_in != "YMD" and day.day > 12 and day.month != day.day:
        assert stored("f_date", text, "YMD")[1].startswith("Invalid date format.")


@BULK
@given(st.one_of(NUMBERISH, ANY_TEXT))
def test_anything_a_date_field_accepts_is_a_real_calendar_date(value):
    clean, error = stored("f_date", value)
    if error:
        assert error == DATE_MESSAGE
    else:
        year, month, day = (int(part) for part in re.split(r"[-/]", clean))
        assert date(year, month, day) and len(clean) == 10


@BULK
@given(st.datetimes(datetime(1900, 1, 1), datetime(2099, 12, 31)),
       st.sampled_from(["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                        "%Y-%m-%d %-H:%M"]))
def test_datetimes_drop_seconds_and_take_t_or_space(moment, shape):
    clean, error = stored("f_dt", moment.strftime(shape))
    assert (clean, error) == (moment.strftime("%Y-%m-%d %H:%M"), "")


@BULK
@given(st.one_of(st.sampled_from(["1", "2", "99", "-1", "a_b"]), NUMBERISH, ANY_TEXT))
def test_choice_fields_take_exactly_their_codes(value):
    _, error = stored("f_choice", value)
    valid = value in {"1", "2", "99", "-1", "a_b"}
    assert error == ("" if valid else "The value is not a valid category for f_choice")


@BULK
@given(ANY_TEXT)
def test_free_text_is_stored_as_sent(value):
    assert stored("f_text", value) == (value, "")


@pytest.mark.parametrize("name, value", [("f_int", "\u0661\u0662"),
                                         ("f_date", "\uff12\uff10\uff12\uff14-01-01")])
def test_digits_of_other_scripts_are_not_digits_to_redcap(name, value):
    assert stored(name, value)[1] != ""


TRIAL = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")
TYPED_FIELDS = ["age", "brthdat", "icdat", "sex", "rr", "spo2", "pct", "ie_yn", "elig_calc"]


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(NUMBERISH, ANY_TEXT), min_size=len(TYPED_FIELDS),
                         max_size=len(TYPED_FIELDS)), min_size=1, max_size=6))
def test_the_sync_types_any_string_without_crashing_and_reports_what_it_cannot_type(rows):
    raw = pd.DataFrame(rows, columns=TYPED_FIELDS)
    raw.insert(0, "record_id", [f"01-{i:03d}" for i in range(len(raw))])
    raw.insert(1, "redcap_event_name", "screening_arm_1")
    raw.insert(2, "redcap_repeat_instrument", "")
    raw.insert(3, "redcap_repeat_instance", "")
    typed, problems = type_frame_with_problems(raw, TRIAL)
    assert list(typed.columns) == list(raw.columns) and len(typed) == len(raw)
    reported = {(p.record, p.field) for p in problems}
    for field in TYPED_FIELDS:
        lost = raw[field].str.strip().ne("") & typed[field].isna().to_numpy()
        assert {(r, field) for r in raw.loc[lost, "record_id"]} <= reported


# -- through the server's own request path: in-process ASGI, then real HTTP --------------------

METADATA = [{**meta(name)} for name in FIELDS]
METADATA.insert(0, {**{key: "" for key in METADATA_KEYS}, "field_name": "record_id",
                    "form_name": "fuzz", "field_type": "text", "field_label": "Record"})


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    app = server_app.make_app(str(tmp_path_factory.mktemp("fuzz") / "r.sqlite"),
                              token=PROJECT_TOKEN)
    status, body = asgi_post(app, {"token": PROJECT_TOKEN, "content": "metadata",
                                   "format": "json", "data": json.dumps(METADATA)})
    assert status == 200, body
    return app


def round_trip(send, record: str, name: str, value: str) -> tuple[int, str, list[dict]]:
    """Import one value, then export the record: (status, body, exported rows)."""
    status, body = send({"token": PROJECT_TOKEN, "content": "record", "format": "json",
                         "data": json.dumps([{"record_id": record, name: value}])})
    _, rows = send({"token": PROJECT_TOKEN, "content": "record", "format": "json",
                    "records[0]": record})
    return status, body, json.loads(rows)


def assert_redcap_outcome(record: str, name: str, value: str, status: int, body: str,
                          rows: list[dict]) -> None:
    clean, error = stored(name, value)
    if value == "" or not error:
        assert status == 200 and json.loads(body) == {"count": 1}
        assert rows[0][name] == clean
    else:
        line = ",".join(f'"{part}"' for part in
                        (record, name, value.replace('"', '""'), error))
        assert (status, json.loads(body)) == (400, {"error": line}) and rows == []


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(list(FIELDS)), st.one_of(NUMBERISH, ANY_TEXT.filter(lambda t: "\n" not in t
                                                                             and "\r" not in t)))
def test_the_server_stores_what_redcap_would_or_refuses_and_stores_nothing(fuzz_app, name,
                                                                            value):
    record = f"r{abs(hash((name, value))) % 10**9}"
    send = lambda params: asgi_post(fuzz_app, params)  # noqa: E731
    assert_redcap_outcome(record, name, value, *round_trip(send, record, name, value))


def test_pycap_over_http_sees_the_same_acceptance_and_refusal(redcap_server):
    from tests.conftest import create_project
    token = create_project(redcap_server)
    project = Project(redcap_server.url, token)
    project.import_metadata(METADATA)
    cases = [("f_int", "12"), ("f_int", "1.5"), ("f_int", "+7"), ("f_num", "1e3"),
             ("f_num", ".5"), ("f_num", "5."), ("f_date", "2024-2-9"), ("f_date", "2023-02-29"),
             ("f_date", "02/09/2024"), ("f_dt", "2024-02-09T07:05:59"), ("f_dt", "2024-02-09"),
             ("f_choice", "99"), ("f_choice", "3"), ("f_text", "ünïcødé \"quoted\", comma"),
             ("f_int", "abc"), ("f_choice", "A_B")]
    for number, (name, value) in enumerate(cases):
        record = f"h{number}"
        clean, error = stored(name, value)
        try:
            answer = project.import_records([{"record_id": record, name: value}])
            outcome = ("stored", answer["count"])
        except Exception as exc:  # PyCap raises RedcapError carrying REDCap's error text
            outcome = ("refused", str(exc))
        rows = project.export_records(records=[record])
        if error:
            assert outcome[0] == "refused" and error in outcome[1] and rows == [], (name, value)
        else:
            assert outcome == ("stored", 1) and rows[0][name] == clean, (name, value)


# -- broken project files: the error names the file, the line and the problem ------------------

def test_a_malformed_dictionary_names_its_file_and_line(tmp_path):
    good = (ROOT / "data_dictionary.csv").read_text(encoding="utf-8").splitlines()
    broken = good[:5] + [good[5].replace(good[5].split(",")[3], "not_a_type", 1)] + good[6:]
    path = tmp_path / "dd.csv"
    path.write_text("\n".join(broken) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(path), "--redcap-dir", str(ROOT / "redcap")])
    assert result.exit_code != 0
    assert result.output.startswith('dd.csv:6: column "Field Type"')
    assert 'unknown field type "not_a_type"' in result.output


def test_a_bad_rules_row_names_the_file_line_and_column(tmp_path):
    redcap = tmp_path / "redcap"
    redcap.mkdir()
    for source in (ROOT / "redcap").iterdir():
        if source.is_file():
            (redcap / source.name).write_bytes(source.read_bytes())
    lines = (redcap / "rules.csv").read_text(encoding="utf-8").splitlines()
    lines.append(lines[1].replace(lines[1].split(",")[0], "BROKEN_RULE", 1)
                 .replace("[", "[[", 1))
    (redcap / "rules.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["rules", "export", "--rules", str(redcap / "rules.csv"),
                                      "--out", str(tmp_path / "dq.csv")])
    assert result.exit_code == 2
    assert f"rules.csv, line {len(lines)}" in result.output


@pytest.mark.parametrize("text, problem", [
    ("batch_size = \n", "not valid TOML"),
    ('state_path = "x"\nbatch_size = 0\n', "batch_size"),
    ("unknown_setting = 1\n", "unknown_setting"),
])
def test_a_bad_config_names_its_file_and_the_problem(tmp_path, monkeypatch, text, problem):
    monkeypatch.chdir(tmp_path)  # the failed run is kept in the state file the config names
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {config}") and problem in result.output
