"""Tables of a streamed cut, held on disk batch by batch until their columns are known.

A batch of whole subjects gives each table (instrument, status listing, SDTM domain) a slice of
its rows; a column that only some subjects need (a missing-data code, `LBCAT`) shows up only in
the batches that hold it. Each slice is spooled as an Arrow file in the cut's scratch folder
with compact running facts (column order, widths, representative rows), and the final file is
written in one pass over the spool once every batch is in: CSV rows appended, Parquet in row
groups of `ROW_GROUP` rows whatever the batch size, XPT v5 with its widths in the header.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync.export.annotations import ascii_text
from sync.export.files import ARROW_TYPES, arrow_table, text_array
from sync.export.meta import Kind
from sync.export.sdtm import dataset_label
from sync.export.tables import CutTable, text_codes
from sync.export.xpt import (
    MAX_LABEL, MAX_VALUE, CharacterColumn, XptColumn, XptDataset, XptVariable, variable_label,
    write_xpt_stream, xpt_name, xpt_records,
)

ROW_GROUP = 16_384
"""Rows per Parquet row group: fixed, so the file's bytes do not depend on the batch size."""
XPT_ROWS = 8_192
"""Rows of a domain turned into XPT records at a time."""


def ordered_union(orders: list[list[str]]) -> list[str]:
    """Column names of every batch, each new one placed after the column it follows in its batch."""
    union: list[str] = []
    for order in orders:
        for position, name in enumerate(order):
            if name in union:
                continue
            before = next((order[i] for i in range(position - 1, -1, -1) if order[i] in union), None)
            union.insert(union.index(before) + 1 if before is not None else 0, name)
    return union


@dataclass
class _Spooled:
    """What every batch of one table has shown so far, and where its slices are."""

    name: str
    folder: Path
    orders: list[list[str]] = field(default_factory=list)
    empty_orders: list[list[str]] = field(default_factory=list)
    filled: tuple[dict, dict, dict] = field(default_factory=lambda: ({}, {}, {}))
    empty: tuple[dict, dict, dict] = field(default_factory=lambda: ({}, {}, {}))
    kinds: dict[str, Kind] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    parts: dict[Path, int] = field(default_factory=dict)
    rows: int = 0

    def note(self, table: CutTable) -> None:
        """Take in a slice's columns and metadata; a slice with rows says more than one without
        (an empty domain skips the steps that add columns and derivations)."""
        filled = len(table.frame) > 0
        (self.orders if filled else self.empty_orders).append(list(table.frame.columns))
        metadata = self.filled if filled else self.empty
        for mapping, found in zip(metadata, (table.kinds, table.labels, table.sources)):
            for key, value in found.items():
                mapping.setdefault(key, value)
        self.kinds, self.labels, self.sources = (
            empty | filled for empty, filled in zip(self.empty, self.filled))
        self.rows += len(table.frame)

    @property
    def columns(self) -> list[str]:
        return ordered_union(self.orders or self.empty_orders)

    def _path(self, suffix: str, part: int = 0) -> Path:
        """A new slice file; slices are read back by part, then in the order they came."""
        path = self.folder / f"{self.name}.{len(self.files):07d}.{suffix}"
        self.files.append(path)
        self.parts[path] = part
        return path

    def _ordered(self, suffix: str) -> list[Path]:
        return sorted((p for p in self.files if p.name.endswith(suffix)),
                      key=lambda p: (self.parts[p], self.files.index(p)))


def _save(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _load(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


class TableSpool(_Spooled):
    """One instrument or status table: typed Arrow slices (Parquet) and CSV text slices."""

    def __init__(self, name: str, folder: Path) -> None:
        super().__init__(name=name, folder=folder)
        self.widths: dict[str, int] = {}
        """Per column, the widest CSV cell in UTF-8 bytes (the SAS informat)."""

    def add(self, table: CutTable, part: int = 0) -> None:
        """Spool a slice; `part` orders slices before batch order does (a listing grouped by
        field, then by subject)."""
        self.note(table)
        frame = table.frame
        typed = arrow_table(table)
        text = {c: text_array(frame[c], table.kinds.get(c, "string"), typed.column(i))
                for i, c in enumerate(frame.columns)}
        for column, cells in text.items():
            longest = pc.max(pc.binary_length(cells)).as_py() if len(cells) else None
            self.widths[column] = max(self.widths.get(column, 1), longest or 0)
        _save(pa.table(text or {"": pa.array([], pa.string())}), self._path("csv.arrow", part))
        _save(typed, self._path("typed.arrow", part))

    def shell(self) -> CutTable:
        """The table's columns, kinds, labels and derivations with one row of its widest text:
        what the codebook and the SAS and R programs read."""
        columns = self.columns
        frame = pd.DataFrame({c: pd.Series(["x" * self.widths.get(c, 1)], dtype="string")
                              for c in columns})
        return CutTable(name=self.name, frame=frame, kinds=dict(self.kinds),
                        labels=dict(self.labels), sources=dict(self.sources))

    def _slices(self, kind: str) -> Iterator[pa.Table]:
        for path in self._ordered(kind):
            yield _load(path)

    def write_csv(self, path: Path) -> int:
        """All slices as one CSV, `\\n` line ends, cells blank where a slice lacked the column."""
        columns = self.columns
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow(columns)
            handle.write(buffer.getvalue().encode("utf-8"))
            for part in self._slices("csv.arrow"):
                buffer = io.StringIO()
                empty = [""] * part.num_rows
                present = set(part.column_names)
                cells = [part.column(c).to_pylist() if c in present else empty for c in columns]
                csv.writer(buffer, lineterminator="\n").writerows(zip(*cells))
                handle.write(buffer.getvalue().encode("utf-8"))
        return self.rows

    def write_parquet(self, path: Path) -> int:
        """All slices as one Parquet file in row groups of `ROW_GROUP` rows."""
        columns = self.columns
        fields = [pa.field(c, ARROW_TYPES[self.kinds.get(c, "string")],
                           metadata={"label": self.labels.get(c, ""),
                                     "kind": self.kinds.get(c, "string")}) for c in columns]
        schema = pa.schema(fields, metadata={"table": self.name})
        path.parent.mkdir(parents=True, exist_ok=True)
        pending: list[pa.Table] = []
        held = 0
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for part in self._slices("typed.arrow"):
                present = set(part.column_names)
                arrays = [part.column(f.name) if f.name in present
                          else _absent(part.num_rows, f.type) for f in fields]
                pending.append(pa.Table.from_arrays(arrays, schema=schema))
                held += part.num_rows
                while held >= ROW_GROUP:
                    whole = pa.concat_tables(pending)
                    writer.write_table(whole.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
                    pending, held = [whole.slice(ROW_GROUP)], held - ROW_GROUP
            if held or self.rows == 0:
                writer.write_table(pa.concat_tables(pending) if pending
                                   else schema.empty_table(), row_group_size=ROW_GROUP)
        return self.rows


def _absent(rows: int, arrow_type: pa.DataType) -> pa.Array:
    """A column a slice lacks: blank text (what a table gives rows without the value), else
    nulls."""
    return pa.array([""] * rows, arrow_type) if arrow_type == pa.string() else pa.nulls(
        rows, arrow_type)


_CATEGORIES = ("ORRESU", "STRESU", "CAT")
_EVERY_VALUE = ("EPOCH", "AGEU", "ARMNRS", "QNAM")


def _codes(frame: pd.DataFrame, column: str,
           encoded: dict[str, tuple[np.ndarray, list[str]]]) -> np.ndarray:
    """Per row, which distinct value of `column` it holds (-1 for missing), told apart as
    `drop_duplicates` tells them: the caller's `text_codes` where the column is all text."""
    if column in encoded and frame[column].dtype == object and pd.api.types.infer_dtype(
            frame[column].to_numpy(), skipna=False) == "string":
        return encoded[column][0]
    return pd.factorize(frame[column].to_numpy(), use_na_sentinel=True)[0]


def _first_of_each(keys: np.ndarray) -> np.ndarray:
    """The position of the first row of each distinct key."""
    return np.unique(keys, return_index=True)[1] if len(keys) else np.zeros(0, np.int64)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def representative_rows(frame: pd.DataFrame, code: str, numeric: set[str],
                        encoded: dict[str, tuple[np.ndarray, list[str]]] | None = None,
                        numbers: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """A few rows of a domain that give the define file what the whole domain would: each
    distinct test (a `SUPP--` dataset's QNAM), unit and controlled term, and per test the longest, a non-numeric and a
    non-integer result; per numeric variable a non-integer value. `encoded` holds the
    `text_codes` of columns the caller has them of (and `numbers`, their float values)."""
    encoded, numbers = encoded or {}, numbers or {}
    rows = len(frame)
    keep: list[np.ndarray] = [np.zeros(1 if rows else 0, np.int64)]
    categories = [c for c in frame.columns if c.endswith("TESTCD") or (
        c.endswith("TEST") and f"{c}CD" in frame)] + [
        c for c in [f"{code}{s}" for s in _CATEGORIES] + list(_EVERY_VALUE) if c in frame]
    if categories and rows:
        key = np.zeros(rows, np.int64)
        for column in categories:
            codes = _codes(frame, column, encoded) + 1
            key, _ = pd.factorize(key * (int(codes.max()) + 1) + codes)
        keep.append(_first_of_each(key))
    for column in numeric & set(frame.columns):
        values = numbers[column] if column in numbers else _numbers(frame[column])
        with np.errstate(invalid="ignore"):
            keep.append(np.flatnonzero(~np.isnan(values) & (values != np.round(values)))[:1])
    testcd, results = (("QNAM", ("QVAL",)) if "QNAM" in frame  # SUPP--: a value list per QNAM
                       else (f"{code}TESTCD", (f"{code}ORRES", f"{code}STRESC")))
    if testcd in frame and rows:
        test = _codes(frame, testcd, encoded)
        grouped = test >= 0  # groupby leaves out missing tests; drop_duplicates keeps them
        for column in results:
            if column not in frame:
                continue
            codes, distinct = encoded.get(column) or text_codes(frame[column])
            number = pd.to_numeric(pd.Series(distinct, dtype=object).replace("", pd.NA),
                                   errors="coerce").astype("float64").to_numpy()
            known = ~np.isnan(number)
            length = np.array([len(v) for v in distinct], dtype=np.int64)[codes]
            if grouped.any():
                longest = np.full(int(test.max()) + 1, -1, np.int64)
                np.maximum.at(longest, test[grouped], length[grouped])
                at_most = np.flatnonzero(grouped & (length == longest[test]))
                keep.append(at_most[_first_of_each(test[at_most])])
            for flag in (~known, known & (number != np.round(number))):
                flagged = np.flatnonzero(flag[codes])
                keep.append(flagged[_first_of_each(test[flagged])])
    return frame.take(np.unique(np.concatenate(keep)))


def _text_array(values: pd.Series) -> tuple[pa.DictionaryArray, np.ndarray, list[str]]:
    """A column as dictionary-encoded Arrow text (the XPT pass reads its distinct texts back)
    with its `text_codes`; Arrow finds the distinct texts of a column that is all text."""
    cells = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(cells, skipna=False) == "string":
        encoded = pa.array(cells, pa.string()).dictionary_encode()
        return (encoded, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                encoded.dictionary.to_pylist())
    codes, distinct = text_codes(values)
    return (pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                           pa.array(distinct, pa.string())), codes, distinct)


class DomainSpool(_Spooled):
    """One SDTM domain: slices as Arrow, XPT widths and truncations, representative rows."""

    def __init__(self, name: str, folder: Path) -> None:
        super().__init__(name=name, folder=folder)
        self.lengths: dict[str, int] = {}
        self.truncated: dict[str, int] = {}
        self.sample = pd.DataFrame()

    def add(self, table: CutTable) -> None:
        self.note(table)
        frame = table.frame
        numeric = {c for c in frame.columns if table.kinds.get(c) == "number"}
        arrays = {}
        encodings = {}
        numbers = {}
        for column in frame.columns:
            if column in numeric:
                values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
                arrays[column] = pa.array(values, pa.float64())
                numbers[column] = values.to_numpy()  # what representative_rows reads
                continue
            arrays[column], codes, distinct = _text_array(frame[column])
            encodings[column] = (codes, distinct)  # what representative_rows reads
            character = CharacterColumn.of(codes, distinct)
            self.lengths[column] = max(self.lengths.get(column, 1), character.width)
            self.truncated[column] = self.truncated.get(column, 0) + character.too_long
        if len(frame):
            sample = pd.concat([self.sample, representative_rows(frame, self.name, numeric,
                                                                 encodings, numbers)],
                               ignore_index=True)
            self.sample = representative_rows(sample, self.name, numeric)
        _save(pa.table(arrays) if arrays else pa.table({"": pa.array([], pa.string())}),
              self._path("arrow"))

    def shell(self) -> CutTable:
        """The domain as the define file reads it: merged metadata, representative rows."""
        columns = self.columns
        frame = self.sample.reindex(columns=columns)
        for column in columns:
            if self.kinds.get(column) != "number":
                frame[column] = frame[column].fillna("")
        return CutTable(name=self.name, frame=frame.reset_index(drop=True),
                        kinds=dict(self.kinds), labels=dict(self.labels),
                        sources=dict(self.sources))

    def write_xpt(self, path: Path, moment: datetime,
                  codelists: dict[str, dict[str, str]]) -> XptDataset:
        """The domain as XPT v5 in one pass over its slices, described for the define file."""
        taken: set[str] = set()
        dataset = XptDataset(name=self.name,
                             label=dataset_label(self.name)[:40],
                             file=path.name, rows=self.rows)
        columns: list[XptColumn] = []
        widths = self._card_widths()
        for column in self.columns:
            name = xpt_name(column, taken)
            numeric = self.kinds.get(column) == "number"
            length = widths[column]
            label = ascii_text(self.labels.get(column) or variable_label(name))[:MAX_LABEL]
            columns.append(XptColumn(name=name, label=label, numeric=numeric, length=length))
            dataset.variables.append(XptVariable(
                dataset=self.name, name=name, source_name=column, label=label,
                type="Num" if numeric else "Char", length=length,
                origin=self.sources.get(column, "CRF"),
                truncated=0 if numeric else self.truncated.get(column, 0),
                codelist=codelists.get(column, {})))
        write_xpt_stream(path, self.name, dataset.label, columns, self._chunks(columns), moment)
        return dataset

    def _card_widths(self) -> dict[str, int]:
        """Each variable's XPT width, the widest character one widened so a record is longer
        than one 80-byte card: pandas' XPT reader (CDISC CORE's) takes the blank words of a
        last card for padding and reads such a file a record short."""
        widths = {c: 8 if self.kinds.get(c) == "number" else self.lengths.get(c, 1)
                  for c in self.columns}
        character = [c for c in self.columns if self.kinds.get(c) != "number"]
        short = 81 - sum(widths.values())
        if short > 0 and self.rows and character:
            widest = max(character, key=lambda c: widths[c])
            widths[widest] += short
        return widths

    def _chunks(self, columns: list[XptColumn]) -> Iterator[bytes]:
        sources = dict(zip((c.name for c in columns), self.columns))
        for path in self._ordered(".arrow"):
            whole = _load(path)
            texts: dict[str, CharacterColumn] = {}  # per text column, its XPT texts once
            present = set(whole.column_names)
            for start in range(0, whole.num_rows, XPT_ROWS):
                part = whole.slice(start, XPT_ROWS)

                def values(column: XptColumn, part: pa.Table = part, start: int = start
                           ) -> np.ndarray | CharacterColumn:
                    source = sources[column.name]
                    if source not in present:
                        return (np.full(part.num_rows, np.nan) if column.numeric else
                                CharacterColumn.of(np.zeros(part.num_rows, np.int64), [""]))
                    found = part.column(source)
                    if not column.numeric and pa.types.is_dictionary(found.type):
                        if source not in texts:
                            encoded = whole.column(source).unify_dictionaries().combine_chunks()
                            texts[source] = CharacterColumn.of(
                                encoded.indices.to_numpy(zero_copy_only=False),
                                encoded.dictionary.to_pylist())
                        held = texts[source]
                        return replace(held, codes=held.codes[start:start + part.num_rows])
                    if pa.types.is_dictionary(found.type):  # text in a batch, a number now
                        found = found.cast(pa.string())
                    if column.numeric and found.type == pa.float64():
                        return found.to_numpy()
                    found = pd.Series(found.to_pylist(), dtype=object)  # kind changed by a batch
                    return found if column.numeric else CharacterColumn.of(found)

                yield xpt_records(part.num_rows, columns, values)


def save_raw(raw: pd.DataFrame, path: Path) -> None:
    """A batch of the cut's records (all text) as an Arrow file for the SDTM pass."""
    _save(pa.table({c: pa.array(raw[c].to_numpy(), pa.string()) for c in raw.columns}), path)


def gather_raw(files: list[Path], record_id: str, records: list[str]) -> pd.DataFrame:
    """The spooled rows of `records`, in spool order, as a frame of text."""
    wanted = pa.array(records, pa.string())
    parts = []
    for path in files:
        part = _load(path)
        mask = pc.is_in(part.column(record_id), value_set=wanted)
        if pc.any(mask).as_py():
            parts.append(part.filter(mask))
    if not parts:
        return _load(files[0]).slice(0, 0).to_pandas() if files else pd.DataFrame()
    return pa.concat_tables(parts).to_pandas()
