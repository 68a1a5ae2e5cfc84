"""Stage 1, pull: REDCap records in, batch by batch, as raw frames of strings exactly as the API
gave them.

The first run takes every record; later runs take only the records REDCap's log names as
created, changed or renamed since the last run (`sync.changes`), whole (all events and
instances), in batches. Every batch is checked for completeness: the record ids asked for must
be the ids returned, or the run stops before anything is written.
"""
from __future__ import annotations

import csv
import io
import logging
import queue
import threading
from contextlib import closing
from typing import Callable, Iterable, Iterator, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv
from pandas.api.types import infer_dtype

from sync.connection import Connection
from sync.crf.dictionary import Dictionary
from sync.changes import Changes
from sync.errors import EcrfError, PullIncomplete, RedcapApiError
from sync.ledger import ProjectKey

log = logging.getLogger(__name__)
T = TypeVar("T")


def project_key(conn: Connection) -> tuple[ProjectKey, dict]:
    """Identify the project behind the token, so state never leaks between projects."""
    info = conn.call("export project info", conn.project.export_project_info)
    if not isinstance(info, dict) or "project_id" not in info:
        raise RedcapApiError(f"export project info: unexpected answer {str(info)[:200]!r}")
    key = ProjectKey(conn.project.url, str(info["project_id"]), str(info.get("creation_time", "")))
    return key, info


def pull_dictionary(conn: Connection, project_info: dict) -> Dictionary:
    """The project's metadata, events, mapping and repeating setup as REDCap holds them now."""
    project = conn.project
    metadata = conn.call("export metadata", project.export_metadata)
    longitudinal = str(project_info.get("is_longitudinal", "0")) == "1"
    events = conn.call("export events", project.export_events) if longitudinal else []
    mapping = (conn.call("export instrument-event mapping",
                         project.export_instrument_event_mappings) if longitudinal else [])
    repeating = []
    if str(project_info.get("has_repeating_instruments_or_events", "0")) == "1":
        repeating = conn.call("export repeating instruments",
                              project.export_repeating_instruments_events)
    return Dictionary.from_api(metadata, events, mapping, repeating, project_info)


def all_record_ids(conn: Connection, dictionary: Dictionary | str) -> list[str]:
    """Every record id in the project, in REDCap's order (`dictionary` or the record-id field)."""
    pk = dictionary if isinstance(dictionary, str) else dictionary.record_id_field
    return record_ids_of(export_table(conn, "export record ids", [pk]), pk)


def export_table(conn: Connection, what: str, fields: list[str],
                 events: list[str] | None = None) -> pa.Table:
    """`fields` of every record, a row wherever a record holds data, as an Arrow table of
    REDCap's text. Asked as CSV and parsed by Arrow, a whole project's narrow export makes no
    Python object per cell: parsed as JSON rows, one dict per row, it left tens of MiB of the
    heap in pieces for the rest of the run (30,000 subjects: 150,000 rows). An answer that is
    not such a CSV (a backslash before a quote, a proxy's page) is asked again as JSON, whose
    answers are checked and retried (`connection.classify_response`): read as CSV, a page
    without the record-id column would be a project without records."""
    text = conn.call(what, conn.project.export_records, format_type="csv", fields=fields,
                     events=events)
    table = records_csv_table(text)
    del text
    if table is None or (table.num_columns and fields[0] not in table.column_names):
        rows = _again_as_json(conn, what, fields=fields, events=events)
        table = pa.Table.from_pandas(records_frame(rows, fields), preserve_index=False)
    return table


def record_ids_of(table: pa.Table, pk: str) -> list[str]:
    """The record ids of an export, each once, in the export's order."""
    if pk not in table.column_names:
        return []
    return pc.unique(table.column(pk).combine_chunks()).to_pylist()


def records_frame(rows: list[dict], columns: Iterable[str] = ()) -> pd.DataFrame:
    """REDCap's JSON rows as a frame of strings; blanks stay '' and instance numbers become text
    (only the columns holding something else are converted: nearly all are strings already)."""
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(columns))
    other = [c for c in frame.columns if infer_dtype(frame[c], skipna=False) != "string"]
    if other:
        frame[other] = frame[other].fillna("").astype(str)
    return frame


def _readable_csv(text: str) -> str | None:
    """`text` without a byte-order mark, or None when no reader can take it as REDCap meant it:
    a backslash before a quote (PHP's `fputcsv` may leave that quote undoubled, so where the
    value ends is a guess), or text that is not whole (`fputcsv` ends every line with a line
    break and doubles every quote inside a value, so an answer cut off, even inside a quoted
    value, ends otherwise or holds an odd number of quotes). Blank text is whole."""
    text = text.lstrip("\ufeff")
    if '\\"' in text:
        return None
    if text.strip() and (not text.endswith("\n") or text.count('"') % 2):
        return None
    return text


def records_csv_frame(text: str, columns: Iterable[str] = ()) -> pd.DataFrame | None:
    """REDCap's CSV export as `records_frame` gives its JSON rows: every cell the text REDCap
    wrote (leading zeros, `NA`, quoted commas and line breaks kept), blanks ''. A CSV answer
    names each field once, not once per row as JSON does, and parses into far fewer objects.

    None when the text holds a backslash before a quote: PHP's `fputcsv` (REDCap writes CSV
    with it) may leave that quote undoubled, so no reader can tell where such a value ends.
    None too when the text is not whole CSV as `fputcsv` writes it (every line ends in a line
    break; a row as long as the header): the reader would give a cut-off answer's last row
    blanks, not an error. The caller then asks for JSON, whose answers are checked."""
    text = _readable_csv(text)
    if text is None:
        return None
    if not text.strip():
        return records_frame([], columns)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError):
        return None
    return frame if isinstance(frame.index, pd.RangeIndex) else None  # a row over the header


def records_csv_table(text: str) -> pa.Table | None:
    """REDCap's CSV export as an Arrow table that reads as `records_csv_frame`: every cell the
    text REDCap wrote, blanks '' (nothing read as missing or as a number). None on a
    backslash before a quote, as there, or on text that is not CSV."""
    text = _readable_csv(text)
    if text is None:
        return None
    if not text.strip():
        return pa.table({})
    header = next(csv.reader([text.split("\n", 1)[0].rstrip("\r")]))
    try:
        return pa_csv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1, use_threads=False),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header}, null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid:  # not CSV as REDCap writes it
        return None


def records_frame_of(conn: Connection, what: str, records: list[str], text: str,
                     columns: list[str], pk: str) -> pd.DataFrame:
    """The frame of a CSV export of `records`; when the text is not such CSV (a backslash
    before a quote, a cut-off answer, a proxy's page without the record-id column) the same
    records asked again as JSON, whose answers are checked and retried."""
    frame = records_csv_frame(text, columns)
    if frame is None or (len(frame.columns) and pk not in frame.columns):
        frame = records_frame(_again_as_json(conn, what, records=records), columns)
    return frame


def _again_as_json(conn: Connection, what: str, **params) -> list[dict]:
    """The export `what` asked again as JSON, after a CSV answer no reader can take as REDCap
    meant it: said in the log, since a proxy that cuts answers short shows here first."""
    log.info("%s: the CSV answer was cut off, not CSV, or held a backslash before a quote; "
             "asking for the same records as JSON", what)
    return conn.call(f"{what} again as JSON", conn.project.export_records, format_type="json",
                     **params)


def _complete(frame: pd.DataFrame, batch: list[str], pk: str,
              then: str = "Nothing was written; rerun the sync.") -> pd.DataFrame:
    """`frame`, once it holds exactly the records asked for (else stop, saying `then`)."""
    returned = set(frame[pk]) if len(frame) else set()
    missing = [r for r in batch if r not in returned]
    extra = sorted(returned - set(batch))
    if missing or extra:
        raise PullIncomplete(
            f"REDCap returned an incomplete batch: asked for {len(batch)} records, "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"unexpected {extra[:10]}. {then}")
    return frame


def pull_batches(conn: Connection, dictionary: Dictionary, record_ids: list[str],
                 batch_size: int, progress: Callable[[int], None] | None = None
                 ) -> Iterator[pd.DataFrame]:
    """Whole records, every event and instance, one batch at a time, each checked for
    completeness before it is handed on. Asked as CSV (`records_frame_of`): as JSON, one dict
    per row made a 500-subject batch's parse peak at 108 MiB against 48."""
    pk, columns = dictionary.record_id_field, dictionary.export_columns()
    for start in range(0, len(record_ids), batch_size):
        batch = record_ids[start:start + batch_size]
        what = f"export records {start + 1}-{start + len(batch)}"
        text = conn.call(what, conn.project.export_records, format_type="csv", records=batch)
        frame = records_frame_of(conn, what, batch, text, columns, pk)
        del text
        _complete(frame, batch, pk)
        if progress is not None:
            progress(len(batch))
        yield frame


def pull_groups(conn: Connection, dictionary: Dictionary, groups: Iterable[list[str]]
                ) -> Iterator[pd.DataFrame]:
    """Whole records of each group of record ids in turn, one CSV export per group, each
    checked for completeness. REDCap exports the next groups while the caller works on this
    one: two answers' text at most are held ahead (one would leave REDCap idle while the cut
    builds a batch's SDTM domains), each parsed when taken."""
    pk, columns = dictionary.record_id_field, dictionary.export_columns()

    def answers() -> Iterator[list]:
        done = 0
        for group in groups:
            text = conn.call(f"export records {done + 1}-{done + len(group)}",
                             conn.project.export_records, format_type="csv", records=group)
            done += len(group)
            yield [group, text]

    def parsed(answer: list) -> pd.DataFrame:
        group, text = answer
        answer.clear()  # nothing here outlives the parse: the caller alone holds the batch
        frame = records_frame_of(conn, f"export {len(group)} records", group, text, columns, pk)
        del text
        return _complete(frame, group, pk, "The cut was not written; run ecrf export again.")

    with closing(read_ahead(answers(), depth=2)) as exported:
        for answer in exported:
            yield parsed(answer)


def read_ahead(items: Iterator[T], join_seconds: float = 5.0, *, depth: int = 2
               ) -> Iterator[T]:
    """`items`, each one produced in a background thread while the caller works on the one
    before: REDCap exports the next batch while this one is typed, evaluated and written, so a
    run costs about the larger of the two, not their sum. At most `depth` items exist beyond
    the one the caller holds (made, or being made), so memory grows by `depth` batches. An
    error in producing an item is raised where that item would have been taken; when the
    caller stops early, the producer stops after its current item."""
    handoff: queue.Queue = queue.Queue()
    slots = threading.Semaphore(depth)
    stop = threading.Event()

    def slot() -> bool:
        while not stop.is_set():
            if slots.acquire(timeout=0.1):
                return True
        return False

    def hand(kind: str, value: object) -> bool:
        handoff.put((kind, value))
        return not stop.is_set()

    def produce() -> None:
        iterator = iter(items)
        try:
            while slot():
                try:
                    item = next(iterator)
                except StopIteration:
                    hand("end", None)
                    return
                if not hand("item", item):
                    return
        except BaseException as exc:  # handed to the caller, who raises it
            hand("error", exc)

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            slots.release()
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(join_seconds)


def pull_records(conn: Connection, dictionary: Dictionary, record_ids: list[str],
                 batch_size: int, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Whole records, every event and instance, in batches, each batch checked for completeness."""
    frames = list(pull_batches(conn, dictionary, record_ids, batch_size, progress))
    if not frames:
        return records_frame([], dictionary.export_columns())
    records = pd.concat(frames, ignore_index=True, copy=False)
    frames.clear()
    return records.fillna("") if records.isna().to_numpy().any() else records


def records_to_pull(changes: Changes, existing: list[str], *, full: bool,
                    only_records: list[str] | None) -> tuple[list[str], bool]:
    """The records this run needs, in REDCap's order: the named ones, all, or those the log
    names; and whether that is every record.

    `existing` is every record id REDCap holds now: a record the log names that is no longer
    there (updated, then deleted in the same minute) is not asked for.
    """
    if only_records:
        record_ids = list(dict.fromkeys(only_records))
        unknown = sorted(set(record_ids) - set(existing))
        if unknown:
            raise EcrfError(f"no such record in the project: {', '.join(unknown)} "
                            "(check the --record values); nothing was written")
        return record_ids, False
    if full:
        return list(existing), True
    return [r for r in existing if r in changes.changed], False


def require_every_column(records: pd.DataFrame, dictionary: Dictionary,
                         columns: list[str] | None = None) -> None:
    """Stop when REDCap left fields out: it does so silently for a user without full data
    export rights (redcap-behaviour.md §2), and decisions on missing dates would be wrong.
    `columns`: the dictionary's export columns, when already known."""
    if records.empty:
        return
    missing = [c for c in columns or dictionary.export_columns() if c not in records.columns]
    if missing:
        raise RedcapApiError(
            f"export records: REDCap left out {len(missing)} fields ({', '.join(missing[:8])}"
            f"{', ...' if len(missing) > 8 else ''}): the token's user has de-identified or "
            "limited data export rights, and the sync needs full data export rights on every "
            "instrument; a project user-rights administrator must grant them. Nothing was "
            "written.")
