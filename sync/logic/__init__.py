"""The REDCap logic language: parse, check and evaluate it over whole export frames.

`parse`, `referenced_fields` and `reference_problems` serve the dictionary checker; `evaluate`
serves rules and the embedded server's `filterLogic`; `compute_calcs` recomputes calculated
fields for the sync. Semantics are REDCap 15.7.6's server-side pipeline
(shared/reference/redcap-semantics.md §1-§3), with these documented choices:

- `1 < 2 < 3` (a PHP syntax error that REDCap evaluates as false) is a `LogicSyntaxError` here.
- Leading-numeric text in arithmetic (`'5 apples' + 1`) uses its numeric prefix, as PHP 8 does
  with a warning; wholly non-numeric text throws, so the logic is false for that row.
- On repeating data an unsuffixed reference reads the current instance (1 on base rows) of a
  repeating form, and the base row of the record-event for other forms; `[event][field]` reads
  the base row (or the same instance of a repeating event) of the same record.
- `today`/`now` default to the current UTC date; pass `today=` for reproducible results.
"""
from __future__ import annotations

from sync.logic.ast import FieldRef, Node, referenced_fields, unparse
from sync.logic.calcs import calc_equations, calc_values_agree, compute_calcs
from sync.logic.evaluate import Evaluator, evaluate, evaluate_value
from sync.logic.fields import reference_problems
from sync.logic.functions import FUNCTIONS
from sync.logic.parser import ALLOWED_FUNCTIONS, parse
from sync.logic.reference import evaluate_rows, evaluate_value_rows

__all__ = [
    "ALLOWED_FUNCTIONS", "Evaluator", "FUNCTIONS", "FieldRef", "Node", "calc_equations",
    "calc_values_agree", "compute_calcs", "evaluate", "evaluate_rows", "evaluate_value",
    "evaluate_value_rows", "parse", "reference_problems", "referenced_fields", "unparse",
]
