"""OpenDocument text .odt (zipfile + content.xml): headings as Markdown `#` lines, lists, tables."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile, check_zip

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"


def load_odt(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    check_zip(data, "OpenDocument file")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        content = archive.read("content.xml")
        if b"<!ENTITY" in content[:4096]:
            raise UnreadableFile("OpenDocument file with XML entity declarations (refused)")
        root = ElementTree.fromstring(content)
        title = ""
        if "meta.xml" in archive.namelist() and b"<!ENTITY" not in archive.read("meta.xml")[:4096]:
            found = ElementTree.fromstring(archive.read("meta.xml")).find(f".//{_DC_TITLE}")
            title = (found.text or "").strip() if found is not None else ""
        body = root.find(".//{urn:oasis:names:tc:opendocument:xmlns:office:1.0}text")
        blocks: list[str] = []
        _blocks(body if body is not None else root, blocks)
    except UnreadableFile:
        raise
    except (
        zipfile.BadZipFile,
        KeyError,
        ElementTree.ParseError,
        ValueError,
        RecursionError,
    ) as err:
        raise UnreadableFile(f"corrupt OpenDocument file ({type(err).__name__})") from err
    return LoadedText("\n\n".join(b for b in blocks if b.strip()), kind, title=title)


def _blocks(element: ElementTree.Element, out: list[str]) -> None:
    for child in element:
        tag = child.tag
        if tag == f"{_TEXT}h":
            level = int(child.get(f"{_TEXT}outline-level", "1") or 1)
            out.append(f"{'#' * min(max(level, 1), 6)} {_inline(child)}")
        elif tag == f"{_TEXT}p":
            out.append(_inline(child))
        elif tag == f"{_TEXT}list":
            _list(child, out, 0)
        elif tag == f"{_TABLE}table":
            for row in child.iter(f"{_TABLE}table-row"):
                cells = [
                    " ".join(_inline(p) for p in c) for c in row if c.tag == f"{_TABLE}table-cell"
                ]
                if any(cells):
                    out.append(" | ".join(cells))
        elif tag not in {f"{_TEXT}tracked-changes", f"{_TEXT}sequence-decls"}:
            _blocks(child, out)


def _list(element: ElementTree.Element, out: list[str], depth: int) -> None:
    for item in element:
        for child in item:
            if child.tag == f"{_TEXT}list":
                _list(child, out, depth + 1)
            elif child.tag in {f"{_TEXT}p", f"{_TEXT}h"} and (text := _inline(child)):
                out.append(f"{'  ' * depth}- {text}")


def _inline(element: ElementTree.Element) -> str:
    """A paragraph's text: spaces (`text:s`), tabs and line breaks as they read; notes left out."""
    parts: list[str] = [element.text or ""]
    for child in element:
        if child.tag == f"{_TEXT}s":
            parts.append(" " * min(int(child.get(f"{_TEXT}c", "1") or 1), 80))
        elif child.tag == f"{_TEXT}tab":
            parts.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif child.tag != f"{_TEXT}note":
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts).strip()
