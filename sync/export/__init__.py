"""The sponsor's cleaned export: a reproducible data cut written from REDCap's raw flat export.

`write_cut(records, dictionary, out_dir, ...)` is the one entry point; `Manifest` describes what
it wrote, `CutError` what stopped it. A cut folder holds:

    tables/<instrument>.csv|.parquet   one row per record, event, instance with data; typed;
                                       `<code>_label`, `<checkbox>___<code>_state`,
                                       `open_queries`, `data_status`
    codebook.csv|.parquet              every column: form, label, type, unit, choices, derivation
    status/subjects.csv|.parquet       eligibility, failing criteria, doses, query counts
    status/queries.csv|.parquet        every query with its state, age and time to resolution
    sdtm/<domain>.xpt, define.json     DM IE EC AE CM VS LB DS as SAS transport v5, and metadata
    acrf/index.html, <instrument>.html the annotated CRF
    manifest.json                      inputs, hashes, SHA-256 and row count of every file
"""
from __future__ import annotations

from sync.export.cut import FORMATS, write_cut
from sync.export.manifest import MANIFEST_NAME, CutFile, Manifest
from sync.export.meta import CutError

__all__ = ["FORMATS", "MANIFEST_NAME", "CutError", "CutFile", "Manifest", "write_cut"]
