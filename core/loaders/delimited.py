"""CSV and TSV (stdlib csv): rows as `Header: value` pairs, in spans of rows; any text encoding."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile
from core.loaders.spans import MAX_ROWS, BoundedRows, TextBuilder, add_rows
from core.loaders.text import decode

_DELIMITERS = ",;\t|"


def load_delimited(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    text = decode(data)
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:16384], _DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
    # One cell may be long (a pasted document); the file's size is already bounded by ingest.
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = BoundedRows(reader, MAX_ROWS)
    builder = TextBuilder()
    try:
        add_rows(builder, rows)
    except csv.Error as err:
        raise UnreadableFile(f"malformed CSV (line {reader.line_num}: {err})") from err
    if rows.cut:
        builder.notes.append(f"cut after row {rows.last:,} ({MAX_ROWS:,} rows per file)")
    return builder.result(kind)
