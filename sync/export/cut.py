"""`write_cut`: the sponsor's cleaned export, a reproducible data cut, from the raw flat export.

Raw frame and dictionary in; a folder out: per-instrument tables (CSV, Parquet), the codebook,
subject status and the query listing, SDTM-like XPT v5 domains with a define file, the
annotated CRF, and `manifest.json` with a SHA-256 and row count per file.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from sync.errors import EcrfError
from sync.export.acrf import write_acrf
from sync.export.annotations import codelist, targets
from sync.export.blinding import UNBLINDED_MARK, Blinding, blind
from sync.export.coding import add_coding, read_coding, uncoded_listing
from sync.export.conform import conform
from sync.export.define import CT_VERSION, define_html, define_xml
from sync.export.codebook import codebook, rule_written_fields
from sync.export.deidentify import PINNED_STAMP, Deidentified, deidentify_raw, pseudonym
from sync.export.files import sha256_of, write_csv, write_parquet
from sync.export.domains_events import EVENT_BUILDERS, EX_NOTE, exposure
from sync.export.findings import (
    FINDINGS_DOMAINS, baseline_flags, findings_domain, tumor_identification, unplanned_visits,
)
from sync.export.manifest import (
    CutFile, CutSource, Manifest, dictionary_sha256, manifest_name, file_sha256, library_versions, utc_text,
)
from sync.export.meta import STATUS_LABELS, CutError, CutSchema, schema_of
from sync.export.preview import apply_cells
from sync.export.readme import cut_readme
from sync.export.syntax import r_program, sas_program
from sync.export.screen import missing_codes, problem_listing, screen
from sync.export.sdtm import (
    SdtmSource, criteria, demographics, disposition, eligibility_not_met, event_domain,
)
from sync.export.trial import subject_visits, trial_design
from sync.export.status import add_data_status, naive_utc, query_listing, subject_status
from sync.export.tables import (
    Applicability, CutTable, instrument_table, normalise_raw, repeating_forms,
)
from sync.export.xpt import MAX_VALUE, XptDataset, define_document, write_xpt
from sync.logic import evaluate

FORMATS: frozenset[str] = frozenset({"csv", "parquet", "xpt"})
DOMAIN_ORDER: tuple[str, ...] = ("DM", "IE", "EC", "EX", "AE", "CM", "MH", "SU", "PR", "HO", "DV",
                                 "DS", "VS", "LB", "MB", "QS", "FA", "TU", "TR", "EG", "PE", "RP",
                                 "DD", "SV", "TS", "TA", "TE", "TV", "TI")


class _Writer:
    """Writes files under the cut folder and records each one in the manifest."""

    def __init__(self, root: Path, formats: Iterable[str], manifest: Manifest, tag: str) -> None:
        self.root, self.formats, self.manifest, self.tag = root, set(formats), manifest, tag

    def record(self, path: Path, rows: int | None) -> None:
        self.manifest.files[path.relative_to(self.root).as_posix()] = CutFile(
            sha256=sha256_of(path), rows=rows)

    def table(self, table: CutTable, folder: str) -> None:
        base = self.root / folder if folder else self.root
        if "csv" in self.formats:
            path = base / f"{table.name}{self.tag}.csv"
            self.record(path, write_csv(table, path))
        if "parquet" in self.formats:
            path = base / f"{table.name}{self.tag}.parquet"
            self.record(path, write_parquet(table, path))


def _check_inputs(out_dir: Path, formats: Iterable[str], rules_path: Path | None) -> None:
    unknown = set(formats) - FORMATS
    if unknown:
        raise CutError(f"unknown cut format(s) {sorted(unknown)}; choose from {sorted(FORMATS)}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CutError(f"{out_dir}: the cut folder is not empty; a cut is written to a new folder")
    if rules_path is not None and not rules_path.is_file():
        raise CutError(f"{rules_path}: rules file not found")


def _branching(dictionary: Any, raw: pd.DataFrame, cut_time: datetime) -> Applicability:
    """Branching logic over the (identified) raw frame, each expression evaluated once.

    `today` is the cut's date, so logic that reads it gives the same answer on every re-run.
    """
    shown: dict[str, pd.Series] = {}
    project = getattr(dictionary, "project", {}) or {}

    def applicable(expression: str) -> pd.Series:
        if expression not in shown:
            try:
                result = evaluate(expression, raw, dictionary.metadata,
                                  missing_data_codes=project.get("missing_data_codes", ""),
                                  today=naive_utc(cut_time).date())
            except EcrfError as exc:
                raise CutError(f"branching logic {expression!r}: {exc}") from exc
            shown[expression] = pd.Series(result, index=raw.index).fillna(False).astype(bool)
        return shown[expression]

    return applicable


def _instrument_tables(raw: pd.DataFrame, schema: CutSchema, repeating: set[str],
                       applicable: Applicability,
                       codes: dict[str, pd.Series]) -> list[CutTable]:
    """One table per instrument, each row with its data status."""
    tables = []
    for form in schema.forms:
        table = instrument_table(raw, schema, form, repeating, applicable, codes)
        add_data_status(table, raw, schema, repeating)
        tables.append(table)
    return tables


def _queries(raw: pd.DataFrame, cut_schema: CutSchema, cut_time: datetime,
             deidentified: bool) -> CutTable:
    """The query listing, its intervals computed on the dates it shows.

    A de-identified listing has no age at the cut: the cut time is not shifted, so an age beside
    a shifted opening time would give the subject's offset away.
    """
    listing = query_listing(raw, cut_schema, cut_time)
    if deidentified:
        listing.frame = listing.frame.drop(columns=["age_days"])
    return listing


def _domains(raw: pd.DataFrame, schema: CutSchema, repeating: set[str],
             offsets: dict[str, int]) -> list[CutTable]:
    source = SdtmSource(raw=raw, schema=schema, repeating=repeating)
    built = {code: event_domain(source, code) for code in ("EC", "AE")}
    built |= {code: build(source) for code, build in EVENT_BUILDERS.items()}
    built |= {"DM": demographics(source, built["EC"]), "IE": eligibility_not_met(source),
              "DS": disposition(source)}
    built |= {code: findings_domain(source, code) for code in FINDINGS_DOMAINS}
    built["TU"] = tumor_identification(built["TR"])
    built |= {"EX": table for table in [exposure(source, built["EC"])] if table is not None}
    unplanned_visits(built, {float(n) for e, (n, _) in source.visits.items()
                             if offsets.get(e, 0) < 999})
    conform(built, list(dict.fromkeys(value for _, target in source.annotated
                                      for key, value in target.where.items()
                                      if key.endswith("TPT"))))
    baseline_flags(built)
    built["SV"] = subject_visits(list(built.values()))
    design = trial_design(source, len(built["DM"].frame), criteria(source), offsets)
    built |= {table.name: table for table in design}
    return [built[code] for code in DOMAIN_ORDER if code in built]


def _codelists(domain: CutTable, schema: CutSchema) -> dict[str, dict[str, str]]:
    """Per variable taken from a coded CRF field, its terms and their decodes."""
    found = {}
    for variable, origin in domain.sources.items():
        source = schema.field(origin.removeprefix("CRF: ")) if origin.startswith("CRF: ") else None
        if source is not None and codelist(source, variable):
            found[variable] = codelist(source, variable)
    return found


def _write_sdtm(domains: list[CutTable], schema: CutSchema, writer: _Writer,
                cut_time: datetime) -> None:
    datasets: list[XptDataset] = []
    moment = naive_utc(cut_time).to_pydatetime()
    for domain in domains:
        path = writer.root / "sdtm" / f"{domain.name.lower()}{writer.tag}.xpt"
        dataset = write_xpt(domain, path, moment, _codelists(domain, schema))
        datasets.append(dataset)
        writer.record(path, len(domain.frame))
        writer.manifest.notes.extend(
            f"{dataset.name}.{v.name}: {v.truncated} value(s) cut to {MAX_VALUE} characters "
            f"(XPT v5); the full text is in the tables" for v in dataset.variables if v.truncated)
    folder = writer.root / "sdtm"
    for name, text in (
            (f"define{writer.tag}.json", define_document(datasets, utc_text(cut_time))),
            (f"define{writer.tag}.xml", define_xml(datasets, domains, schema, utc_text(cut_time),
                                                   writer.tag)),
            (f"define{writer.tag}.html", define_html(datasets))):
        (folder / name).write_text(text, encoding="utf-8", newline="\n")
        writer.record(folder / name, None)


@dataclass
class _Prepared:
    """Everything the files are written from, computed before the first file is written."""

    original: pd.DataFrame
    raw: pd.DataFrame
    schema: CutSchema
    """The CRF as the cut may show it: without allocation-revealing fields when blinded."""
    cut_schema: CutSchema
    repeating: set[str]
    tables: list[CutTable]
    status: list[CutTable]
    removed: Deidentified | None
    blinding: Blinding
    offsets: dict[str, int]
    """Event -> its target day (`day_offset`), for the trial's visits (TV)."""


def _write_files(root: Path, prepared: _Prepared, formats: tuple[str, ...], manifest: Manifest,
                 rules_path: Path | None, cut_time: datetime) -> None:
    tag = f"-{UNBLINDED_MARK}" if prepared.blinding.unblinded else ""
    writer = _Writer(root, formats, manifest, tag)
    for table in prepared.tables:
        writer.table(table, "tables")
    for table in prepared.status:
        writer.table(table, "status")
    writer.table(codebook(prepared.tables + prepared.status, prepared.cut_schema,
                          rule_written_fields(rules_path)), "")
    if "xpt" in formats:
        domains = _domains(prepared.raw, prepared.cut_schema, prepared.repeating,
                           prepared.offsets)
        unwritten = sorted({t.domain for f in prepared.cut_schema.fields for t in targets(f)}
                           - set(DOMAIN_ORDER) - {"NOT"})
        if unwritten:
            manifest.notes.append("CRF annotations point at domains this cut does not write yet: "
                                  + ", ".join(unwritten))
        if not prepared.blinding.unblinded:
            manifest.notes.append(EX_NOTE)
        _write_sdtm(domains, prepared.cut_schema, writer,
                    PINNED_STAMP if prepared.removed else cut_time)
    for name, text in ((f"read_tables{tag}.sas", sas_program(prepared.tables, prepared.cut_schema, tag)),
                       (f"read_tables{tag}.R", r_program(prepared.tables, prepared.cut_schema, tag)),
                       (f"README{tag}.md", cut_readme(manifest, tag, "xpt" in formats))):
        (root / name).write_text(text, encoding="utf-8", newline="\n")
        writer.record(root / name, None)
    archive = root / "raw" / f"records{tag}.csv"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(prepared.raw.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    writer.record(archive, len(prepared.raw))
    for path in write_acrf(prepared.schema, root / "acrf", tag):
        writer.record(path, None)
    (root / manifest_name(prepared.blinding.unblinded)).write_text(
        manifest.to_json(), encoding="utf-8", newline="\n")


def _source(source: CutSource | None, salt: bytes | None) -> dict[str, Any]:
    if source is None:
        return {}
    found = asdict(source)
    if salt is not None and source.changed_records is not None:
        found["changed_records"] = sorted(pseudonym(r, salt) for r in source.changed_records)
    return found


def _query_counts(listing: CutTable) -> dict[str, int]:
    labels = listing.frame["dq_status_label"].dropna()
    return {label: int((labels == label).sum()) for label in STATUS_LABELS.values()}


def _move_into_place(partial: Path, out_dir: Path) -> None:
    """Publish the finished cut under its name in one rename, so no half cut is ever visible."""
    if out_dir.exists():
        out_dir.rmdir()
    partial.rename(out_dir)


def write_cut(records: pd.DataFrame, dictionary: Any, out_dir: Path, *, deidentify: bool = False,
              formats: Iterable[str] = ("csv", "parquet", "xpt"), cut_time: datetime,
              redcap_version: str, log_cursor: str | None, rules_path: Path | None,
              tool_version: str, secret_salt: bytes | None = None, unblinded: bool = False,
              unblinded_deidentified: bool = False, source: CutSource | None = None,
              sync_cells: pd.DataFrame | None = None, coding: Path | None = None) -> Manifest:
    """Write the data cut of `records` (REDCap's raw flat export) into the new folder `out_dir`.

    The files are written to a hidden `.<name>.partial` folder beside it and renamed when done.
    The cut is blinded unless `unblinded`; an unblinded de-identified cut is refused unless
    `unblinded_deidentified` says it is meant. `sync_cells` (what a sync run would write now)
    are applied first, so the query listing and data status describe the data in the cut.
    `coding` is the sponsor's CSV of verbatim term -> dictionary code and term (AE, CM).

    Examples:
        >>> write_cut(raw, load_dictionary(), Path("cuts/2025-01-31"), cut_time=now,
        ...           redcap_version="15.7.6", log_cursor=cursor, rules_path=Path("redcap/rules.csv"),
        ...           tool_version=__version__)
    """
    formats = tuple(formats)
    _check_inputs(out_dir, formats, rules_path)
    if unblinded and deidentify and not unblinded_deidentified:
        raise CutError("an unblinded cut is not de-identified unless asked for: a de-identified "
                       "cut travels further; say so with --unblinded-deidentified")
    records, pending = apply_cells(records, sync_cells, schema_of(dictionary).record_id)
    prepared = _prepare(records, dictionary, deidentify, secret_salt, cut_time, unblinded,
                        read_coding(coding))
    manifest = Manifest(
        cut_time=None if deidentify else utc_text(cut_time), redcap_version=redcap_version,
        tool_version=tool_version, log_cursor=None if deidentify else log_cursor,
        dictionary_sha256=dictionary_sha256(dictionary),
        rules_sha256=file_sha256(rules_path), deidentified=deidentify,
        records=int(prepared.raw[prepared.schema.record_id].nunique()),
        deidentification=prepared.removed.summary() if prepared.removed else {},
        blinding=prepared.blinding.summary(),
        source=_source(source, secret_salt if deidentify else None),
        queries=_query_counts(prepared.status[1]), pending_sync_cells=pending,
        problems=len(prepared.status[2].frame), uncoded_terms=len(prepared.status[3].frame),
        standards={"SDTMIG": "3.4", "SDTM CT": CT_VERSION, "Define-XML": "2.1.0",
                   "XPT": "SAS transport version 5"},
        libraries=library_versions())
    if deidentify:
        manifest.notes.append("cut time and sync cursor withheld: real dates would anchor the "
                              "shifted ones; XPT header stamps read " + PINNED_STAMP.isoformat())
    partial = out_dir.parent / f".{out_dir.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    _write_files(partial, prepared, formats, manifest, rules_path, cut_time)
    _move_into_place(partial, out_dir)
    return manifest


def _event_offsets(dictionary: Any) -> dict[str, int]:
    events = getattr(dictionary, "events", None)
    if not isinstance(events, pd.DataFrame) or "day_offset" not in events:
        return {}
    days = pd.to_numeric(events["day_offset"], errors="coerce").fillna(0).astype(int)
    return dict(zip(events["unique_event_name"].astype(str), days))


def _prepare(records: pd.DataFrame, dictionary: Any, deidentify: bool,
             secret_salt: bytes | None, cut_time: datetime, unblinded: bool,
             coding: dict[tuple[str, str], tuple[str, str]]) -> _Prepared:
    full = schema_of(dictionary)
    original = normalise_raw(records, full)
    blinded, schema, blinding = ((original, full, Blinding(unblinded=True)) if unblinded
                                 else blind(original, full))
    screened = screen(blinded, schema, missing_codes(dictionary))
    coded, coded_schema, uncoded = add_coding(screened.raw, schema, coding)
    raw, cut_schema, removed = (deidentify_raw(coded, coded_schema, secret_salt) if deidentify
                                else (coded, coded_schema, None))
    repeating = repeating_forms(dictionary, raw)
    tables = _instrument_tables(raw, cut_schema, repeating,
                                _branching(dictionary, original, cut_time), screened.codes)
    status = [subject_status(raw, cut_schema), _queries(raw, cut_schema, cut_time, deidentify),
              problem_listing(screened.problems, raw, cut_schema, deidentify),
              uncoded_listing(uncoded, raw, coded, cut_schema.record_id, deidentify)]
    return _Prepared(original=original, raw=raw, schema=schema, cut_schema=cut_schema,
                     repeating=repeating, tables=tables, status=status, removed=removed,
                     blinding=blinding, offsets=_event_offsets(dictionary))
