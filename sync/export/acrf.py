"""The annotated CRF: one HTML page per instrument, each field with its label, variable name,
type, choices and SDTM annotation, plus an index page. Static text only, so pages are
byte-identical from the same dictionary.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

from sync.export.meta import CutField, CutSchema

_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}"
          "td,th{border:1px solid #999;padding:4px;vertical-align:top;text-align:left}"
          ".var{font-family:monospace}.sdtm{color:#1040a0;font-family:monospace}")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"{body}</body>\n</html>\n")


def _choices(cut_field: CutField) -> str:
    return "<br>".join(f"{escape(code)} = {escape(label)}" for code, label in cut_field.choices)


def _row(number: int, cut_field: CutField) -> str:
    kind = cut_field.field_type + (f" ({cut_field.validation})" if cut_field.validation else "")
    cells = [str(number), escape(cut_field.label), f'<span class="var">{escape(cut_field.name)}</span>',
             escape(kind), _choices(cut_field),
             f'<span class="sdtm">{escape(cut_field.sdtm) or "&nbsp;"}</span>',
             escape(cut_field.branching)]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def instrument_page(schema: CutSchema, form: str, tag: str = "") -> str:
    """The annotated page of one instrument, fields in dictionary order."""
    rows = "".join(_row(i, f) for i, f in enumerate(schema.form_fields(form), start=1))
    header = ("<tr><th>#</th><th>Label</th><th>Variable</th><th>Type</th><th>Choices</th>"
              "<th>SDTM annotation</th><th>Shown if</th></tr>\n")
    body = (f"<h1>{escape(form)}</h1>\n<p><a href=\"index{tag}.html\">All instruments</a></p>\n"
            f"<table>\n{header}{rows}</table>\n")
    return _page(f"Annotated CRF: {form}", body)


def write_acrf(schema: CutSchema, folder: Path, tag: str = "") -> list[Path]:
    """Write `index.html` and one `<instrument>.html` per instrument (`tag` before `.html`)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for form in schema.forms:
        path = folder / f"{form}{tag}.html"
        path.write_text(instrument_page(schema, form, tag), encoding="utf-8", newline="\n")
        written.append(path)
    links = "".join(f'<li><a href="{escape(f)}{tag}.html">{escape(f)}</a> '
                    f"({len(schema.form_fields(f))} fields)</li>\n" for f in schema.forms)
    index = folder / f"index{tag}.html"
    index.write_text(_page("Annotated CRF", f"<h1>Annotated CRF</h1>\n<ul>\n{links}</ul>\n"),
                     encoding="utf-8", newline="\n")
    return [index] + written
