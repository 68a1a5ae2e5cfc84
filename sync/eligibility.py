"""Stage 3: the contract's eligibility decision table, RAW screening rows in, REDCap values out.

Every criterion is three-valued (pandas `boolean`: True, False, NA for undetermined) and
carries, for undetermined rows, the input whose blank value leaves it undetermined, so that
`ELIG_MISSING` can attach its query to the field a site user has to fill in.
Thresholds are compared on exact values (`fractions.Fraction`), never on floats.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Literal

import numpy as np
import pandas as pd

from sync.errors import DictionaryError
from sync.crf.redcap_spec import is_php_numeric
from sync.typed import parse_dates

SCREENING_EVENT = "screening_arm_1"
INCLUSIONS: tuple[str, ...] = ("I1", "I2", "I3", "I4")
EXCLUSIONS: tuple[str, ...] = tuple(f"E{n}" for n in range(1, 10))
CRITERIA: tuple[str, ...] = INCLUSIONS + EXCLUSIONS
VIRUSES: tuple[str, ...] = ("sarscov2", "adeno", "flu", "othvir")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "age", "inc1", "inc2", "inc3", "inc4", *(f"exc{n}" for n in range(1, 10)),
    "elig_calc", "elig_fail", "elig_missing")
INPUT_FIELDS: tuple[str, ...] = (
    "icdat", "ic_yn", "ic_noother", "brthdat",
    *(f"{v}_{part}" for v in VIRUSES for part in ("res", "dat")),
    "img_viral", "rr", "spo2", "spo2_ra", "pao2", "fio2", "imv", "vaso",
    "lbdat", "wbc", "crp", "crp_uln", "pct", "pct_uln", "alt", "alt_uln", "tbil", "tbil_uln",
    "tbil_prev", "tbil_prev_dat", "crea", "crea_prev", "crea_prev_dat", "pta", "inr", "hgb",
    "plt", "hbv_act", "hcv_act", "hiv_pos", "tb_act", "solid_tumor", "leukemia", "mental_dis",
    "nyha3", "myocard", "mal_arrhythmia", "cv_event_dat", "chronic_lung", "bleeding", "dic",
    "drug_abuse", "other_trial", "noncompliance", "other_serious")
VIRUS_WINDOW_BEFORE = 14
VIRUS_WINDOW_AFTER = 3
CV_EVENT_WINDOW = 183


@dataclass(frozen=True)
class Tri:
    """A three-valued column (`true` where `known`, as numpy arrays: a batch decides hundreds
    of these) and, where it is undetermined, the blank input to blame."""

    true: np.ndarray
    known: np.ndarray
    blame: np.ndarray

    @classmethod
    def of(cls, value: pd.Series, blame: pd.Series) -> Tri:
        """From a pandas `boolean` column (NA undetermined) and its blame."""
        known = value.notna().to_numpy()
        return cls(value.fillna(False).to_numpy(dtype=bool) & known, known,
                   blame.to_numpy(dtype=object))

    @property
    def value(self) -> pd.Series:
        """The column as pandas `boolean`, NA where undetermined."""
        return pd.Series(pd.arrays.BooleanArray(self.true & self.known, ~self.known))

    def __invert__(self) -> Tri:
        return Tri(~self.true & self.known, self.known, self.blame)


@dataclass(frozen=True)
class Eligibility:
    """The decision for every screened record.

    `values` holds what the sync writes (REDCap strings, indexed by record_id, columns
    OUTPUT_COLUMNS); `criteria` the three-valued criteria I1..E9 (pandas `boolean`);
    `missing` one row per undetermined criterion: record_id, criterion, field (the input that
    ELIG_MISSING attaches its query to).
    """

    values: pd.DataFrame
    criteria: pd.DataFrame
    missing: pd.DataFrame


@functools.lru_cache(maxsize=1 << 16)
def parse_number(text: str) -> Fraction | None:
    """The exact value of an entered number ("1,5" as 1.5); None when blank or not a number."""
    text = text.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    if not text or not is_php_numeric(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


class _Screening:
    """Typed views of the screening rows: exact numbers, dates, coded answers."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = pd.DataFrame({column: np.array([text.strip() for text in values], dtype=object)
                                  for column, values in rows.items()}, index=rows.index)
        self.index = rows.index
        self._cache: dict[tuple[str, str], pd.Series | np.ndarray] = {}

    def number(self, field: str) -> pd.Series:
        """Exact values (Fraction, None where blank or not a number)."""
        if ("number", field) not in self._cache:
            texts = self.rows[field]
            parsed = {text: parse_number(text) for text in pd.unique(texts)}
            self._cache["number", field] = texts.map(parsed).astype(object)
        return self._cache["number", field]

    def date(self, field: str) -> pd.Series:
        if ("date", field) not in self._cache:
            self._cache["date", field] = parse_dates(self.rows[field])
        return self._cache["date", field]

    def leaf(self, value: tuple[np.ndarray, np.ndarray], blanks: list[str]) -> Tri:
        """A component that is undetermined where `value` (true, known) is not known; blame the
        first blank input."""
        true, known = value
        blame = np.full(len(self.index), blanks[0], dtype=object)
        for field in reversed(blanks):
            blame[self.blank(field)] = field
        blame[known] = ""
        return Tri(true & known, known, blame)

    def blank(self, field: str) -> np.ndarray:
        """Where `field` gives the decision nothing to read: blank, or a missing-data code
        (`UNK` in a virus result is the input to ask about, not its hidden date)."""
        if ("blank", field) not in self._cache:
            self._cache["blank", field] = (
                self.date(field).isna() if field.endswith("dat")
                else self.number(field).isna() if field in _NUMBER_FIELDS
                else ~self.rows[field].str.fullmatch(r"\d+")).to_numpy(dtype=bool)
        return self._cache["blank", field]

    def equals(self, field: str, code: str, codes: tuple[str, ...] = ("0", "1")) -> Tri:
        text = self.rows[field]
        return self.leaf(((text == code).to_numpy(), text.isin(codes).to_numpy()), [field])

    def exact(self, texts: list[pd.Series], test: Callable[..., bool | None]
              ) -> tuple[np.ndarray, np.ndarray]:
        """`test` over the exact numbers of each row's entries, once per distinct combination,
        as (true, known); not known where an entry is blank or not a number."""
        cache: dict[tuple[str, ...], bool | None] = {}
        out: list[bool | None] = []
        for combo in zip(*texts):
            if combo not in cache:
                numbers = [parse_number(text) for text in combo]
                cache[combo] = None if any(n is None for n in numbers) else test(*numbers)
            out.append(cache[combo])
        return (np.array([bool(v) for v in out], dtype=bool),
                np.array([v is not None for v in out], dtype=bool))

    def threshold(self, field: str, op: Callable[[object, object], bool],
                  limit: int | str) -> Tri:
        bound = Fraction(limit)
        value = self.exact([self.rows[field]], lambda v: op(v, bound))
        return self.leaf(value, [field])

    def times_uln(self, field: str, op: Callable[[object, object], bool],
                  factor: int) -> Tri:
        uln = f"{field}_uln"
        value = self.exact([self.rows[field], self.rows[uln]], lambda v, u: op(v, u * factor))
        return self.leaf(value, [field, uln])

    def days(self, start: str, end: str) -> pd.Series:
        """Whole days from `start` to `end` (float with NaN where a date is blank)."""
        return (self.date(end) - self.date(start)).dt.days


_NUMBER_FIELDS = frozenset({
    "rr", "spo2", "pao2", "fio2", "wbc", "crp", "crp_uln", "pct", "pct_uln", "alt", "alt_uln",
    "tbil", "tbil_uln", "tbil_prev", "crea", "crea_prev", "pta", "inr", "hgb", "plt"})


def _kleene(parts: tuple[Tri, ...], deciding: bool) -> Tri:
    """Any part known to be `deciding` decides; else every part must be known (the other)."""
    decided = np.zeros(len(parts[0].known), dtype=bool)
    every = np.ones(len(parts[0].known), dtype=bool)
    for part in parts:
        decided |= part.known & (part.true == deciding)
        every &= part.known
    known = decided | every
    blame = np.where(~parts[0].known, parts[0].blame, "")
    for part in parts[1:]:
        blame = np.where((blame == "") & ~part.known, part.blame, blame)
    return Tri(decided if deciding else every & ~decided, known,
               np.where(known, "", blame).astype(object))


def any_of(*parts: Tri) -> Tri:
    """True if any part is true, false if all are false, else undetermined."""
    return _kleene(parts, True)


def all_of(*parts: Tri) -> Tri:
    """False if any part is false, true if all are true, else undetermined."""
    return _kleene(parts, False)


def completed_years(birth: pd.Series, on: pd.Series) -> pd.Series:
    """Age in completed calendar years (nullable Int64); a 29 February birthday counts as
    reached on 1 March in years without one, which plain (month, day) comparison gives. A
    birth after `on` gives none (NA), not a negative age: one of the dates is wrong."""
    before = (on.dt.month * 100 + on.dt.day) < (birth.dt.month * 100 + birth.dt.day)
    years = on.dt.year - birth.dt.year - before.astype(int)
    return years.where(birth.notna() & on.notna() & (birth <= on)).astype("Int64")


def _i3(s: _Screening, reading: Literal["any", "all"]) -> Tri:
    viruses = any_of(*(_virus(s, v) for v in VIRUSES))
    respiratory = (any_of if reading == "any" else all_of)(
        s.threshold("rr", operator.ge, 30),
        all_of(s.threshold("spo2", operator.le, 93), s.equals("spo2_ra", "1")),
        _pf(s))
    return all_of(viruses, s.equals("img_viral", "1"), respiratory)


def _pf(s: _Screening) -> Tri:
    """200 < P/F <= 300; a FiO2 of 0 gives no ratio, so the query asks about FiO2."""
    pf = s.leaf(s.exact([s.rows["pao2"], s.rows["fio2"]], _pf_in_range), ["pao2", "fio2"])
    zero = (s.number("fio2") == 0).to_numpy(dtype=bool) & ~pf.known & ~s.blank("pao2")
    return Tri(pf.true, pf.known, np.where(zero, "fio2", pf.blame).astype(object))


def _virus(s: _Screening, virus: str) -> Tri:
    """Result 1 within 14 days before to 3 days after consent; 0/9 false; blanks unknown."""
    result = s.equals(f"{virus}_res", "1", ("0", "1", "9"))
    offset = s.days("icdat", f"{virus}_dat")
    dated = offset.notna().to_numpy()
    in_window = offset.between(-VIRUS_WINDOW_BEFORE, VIRUS_WINDOW_AFTER).to_numpy() & dated
    known = result.known & (dated | ~result.true)
    return s.leaf((result.true & in_window & known, known),
                  [f"{virus}_res", f"{virus}_dat", "icdat"])


def _pf_in_range(pao2: Fraction, fio2: Fraction) -> bool | None:
    """200 < PaO2 / (FiO2 / 100) <= 300, computed exactly; undecidable when FiO2 is 0."""
    return None if fio2 == 0 else 200 < pao2 * 100 / fio2 <= 300


def _daily_rise(s: _Screening, field: str, limit: str) -> Tri:
    """Rise per day from `<field>_prev` to `field`; left out (false) unless the previous value,
    its date and lbdat are entered with the previous date at least a day earlier."""
    days = s.days(f"{field}_prev_dat", "lbdat")
    applies = s.number(f"{field}_prev").notna() & (days >= 1)
    day_texts = days.map(lambda d: "" if pd.isna(d) else str(int(d)))
    bound = Fraction(limit)
    value = s.exact([s.rows[field], s.rows[f"{field}_prev"], day_texts],
                    lambda current, previous, d: d >= 1 and (current - previous) / d >= bound)
    tri = s.leaf(value, [field])
    applies = applies.to_numpy()
    return Tri(tri.true & applies, tri.known | ~applies, np.where(applies, tri.blame, ""))


def _cv_event(s: _Screening) -> Tri:
    """A myocardial infarction or stroke on or after the day 183 days before consent. A blank
    date is no event, and so is `NA` (not applicable); any other entry that is not a date
    (`UNK`, `ND`) leaves it unknown and is the input to ask about."""
    text = s.rows["cv_event_dat"]
    none = text.isin(["", "NA"]).to_numpy()
    offset = s.days("icdat", "cv_event_dat")
    known = offset.notna().to_numpy() | none
    return s.leaf(((offset >= -CV_EVENT_WINDOW).to_numpy() & ~none, known),
                  ["cv_event_dat", "icdat"])


def _criteria(s: _Screening, reading: Literal["any", "all"],
              age: pd.Series) -> dict[str, Tri]:
    yes = lambda *fields: [s.equals(f, "1") for f in fields]  # noqa: E731
    adult = ((age >= 18).fillna(False).to_numpy(dtype=bool), age.notna().to_numpy())
    return {
        "I1": s.leaf(adult, ["brthdat", "icdat"]),
        "I2": all_of(*yes("ic_yn", "ic_noother")),
        "I3": _i3(s, reading),
        "I4": all_of(s.equals("imv", "0"), s.equals("vaso", "0")),
        "E1": any_of(*yes("hbv_act", "hcv_act", "hiv_pos", "tb_act")),
        "E2": any_of(*yes("solid_tumor", "leukemia", "mental_dis")),
        "E3": any_of(s.threshold("wbc", operator.gt, 12), s.threshold("wbc", operator.lt, 4),
                     s.times_uln("crp", operator.gt, 2), s.times_uln("pct", operator.gt, 2)),
        "E4": any_of(
            *yes("nyha3", "myocard", "mal_arrhythmia", "chronic_lung", "bleeding", "dic"),
            _cv_event(s), _daily_rise(s, "crea", "44.2"),
            s.threshold("crea", operator.ge, 442), s.times_uln("alt", operator.ge, 5),
            s.times_uln("tbil", operator.ge, 10), _daily_rise(s, "tbil", "17.1"),
            s.threshold("pta", operator.le, 40), s.threshold("inr", operator.ge, "1.5"),
            s.threshold("hgb", operator.lt, 60), s.threshold("plt", operator.lt, 60)),
        "E5": s.equals("ic_yn", "0"),
        "E6": s.equals("drug_abuse", "1"),
        "E7": s.equals("other_trial", "1"),
        "E8": s.equals("noncompliance", "1"),
        "E9": s.equals("other_serious", "1"),
    }


def _code(tri: Tri, index: pd.Index) -> pd.Series:
    return pd.Series(np.where(tri.known, np.where(tri.true, "1", "0"), ""), index=index,
                     dtype=object)


def _listing(frame: pd.DataFrame) -> pd.Series:
    """Comma-separated criterion names of every True cell, in column order."""
    names = np.array(frame.columns, dtype=object)
    return pd.Series([",".join(names[row]) for row in frame.to_numpy(dtype=bool)],
                     index=frame.index, dtype=object)


def screening_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The base screening row of every record, indexed by record_id."""
    missing = [f for f in ("record_id", "redcap_event_name", *INPUT_FIELDS)
               if f not in records.columns]
    if missing:
        raise DictionaryError(
            "the records lack fields the eligibility decision reads: " + ", ".join(missing))
    repeat = (records["redcap_repeat_instrument"].fillna("")
              if "redcap_repeat_instrument" in records.columns else "")
    rows = records.loc[(records["redcap_event_name"] == SCREENING_EVENT) & (repeat == ""),
                       ["record_id", *INPUT_FIELDS]]
    rows = rows.drop_duplicates("record_id").set_index("record_id")
    return rows[list(INPUT_FIELDS)].fillna("").astype(str)


def decide_eligibility(records: pd.DataFrame, *,
                       i3_respiratory_reading: Literal["any", "all"] = "any") -> Eligibility:
    """Decide I1-I4, E1-E9, elig_calc, age, elig_fail and elig_missing per screened record.

    Examples:
        >>> decide_eligibility(raw_export).values.loc["01-004", "elig_calc"]
        '1'
    """
    s = _Screening(screening_rows(records))
    age = completed_years(s.date("brthdat"), s.date("icdat"))
    tris = _criteria(s, i3_respiratory_reading, age)
    criteria = pd.DataFrame({name: tri.value.set_axis(s.index) for name, tri in tris.items()},
                            index=s.index)
    calc = all_of(*(tris[c] for c in INCLUSIONS), *(~tris[c] for c in EXCLUSIONS))
    values = pd.DataFrame(index=s.index)
    values["age"] = age.astype(object).where(age.notna(), "").map(str)
    for n, name in enumerate(INCLUSIONS, start=1):
        values[f"inc{n}"] = _code(tris[name], s.index)
    for n, name in enumerate(EXCLUSIONS, start=1):
        values[f"exc{n}"] = _code(tris[name], s.index)
    values["elig_calc"] = _code(calc, s.index)
    failing = criteria.fillna(False).astype(bool)
    failing[list(INCLUSIONS)] = ~criteria[list(INCLUSIONS)].fillna(True).astype(bool)
    values["elig_fail"] = _listing(failing)
    values["elig_missing"] = _listing(criteria.isna())
    return Eligibility(values[list(OUTPUT_COLUMNS)], criteria, _missing(tris, s.index))


def _missing(tris: dict[str, Tri], index: pd.Index) -> pd.DataFrame:
    parts = [pd.DataFrame({"record_id": index[~tri.known], "criterion": name,
                           "field": tri.blame[~tri.known]})
             for name, tri in tris.items()]
    missing = pd.concat(parts, ignore_index=True).astype(object)
    order = {name: n for n, name in enumerate(CRITERIA)}
    return (missing.sort_values(["record_id", "criterion"],
                                key=lambda c: c.map(order) if c.name == "criterion" else c,
                                kind="stable").reset_index(drop=True))
