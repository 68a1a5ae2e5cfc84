"""Writing a `CutTable` as CSV and Parquet, byte for byte the same for the same data.

CSV text is formatted here, column by column from its kind, rather than left to pandas' guesses;
Parquet gets an explicit Arrow schema with each column's label as field metadata and no pandas
metadata, so nothing in either file depends on the machine or the clock.
"""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync.export.meta import Kind
from sync.export.tables import CutTable

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "time": pa.string(), "code": pa.string(), "integer": pa.int64(),
    "checkbox": pa.int64(), "number": pa.float64(), "date": pa.date32(),
    "datetime": pa.timestamp("ms"),
}
DATETIME_TEXT = "%Y-%m-%d %H:%M:%S"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read a block at a time (an XPT domain of a large trial
    runs to hundreds of MiB)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float; whole numbers without `.0`."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def text_cells(values: pd.Series, kind: Kind) -> np.ndarray:
    """One column as CSV cells (an array of text): blank for missing, ISO dates, integers
    without decimals."""
    if isinstance(values.dtype, pd.StringDtype) and kind not in ("date", "datetime", "number"):
        return values.to_numpy(dtype=object, na_value="")
    floats = values.dtype == np.float64
    present = ~(np.isnan(values.to_numpy()) if floats else np.asarray(values.array.isna()))
    if kind in ("number", "integer", "checkbox") and (floats or values.dtype in ("Float64",
                                                                                 "Int64")):
        shown = format_number if kind == "number" else str
        if floats:
            bits = values.to_numpy()[present]
            numbers, bits = bits.tolist(), bits.view(np.int64)
        else:
            numbers = values.to_numpy(dtype=object, na_value=None)[present]
            bits = (values.to_numpy(dtype="int64", na_value=0) if values.dtype == "Int64" else
                    values.to_numpy(dtype="float64", na_value=np.nan).view(np.int64))[present]
        codes, distinct = pd.factorize(bits)  # by bits: -0.0 is not 0.0, nor is its text
        firsts = np.zeros(len(distinct), np.int64)
        firsts[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        cells = np.full(len(present), "", dtype=object)
        cells[present] = np.array([shown(numbers[i]) for i in firsts], dtype=object)[codes]
        return cells
    if kind == "date":
        cells = values.dt.strftime("%Y-%m-%d")
    elif kind == "datetime":
        cells = values.dt.strftime(DATETIME_TEXT)
    elif kind == "number":
        cells = values.map(format_number, na_action="ignore")
    else:
        cells = values.astype("string")
    return np.where(present, cells.to_numpy(dtype=object, na_value=""), "").astype(object)


def text_column(values: pd.Series, kind: Kind) -> list[str]:
    """`text_cells` as a list."""
    return text_cells(values, kind).tolist()


def text_array(values: pd.Series, kind: Kind, typed: pa.ChunkedArray) -> pa.ChunkedArray:
    """`text_cells` as Arrow text, taken from the column's typed Arrow array (`arrow_table`'s)
    where Arrow gives the same text: text as it is, whole numbers in decimal."""
    if typed.type == pa.string() and isinstance(values.dtype, pd.StringDtype) and kind not in (
            "date", "datetime", "number"):
        return pc.fill_null(typed, "")
    if typed.type == pa.int64() and values.dtype == "Int64" and kind in ("integer", "checkbox"):
        return pc.fill_null(pc.cast(typed, pa.string()), "")
    return pa.chunked_array([pa.array(text_cells(values, kind), pa.string())], pa.string())


def raw_csv(raw: pd.DataFrame, header: bool) -> bytes:
    """The cut's records as `to_csv(index=False, lineterminator="\\n")` writes them, in UTF-8:
    the same csv writer given each column's list at once, where every column is text (pandas
    formats value by value on the way)."""
    columns = list(raw.columns)
    if not len(raw) or any(raw[c].dtype != object
                           or pd.api.types.infer_dtype(raw[c], skipna=False) != "string"
                           for c in columns):
        return raw.to_csv(index=False, header=header, lineterminator="\n").encode("utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows(zip(*(raw[c].tolist() for c in columns)))
    return buffer.getvalue().encode("utf-8")


def write_csv(table: CutTable, path: Path) -> int:
    """Write the table as UTF-8 CSV with `\\n` line ends; return its row count."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(table.frame.columns))
    columns = [text_column(table.frame[c], table.kinds.get(c, "string"))
               for c in table.frame.columns]
    writer.writerows(zip(*columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return len(table.frame)


def arrow_table(table: CutTable) -> pa.Table:
    """The table as Arrow arrays of the kinds' types, labels kept as field metadata."""
    arrays, fields = [], []
    for column in table.frame.columns:
        kind = table.kinds.get(column, "string")
        arrow_type = ARROW_TYPES[kind]
        arrays.append(_arrow_array(table.frame[column], kind, arrow_type))
        label = table.labels.get(column, "")
        fields.append(pa.field(column, arrow_type, metadata={"label": label, "kind": kind}))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={"table": table.name}))


def _arrow_array(values: pd.Series, kind: Kind, arrow_type: pa.DataType) -> pa.Array:
    """One column as Arrow, missing values null; converted by Arrow where the column's dtype
    is already the kind's."""
    dtype = values.dtype
    if kind in ("date", "datetime") and dtype == "datetime64[ns]":
        return pa.array(values, pa.timestamp("ns")).cast(arrow_type, safe=False)
    if (arrow_type == pa.string() and isinstance(dtype, pd.StringDtype)) or (
            arrow_type == pa.int64() and dtype == "Int64") or (
            arrow_type == pa.float64() and dtype in ("Float64", "float64")):
        return pa.array(values, arrow_type)
    if kind == "date":
        data = [v.date() if pd.notna(v) else None for v in values]
    elif kind == "datetime":
        data = [v.to_pydatetime() if pd.notna(v) else None for v in values]
    else:
        data = [None if pd.isna(v) else v for v in values.astype(object)]
    return pa.array(data, type=arrow_type)


def write_parquet(table: CutTable, path: Path) -> int:
    """Write the table as Parquet (no pandas metadata, no timestamps); return its row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow_table(table), path, compression="zstd")
    return len(table.frame)
