"""PDF: the text layer page by page (pypdfium2), each page a located span; OCR where it has none.

pypdfium2 (PDFium, Apache-2.0/BSD) reads Chinese set in fonts with no Unicode map, which pypdf
returned as mojibake (benchmarks/documents.py). A page whose text layer is missing or garbled
(`core.loaders.garble`) is read by OCR unless OCR is off, and otherwise named in a note. Ruled
tables keep their cells, one row a line ("Plan | Seats | Price"): pdfplumber finds the grid, only on
pages that draw both horizontal and vertical rules, and PDFium reads each cell.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.loaders.base import LoadedText, LoadOptions, MissingDependency, UnreadableFile
from core.loaders.garble import garbled
from core.loaders.reflow import reflow
from core.loaders.spans import TextBuilder
from core.loaders.text import clean

if TYPE_CHECKING:
    import pypdfium2

# Render scale for OCR (1 = 72 dpi; RapidOCR scales its detector's input itself). Measured with
# benchmarks/documents.py (2 shared cores): character error rate on clean 12-pt pages, en / zh:
# x1 1.2% / 0.0%, x1.5 15.1% / 0.0%, x2 8.5% / 0.0% (at x1.5 and x2 English lines were lost);
# the textbook's page 1 against its text layer (formulas included): x1 3.9%, x1.5 5.4%, x2 5.8%.
OCR_SCALE = 1.0
MAX_OCR_PIXELS = 12_000_000  # a poster-sized page is rendered smaller, never larger than this
MIN_RULES = 2  # horizontal and vertical rules a page needs before tables are looked for


def load_pdf(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as err:
        code = getattr(err, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise UnreadableFile("encrypted PDF (a password is needed)") from err
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise UnreadableFile("encrypted PDF (cannot decrypt)") from err
        reason = str(err).rpartition("PDFium: ")[2].rstrip(".)") or type(err).__name__
        raise UnreadableFile(f"corrupt PDF ({reason.lower()})") from err
    try:
        return _read(document, data, kind, options)
    except pdfium.PdfiumError as err:
        raise UnreadableFile(f"corrupt PDF ({err})") from err
    finally:
        document.close()


def _read(
    document: pypdfium2.PdfDocument, data: bytes, kind: str, options: LoadOptions
) -> LoadedText:
    if options.ocr == "always":
        _ocr_engine()  # MissingDependency before any page is read
    tables = _Tables(data)
    try:
        return _read_pages(document, kind, options, tables)
    finally:
        tables.close()


def _read_pages(
    document: pypdfium2.PdfDocument, kind: str, options: LoadOptions, tables: _Tables
) -> LoadedText:
    import pypdfium2.raw as pdfium_c

    built = TextBuilder()
    notes = built.notes
    ocr_pages = 0
    ocr_missing = False
    total = len(document)
    pages: list[tuple[int, str]] = []
    for number in range(1, total + 1):
        page = document[number - 1]
        try:
            text, why = "", ""
            if options.ocr != "always":
                text = _page_text(page, number, tables)
                reason = garbled(text) if text else None
                why = f"garbled text layer ({reason})" if reason else ""
                if not text and pdfium_c.FPDFPage_CountObjects(page) > 0:
                    why = "no text layer (a scanned image?)"
            if options.ocr == "always" or why:
                if options.ocr == "never":
                    notes.append(f"p. {number}: {why}; OCR is off")
                    text = ""
                elif ocr_missing:
                    notes.append(f"p. {number}: {why}; {_needs_ocr()}")
                    text = ""
                else:
                    try:
                        text = _ocr_page(page)
                        ocr_pages += 1
                    except MissingDependency as err:
                        ocr_missing = True
                        notes.append(f"p. {number}: {why}; {err}")
                        text = ""
        finally:
            page.close()
        if options.on_page is not None:
            options.on_page(number, total)
        pages.append((number, text))
    for number, text in without_running_lines(pages):
        built.add(reflow(text), f"p. {number}", page=number)
    if not built.parts:
        if ocr_missing:
            raise MissingDependency(f"scanned PDF: {_needs_ocr()}")
        if notes:
            more = f" (and {len(notes) - 1} more pages)" if len(notes) > 1 else ""
            raise UnreadableFile(f"no page has text: {notes[0]}{more}")
        raise UnreadableFile("PDF has no extractable text (scanned images?)")
    title = str(document.get_metadata_dict(skip_empty=True).get("Title", ""))
    return built.result(kind, title, ocr_pages)


RUNNING_LINES = 2  # lines at each end of a page that may be a running header or footer


def without_running_lines(pages: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Pages without their running headers and footers: a line among the first or last
    RUNNING_LINES of a page that recurs so on at least half of the pages (and on three or more):
    a book's title or ad line, never content. Page numbers differ, so they are not touched."""
    ends: Counter[str] = Counter()
    for _, text in pages:
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        ends.update(set(lines[:RUNNING_LINES] + lines[-RUNNING_LINES:]))
    texted = sum(1 for _, text in pages if text.strip())
    running = {line for line, n in ends.items() if n >= 3 and n * 2 >= texted}
    if not running:
        return pages
    out = []
    for number, text in pages:
        lines = text.split("\n")
        kept = [
            line
            for i, line in enumerate(lines)
            if not (
                line.strip() in running and (i < RUNNING_LINES or i >= len(lines) - RUNNING_LINES)
            )
        ]
        out.append((number, "\n".join(kept)))
    return out


def _needs_ocr() -> str:
    from core.loaders.ocr import NEEDS_OCR

    return NEEDS_OCR


def _ocr_engine() -> None:
    from core.loaders.ocr import _engine

    _engine()


def _ocr_page(page: pypdfium2.PdfPage) -> str:
    """Render one page (only this one is in memory) and read it by OCR."""
    from core.loaders.ocr import read_image

    width, height = page.get_size()
    scale = min(OCR_SCALE, math.sqrt(MAX_OCR_PIXELS / max(1.0, width * height)))
    bitmap = page.render(scale=scale)
    try:
        return read_image(bitmap.to_pil()).strip()
    finally:
        bitmap.close()


def _page_text(page: pypdfium2.PdfPage, number: int, tables: _Tables) -> str:
    """The page's text layer; a ruled table as rows of cells, one row a line, where it stands."""
    textpage = page.get_textpage()
    try:
        grids = tables.find(page, number) if _has_rules(page) else []
        text = _with_tables(textpage, grids) if grids else textpage.get_text_range()
        return clean(text).strip()  # reflowed once running headers are known (_read_pages)
    finally:
        textpage.close()


def _with_tables(textpage: pypdfium2.PdfTextPage, grids: list[Grid]) -> str:
    """Every character goes where its centre is: a table's cell, or the text around the tables.

    PDFium's own line breaks have no box and stay with the character before them.
    """

    def place(x: float, y: float) -> tuple[int, int, int] | None:
        for index, (x0, low, x1, high, rows) in enumerate(grids):
            if x0 <= x <= x1 and low <= y <= high:
                for row_index, row in enumerate(rows):
                    for column, (left, bottom, right, top) in enumerate(row):
                        if left <= x <= right and bottom <= y <= top:
                            return index, row_index, column
        return None

    cells: dict[tuple[int, int, int], list[str]] = {}
    out: list[str | int] = []  # text around the tables, and the index of each table where it starts
    region: tuple[int, int, int] | None = None
    start = 0
    count = textpage.count_chars()
    for index in range(count + 1):
        here = region
        if index < count:
            left, bottom, right, top = textpage.get_charbox(index)
            if right > left or top > bottom:
                here = place((left + right) / 2, (bottom + top) / 2)
        if index < count and (here == region or index == start):
            region = here
            continue
        piece = textpage.get_text_range(start, index - start)
        if region is None:
            out.append(piece)
        else:
            if region[0] not in out:
                out.append(region[0])
            cells.setdefault(region, []).append(piece)
        region, start = here, index
    parts: list[str] = []
    for item in out:
        if isinstance(item, str):
            parts.append(item)
            continue
        rows = grids[item][4]
        lines = (
            " | ".join(
                " ".join("".join(cells.get((item, r, c), [])).split()) for c in range(len(row))
            )
            for r, row in enumerate(rows)
        )
        parts.append("\n" + "\n".join(lines) + "\n")
    return "\n".join(line.strip() for line in "".join(parts).splitlines() if line.strip())


def _has_rules(page: pypdfium2.PdfPage) -> bool:
    """Does the page draw at least MIN_RULES horizontal and vertical lines (a box counts as both)?"""
    import pypdfium2.raw as pdfium_c

    if page.get_rotation():
        return False
    across = down = 0
    for path in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH], max_depth=2):
        left, bottom, right, top = path.get_bounds()
        wide, tall = right - left > 3, top - bottom > 3
        across += wide
        down += tall
        if across >= MIN_RULES and down >= MIN_RULES:
            return True
    return False


Grid = tuple[float, float, float, float, list[list[tuple[float, float, float, float]]]]


class _Tables:
    """pdfplumber's table finder, opened only when a ruled page needs it."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pdf: Any = None
        self._failed = False

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()

    def find(self, page: pypdfium2.PdfPage, number: int) -> list[Grid]:
        """Tables of two or more columns on a page, top to bottom, in PDF coordinates."""
        if self._failed:
            return []
        try:
            if self._pdf is None:
                import io

                import pdfplumber

                self._pdf = pdfplumber.open(io.BytesIO(self._data))
            plumber_page = self._pdf.pages[number - 1]
            found = plumber_page.find_tables()
            plumber_page.close()
        except Exception:  # pdfplumber fails on files PDFium repairs: read the page as plain text
            self._failed = True
            return []
        top = page.get_bbox()[3]
        grids: list[Grid] = []
        for table in sorted(found, key=lambda t: t.bbox[1]):
            rows = [[c for c in row.cells if c is not None] for row in table.rows]
            if max((len(row) for row in rows), default=0) < 2:
                continue  # a boxed paragraph or code block, not a table
            x0, y0, x1, y1 = table.bbox
            cells = [[(a, top - d, b, top - c) for a, c, b, d in row] for row in rows]
            grids.append((x0, top - y1, x1, top - y0, cells))
        return grids
