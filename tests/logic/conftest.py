"""Tiny projects for the logic tests: one form holding a field of every type logic cares about."""
from __future__ import annotations

import pandas as pd
import pytest

from sync.crf.redcap_spec import METADATA_KEYS, checkbox_export_name, parse_choices

TYPED_FIELDS: list[dict[str, str]] = [
    {"field_name": "record_id", "field_type": "text"},
    {"field_name": "num", "field_type": "text", "text_validation_type_or_show_slider_number": "number"},
    {"field_name": "num2", "field_type": "text", "text_validation_type_or_show_slider_number": "integer"},
    {"field_name": "int", "field_type": "text", "text_validation_type_or_show_slider_number": "integer"},
    {"field_name": "ncomma", "field_type": "text",
     "text_validation_type_or_show_slider_number": "number_comma_decimal"},
    {"field_name": "txt", "field_type": "text"},
    {"field_name": "dt", "field_type": "text", "text_validation_type_or_show_slider_number": "date_ymd"},
    {"field_name": "dtm", "field_type": "text", "text_validation_type_or_show_slider_number": "datetime_ymd"},
    {"field_name": "mdy", "field_type": "text", "text_validation_type_or_show_slider_number": "date_mdy"},
    {"field_name": "rad", "field_type": "radio", "select_choices_or_calculations": "1, A | 2, B | 3, C"},
    {"field_name": "rad0", "field_type": "radio", "select_choices_or_calculations": "01, A | 02, B"},
    {"field_name": "radc", "field_type": "dropdown", "select_choices_or_calculations": "A, a | B, b"},
    {"field_name": "cb", "field_type": "checkbox",
     "select_choices_or_calculations": "1, One | 2, Two | -1, Minus | 1.5, Half"},
    {"field_name": "yn", "field_type": "yesno"},
    {"field_name": "sl", "field_type": "slider"},
    {"field_name": "calc1", "field_type": "calc", "select_choices_or_calculations": "[num] * 2"},
]
"""The conformance project (form `conf`): the field types of redcap-semantics.md §1.5."""


def metadata_frame(fields: list[dict[str, str]], form: str = "conf") -> pd.DataFrame:
    """Export Metadata as a DataFrame: the 18 keys, strings, blanks as ''."""
    rows = [{**{key: "" for key in METADATA_KEYS}, "form_name": form, **spec} for spec in fields]
    return pd.DataFrame(rows, columns=list(METADATA_KEYS))


def export_frame(metadata: pd.DataFrame, rows: list[dict[str, str]]) -> pd.DataFrame:
    """A raw flat export: record ID first, checkbox columns `field___code` ('0' unless given)."""
    columns: list[str] = []
    defaults: dict[str, str] = {}
    for spec in metadata.to_dict("records"):
        if spec["field_type"] == "checkbox":
            for code, _ in parse_choices(spec["select_choices_or_calculations"]):
                name = checkbox_export_name(spec["field_name"], code)
                columns.append(name)
                defaults[name] = "0"
        else:
            columns.append(spec["field_name"])
            defaults[spec["field_name"]] = ""
    for form in dict.fromkeys(metadata["form_name"]):
        columns.append(f"{form}_complete")
        defaults[f"{form}_complete"] = "0"
    data = [{**defaults, "record_id": str(i + 1), **row} for i, row in enumerate(rows)]
    return pd.DataFrame(data, columns=columns, dtype=object)


@pytest.fixture(scope="session")
def typed_metadata() -> pd.DataFrame:
    """The conformance project's metadata."""
    return metadata_frame(TYPED_FIELDS)
