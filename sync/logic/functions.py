"""REDCap's special functions as column primitives: function name -> (args, context) -> Vec.

Hot functions (if, sum, mean, min, max, round*, abs, datediff) are written column-wise; the rest
apply the scalar definition of `scalar.py` once per distinct combination of argument values.
Argument errors are merged by the evaluator; `if` merges only the branch it takes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sync.logic import dates, php
from sync.logic.scalar import SCALAR_FUNCTIONS, Env, agg_number, places_or_nan
from sync.logic.vectors import (Vec, as_objects, as_strings, elementwise, numbers_or_nan,
                                truthy)


@dataclass
class Context:
    """Per-evaluation state shared by the primitives: rows, clock, parsed-date cache."""

    n: int
    env: Env
    cache: dict[int, tuple[object, object]] = field(default_factory=dict)

    def moments(self, vec: Vec) -> tuple[np.ndarray, np.ndarray]:
        """Parsed dates of a column, computed once per column per evaluation."""
        if vec.const is not None:
            found = dates.moment(php.to_str(vec.const[0]), self.env.today, self.env.now)
            text = php.to_str(vec.const[0])
            seconds, kind = (found if found and text not in self.env.missing and text
                             else (np.nan, 0))
            return np.full(self.n, seconds), np.full(self.n, kind, dtype=np.int8)
        cached = self.cache.get(id(vec.values))
        if cached is None or cached[0] is not vec.values:
            result = dates.moments(as_strings(vec), self.env.today, self.env.now, self.env.missing)
            cached = (vec.values, result)
            self.cache[id(vec.values)] = cached
        return cached[1]  # type: ignore[return-value]


Primitive = Callable[[list[Vec], Context], Vec]


def _no_error(ctx: Context) -> np.ndarray:
    return np.zeros(ctx.n, dtype=bool)


def _if(args: list[Vec], ctx: Context) -> Vec:
    condition, then, otherwise = args
    chosen = truthy(condition)
    error = condition.error | (chosen & then.error) | (~chosen & otherwise.error)
    if then.kind == otherwise.kind and then.kind != "obj":
        return Vec(then.kind, np.where(chosen, then.values, otherwise.values), error)
    values = np.where(chosen, as_objects(then), as_objects(otherwise))
    return Vec("obj", values.astype(object), error)


def _aggregate_numbers(vec: Vec) -> np.ndarray:
    if vec.kind == "obj":
        return elementwise(agg_number, [vec], len(vec.values)).values
    return numbers_or_nan(vec)


def _running(args: list[Vec], ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    total, count = np.zeros(ctx.n), np.zeros(ctx.n, dtype=np.int64)
    for arg in args:
        numbers = _aggregate_numbers(arg)
        present = ~np.isnan(numbers)
        total = np.where(present, total + np.where(present, numbers, 0.0), total)
        count += present
    return total, count


def _sum(args: list[Vec], ctx: Context) -> Vec:
    total, count = _running(args, ctx)
    return Vec("num", np.where(count > 0, total, np.nan), _no_error(ctx))


def _mean(args: list[Vec], ctx: Context) -> Vec:
    total, count = _running(args, ctx)
    with np.errstate(all="ignore"):
        return Vec("num", np.where(count > 0, total / np.maximum(count, 1), np.nan), _no_error(ctx))


def _extreme(pick: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Primitive:
    def primitive(args: list[Vec], ctx: Context) -> Vec:
        best = np.full(ctx.n, np.nan)
        for arg in args:
            best = pick(best, _aggregate_numbers(arg))
        return Vec("num", best, _no_error(ctx))
    return primitive


def _places(args: list[Vec], ctx: Context) -> np.ndarray:
    """Decimal places per row; NaN where the argument is not an integer."""
    if len(args) < 2:
        return np.zeros(ctx.n)
    places = args[1]
    if places.kind == "num":
        values = places.values
        # PHP prints 1e14 as "1.0E+14", which isinteger() rejects
        integral = (values == np.floor(values)) & (np.abs(values) < 1e14)
        return np.where(integral, values, np.nan)
    return elementwise(places_or_nan, [places], ctx.n).values.astype(float)


def _half_up(values: np.ndarray) -> np.ndarray:
    return np.where(values >= 0, np.floor(values + 0.5), np.ceil(values - 0.5))


def php_round_columns(values: np.ndarray, places: np.ndarray) -> np.ndarray:
    """PHP 8.2 `round()` per row, pre-rounding included (mirrors `php.php_round`)."""
    usable = np.isfinite(values) & (values != 0) & ~np.isnan(places)
    x = np.where(usable, values, 1.0)
    d = np.where(np.isnan(places), 0, places).astype(np.int64)
    with np.errstate(all="ignore"):
        logs = np.log10(np.abs(x))
        near = np.flatnonzero(np.abs(logs - np.round(logs)) < 1e-9)
        logs[near] = [math.log10(abs(v)) for v in x[near]]  # exactly as PHP's C log10
        precision = 14 - np.floor(logs).astype(np.int64)
        f1 = 10.0 ** np.abs(d)
        f2 = 10.0 ** np.abs(precision)
        pre = (d < precision) & (precision - 15 < d)
        early = _half_up(np.where(precision >= 0, x * f2, x / f2))
        early = early / 10.0 ** np.abs(np.maximum(-60, d - precision))
        plain = np.where(d >= 0, x * f1, x / f1)
        too_big = ~pre & (np.abs(plain) >= 1e15)
        scaled = _half_up(np.where(pre, early, plain))
        rounded = np.where(d > 0, scaled / f1, scaled * f1)
    out = np.where(usable & ~too_big, rounded, values)
    extreme = usable & ((np.abs(d) >= 23) | (np.abs(precision) > 300))
    for i in np.flatnonzero(extreme):
        out[i] = php.php_round(float(values[i]), int(d[i]))
    return np.where(np.isnan(places), np.nan, out)


def _round(args: list[Vec], ctx: Context) -> Vec:
    return Vec("num", php_round_columns(_aggregate_numbers(args[0]), _places(args, ctx)),
               _no_error(ctx))


def _directed(step_round: Callable[[np.ndarray], np.ndarray]) -> Primitive:
    def primitive(args: list[Vec], ctx: Context) -> Vec:
        values, places = _aggregate_numbers(args[0]), _places(args, ctx)
        with np.errstate(all="ignore"):
            step = 10.0 ** -np.where(np.isnan(places), 0, places)
            out = np.where(np.isfinite(values), step_round(values / step) * step, values)
        unusable = np.isnan(places) | (step == 0) | np.isinf(step)
        return Vec("num", np.where(unusable, np.nan, out), _no_error(ctx))
    return primitive


def _abs(args: list[Vec], ctx: Context) -> Vec:
    if args[0].kind == "num":
        return Vec("num", np.abs(args[0].values), _no_error(ctx))
    return _fallback("abs")(args, ctx)


def _datediff(args: list[Vec], ctx: Context) -> Vec:
    if any(arg.const is None for arg in args[2:]):
        return _fallback("datediff")(args, ctx)
    constants = [arg.const[0] for arg in args[2:]]  # type: ignore[index]
    _, _, signed_value = dates.split_datediff_args([None, None, *constants])
    first, second, unit = args[:3]
    flags = np.full(ctx.n, signed_value is not None and dates.is_signed(signed_value))
    result = dates.datediff_columns(ctx.moments(first), ctx.moments(second),
                                    php.to_str(unit.const[0]), flags)
    return Vec("num", result, _no_error(ctx))


def _fallback(name: str) -> Primitive:
    scalar = SCALAR_FUNCTIONS[name]

    def primitive(args: list[Vec], ctx: Context) -> Vec:
        return elementwise(lambda *values: scalar(ctx.env, *values), args, ctx.n)
    return primitive


FUNCTIONS: dict[str, Primitive] = {name: _fallback(name) for name in SCALAR_FUNCTIONS}
FUNCTIONS.update({
    "if": _if, "sum": _sum, "mean": _mean, "min": _extreme(np.fmin), "max": _extreme(np.fmax),
    "round": _round, "roundup": _directed(np.ceil), "rounddown": _directed(np.floor),
    "abs": _abs, "datediff": _datediff,
})
"""REDCap function name -> column primitive (every function of the 15.7.6 allow-list)."""
