"""The REDCap logic language: parse, check and evaluate it over whole export frames.

`parse` and `referenced_fields` serve the dictionary checker; `evaluate` serves rules and the
embedded server's `filterLogic`; `compute_calcs` recomputes calculated fields for the sync.
Semantics: REDCap 15.7.6's server-side pipeline (shared/reference/redcap-semantics.md §1-§3).
"""
from __future__ import annotations

from sync.logic.ast import FieldRef, Node, referenced_fields, unparse
from sync.logic.calcs import calc_equations, compute_calcs
from sync.logic.evaluate import Evaluator, evaluate, evaluate_value
from sync.logic.fields import reference_problems
from sync.logic.functions import FUNCTIONS
from sync.logic.parser import ALLOWED_FUNCTIONS, parse
from sync.logic.reference import evaluate_rows, evaluate_value_rows

__all__ = [
    "ALLOWED_FUNCTIONS", "Evaluator", "FUNCTIONS", "FieldRef", "Node", "calc_equations",
    "compute_calcs", "evaluate", "evaluate_rows", "evaluate_value", "evaluate_value_rows",
    "parse", "reference_problems", "referenced_fields", "unparse",
]
