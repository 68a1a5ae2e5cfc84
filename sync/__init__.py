"""eCRF sync for NCT06416709: REDCap in, checked flags and data queries back into REDCap.

The package holds the nightly pipeline (pull, type, evaluate, diff, write, report), the REDCap
logic language (`sync.logic`), the dictionary tools, and an embedded REDCap-API-compatible server
(`sync.server`) that the demo and the tests run against.
"""
from __future__ import annotations

from sync.errors import EcrfError

__all__ = ["EcrfError", "__version__"]
__version__ = "0.1.0"
