"""`write_cut`: the sponsor's cleaned export, a reproducible data cut, from the raw flat export.

Raw frame and dictionary in; a folder out: per-instrument tables (CSV, Parquet), the codebook,
subject status and the query listing, SDTM-like XPT v5 domains with a define file, the
annotated CRF, and `manifest.json` with a SHA-256 and row count per file.
"""
from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from sync.errors import EcrfError
from sync.export.acrf import write_acrf
from sync.export.annotations import codelist, unwritten_domains
from sync.export.blinding import UNBLINDED_MARK, Blinding, blind, project_arms
from sync.export.coding import add_coding, read_coding, uncoded_listing
from sync.export.conform import conform
from sync.export.define import CT_VERSION, define_html, define_xml
from sync.export.codebook import codebook, rule_written_fields
from sync.export.deidentify import PINNED_STAMP, Deidentified, deidentify_raw, pseudonym
from sync.export.elements import subject_elements
from sync.export.files import raw_csv, sha256_of, write_csv, write_parquet
from sync.export.records import (
    CutRecords, batches, first_pass, natural_order, records_in_frame,
)
from sync.export.spool import DomainSpool, TableSpool, gather_raw, save_raw
from sync.export.links import NO_RECORDS_NOTE, UNWRITTEN_NOTE, linked_domains
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
    STUDYID, SdtmSource, criteria, demographics, disposition, eligibility_not_met, event_domain,
)
from sync.export.trial import subject_visits, trial_design
from sync.export.status import (
    add_data_status, naive_utc, query_listing, query_rows, subject_status,
)
from sync.export.tables import (
    Applicability, CutTable, instrument_table, natural_key, normalise_raw, repeating_forms,
)
from sync.export.xpt import MAX_VALUE, XptDataset, define_document
from sync.logic import evaluate
from sync.memory import release_freed_memory

FORMATS: frozenset[str] = frozenset({"csv", "parquet", "xpt"})
DOMAIN_ORDER: tuple[str, ...] = ("DM", "IE", "EC", "EX", "AE", "CM", "MH", "SU", "PR", "HO", "DV",
                                 "DS", "VS", "LB", "MB", "QS", "FA", "TU", "TR", "EG", "PE", "RP",
                                 "DD", "SV", "SE", "TS", "TA", "TE", "TV", "TI")
"""Parent domains first; their SUPP-- datasets and RELREC follow (`linked_domains`)."""


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


    def spooled(self, spool: TableSpool, folder: str) -> None:
        base = self.root / folder if folder else self.root
        if "csv" in self.formats:
            path = base / f"{spool.name}{self.tag}.csv"
            self.record(path, spool.write_csv(path))
        if "parquet" in self.formats:
            path = base / f"{spool.name}{self.tag}.parquet"
            self.record(path, spool.write_parquet(path))


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
    queries = query_rows(raw)
    for form in schema.forms:
        table = instrument_table(raw, schema, form, repeating, applicable, codes)
        add_data_status(table, raw, schema, repeating, queries)
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


def _domains(source: SdtmSource, offsets: dict[str, int]) -> dict[str, CutTable]:
    """The subject-level domains of a batch of whole subjects (trial design comes at the end)."""
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
    built["SE"] = subject_elements(built["DM"])
    written = {code: built[code] for code in DOMAIN_ORDER if code in built}
    return written | linked_domains(source, written)


def _codelists(domain: CutTable, schema: CutSchema) -> dict[str, dict[str, str]]:
    """Per variable taken from a coded CRF field, its terms and their decodes."""
    found = {}
    for variable, origin in domain.sources.items():
        source = schema.field(origin.removeprefix("CRF: ")) if origin.startswith("CRF: ") else None
        if source is not None and codelist(source, variable):
            found[variable] = codelist(source, variable)
    return found


def _sdtm_order(spools: dict[str, Any]) -> list[str]:
    """The domains in `DOMAIN_ORDER`, then the `SUPP--` datasets and RELREC as first built."""
    return ([code for code in DOMAIN_ORDER if code in spools]
            + [code for code in spools if code not in DOMAIN_ORDER])


def _write_sdtm(spools: dict[str, DomainSpool], schema: CutSchema, writer: _Writer,
                cut_time: datetime) -> None:
    """Each domain as XPT v5 in one pass over its spool, then the define files from the
    domains' compact summaries."""
    datasets: list[XptDataset] = []
    shells: list[CutTable] = []
    moment = naive_utc(cut_time).to_pydatetime()
    for code in _sdtm_order(spools):
        spool = spools[code]
        if spool.rows == 0:
            continue
        shell = spool.shell()
        path = writer.root / "sdtm" / f"{code.lower()}{writer.tag}.xpt"
        dataset = spool.write_xpt(path, moment, _codelists(shell, schema))
        datasets.append(dataset)
        shells.append(shell)
        writer.record(path, dataset.rows)
        writer.manifest.notes.extend(
            f"{dataset.name}.{v.name}: {v.truncated} value(s) cut to {MAX_VALUE} characters "
            f"(XPT v5); the full text is in the tables" for v in dataset.variables if v.truncated)
    folder = writer.root / "sdtm"
    for name, text in (
            (f"define{writer.tag}.json", define_document(datasets, utc_text(cut_time))),
            (f"define{writer.tag}.xml", define_xml(datasets, shells, schema, utc_text(cut_time),
                                                   writer.tag)),
            (f"define{writer.tag}.html", define_html(datasets))):
        (folder / name).write_text(text, encoding="utf-8", newline="\n")
        writer.record(folder / name, None)


@dataclass
class _Prepared:
    """One batch of whole subjects, ready to be written."""

    raw: pd.DataFrame
    schema: CutSchema
    """The CRF as the cut may show it: without allocation-revealing fields when blinded."""
    cut_schema: CutSchema
    repeating: set[str]
    tables: list[CutTable]
    status: list[CutTable]
    removed: Deidentified | None
    blinding: Blinding
    pending: int


@dataclass
class _Totals:
    """What the manifest says of all batches together."""

    records: int = 0
    pending: int = 0
    queries: dict[str, int] = field(default_factory=dict)
    problems: int = 0
    uncoded: int = 0
    left_out_queries: int = 0
    rows: int = 0
    events: list[str] = field(default_factory=list)

    def add(self, batch: _Prepared, record_id: str) -> None:
        self.records += batch.raw[record_id].nunique()
        self.rows += len(batch.raw)
        self.pending += batch.pending
        for label, count in _query_counts(batch.status[1]).items():
            self.queries[label] = self.queries.get(label, 0) + count
        self.problems += len(batch.status[2].frame)
        self.uncoded += len(batch.status[3].frame)
        self.left_out_queries += batch.blinding.queries
        self.events += [e for e in dict.fromkeys(batch.raw["redcap_event_name"])
                        if e not in self.events]


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


@dataclass
class _Plan:
    """What every batch of one cut shares: settings, and the facts no batch can see alone."""

    dictionary: Any
    full: CutSchema
    cut_time: datetime
    deidentify: bool
    salt: bytes | None
    unblinded: bool
    coding: dict[tuple[str, str], tuple[str, str]]
    codes: set[str]
    arms: set[str] | None
    batch_size: int
    study_wide: list[str] | None = None

    @property
    def positions(self) -> dict[str, int]:
        """Field -> its place in the dictionary."""
        return {f.name: i for i, f in enumerate(self.full.fields)}

    def blind(self, original: pd.DataFrame) -> tuple[pd.DataFrame, CutSchema, Blinding]:
        if self.unblinded:
            return original, self.full, Blinding(unblinded=True)
        return blind(original, self.full, self.arms)

    def screened_dates(self, original: pd.DataFrame) -> tuple[pd.DataFrame, CutSchema]:
        """A batch of date fields blinded and screened as the cut will (the first pass)."""
        blinded, schema, _ = self.blind(original)
        return screen(blinded, schema, self.codes).raw, schema


def write_cut(records: pd.DataFrame | CutRecords, dictionary: Any, out_dir: Path, *,
              deidentify: bool = False, formats: Iterable[str] = ("csv", "parquet", "xpt"),
              cut_time: datetime, redcap_version: str, log_cursor: str | None,
              rules_path: Path | None, tool_version: str, secret_salt: bytes | None = None,
              unblinded: bool = False, unblinded_deidentified: bool = False,
              source: CutSource | None = None, sync_cells: pd.DataFrame | None = None,
              coding: Path | None = None, batch_size: int = 1000) -> Manifest:
    """Write the data cut of `records` (REDCap's raw flat export, or a `CutRecords` to pull it
    batch by batch) into the new folder `out_dir`.

    Subjects are read `batch_size` at a time, so memory follows the batch, not the project;
    the files are the same whatever the batch size. They are written to a hidden
    `.<name>.partial` folder beside it and renamed when done. The cut is blinded unless
    `unblinded`; an unblinded de-identified cut is refused unless `unblinded_deidentified` says
    it is meant. `sync_cells` (what a sync run would write now; with a `CutRecords`, its
    `cells`) are applied first, so the query listing and data status describe the data in the
    cut. `coding` is the sponsor's CSV of verbatim term -> dictionary code and term (AE, CM).

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
    if deidentify and not secret_salt:
        raise CutError("a de-identified cut needs a secret salt (secret_salt) to shift dates")
    full = schema_of(dictionary)
    if not isinstance(records, CutRecords):
        records = records_in_frame(records, full.record_id, sync_cells)
    plan = _Plan(dictionary=dictionary, full=full, cut_time=cut_time, deidentify=deidentify,
                 salt=secret_salt, unblinded=unblinded, coding=read_coding(coding),
                 codes=missing_codes(dictionary), arms=project_arms(dictionary),
                 batch_size=batch_size)
    ordered = (sorted(records.record_ids, key=lambda r: pseudonym(r, secret_salt))
               if deidentify else natural_order(records.record_ids))
    if deidentify and len(set(map(lambda r: pseudonym(r, secret_salt), ordered))) < len(ordered):
        raise CutError("two record IDs give the same pseudonym; choose another salt")
    groups = batches(ordered, batch_size, (lambda r: r) if deidentify else natural_key)
    if deidentify:
        plan.study_wide = first_pass(records, groups, full, plan.screened_dates).study_wide(full)
    partial = out_dir.parent / f".{out_dir.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    scratch = partial / ".spool"
    scratch.mkdir()
    try:
        manifest = _write_batches(partial, scratch, records, groups, plan, formats, rules_path,
                                  _Inputs(redcap_version, log_cursor, tool_version, source))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _move_into_place(partial, out_dir)
    return manifest


@dataclass
class _Inputs:
    redcap_version: str
    log_cursor: str | None
    tool_version: str
    source: CutSource | None


def _spool_listing(spool: TableSpool, table: CutTable, positions: dict[str, int]) -> None:
    """A status table into its spool; a listing by field (problems, uncoded terms) keeps its
    field-by-field order across batches."""
    if "field" not in table.frame or table.frame.empty:
        spool.add(table)
        return
    for name, rows in table.frame.groupby("field", sort=False):
        spool.add(replace(table, frame=rows.reset_index(drop=True)),
                  part=positions.get(str(name), len(positions)))


def _write_batches(root: Path, scratch: Path, records: CutRecords, groups: list[list[str]],
                   plan: _Plan, formats: tuple[str, ...], rules_path: Path | None,
                   inputs: _Inputs) -> Manifest:
    """Every batch through every stage into the spools; then the files, the manifest last."""
    tables: dict[str, TableSpool] = {}
    status: dict[str, TableSpool] = {}
    totals = _Totals()
    tag = f"-{UNBLINDED_MARK}" if plan.unblinded else ""
    archive = root / "raw" / f"records{tag}.csv"
    archive.parent.mkdir(parents=True, exist_ok=True)
    raw_spool = scratch / "raw"
    raw_spool.mkdir()
    sdtm = _SdtmPass(raw_spool, scratch, groups, plan) if "xpt" in formats else None
    first: _Prepared | None = None
    with archive.open("wb") as handle, closing(records.batches(groups)) as pulled:
        for number in range(len(groups)):
            batch = _prepare(records, pulled, plan)
            first = first or replace(batch, raw=batch.raw.iloc[:0].copy(), tables=[],
                                     status=[])  # a copy: a slice would keep the batch alive
            for table in batch.tables:
                tables.setdefault(table.name, TableSpool(table.name, scratch)).add(table)
            for table in batch.status:
                _spool_listing(status.setdefault(table.name, TableSpool(table.name, scratch)),
                               table, plan.positions)
            totals.add(batch, batch.cut_schema.record_id)
            handle.write(raw_csv(batch.raw, header=number == 0))
            raw = batch.raw
            del batch
            release_freed_memory()
            if sdtm is not None:
                sdtm.take(number, raw, first.cut_schema)
            del raw
    assert first is not None
    schema, cut_schema = first.schema, first.cut_schema
    manifest = _manifest(plan, inputs, totals, first, rules_path)
    writer = _Writer(root, formats, manifest, tag)
    for spool in tables.values():
        writer.spooled(spool, "tables")
    for spool in status.values():
        writer.spooled(spool, "status")
    shells = [s.shell() for s in tables.values()]
    writer.table(codebook(shells + [s.shell() for s in status.values()], cut_schema,
                          rule_written_fields(rules_path)), "")
    if sdtm is not None:
        domains = sdtm.finish(cut_schema, totals.events)
        empty = [code for code in _sdtm_order(domains) if domains[code].rows == 0]
        if empty:
            manifest.notes.append(NO_RECORDS_NOTE + ", ".join(empty))
        unwritten = unwritten_domains(cut_schema, set(domains))
        if unwritten:
            manifest.notes.append(UNWRITTEN_NOTE + ", ".join(unwritten))
        if not plan.unblinded:
            manifest.notes.append(EX_NOTE)
        _write_sdtm(domains, cut_schema, writer,
                    PINNED_STAMP if plan.deidentify else plan.cut_time)
    for name, text in ((f"read_tables{tag}.sas", sas_program(shells, cut_schema, tag)),
                       (f"read_tables{tag}.R", r_program(shells, cut_schema, tag)),
                       (f"README{tag}.md", cut_readme(manifest, tag, "xpt" in formats))):
        (root / name).write_text(text, encoding="utf-8", newline="\n")
        writer.record(root / name, None)
    writer.record(archive, totals.rows)
    for path in write_acrf(schema, root / "acrf", tag):
        writer.record(path, None)
    (root / manifest_name(plan.unblinded)).write_text(
        manifest.to_json(), encoding="utf-8", newline="\n")
    return manifest


def _manifest(plan: _Plan, inputs: _Inputs, totals: _Totals, first: _Prepared,
              rules_path: Path | None) -> Manifest:
    deidentify, cut_time = plan.deidentify, plan.cut_time
    manifest = Manifest(
        cut_time=None if deidentify else utc_text(cut_time),
        redcap_version=inputs.redcap_version, tool_version=inputs.tool_version,
        log_cursor=None if deidentify else inputs.log_cursor,
        dictionary_sha256=dictionary_sha256(plan.dictionary),
        rules_sha256=file_sha256(rules_path), deidentified=deidentify, records=totals.records,
        deidentification=first.removed.summary() if first.removed else {},
        blinding=replace(first.blinding, queries=totals.left_out_queries).summary(),
        source=_source(inputs.source, plan.salt if deidentify else None),
        queries=totals.queries, pending_sync_cells=totals.pending,
        problems=totals.problems, uncoded_terms=totals.uncoded,
        standards={"SDTMIG": "3.4", "SDTM CT": CT_VERSION, "Define-XML": "2.1.0",
                   "XPT": "SAS transport version 5"},
        libraries=library_versions())
    if deidentify:
        manifest.notes.append("cut time and sync cursor withheld: real dates would anchor the "
                              "shifted ones; XPT header stamps read " + PINNED_STAMP.isoformat())
    return manifest


class _SdtmPass:
    """Every SDTM domain, built batch by batch of whole subjects in SDTM's subject order
    (natural order of USUBJID) from the cut's records, then the trial design.

    A batch is built as soon as the first pass has all its subjects: in REDCap's own order,
    which is SDTM's unless the cut is de-identified, that is the first pass's batch itself,
    handed over without a spool file, while REDCap exports the next one, so the two overlap.
    A batch here is as large as the cut's: it holds each form's rows with that form's columns
    only (`SdtmSource.rows`), so it needs no more memory than the first pass's. Half a batch
    ran every domain's builder twice as often (the SDTM pass at 10,000 subjects: 48 s against
    37 s)."""

    def __init__(self, raw_spool: Path, scratch: Path, groups: list[list[str]],
                 plan: _Plan) -> None:
        self.raw_spool, self.plan = raw_spool, plan
        self.folder = scratch / "sdtm"
        self.folder.mkdir()
        self.spools: dict[str, DomainSpool] = {}
        self.offsets = _event_offsets(plan.dictionary)
        salt = plan.salt if plan.deidentify else None
        self.spooled_in = {pseudonym(record, salt) if salt else record: number
                           for number, group in enumerate(groups) for record in group}
        """Every subject as the cut names it, with the number of its raw spool file."""
        key = lambda record: natural_key(f"{STUDYID}-{record}")  # noqa: E731
        self.waiting = deque(batches(sorted(self.spooled_in, key=key),
                                     plan.batch_size, key))

    def take(self, number: int, raw: pd.DataFrame, schema: CutSchema) -> None:
        """The first pass's batch `number`: built at once when it is the next waiting batch,
        subject for subject (SDTM's order is REDCap's unless the cut is de-identified), else
        spooled; then every waiting batch whose subjects are all spooled."""
        group = self.waiting[0] if self.waiting else []
        if len(group) == len(raw[schema.record_id].unique()) and all(
                self.spooled_in[r] == number for r in group):
            self.waiting.popleft()
            if not raw.index.equals(pd.RangeIndex(len(raw))):
                raw = raw.copy(deep=False)
                raw.index = pd.RangeIndex(len(raw))
            self._build_from(raw, schema)
        else:
            save_raw(raw, _raw_file(self.raw_spool, number))
        while self.waiting and max(self.spooled_in[r] for r in self.waiting[0]) <= number:
            self._build(self.waiting.popleft(), schema)

    def finish(self, schema: CutSchema, events: list[str]) -> dict[str, DomainSpool]:
        """The batches still waiting, then the trial design; every domain's spool."""
        while self.waiting:
            self._build(self.waiting.popleft(), schema)
        frame = pd.DataFrame({schema.record_id: "", "redcap_event_name": events,
                              "redcap_repeat_instrument": ""}, index=range(len(events)))
        design = SdtmSource(raw=frame, schema=schema, repeating=set())
        for table in trial_design(design, self.spools["DM"].rows, criteria(design),
                                  self.offsets):
            self.spools.setdefault(table.name, DomainSpool(table.name, self.folder)).add(table)
        return self.spools

    def _build(self, group: list[str], schema: CutSchema) -> None:
        files = sorted({self.spooled_in[record] for record in group})
        self._build_from(gather_raw([_raw_file(self.raw_spool, number) for number in files],
                                    schema.record_id, group), schema)

    def _build_from(self, raw: pd.DataFrame, schema: CutSchema) -> None:
        source = SdtmSource(raw=raw, schema=schema,
                            repeating=repeating_forms(self.plan.dictionary, raw))
        domains = _domains(source, self.offsets)
        del source, raw  # the batch's rows per form, before the domains are spooled
        release_freed_memory()
        for code in list(domains):
            self.spools.setdefault(code, DomainSpool(code, self.folder)).add(domains.pop(code))
        release_freed_memory()


def _raw_file(raw_spool: Path, number: int) -> Path:
    """Where batch `number`'s cut records wait for the SDTM pass."""
    return raw_spool / f"{number:05d}.arrow"


def _event_offsets(dictionary: Any) -> dict[str, int]:
    events = getattr(dictionary, "events", None)
    if not isinstance(events, pd.DataFrame) or "day_offset" not in events:
        return {}
    days = pd.to_numeric(events["day_offset"], errors="coerce").fillna(0).astype(int)
    return dict(zip(events["unique_event_name"].astype(str), days))


def _prepare(records: CutRecords, pulled: Iterator[pd.DataFrame], plan: _Plan) -> _Prepared:
    """The next batch of whole subjects through every stage: sync writes laid over, typed,
    blinded, screened, coded, de-identified, tabled. Taken from `pulled` here, so the export
    is let go once typed."""
    frame = next(pulled)
    frame, pending = apply_cells(frame, records.cells(frame), plan.full.record_id)
    original = normalise_raw(frame, plan.full)
    del frame
    blinded, schema, blinding = plan.blind(original)
    screened = screen(blinded, schema, plan.codes)
    del blinded
    coded, coded_schema, uncoded = add_coding(screened.raw, schema, plan.coding)
    codes, problems = screened.codes, screened.problems
    del screened
    raw, cut_schema, removed = (
        deidentify_raw(coded, coded_schema, plan.salt, plan.study_wide) if plan.deidentify
        else (coded, coded_schema, None))
    repeating = repeating_forms(plan.dictionary, raw)
    tables = _instrument_tables(raw, cut_schema, repeating,
                                _branching(plan.dictionary, original, plan.cut_time), codes)
    del original, codes
    status = [subject_status(raw, cut_schema),
              _queries(raw, cut_schema, plan.cut_time, plan.deidentify),
              problem_listing(_in_cut_order(problems, raw, 1, 0), raw, cut_schema,
                              plan.deidentify),
              uncoded_listing(_in_cut_order(uncoded, raw, 1, 2), raw, coded,
                              cut_schema.record_id, plan.deidentify)]
    return _Prepared(raw=raw, schema=schema, cut_schema=cut_schema, repeating=repeating,
                     tables=tables, status=status, removed=removed, blinding=blinding,
                     pending=pending)


def _in_cut_order(items: list[tuple], raw: pd.DataFrame, field_at: int, label_at: int) -> list:
    """Listing entries field by field, each field's rows in the order of the cut's records
    (pseudonym order when de-identified: the real order would give enrolment away)."""
    position = {label: i for i, label in enumerate(raw.index)}
    rank: dict[object, int] = {}
    for item in items:
        rank.setdefault(item[field_at], len(rank))
    return sorted(items, key=lambda item: (rank[item[field_at]],
                                           position.get(item[label_at], -1)))
