"""PDF: the text layer page by page, each page a located span."""

from __future__ import annotations

from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions, Span, UnreadableFile
from core.loaders.text import clean


def load_pdf(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf logs what it repairs ("EOF marker not found"); with no handler configured Python
    # prints that bare on stderr, a second line for one file. The reason kb reports is enough.
    pypdf_log = logging.getLogger("pypdf")
    if not pypdf_log.handlers:
        pypdf_log.addHandler(logging.NullHandler())
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("encrypted PDF (a password is needed)")
        parts: list[str] = []
        pages: list[Span] = []
        cursor = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = clean(page.extract_text() or "").strip()
            if not page_text:
                continue
            if parts:
                parts.append("\n\n")
                cursor += 2
            parts.append(page_text)
            pages.append(Span(cursor, cursor + len(page_text), f"p. {number}", page=number))
            cursor += len(page_text)
        title = str(reader.metadata.get("/Title", "") or "") if reader.metadata else ""
    except UnreadableFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise UnreadableFile(f"corrupt PDF ({type(err).__name__}: {err})") from err
    except Exception as err:  # pypdf raises assorted errors on damaged files
        if "crypt" in str(err).lower() or "AES" in str(err):
            raise UnreadableFile("encrypted PDF (cannot decrypt)") from err
        raise UnreadableFile(f"corrupt PDF ({type(err).__name__})") from err
    if not pages:
        raise UnreadableFile("PDF has no extractable text (scanned images?)")
    return LoadedText("".join(parts), "pdf", title=title, spans=tuple(pages))
