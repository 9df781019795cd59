"""Word .docx: paragraphs with headings as Markdown `#` lines, lists, and tables with their cells."""

from __future__ import annotations

import re
from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile, check_zip


def load_docx(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    import io
    import zipfile

    check_zip(data, "Word file")
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise UnreadableFile(f"corrupt Word file ({type(err).__name__})") from err
    except Exception as err:  # python-docx/lxml raise assorted errors on damaged files
        raise UnreadableFile(f"corrupt Word file ({type(err).__name__})") from err
    from docx.table import Table

    lines: list[str] = []
    for block in document.iter_inner_content():  # paragraphs and tables in document order
        if isinstance(block, Table):
            for row in block.rows:
                lines.append(" | ".join(cell.text.strip() for cell in row.cells))
            continue
        text = block.text.strip()
        if not text:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        match = re.match(r"Heading (\d)", style)
        if style == "Title":
            lines.append(f"# {text}")
        elif match:
            lines.append(f"{'#' * min(int(match.group(1)) + 1, 6)} {text}")
        elif style.startswith("List"):
            lines.append(f"- {text}")
        else:
            lines.append(text)
    title = document.core_properties.title or ""
    return LoadedText("\n\n".join(lines), "docx", title=title)
