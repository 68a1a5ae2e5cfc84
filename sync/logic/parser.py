"""Logic text -> tree: REDCap's spelling rules (§1.2) enforced by grammar.lark plus a few checks.

What REDCap rejects (`==`, `And`, `-[num]`, `2^3`, `1e3`, upper-case function names, an `if`
without three arguments) raises `LogicSyntaxError` with the expression, a caret, the line and
column, and what was expected there.
"""
from __future__ import annotations

import functools
import re

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from sync.errors import LogicSyntaxError
from sync.logic import ast

ALLOWED_FUNCTIONS: tuple[str, ...] = (
    "if", "datediff", "calcdate", "calctext", "sum", "mean", "median", "min", "max", "stdev",
    "round", "roundup", "rounddown", "abs", "sqrt", "pow", "exponential", "log", "mod",
    "isnumber", "isinteger", "year", "month", "day", "contains", "not_contain", "starts_with",
    "ends_with", "left", "right", "mid", "length", "find", "concat", "concat_ws", "upper",
    "lower", "trim", "replace_text", "isblankormissingcode", "isblanknotmissingcode",
    "ismissingcode", "hasmissingcode",
)
"""`LogicParser::$allowedFunctions` of REDCap 15.7.6, user-facing part (§2)."""

VALUE_SMART_VARIABLES: frozenset[str] = frozenset({
    "record-name", "event-name", "event-id", "event-number", "event-label", "arm-number",
    "arm-label", "current-instance", "previous-instance", "next-instance", "first-instance",
    "last-instance", "project-id", "user-name", "record-dag-name", "previous-event-name",
    "next-event-name", "first-event-name", "last-event-name",
})
"""Smart variables usable as values in batch logic (§1.4)."""

EVENT_SMART_VARIABLES: frozenset[str] = frozenset({
    "event-name", "previous-event-name", "next-event-name", "first-event-name",
    "last-event-name",
})

_COMMENT_LINE = re.compile(r"^\s*(//|#)")

_EXPECTED_WORDS: dict[str, str] = {
    "NUMBER": "a number", "SIGNED_NUMBER": "a number", "STRING": "a quoted string",
    "BOOLEAN": "true/false", "SMART": "a smart variable", "NAME_REF": "a field like [age]",
    "CODE_REF": "a field like [age]", "FUNC": "a function", "LPAR": "'('", "RPAR": "')'",
    "COMMA": "','", "AND": "'and'", "OR": "'or'", "EQ_OP": "'=', '<>' or '!='",
    "REL_OP": "'<', '<=', '>' or '>='", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
    "BANG": "'!'", "CARET": "'^'", "INSTANCE": "an instance like [2]",
    "$END": "the end of the logic",
}


@v_args(meta=True)
class _Build(Transformer):
    """One-liners from parse-tree alternatives to `ast` nodes."""

    def or_(self, meta, c): return ast.Or(c[0], c[2], **_at(meta))
    def and_(self, meta, c): return ast.And(c[0], c[2], **_at(meta))
    def comparison(self, meta, c): return ast.Comparison(_op(c[1]), c[0], c[2], **_at(meta))
    def arithmetic(self, meta, c): return ast.Arithmetic(str(c[1]), c[0], c[2], **_at(meta))
    def not_(self, meta, c): return ast.Not(c[1], **_at(meta))
    def number(self, meta, c): return ast.Number(str(c[0]), **_at(meta))
    def string(self, meta, c): return ast.String(str(c[0])[1:-1], **_at(meta))
    def boolean(self, meta, c): return ast.Boolean(str(c[0]).lower() == "true", **_at(meta))
    def smart(self, meta, c): return ast.SmartVariable(str(c[0])[1:-1], **_at(meta))
    def call(self, meta, c): return ast.Call(str(c[0]), tuple(c[1] or ()), **_at(meta))
    def arguments(self, meta, c): return tuple(c)
    def power(self, meta, c): return ast.Power(c[0], c[2], **_at(meta))
    def field_ref(self, meta, c): return _field_ref(None, *c, meta=meta)
    def event_field_ref(self, meta, c): return _field_ref(*c, meta=meta)


_LARK = Lark.open("grammar.lark", rel_to=__file__, parser="lalr", lexer="contextual",
                  propagate_positions=True, maybe_placeholders=True)
_BUILD = _Build()


@functools.lru_cache(maxsize=2048)
def parse(text: str) -> ast.Node:
    """Parse REDCap logic (branching logic, a calc equation, a rule or a filterLogic).

    Comment lines (trimmed text starting with `//` or `#`) are dropped as REDCap drops them;
    blank logic gives `ast.Empty`. Trees are immutable, so parses are cached by text.

    Examples:
        >>> parse("[age] >= 18").right
        Number(text='18')
    """
    source = "\n".join("" if _COMMENT_LINE.match(line) else line for line in text.split("\n"))
    if not source.strip():
        return ast.Empty(line=1, column=1)
    try:
        tree = _BUILD.transform(_LARK.parse(source))
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None
    _check_tree(source, tree)
    return tree


def _at(meta) -> dict[str, int]:
    return {"line": getattr(meta, "line", 0), "column": getattr(meta, "column", 0)}


def _op(token: Token) -> str:
    return "<>" if str(token) == "!=" else str(token)


def _field_ref(event: Token | None, field: Token, instance: Token | None = None, *,
               meta) -> ast.FieldRef:
    body = str(field)[1:-1].removesuffix(":value")
    name, _, code = body.partition("(")
    return ast.FieldRef(
        field=name, event=str(event)[1:-1].removesuffix(":value") if event else None,
        code=code[:-1] if code else None, instance=str(instance)[1:-1] if instance else None,
        **_at(meta))


def _check_tree(source: str, tree: ast.Node) -> None:
    """The checks REDCap makes after tokenising: function names, `if` arity, smart variables."""
    for node in ast.walk(tree):
        problem = ""
        if isinstance(node, ast.Call) and node.name not in ALLOWED_FUNCTIONS:
            hint = ("REDCap's functions are lower-case" if node.name.lower() in ALLOWED_FUNCTIONS
                    else "not one of REDCap's functions")
            problem = f"illegal function '{node.name}' ({hint})"
        elif isinstance(node, ast.Call) and node.name == "if" and len(node.args) != 3:
            problem = f"if() takes exactly 3 arguments, got {len(node.args)}"
        elif isinstance(node, ast.SmartVariable) and node.name not in VALUE_SMART_VARIABLES:
            problem = f"unknown smart variable [{node.name}]"
        elif (isinstance(node, ast.FieldRef) and node.event and "-" in node.event
              and node.event not in EVENT_SMART_VARIABLES):
            problem = f"[{node.event}] cannot prefix a field"
        if problem:
            raise LogicSyntaxError(_message(source, node.line, node.column, problem, ()),
                                   text=source, line=node.line, column=node.column)


def _syntax_error(source: str, exc: UnexpectedInput) -> LogicSyntaxError:
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedEOF) or line < 1:
        lines = source.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    if isinstance(exc, UnexpectedCharacters):
        expected = tuple(sorted(exc.allowed or ()))
        problem = f"unexpected {source.split(chr(10))[line - 1][column - 1:column]!r}"
    elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        expected = tuple(sorted(exc.expected or ()))
        problem = f"unexpected {str(exc.token)!r}"
    else:
        expected = tuple(sorted(getattr(exc, "expected", ()) or ()))
        problem = "unexpected end of logic"
    words = tuple(dict.fromkeys(_EXPECTED_WORDS.get(name, name) for name in expected))
    return LogicSyntaxError(_message(source, line, column, problem, words), text=source,
                            line=line, column=column, expected=words)


def _message(source: str, line: int, column: int, problem: str,
             expected: tuple[str, ...]) -> str:
    text_line = source.split("\n")[line - 1] if 0 < line <= source.count("\n") + 1 else source
    wanted = f"; expected {', '.join(expected)}" if expected else ""
    return (f"logic syntax error at line {line}, column {column}: {problem}{wanted}\n"
            f"  {text_line}\n  {' ' * (column - 1)}^")
