"""The tree of a REDCap logic expression: frozen nodes that remember where they were written.

Positions (`line`, `column`, 1-based) take no part in equality, so a tree printed with
`unparse` and parsed again compares equal to the original.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator


@dataclass(frozen=True)
class Node:
    """Base of every node; `line`/`column` point at the node's first character."""

    line: int = field(default=0, compare=False, repr=False, kw_only=True)
    column: int = field(default=0, compare=False, repr=False, kw_only=True)

    def children(self) -> tuple[Node, ...]:
        """The direct sub-nodes, in source order."""
        found: list[Node] = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, Node):
                found.append(value)
            elif isinstance(value, tuple):
                found.extend(item for item in value if isinstance(item, Node))
        return tuple(found)


@dataclass(frozen=True)
class Empty(Node):
    """Blank logic: REDCap's "returnEmpty", which filters nothing out (§1.1 step 2)."""


@dataclass(frozen=True)
class Number(Node):
    """A number literal as written (`5`, `.5`, `-2`); the sign is part of the literal."""

    text: str


@dataclass(frozen=True)
class String(Node):
    """A quoted string literal; REDCap has no escapes, so `value` never holds both quotes."""

    value: str


@dataclass(frozen=True)
class Boolean(Node):
    """`true` or `false`, in any case."""

    value: bool


@dataclass(frozen=True)
class FieldRef(Node):
    """`[event][field(code)][instance]`; only `field` is always present."""

    field: str
    event: str | None = None
    code: str | None = None
    instance: str | None = None


@dataclass(frozen=True)
class SmartVariable(Node):
    """A smart variable such as `[record-name]`, replaced by a quoted value per row."""

    name: str


@dataclass(frozen=True)
class Not(Node):
    """PHP `!`: binds tighter than arithmetic, so `![x] = 3` is `(![x]) = 3`."""

    operand: Node


@dataclass(frozen=True)
class Arithmetic(Node):
    """`+ - * /` between two operands."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Comparison(Node):
    """`= <> < <= > >=`; `!=` is stored as `<>` (REDCap treats them alike)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class And(Node):
    """`and`, `AND` or `&&` (short-circuit)."""

    left: Node
    right: Node


@dataclass(frozen=True)
class Or(Node):
    """`or`, `OR` or `||` (short-circuit)."""

    left: Node
    right: Node


@dataclass(frozen=True)
class Power(Node):
    """`(base)^(exponent)`, which REDCap rewrites to `powRC(base, exponent)`."""

    base: Node
    exponent: Node


@dataclass(frozen=True)
class Call(Node):
    """A call of one of REDCap's allowed functions, `if` included."""

    name: str
    args: tuple[Node, ...] = ()


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children, in source order."""
    yield node
    for child in node.children():
        yield from walk(child)


def referenced_fields(node: Node) -> list[FieldRef]:
    """Every field reference in source order, for checks of unknown fields, events and codes."""
    return [item for item in walk(node) if isinstance(item, FieldRef)]


def unparse(node: Node) -> str:
    """Logic text that parses back to an equal tree (binary operations fully parenthesised)."""
    match node:
        case Empty():
            return ""
        case Number(text=text):
            return text
        case String(value=value):
            quote = '"' if "'" in value else "'"
            return f"{quote}{value}{quote}"
        case Boolean(value=value):
            return "true" if value else "false"
        case FieldRef():
            return _unparse_ref(node)
        case SmartVariable(name=name):
            return f"[{name}]"
        case Not(operand=operand):
            return f"!{unparse(operand)}"
        case Arithmetic(op=op, left=left, right=right) | Comparison(op=op, left=left, right=right):
            return f"({unparse(left)} {op} {unparse(right)})"
        case And(left=left, right=right):
            return f"({unparse(left)} and {unparse(right)})"
        case Or(left=left, right=right):
            return f"({unparse(left)} or {unparse(right)})"
        case Power(base=base, exponent=exponent):
            return f"({unparse(base)})^({unparse(exponent)})"
        case Call(name=name, args=args):
            return f"{name}({', '.join(unparse(arg) for arg in args)})"
    raise TypeError(f"not a logic node: {node!r}")


def _unparse_ref(ref: FieldRef) -> str:
    event = f"[{ref.event}]" if ref.event else ""
    code = f"({ref.code})" if ref.code is not None else ""
    instance = f"[{ref.instance}]" if ref.instance else ""
    return f"{event}[{ref.field}{code}]{instance}"
