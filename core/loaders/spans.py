"""Shared by the located readers: text assembled from located parts, and rows grouped into spans."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from core.loaders.base import LoadedText, Span

SPAN_CHARS = 1500  # rows, records and cues are grouped into spans of about this many characters

T = TypeVar("T")


@dataclass
class TextBuilder:
    """A file's text built part by part, each part a located span; parts are joined by blank lines."""

    parts: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size: int = 0

    def add(
        self,
        text: str,
        location: str,
        heading: str = "",
        *,
        page: int | None = None,
        located: bool = True,
    ) -> None:
        """Append a part; `located=False` adds its text without a span (one-part files)."""
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.size += 2
        self.parts.append(text)
        if located:
            end = self.size + len(text)
            self.spans.append(Span(self.size, end, location, page=page, heading=heading))
        self.size += len(text)

    def result(self, kind: str, title: str = "", ocr_pages: int = 0) -> LoadedText:
        return LoadedText(
            "".join(self.parts),
            kind,
            title=title,
            spans=tuple(self.spans),
            notes=tuple(self.notes),
            ocr_pages=ocr_pages,
        )


def grouped(
    items: Iterable[tuple[str, T]], limit: int = SPAN_CHARS
) -> Iterator[tuple[list[str], T, T]]:
    """Consecutive (text, label) items in groups of about `limit` characters: (texts, first, last).

    An item longer than the limit is a group of its own (chunking cuts it further).
    """
    texts: list[str] = []
    first: T | None = None
    last: T | None = None
    size = 0
    for text, label in items:
        if texts and size + len(text) > limit:
            yield texts, first, last  # type: ignore[misc]
            texts, size = [], 0
        if not texts:
            first = label
        texts.append(text)
        last = label
        size += len(text) + 1
    if texts:
        yield texts, first, last  # type: ignore[misc]


def label_range(first: int, last: int, one: str, many: str) -> str:
    """'row 4' or 'rows 4-9'."""
    return f"{one} {first}" if first == last else f"{many} {first}-{last}"


MAX_ROWS = 100_000  # rows read from one spreadsheet or CSV file; the rest is left out, with a note


class BoundedRows:
    """A table's rows as (row number, cells), numbered from 1, stopping after `budget` non-empty
    rows; afterwards `count`, `last` (the last row number read) and `cut` tell what was read."""

    def __init__(self, rows: Iterable[Sequence[str]], budget: int = MAX_ROWS) -> None:
        self.source = rows
        self.budget = budget
        self.count = 0
        self.last = 0
        self.cut = False

    def __iter__(self) -> Iterator[tuple[int, Sequence[str]]]:
        for number, cells in enumerate(self.source, start=1):
            if not any(cells):
                continue
            if self.count >= self.budget:
                self.cut = True
                return
            self.count += 1
            self.last = number
            yield number, cells


def add_rows(
    builder: TextBuilder, rows: Iterable[tuple[int, Sequence[str]]], sheet: str = ""
) -> None:
    """A table's rows as text: one row a line, as `Header: value` pairs joined by "; ".

    The first non-empty row is the header when all its cells are words (not numbers); without
    one, a row's cells are joined by " | ". Rows are grouped into spans located "Sheet1, rows 2-40"
    (or "rows 2-40" without a sheet name), headed by the sheet name.
    """
    header: list[str] | None = None
    header_number = 0
    seen_first = False
    emitted = False

    def lines() -> Iterator[tuple[str, int]]:
        nonlocal header, header_number, seen_first
        for number, values in rows:
            cells = [" ".join(v.split()) for v in values]
            if not any(cells):
                continue
            if not seen_first:
                seen_first = True
                if all(not _is_number(c) for c in cells if c):
                    header, header_number = cells, number
                    continue
            yield _row_text(header, cells), number

    prefix = f"{sheet}, " if sheet else ""
    for texts, first, last in grouped(lines()):
        builder.add("\n".join(texts), prefix + label_range(first, last, "row", "rows"), sheet)
        emitted = True
    if header is not None and not emitted:  # a header and no data: the header is the content
        builder.add(_row_text(None, header), prefix + f"row {header_number}", sheet)


def _row_text(header: Sequence[str] | None, cells: Sequence[str]) -> str:
    if header is None:
        return " | ".join(c for c in cells if c)
    pairs = []
    for index, value in enumerate(cells):
        if not value:
            continue
        name = header[index] if index < len(header) else ""
        pairs.append(f"{name}: {value}" if name else value)
    return "; ".join(pairs)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%").lstrip("$€£¥"))
    except ValueError:
        return False
    return True
