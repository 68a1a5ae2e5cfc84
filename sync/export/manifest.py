"""manifest.json: what the cut was made from and what it holds, file by file.

Inputs (cut time, REDCap version, dictionary and rules hashes, tool version, the sync's log
cursor) and outputs (SHA-256 and row count per file) are kept apart, as in the sync's ledger;
the JSON has sorted keys and no clock of its own, so the same cut gives the same bytes.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from sync.crf.redcap_spec import METADATA_KEYS
from sync.export.files import sha256_of

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class CutFile:
    """One file of the cut: its SHA-256 and, for data files, its row count."""

    sha256: str
    rows: int | None


@dataclass
class CutSource:
    """Where the records came from: the project, the API user, the tool, the last sync."""

    project_id: str = ""
    project_title: str = ""
    project_url: str = ""
    """The API URL without credentials (user, password, query)."""
    api_user: str | None = None
    sync_run: str | None = None
    """The last successful sync run (ledger run ID)."""
    changed_records: list[str] | None = None
    """Records REDCap's log shows changed since that run; None when no sync has run."""
    tool_commit: str | None = None


@dataclass
class Manifest:
    """The cut's inputs and outputs, as written to `manifest.json`."""

    cut_time: str | None
    """UTC; withheld (None) from a de-identified cut."""
    redcap_version: str
    tool_version: str
    log_cursor: str | None
    dictionary_sha256: str
    rules_sha256: str | None
    deidentified: bool
    records: int = 0
    """Subjects (distinct record IDs) in the cut."""
    deidentification: dict[str, Any] = field(default_factory=dict)
    blinding: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    """Project, API user, tool commit, sync run and the records changed since it."""
    queries: dict[str, int] = field(default_factory=dict)
    """Queries in the cut by state (Open, Answered, Closed, Resolved)."""
    pending_sync_cells: int = 0
    """Cells a sync run now would write (flags, queries), applied to the cut's data."""
    problems: int = 0
    """Values listed in `status/problems` (not of their field's type): blank in the cut."""
    uncoded_terms: int = 0
    """Verbatim AE/CM terms without a dictionary code (listed in `status/uncoded_terms`)."""
    standards: dict[str, str] = field(default_factory=dict)
    """SDTMIG, CDISC controlled terminology, Define-XML and XPT versions the cut follows."""
    libraries: dict[str, str] = field(default_factory=dict)
    """Versions of the libraries that wrote the files (their bytes depend on them)."""
    notes: list[str] = field(default_factory=list)
    """What a reader of the cut should know that the files do not say (values cut to fit XPT)."""
    files: dict[str, CutFile] = field(default_factory=dict)

    def to_json(self) -> str:
        """The manifest as JSON text: sorted keys, two-space indent, a final newline."""
        return json.dumps(asdict(self), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Load a written `manifest.json`."""
        data = json.loads(path.read_text(encoding="utf-8"))
        data["files"] = {name: CutFile(**entry) for name, entry in data["files"].items()}
        return cls(**data)



def tool_commit() -> str | None:
    """The git commit of the installed tool, when it runs from a checkout."""
    import subprocess
    folder = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def manifest_name(unblinded: bool) -> str:
    """`manifest.json`, or `manifest-UNBLINDED.json` for an unblinded cut."""
    return "manifest-UNBLINDED.json" if unblinded else MANIFEST_NAME


def utc_text(moment: datetime) -> str:
    """ISO 8601 UTC with a `Z` (a naive time is taken as UTC already)."""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dictionary_sha256(dictionary: Any) -> str:
    """SHA-256 of the dictionary's metadata (and event, mapping, repeating frames) as CSV.

    Hashing the model rather than a file gives the same value for the same dictionary whether it
    came from `data_dictionary.csv` + `redcap/` or from REDCap's API.
    """
    digest = hashlib.sha256()
    metadata: pd.DataFrame = dictionary.metadata
    columns = [c for c in METADATA_KEYS if c in metadata.columns]
    digest.update(metadata[columns].fillna("").astype(str).to_csv(index=False, lineterminator="\n")
                  .encode("utf-8"))
    for name in ("events", "mapping", "repeating"):
        frame = getattr(dictionary, name, None)
        if isinstance(frame, pd.DataFrame):
            digest.update(f"\n#{name}\n".encode())
            digest.update(frame.fillna("").astype(str).to_csv(index=False, lineterminator="\n")
                          .encode("utf-8"))
    return digest.hexdigest()


def file_sha256(path: Path | None) -> str | None:
    """SHA-256 of a file's bytes, or None without a file."""
    return None if path is None else sha256_of(path)


def library_versions() -> dict[str, str]:
    """pandas, pyarrow and pyreadstat versions: a Parquet or XPT file's bytes depend on them."""
    return {name: importlib.metadata.version(name) for name in ("pandas", "pyarrow", "pyreadstat")}
