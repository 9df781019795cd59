"""EPUB 2/3 (zipfile, the OPF spine, the HTML reader): chapters in reading order, one span each.

ebooklib, the usual EPUB library, is AGPL; an EPUB is a zip whose container.xml names the package
file (OPF), whose spine lists the chapters' XHTML files in reading order. Chapter titles come from
the table of contents (EPUB 3 nav or EPUB 2 NCX), else the chapter's first heading, else
"chapter N".
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile, check_zip
from core.loaders.html import html_text
from core.loaders.spans import TextBuilder
from core.loaders.text import decode

_FIRST_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def load_epub(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    check_zip(data, "EPUB file")
    try:
        book = zipfile.ZipFile(io.BytesIO(data))
        container = _xml(book.read("META-INF/container.xml"))
        rootfile = next(
            (e.get("full-path") for e in container.iter() if _tag(e) == "rootfile"), None
        )
        if not rootfile:
            raise UnreadableFile("corrupt EPUB file (no package file in META-INF/container.xml)")
        package = _xml(book.read(rootfile))
        base = posixpath.dirname(rootfile)
        manifest = {
            e.get("id"): (posixpath.normpath(posixpath.join(base, unquote(e.get("href", "")))), e)
            for e in package.iter()
            if _tag(e) == "item"
        }
        spine = [e.get("idref") for e in package.iter() if _tag(e) == "itemref"]
        _refuse_drm(book, manifest)
        titles = _toc_titles(book, package, manifest)
        book_title = next((_text(e) for e in package.iter() if _tag(e) == "title"), "")
        builder = TextBuilder()
        for number, idref in enumerate(spine, start=1):
            if idref not in manifest:
                continue
            href, item = manifest[idref]
            if "html" not in (item.get("media-type") or "html"):
                continue
            try:
                markup = decode(book.read(href))
            except KeyError:
                builder.notes.append(f"chapter {number}: {href} is missing from the file")
                continue
            chapter = html_text(markup).text
            first = _FIRST_HEADING.search(chapter)
            title = titles.get(href) or (first.group(1).strip() if first else "")
            builder.add(chapter, title or f"chapter {number}", title)
    except UnreadableFile:
        raise
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, ValueError) as err:
        raise UnreadableFile(f"corrupt EPUB file ({type(err).__name__}: {err})") from err
    return builder.result(kind, book_title)


def _refuse_drm(
    book: zipfile.ZipFile, manifest: dict[str | None, tuple[str, ElementTree.Element]]
) -> None:
    """An e-book whose chapters are encrypted (DRM) cannot be read; obfuscated fonts are fine."""
    if "META-INF/encryption.xml" not in book.namelist():
        return
    chapters = {
        href for href, item in manifest.values() if "html" in (item.get("media-type") or "")
    }
    for element in _xml(book.read("META-INF/encryption.xml")).iter():
        if _tag(element) == "CipherReference" and unquote(element.get("URI", "")) in chapters:
            raise UnreadableFile("DRM-protected e-book (its chapters are encrypted)")


def _toc_titles(
    book: zipfile.ZipFile,
    package: ElementTree.Element,
    manifest: dict[str | None, tuple[str, ElementTree.Element]],
) -> dict[str, str]:
    """Chapter file -> its first title in the table of contents (EPUB 3 nav, else EPUB 2 NCX)."""
    titles: dict[str, str] = {}
    for href, item in manifest.values():
        properties = (item.get("properties") or "").split()
        is_ncx = item.get("media-type") == "application/x-dtbncx+xml"
        if "nav" not in properties and not is_ncx:
            continue
        try:
            toc = _xml(book.read(href))
        except (KeyError, ElementTree.ParseError):
            continue
        base = posixpath.dirname(href)
        if is_ncx:
            links = [
                (_text(next((t for t in p.iter() if _tag(t) == "text"), p)), c.get("src", ""))
                for p in toc.iter()
                if _tag(p) == "navPoint"
                for c in p
                if _tag(c) == "content"
            ]
        else:
            links = [(_text(a), a.get("href", "")) for a in toc.iter() if _tag(a) == "a"]
        for title, target in links:
            file = posixpath.normpath(posixpath.join(base, unquote(target.split("#")[0])))
            if title and file not in titles:
                titles[file] = title
        if titles:
            break
    return titles


def _xml(data: bytes) -> ElementTree.Element:
    if b"<!ENTITY" in data[:4096]:  # entity expansion is how XML bombs work; EPUB metadata has none
        raise UnreadableFile("EPUB file with XML entity declarations (refused)")
    return ElementTree.fromstring(data)


def _tag(element: ElementTree.Element) -> str:
    return str(element.tag).rsplit("}", 1)[-1]


def _text(element: ElementTree.Element) -> str:
    return " ".join("".join(element.itertext()).split())
