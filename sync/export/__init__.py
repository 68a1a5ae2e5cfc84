"""The sponsor's cleaned export: a reproducible data cut written from REDCap's raw flat export.

`write_cut(records, dictionary, out_dir, ...)` is the one entry point; `Manifest` describes what
it wrote, `CutError` what stopped it.
"""
from __future__ import annotations

from sync.export.cut import FORMATS, write_cut
from sync.export.manifest import MANIFEST_NAME, CutFile, Manifest
from sync.export.meta import CutError

__all__ = ["FORMATS", "MANIFEST_NAME", "CutError", "CutFile", "Manifest", "write_cut"]
