#!/usr/bin/env python
"""Benchmark of the logic engine: eligibility-style rules over a synthetic 10,000-subject project.

Prints record-rule evaluations per second for the vectorised evaluator (a fresh `evaluate()`
call per rule, and one `Evaluator` serving the whole rule set) and for the row-by-row reference
interpreter, plus the speed-up. Not a test: figures depend on the machine.

Usage: .venv/bin/python scripts/bench_logic.py [--subjects 10000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import random
import time
from datetime import date, timedelta

import pandas as pd

from sync.logic import Evaluator, evaluate, parse
from sync.logic.reference import Interpreter
from sync.crf.redcap_spec import METADATA_KEYS

RULES = [
    "[age] >= 18 and [age] <= 80",
    "[ic_yn] = '1' and [icdat] <> ''",
    "datediff([brthdat], [icdat], 'y') >= 18",
    "if([pf_ratio] = '', 0, [pf_ratio]) <= 300",
    "sum([crit1], [crit2], [crit3]) >= 2",
    "[spo2] <= 93 and [spo2_ra] = '1'",
    "datediff([sympdat], [icdat], 'd') > 14",
    "[rr] >= 30 or [spo2] <= 93",
    "[sex] = '2' and [preg_yn] = '1'",
    "round([pao2] / ([fio2] / 100), 0) > 300",
]
FIELDS = [
    ("record_id", "text", "", ""), ("brthdat", "text", "date_ymd", ""),
    ("icdat", "text", "date_ymd", ""), ("sympdat", "text", "date_ymd", ""),
    ("age", "text", "integer", ""), ("sex", "radio", "", "1, Male | 2, Female"),
    ("preg_yn", "yesno", "", ""), ("ic_yn", "yesno", "", ""), ("rr", "text", "integer", ""),
    ("spo2", "text", "integer", ""), ("spo2_ra", "yesno", "", ""), ("pao2", "text", "number", ""),
    ("fio2", "text", "integer", ""), ("pf_ratio", "calc", "", "[pao2] / ([fio2] / 100)"),
    ("crit1", "yesno", "", ""), ("crit2", "yesno", "", ""), ("crit3", "yesno", "", ""),
]


def metadata() -> pd.DataFrame:
    rows = [{**{key: "" for key in METADATA_KEYS}, "field_name": name, "form_name": "screening",
             "field_type": kind, "text_validation_type_or_show_slider_number": validation,
             "select_choices_or_calculations": choices}
            for name, kind, validation, choices in FIELDS]
    return pd.DataFrame(rows, columns=list(METADATA_KEYS))


def _maybe(rng: random.Random, value: str, blank: float = 0.05) -> str:
    return "" if rng.random() < blank else value


def subjects(n: int, seed: int = 7) -> pd.DataFrame:
    """A raw flat export: strings only, about 5% blanks per field."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        icdat = date(2024, 1, 1) + timedelta(days=rng.randrange(365))
        born = icdat - timedelta(days=rng.randrange(15 * 365, 90 * 365))
        pao2, fio2 = rng.randrange(40, 120), rng.choice([21, 30, 40, 60, 100])
        rows.append({
            "record_id": f"01-{i + 1:05d}", "brthdat": _maybe(rng, born.isoformat()),
            "icdat": _maybe(rng, icdat.isoformat()),
            "sympdat": _maybe(rng, (icdat - timedelta(days=rng.randrange(30))).isoformat()),
            "age": _maybe(rng, str((icdat - born).days // 365)), "sex": rng.choice(["1", "2"]),
            "preg_yn": _maybe(rng, rng.choice(["0", "1"]), 0.5), "ic_yn": _maybe(rng, "1"),
            "rr": _maybe(rng, str(rng.randrange(12, 45))), "spo2": _maybe(rng, str(rng.randrange(80, 100))),
            "spo2_ra": _maybe(rng, rng.choice(["0", "1"])), "pao2": _maybe(rng, str(pao2)),
            "fio2": _maybe(rng, str(fio2)), "pf_ratio": "",
            **{f"crit{k}": _maybe(rng, rng.choice(["0", "1"])) for k in (1, 2, 3)},
            "screening_complete": "2",
        })
    return pd.DataFrame(rows, dtype=object)


def _best(func, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    frame, meta, today = subjects(args.subjects), metadata(), date(2024, 12, 31)
    trees = [parse(rule) for rule in RULES]
    evaluations = len(frame) * len(trees)

    fresh = _best(lambda: [evaluate(tree, frame, meta, today=today) for tree in trees], args.repeat)
    shared = _best(lambda: _run_shared(frame, meta, today, trees), args.repeat)
    by_row = _best(lambda: _run_rows(frame, meta, today, trees), 2)

    print(f"{len(frame):,} records x {len(trees)} rules = {evaluations:,} record-rule evaluations")
    for label, seconds in [("vectorised, evaluate() per rule", fresh),
                           ("vectorised, one Evaluator for the rule set", shared),
                           ("row by row (reference.py)", by_row)]:
        print(f"  {label:<44} {seconds * 1000:9.1f} ms  {evaluations / seconds:>14,.0f} evaluations/s")
    print(f"  speed-up over row by row: {by_row / fresh:,.0f}x (evaluate per rule), "
          f"{by_row / shared:,.0f}x (shared Evaluator)")
    for rule, tree in zip(RULES, trees):
        single = _best(lambda: evaluate(tree, frame, meta, today=today), args.repeat)
        print(f"  {single * 1000:7.2f} ms  {len(frame) / single:>12,.0f} rows/s  {rule}")


def _run_shared(frame, meta, today, trees) -> None:
    evaluator = Evaluator(frame, meta, today=today)
    for tree in trees:
        evaluator.truth(tree)


def _run_rows(frame, meta, today, trees) -> None:
    interpreter = Interpreter(frame, meta, today=today)
    for tree in trees:
        interpreter.truths(tree)


if __name__ == "__main__":
    main()
