"""`content=instrument` and `content=pdf`: the instrument list and a PDF stand-in."""
from __future__ import annotations

from sync.server import render
from sync.server.app import ApiRequest
from sync.server.render import Reply

_PDF = (b"%PDF-1.3\n3 0 obj\n<</Type /Page /Parent 1 0 R /MediaBox [0 0 595 842]>>\nendobj\n"
        b"1 0 obj\n<</Type /Pages /Kids [3 0 R] /Count 1>>\nendobj\n"
        b"2 0 obj\n<</Type /Catalog /Pages 1 0 R>>\nendobj\ntrailer\n<</Root 2 0 R>>\n%%EOF\n")
"""One blank A4 page, objects numbered as REDCap's FPDF writes them (page object first)."""


def export(api: ApiRequest) -> Reply:
    rows = [{"instrument_name": name, "instrument_label": label}
            for name, label in api.project.instruments]
    return render.table(rows, api.fmt, ["instrument_name", "instrument_label"],
                        root="instruments")


def export_pdf(api: ApiRequest) -> Reply:
    """A minimal blank PDF: the server renders no forms, but the call answers as REDCap's does."""
    return Reply(_PDF, media_type='application/pdf; name="instruments.pdf"')
