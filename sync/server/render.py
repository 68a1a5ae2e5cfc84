"""Response bodies as REDCap writes them: json, csv and xml, and REDCap's error shapes (§5.2)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import escape

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "xml": "text/xml"}
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>'


class ApiError(Exception):
    """A refused request: the HTTP status and REDCap's message, rendered once by the app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Reply:
    """One response: body, HTTP status, media type and extra headers."""

    body: bytes | str
    status: int = 200
    media_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


def php_json(value: Any) -> str:
    """`json_encode` as PHP writes it: compact, `/` escaped, non-ASCII as `\\uXXXX`."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/")


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\n\r\t \\'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """`fputcsv` lines: a cell is quoted when it holds a comma, quote, blank or line break."""
    lines = [",".join(_csv_cell(h) for h in header)]
    lines += [",".join(_csv_cell(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def xml_items(rows: list[dict[str, Any]], root: str = "records", item: str = "item") -> str:
    parts = [XML_HEAD, f"<{root}>"]
    for row in rows:
        cells = "".join(f"<{k}><![CDATA[{'' if v is None else v}]]></{k}>" for k, v in row.items())
        parts.append(f"<{item}>{cells}</{item}>")
    parts.append(f"</{root}>")
    return "\n".join(parts)


def table(rows: list[dict[str, Any]], fmt: str, header: Sequence[str] | None = None,
          root: str = "records", item: str = "item") -> Reply:
    """A list of flat objects in the requested format (xml falls back for unknown formats)."""
    if fmt == "json":
        return Reply(php_json(rows), media_type=CONTENT_TYPES["json"])
    if fmt == "csv":
        keys = list(header) if header is not None else (list(rows[0]) if rows else [])
        body = csv_text(keys, [[row.get(k, "") for k in keys] for row in rows]) if keys else ""
        return Reply(body, media_type=CONTENT_TYPES["csv"])
    return Reply(xml_items(rows, root, item), media_type=CONTENT_TYPES["xml"])


def single(row: dict[str, Any], fmt: str) -> Reply:
    """One object (project info): json object, csv header + one row, xml `<items>`."""
    if fmt == "json":
        return Reply(php_json(row), media_type=CONTENT_TYPES["json"])
    if fmt == "csv":
        return Reply(csv_text(list(row), [list(row.values())]), media_type=CONTENT_TYPES["csv"])
    cells = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in row.items())
    return Reply(f"{XML_HEAD}\n<items>{cells}</items>\n", media_type=CONTENT_TYPES["xml"])


def count(n: int, fmt: str) -> Reply:
    """The plain count most imports and deletes answer with."""
    if fmt == "json":
        return Reply(str(n), media_type=CONTENT_TYPES["json"])
    if fmt == "csv":
        return Reply(str(n), media_type=CONTENT_TYPES["csv"])
    return Reply(f"{XML_HEAD}<count>{n}</count>", media_type=CONTENT_TYPES["xml"])


def bare_count(n: int, fmt: str) -> Reply:
    """Deletes answer with the bare number whatever the returnFormat (PyCap's suite and
    doctests: `delete_records(..., return_format_type="xml")` and `delete_users` give '1')."""
    return Reply(str(n), media_type=CONTENT_TYPES.get(fmt, "text/xml"))


def error(exc: ApiError, fmt: str) -> Reply:
    """REDCap's error body for `returnFormat` (§5.2)."""
    if fmt == "json":
        body = php_json({"error": exc.message})
    elif fmt == "csv":
        body = f"ERROR: {exc.message}"
    else:
        body = f"{XML_HEAD}\n<hash>\n  <error>{escape(exc.message)}</error>\n</hash>"
    return Reply(body, status=exc.status, media_type=CONTENT_TYPES.get(fmt, "text/xml"))
