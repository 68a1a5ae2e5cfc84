"""Uploaded `data` as rows of strings (json, csv or xml), decoded as REDCap decodes them (§5.3)."""
from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from sync.server.render import ApiError


def _php_string(value: Any) -> str:
    """A JSON scalar as PHP sees it once cast to string (`22.0` -> `22`, true -> `1`)."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _json_rows(data: str) -> list[dict[str, str]]:
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError) as exc:  # a number too long, nesting too deep
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "Syntax error"
        raise ApiError(400, "The data being imported is not formatted correctly. PHP error from "
                            f"JSON decoder: {reason}. The JSON must be in an array, as in "
                            "[{ ... }].") from None
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list) or not all(isinstance(r, dict) for r in decoded):
        raise ApiError(400, "The data being imported is not formatted correctly. The JSON must "
                            "be in an array, as in [{ ... }].")
    return [{str(k): _php_string(v) for k, v in row.items()} for row in decoded]


def _csv_rows(data: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(data.lstrip("\ufeff")))
    lines = [line for line in reader if any(cell.strip() for cell in line)]
    if not lines:
        return []
    header = [h.strip() for h in lines[0]]
    return [{h: (line[i] if i < len(line) else "") for i, h in enumerate(header)}
            for line in lines[1:]]


def _xml_rows(data: str) -> list[dict[str, str]]:
    try:
        root = ET.fromstring(data.strip().encode("utf-8"))
    except ET.ParseError as exc:
        raise ApiError(400, "The data being imported is not formatted correctly. "
                            f"Error: {exc}") from None
    items = list(root) if len(root) and len(root[0]) else [root]
    return [{child.tag: (child.text or "").strip() for child in item} for item in items]


def parse_rows(data: str, fmt: str) -> list[dict[str, str]]:
    """Rows of the upload; an empty upload is REDCap's `No data was provided.`"""
    if not data or not data.strip():
        raise ApiError(400, "No data was provided.")
    if fmt == "json":
        return _json_rows(data)
    if fmt == "csv":
        return _csv_rows(data)
    return _xml_rows(data)
