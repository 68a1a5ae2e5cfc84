"""REDCap's own vocabulary as data: field types, validation types, reserved names, choices.

Shared by the dictionary checker, the logic engine and the embedded server, so that all three
agree with REDCap and with each other. Sources: `shared/reference/redcap-semantics.md` §4
(REDCap 15.7.6 `MetaData::error_checking`, `install_data.sql` validation table, `Project.php`).
The regexes are REDCap's server-side (PHP) ones, translated to Python syntax only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

DD_HEADERS: tuple[str, ...] = (
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note",
    "Text Validation Type OR Show Slider Number", "Text Validation Min", "Text Validation Max",
    "Identifier?", "Branching Logic (Show field only if...)", "Required Field?",
    "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
)
"""The 18 column headers of a data dictionary CSV, in REDCap's order (§4.1)."""

METADATA_KEYS: tuple[str, ...] = (
    "field_name", "form_name", "section_header", "field_type", "field_label",
    "select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
    "text_validation_min", "text_validation_max", "identifier", "branching_logic",
    "required_field", "custom_alignment", "question_number", "matrix_group_name",
    "matrix_ranking", "field_annotation",
)
"""The same 18 columns as the API's Export Metadata names them (§4.1)."""

FIELD_TYPES: frozenset[str] = frozenset({
    "text", "notes", "radio", "dropdown", "calc", "file", "checkbox", "yesno", "truefalse",
    "descriptive", "slider", "sql",
})
LEGACY_FIELD_TYPES: dict[str, str] = {"select": "dropdown", "textarea": "notes"}
CHOICE_FIELD_TYPES: frozenset[str] = frozenset({"radio", "dropdown", "checkbox", "sql"})
YESNO_CHOICES: tuple[tuple[str, str], ...] = (("1", "Yes"), ("0", "No"))
TRUEFALSE_CHOICES: tuple[tuple[str, str], ...] = (("1", "True"), ("0", "False"))
FORM_STATUS_CHOICES: tuple[tuple[str, str], ...] = (
    ("0", "Incomplete"), ("1", "Unverified"), ("2", "Complete"))

RESERVED_FIELD_NAMES: frozenset[str] = frozenset({
    "redcap_event_name", "redcap_csrf_token", "redcap_survey_timestamp",
    "redcap_survey_identifier", "redcap_survey_return_code", "redcap_data_access_group",
    "hidden_edit_flag", "instance", "redcap_repeat_instance", "redcap_repeat_instrument",
    "submit", "new", "return", "continue", "case", "switch", "class", "enum", "catch", "throw",
    "document", "super", "focus", "elements", "action", "event_id", "target", "field_label",
})
"""Field names REDCap refuses (`Project.php` `$reserved_field_names`, §4.5)."""

CHOICE_CODE = re.compile(r"^-?\d+(\.\d+)?$|^[a-zA-Z0-9._\-]+$")


@dataclass(frozen=True)
class ValidationType:
    """One row of REDCap's `redcap_validation_types` table."""

    name: str
    data_type: str
    label: str
    regex: str
    ignorecase: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags = re.ASCII | (re.IGNORECASE if self.ignorecase else 0)
        object.__setattr__(self, "pattern", re.compile(self.regex, flags))

    def matches(self, value: str) -> bool:
        """True when `value` passes REDCap's server-side regex for this type."""
        return self.pattern.search(value) is not None


LEGACY_VALIDATION_TYPES: dict[str, str] = {
    "int": "integer", "float": "number", "date": "date_ymd", "datetime": "datetime_ymd",
    "datetime_seconds": "datetime_seconds_ymd",
}
"""Old validation names REDCap still accepts and converts (§4.4)."""

NUMERIC_DATA_TYPES: frozenset[str] = frozenset({"integer", "number", "number_comma_decimal"})
"""Validation data types whose fields REDCap treats as numbers in logic (§1.5)."""

VALIDATION_TYPES: dict[str, ValidationType] = {
    'alpha_only': ValidationType('alpha_only', 'text', 'Letters only',
        '^[a-z]+$',
        ignorecase=True),
    'date_dmy': ValidationType('date_dmy', 'date', 'Date (D-M-Y)',
        '^((29([-\\/])02\\3(\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00)))|((((0[1-9]|1\\d|2[0-8])([-\\/])(0[1-9]|1[012]))|((29|30)([-\\/])(0[13-9]|1[012]))|(31([-\\/])(0[13578]|1[02])))(\\11|\\15|\\18)\\d{4}))$',
        ignorecase=False),
    'date_mdy': ValidationType('date_mdy', 'date', 'Date (M-D-Y)',
        '^((02([-\\/])29\\3(\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00)))|((((0[1-9]|1[012])([-\\/])(0[1-9]|1\\d|2[0-8]))|((0[13-9]|1[012])([-\\/])(29|30))|((0[13578]|1[02])([-\\/])31))(\\11|\\15|\\19)\\d{4}))$',
        ignorecase=False),
    'date_ymd': ValidationType('date_ymd', 'date', 'Date (Y-M-D)',
        '^(((\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00))([-\\/])02(\\6)29)|(\\d{4}([-\\/])((0[1-9]|1[012])(\\9)(0[1-9]|1\\d|2[0-8])|((0[13-9]|1[012])(\\9)(29|30))|((0[13578]|1[02])(\\9)31))))$',
        ignorecase=False),
    'datetime_dmy': ValidationType('datetime_dmy', 'datetime', 'Datetime (D-M-Y H:M)',
        '^((29([-\\/])02\\3(\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00)))|((((0[1-9]|1\\d|2[0-8])([-\\/])(0[1-9]|1[012]))|((29|30)([-\\/])(0[13-9]|1[012]))|(31([-\\/])(0[13578]|1[02])))(\\11|\\15|\\18)\\d{4})) (\\d|[0-1]\\d|[2][0-3]):[0-5]\\d$',
        ignorecase=False),
    'datetime_mdy': ValidationType('datetime_mdy', 'datetime', 'Datetime (M-D-Y H:M)',
        '^((02([-\\/])29\\3(\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00)))|((((0[1-9]|1[012])([-\\/])(0[1-9]|1\\d|2[0-8]))|((0[13-9]|1[012])([-\\/])(29|30))|((0[13578]|1[02])([-\\/])31))(\\11|\\15|\\19)\\d{4})) (\\d|[0-1]\\d|[2][0-3]):[0-5]\\d$',
        ignorecase=False),
    'datetime_seconds_dmy': ValidationType('datetime_seconds_dmy', 'datetime_seconds', 'Datetime w/ seconds (D-M-Y H:M:S)',
        '^((29([-\\/])02\\3(\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00)))|((((0[1-9]|1\\d|2[0-8])([-\\/])(0[1-9]|1[012]))|((29|30)([-\\/])(0[13-9]|1[012]))|(31([-\\/])(0[13578]|1[02])))(\\11|\\15|\\18)\\d{4})) (\\d|[0-1]\\d|[2][0-3])(:[0-5]\\d){2}$',
        ignorecase=False),
    'datetime_seconds_mdy': ValidationType('datetime_seconds_mdy', 'datetime_seconds', 'Datetime w/ seconds (M-D-Y H:M:S)',
        '^((02([-\\/])29\\3(\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00)))|((((0[1-9]|1[012])([-\\/])(0[1-9]|1\\d|2[0-8]))|((0[13-9]|1[012])([-\\/])(29|30))|((0[13578]|1[02])([-\\/])31))(\\11|\\15|\\19)\\d{4})) (\\d|[0-1]\\d|[2][0-3])(:[0-5]\\d){2}$',
        ignorecase=False),
    'datetime_seconds_ymd': ValidationType('datetime_seconds_ymd', 'datetime_seconds', 'Datetime w/ seconds (Y-M-D H:M:S)',
        '^(((\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00))([-\\/])02(\\6)29)|(\\d{4}([-\\/])((0[1-9]|1[012])(\\9)(0[1-9]|1\\d|2[0-8])|((0[13-9]|1[012])(\\9)(29|30))|((0[13578]|1[02])(\\9)31)))) (\\d|[0-1]\\d|[2][0-3])(:[0-5]\\d){2}$',
        ignorecase=False),
    'datetime_ymd': ValidationType('datetime_ymd', 'datetime', 'Datetime (Y-M-D H:M)',
        '^(((\\d{2}([13579][26]|[2468][048]|04|08)|(1600|2[048]00))([-\\/])02(\\6)29)|(\\d{4}([-\\/])((0[1-9]|1[012])(\\9)(0[1-9]|1\\d|2[0-8])|((0[13-9]|1[012])(\\9)(29|30))|((0[13578]|1[02])(\\9)31)))) (\\d|[0-1]\\d|[2][0-3]):[0-5]\\d$',
        ignorecase=False),
    'email': ValidationType('email', 'email', 'Email',
        "^(?!\\.)((?!.*\\.{2})[a-zA-Z0-9\\u0080-\\u02AF\\u0300-\\u07FF\\u0900-\\u18AF\\u1900-\\u1A1F\\u1B00-\\u1B7F\\u1D00-\\u1FFF\\u20D0-\\u214F\\u2C00-\\u2DDF\\u2F00-\\u2FDF\\u2FF0-\\u2FFF\\u3040-\\u319F\\u31C0-\\uA4CF\\uA700-\\uA71F\\uA800-\\uA82F\\uA840-\\uA87F\\uAC00-\\uD7AF\\uF900-\\uFAFF\\.!#$%&'*+\\-\\/=?^_`{|}~\\-\\d]+)(\\.[a-zA-Z0-9\\u0080-\\u02AF\\u0300-\\u07FF\\u0900-\\u18AF\\u1900-\\u1A1F\\u1B00-\\u1B7F\\u1D00-\\u1FFF\\u20D0-\\u214F\\u2C00-\\u2DDF\\u2F00-\\u2FDF\\u2FF0-\\u2FFF\\u3040-\\u319F\\u31C0-\\uA4CF\\uA700-\\uA71F\\uA800-\\uA82F\\uA840-\\uA87F\\uAC00-\\uD7AF\\uF900-\\uFAFF\\.!#$%&'*+\\-\\/=?^_`{|}~\\-\\d]+)*@(?!\\.)([a-zA-Z0-9\\u0080-\\u02AF\\u0300-\\u07FF\\u0900-\\u18AF\\u1900-\\u1A1F\\u1B00-\\u1B7F\\u1D00-\\u1FFF\\u20D0-\\u214F\\u2C00-\\u2DDF\\u2F00-\\u2FDF\\u2FF0-\\u2FFF\\u3040-\\u319F\\u31C0-\\uA4CF\\uA700-\\uA71F\\uA800-\\uA82F\\uA840-\\uA87F\\uAC00-\\uD7AF\\uF900-\\uFAFF\\-\\.\\d]+)((\\.([a-zA-Z\\u0080-\\u02AF\\u0300-\\u07FF\\u0900-\\u18AF\\u1900-\\u1A1F\\u1B00-\\u1B7F\\u1D00-\\u1FFF\\u20D0-\\u214F\\u2C00-\\u2DDF\\u2F00-\\u2FDF\\u2FF0-\\u2FFF\\u3040-\\u319F\\u31C0-\\uA4CF\\uA700-\\uA71F\\uA800-\\uA82F\\uA840-\\uA87F\\uAC00-\\uD7AF\\uF900-\\uFAFF]){2,63})+)$",
        ignorecase=False),
    'integer': ValidationType('integer', 'integer', 'Integer',
        '^[-+]?\\b\\d+\\b$',
        ignorecase=False),
    'mrn_10d': ValidationType('mrn_10d', 'mrn', 'MRN (10 digits)',
        '^\\d{10}$',
        ignorecase=False),
    'mrn_generic': ValidationType('mrn_generic', 'mrn', 'MRN (generic)',
        '^[a-z0-9-_]+$',
        ignorecase=True),
    'number': ValidationType('number', 'number', 'Number',
        '^[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?$',
        ignorecase=False),
    'number_1dp': ValidationType('number_1dp', 'number', 'Number (1 decimal place)',
        '^-?\\d+\\.\\d$',
        ignorecase=False),
    'number_2dp': ValidationType('number_2dp', 'number', 'Number (2 decimal places)',
        '^-?\\d+\\.\\d{2}$',
        ignorecase=False),
    'number_3dp': ValidationType('number_3dp', 'number', 'Number (3 decimal places)',
        '^-?\\d+\\.\\d{3}$',
        ignorecase=False),
    'number_4dp': ValidationType('number_4dp', 'number', 'Number (4 decimal places)',
        '^-?\\d+\\.\\d{4}$',
        ignorecase=False),
    'phone': ValidationType('phone', 'phone', 'Phone (North America)',
        '^(?:\\(?([2-9]0[1-9]|[2-9]1[02-9]|[2-9][2-9][0-9]|800|811)\\)?)\\s*(?:[.-]\\s*)?([2-9]1[02-9]|[2-9][02-9]1|[2-9][02-9]{2})\\s*(?:[.-]\\s*)?([0-9]{4})(?:\\s*(?:#|x\\.?|ext\\.?|extension)\\s*(\\d+))?$',
        ignorecase=False),
    'phone_australia': ValidationType('phone_australia', 'phone', 'Phone (Australia)',
        '^(\\(0[2-8]\\)|0[2-8])\\s*\\d{4}\\s*\\d{4}$',
        ignorecase=False),
    'postalcode_australia': ValidationType('postalcode_australia', 'postal_code', 'Postal Code (Australia)',
        '^\\d{4}$',
        ignorecase=False),
    'postalcode_canada': ValidationType('postalcode_canada', 'postal_code', 'Postal Code (Canada)',
        '^[ABCEGHJKLMNPRSTVXY]{1}\\d{1}[A-Z]{1}\\s*\\d{1}[A-Z]{1}\\d{1}$',
        ignorecase=True),
    'ssn': ValidationType('ssn', 'ssn', 'Social Security Number (U.S.)',
        '^\\d{3}-\\d\\d-\\d{4}$',
        ignorecase=False),
    'time': ValidationType('time', 'time', 'Time (HH:MM)',
        '^([0-9]|[0-1][0-9]|[2][0-3]):([0-5][0-9])$',
        ignorecase=False),
    'time_mm_ss': ValidationType('time_mm_ss', 'time', 'Time (MM:SS)',
        '^[0-5]\\d:[0-5]\\d$',
        ignorecase=False),
    'vmrn': ValidationType('vmrn', 'mrn', 'Vanderbilt MRN',
        '^[0-9]{4,9}$',
        ignorecase=False),
    'zipcode': ValidationType('zipcode', 'postal_code', 'Zipcode (U.S.)',
        '^\\d{5}(-\\d{4})?$',
        ignorecase=False),
    'number_comma_decimal': ValidationType('number_comma_decimal', 'number_comma_decimal', 'Number (comma as decimal)',
        '^[-+]?[0-9]*,?[0-9]+([eE][-+]?[0-9]+)?$',
        ignorecase=False),
    'number_1dp_comma_decimal': ValidationType('number_1dp_comma_decimal', 'number_comma_decimal', 'Number (1 decimal place - comma as decimal)',
        '^-?\\d+,\\d$',
        ignorecase=False),
    'number_2dp_comma_decimal': ValidationType('number_2dp_comma_decimal', 'number_comma_decimal', 'Number (2 decimal places - comma as decimal)',
        '^-?\\d+,\\d{2}$',
        ignorecase=False),
    'number_3dp_comma_decimal': ValidationType('number_3dp_comma_decimal', 'number_comma_decimal', 'Number (3 decimal places - comma as decimal)',
        '^-?\\d+,\\d{3}$',
        ignorecase=False),
    'number_4dp_comma_decimal': ValidationType('number_4dp_comma_decimal', 'number_comma_decimal', 'Number (4 decimal places - comma as decimal)',
        '^-?\\d+,\\d{4}$',
        ignorecase=False),
    'postalcode_germany': ValidationType('postalcode_germany', 'postal_code', 'Postal Code (Germany)',
        '^(0[1-9]|[1-9]\\d)\\d{3}$',
        ignorecase=False),
    'postalcode_uk': ValidationType('postalcode_uk', 'postal_code', 'Postal Code (UK)',
        '^(([A-Z]{1,2}\\d{1,2})|([A-Z]{1,2}\\d[A-Z])) \\d[ABD-HJLNP-Z]{2}$',
        ignorecase=False),
    'postalcode_french': ValidationType('postalcode_french', 'postal_code', 'Code Postal 5 caracteres (France)',
        '^((0?[1-9])|([1-8][0-9])|(9[0-8]))[0-9]{3}$',
        ignorecase=False),
    'time_hh_mm_ss': ValidationType('time_hh_mm_ss', 'time', 'Time (HH:MM:SS)',
        '^(\\d|[01]\\d|(2[0-3]))(:[0-5]\\d){2}$',
        ignorecase=False),
    'phone_uk': ValidationType('phone_uk', 'phone', 'Phone (UK)',
        '^((((\\+44|0044)\\s?\\d{4}|\\(?0\\d{4}\\)?)\\s?\\d{3}\\s?\\d{3})|(((\\+44|0044)\\s?\\d{3}|\\(?0\\d{3}\\)?)\\s?\\d{3}\\s?\\d{4})|(((\\+44|0044)\\s?\\d{2}|\\(?0\\d{2}\\)?)\\s?\\d{4}\\s?\\d{4}))(\\s?\\#(\\d{4}|\\d{3}))?$',
        ignorecase=False),
    'phone_france': ValidationType('phone_france', 'phone', 'Phone (France) (xx xx xx xx xx)(+33 x xx xx xx xx)',
        '^(?:(?:\\+|00)(?:33|262|508|590|594|596|687)[\\s.-]{0,3}(?:\\(0\\)[\\s.-]{0,3})?|0)[1-9](?:(?:[\\s.-]?\\d{2}){4}|\\d{2}(?:[\\s.-]?\\d{3}){2})$',
        ignorecase=False),
}

def canonical_validation(name: str) -> str:
    """The validation name REDCap stores for `name` (legacy and upper-case spellings folded)."""
    lowered = name.strip().lower()
    return LEGACY_VALIDATION_TYPES.get(lowered, lowered)


def parse_choices(text: str) -> list[tuple[str, str]]:
    """Split a choices string (`1, Yes | 0, No`, or newline-separated) into (code, label) pairs.

    Each item splits at its first comma; an item without a comma is its own code and label
    (REDCap `parseEnum`, §4.3). Empty items are skipped.
    """
    pairs: list[tuple[str, str]] = []
    for item in re.split(r"\||\n", text or ""):
        item = item.strip()
        if not item:
            continue
        code, sep, label = item.partition(",")
        pairs.append((code.strip(), label.strip() if sep else code.strip()))
    return pairs


def checkbox_export_name(field_name: str, code: str) -> str:
    """The export column of one checkbox choice: `field___code`, with REDCap's code folding.

    `-` and `.` become `_`, upper case is lowered, anything else outside `[a-z0-9_]` is
    dropped (`Project::getExtendedCheckboxCodeFormatted`, §4.5): `-1` gives `cb____1`.
    """
    folded = re.sub(r"[^a-z0-9_]", "", code.replace("-", "_").replace(".", "_").lower())
    return f"{field_name}___{folded}"


_PHP_NUMERIC = re.compile(r"^[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[ \t\n\r\v\f]*$",
                          re.ASCII)  # PHP's digits are 0-9 only: `٩٠` and `９０` are not numbers


def is_php_numeric(value: str) -> bool:
    """PHP 8 `is_numeric` on a string: optional whitespace, sign, digits, fraction, exponent."""
    return bool(_PHP_NUMERIC.match(value))


USER_RIGHTS: tuple[str, ...] = (
    "design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
    "manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool",
    "logging", "email_logging", "file_repository", "data_quality_create", "data_quality_execute",
    "api_export", "api_import", "api_modules", "mobile_app", "mobile_app_download_data",
    "record_create", "record_rename", "record_delete", "lock_records_customization",
    "lock_records", "lock_records_all_forms",
)
"""The API's names for a user's or role's project rights (`content=user`, `content=userRole`)."""


def parse_form_rights(text: str) -> dict[str, str]:
    """`form_1:2,form_2:0`, form rights as REDCap's CSV user and role exports write them ->
    {form: right as written}."""
    pairs = (item.partition(":") for item in text.split(",") if item.strip())
    return {form.strip(): right.strip() for form, _, right in pairs}
