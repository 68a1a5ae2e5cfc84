"""SAS and R programs that read the cut's instrument tables with labels and value labels, as
REDCap's own "SAS" and "R" exports do, and the README every cut carries.

Both programs read the CSV files from the cut folder (run them with it as the working folder),
type each column from its kind, attach variable labels, and give coded fields their choice
labels (SAS formats; R factors beside the codes as `<field>.factor`).
"""
from __future__ import annotations

import re

from sync.export.meta import CutSchema
from sync.export.tables import CutTable

SAS_NAME_LENGTH = 32


def _sas_names(columns: list[str]) -> dict[str, str]:
    taken: set[str] = set()
    names = {}
    for column in columns:
        base = re.sub(r"[^A-Za-z0-9_]", "_", column)[:SAS_NAME_LENGTH]
        name, number = base, 1
        while name.lower() in taken:
            suffix = str(number)
            name, number = base[: SAS_NAME_LENGTH - len(suffix)] + suffix, number + 1
        taken.add(name.lower())
        names[column] = name
    return names


def _sas_text(text: str) -> str:
    return "'" + text.replace("'", "''").replace("\n", " ")[:256] + "'"


def _coded(table: CutTable, schema: CutSchema) -> dict[str, list[tuple[str, str]]]:
    """Column -> (code, label) for the coded fields of a table."""
    found = {}
    for column in table.frame.columns:
        cut_field = schema.field(column)
        if cut_field is not None and cut_field.kind == "code" and cut_field.choices:
            found[column] = list(cut_field.choices)
    status = f"{table.name}_complete"
    if status in table.frame.columns:
        found[status] = [("0", "Incomplete"), ("1", "Unverified"), ("2", "Complete")]
    return found


def sas_program(tables: list[CutTable], schema: CutSchema, tag: str = "") -> str:
    """One SAS program: PROC FORMAT for every coded field, then one DATA step per table."""
    formats: list[str] = []
    steps: list[str] = []
    for table in tables:
        names = _sas_names(list(table.frame.columns))
        coded = _coded(table, schema)
        informats, applied, labels, inputs = [], [], [], []
        for column in table.frame.columns:
            name, kind = names[column], table.kinds.get(column, "string")
            if kind in ("integer", "number", "checkbox"):
                informats.append(f"  informat {name} best32. ;")
                inputs.append(name)
            elif kind == "date":
                informats.append(f"  informat {name} yymmdd10. ;")
                applied.append(f"  format {name} yymmdd10. ;")
                inputs.append(name)
            elif kind == "datetime":
                informats.append(f"  informat {name} anydtdtm19. ;")
                applied.append(f"  format {name} datetime19. ;")
                inputs.append(name)
            else:
                width = max([1] + [len(str(v).encode("utf-8"))
                                   for v in table.frame[column].dropna()])
                informats.append(f"  informat {name} ${width}. ;")
                inputs.append(f"{name} $")
            label = table.labels.get(column, "")
            if label:
                labels.append(f"  label {name} = {_sas_text(label)} ;")
            if column in coded and kind in ("integer", "checkbox"):
                value = f"{name[:31]}_"
                pairs = " ".join(f"{code}={_sas_text(text)}" for code, text in coded[column]
                                 if re.fullmatch(r"-?\d+", code))
                formats.append(f"  value {value} {pairs} ;")
                applied.append(f"  format {name} {value}. ;")
        steps.append("\n".join([
            f"data {table.name[:SAS_NAME_LENGTH]};",
            f'  infile "tables/{table.name}{tag}.csv" delimiter="," missover dsd lrecl=1048576 '
            'firstobs=2 encoding="utf-8";', *informats,
            "  input " + " ".join(inputs) + " ;", *labels, *applied, "run;", ""]))
    header = ("/* Reads the cut's instrument tables with labels and formats (as REDCap's SAS "
              "export).\n   Run with the cut folder as the working folder. */\n")
    return header + "proc format;\n" + "\n".join(sorted(set(formats))) + "\nrun;\n\n" + \
        "\n".join(steps)


def _r_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def r_program(tables: list[CutTable], schema: CutSchema, tag: str = "") -> str:
    """One R script: `cut$<table>` data frames, typed, labelled, coded fields as factors."""
    lines = ["# Reads the cut's instrument tables with labels and factors (as REDCap's R export).",
             "# Run with the cut folder as the working folder; base R only.", "cut <- list()", ""]
    classes = {"integer": "integer", "checkbox": "integer", "number": "numeric"}
    for table in tables:
        coded = _coded(table, schema)
        col_classes = ", ".join(f"{_r_text(c)} = {_r_text(classes.get(table.kinds.get(c, ''), 'character'))}"
                                for c in table.frame.columns)
        lines += [f"d <- read.csv({_r_text(f'tables/{table.name}{tag}.csv')}, na.strings = \"\", "
                  "encoding = \"UTF-8\", check.names = FALSE,",
                  f"              colClasses = c({col_classes}))"]
        for column in table.frame.columns:
            kind, ref = table.kinds.get(column, "string"), f"d[[{_r_text(column)}]]"
            if kind == "date":
                lines.append(f"{ref} <- as.Date({ref})")
            elif kind == "datetime":
                lines.append(f"{ref} <- as.POSIXct({ref}, tz = \"UTC\")")
            if column in coded:
                codes = ", ".join(_r_text(c) for c, _ in coded[column])
                names = ", ".join(_r_text(t) for _, t in coded[column])
                lines.append(f"d[[{_r_text(column + '.factor')}]] <- factor({ref}, levels = "
                             f"c({codes}), labels = c({names}))")
            label = table.labels.get(column, "")
            if label:
                lines.append(f'attr({ref}, "label") <- {_r_text(label)}')
        lines += [f"cut[[{_r_text(table.name)}]] <- d", ""]
    return "\n".join(lines) + "\n"
