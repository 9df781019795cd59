"""Excel .xlsx/.xlsm (openpyxl): each sheet's rows as `Header: value` pairs, spans of rows per sheet."""

from __future__ import annotations

import datetime
from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile, check_zip
from core.loaders.spans import MAX_ROWS, BoundedRows, TextBuilder, add_rows


def load_xlsx(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    import io
    import warnings
    import zipfile

    check_zip(data, "Excel file")
    from openpyxl import load_workbook

    builder = TextBuilder()
    try:
        with warnings.catch_warnings():  # "Data Validation extension is not supported", ...
            warnings.simplefilter("ignore")
            # read_only streams rows; data_only gives formulas' cached values, not their source.
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            budget = MAX_ROWS
            for sheet in book.worksheets:
                if budget <= 0:
                    builder.notes.append(f"sheet {sheet.title!r} left out: past {MAX_ROWS:,} rows")
                    continue
                cells = ([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
                rows = BoundedRows(cells, budget)
                add_rows(builder, rows, sheet.title)
                budget -= rows.count
                if rows.cut:
                    builder.notes.append(
                        f"sheet {sheet.title!r} cut after row {rows.last:,} ({MAX_ROWS:,} rows per file)"
                    )
            title = book.properties.title or ""
        finally:
            book.close()
    except UnreadableFile:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as err:
        raise UnreadableFile(f"corrupt Excel file ({type(err).__name__})") from err
    except Exception as err:  # openpyxl/lxml raise assorted errors on damaged files
        raise UnreadableFile(f"corrupt Excel file ({type(err).__name__})") from err
    return builder.result(kind, title)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="minutes").removesuffix(" 00:00")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value).strip()
