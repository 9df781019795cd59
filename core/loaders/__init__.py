"""The loader registry: every file format kb reads, in one table.

A `Format` names the suffixes it claims, its reader (imported only when a file of that kind is read,
so `kb --help` stays fast), how chunking cuts its text, and how a location in it reads. Ingest,
chunking, the retrieval filters and `kb ask --type` all read this table: adding a format is one row
here and one reader module beside this file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from core.loaders.base import (
        SNIFF_BYTES,
        LoadedText,
        LoadOptions,
        MissingDependency,
        NotText,
        Span,
        UnreadableFile,
    )
    from core.loaders.text import decode, looks_like_text

# What readers return and raise, re-exported here but imported on first use: `kb --help` reads
# the table (for `kb ask --type`) and nothing else.
_LAZY = {
    **dict.fromkeys(
        (
            "SNIFF_BYTES",
            "LoadedText",
            "LoadOptions",
            "MissingDependency",
            "NotText",
            "Span",
            "UnreadableFile",
        ),
        "core.loaders.base",
    ),
    **dict.fromkeys(("decode", "looks_like_text"), "core.loaders.text"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMATS",
    "SNIFF_BYTES",
    "Format",
    "LoadOptions",
    "LoadedText",
    "MissingDependency",
    "NotText",
    "Span",
    "UnreadableFile",
    "decode",
    "file_kinds",
    "format_of",
    "kind_of",
    "load",
    "looks_like_text",
]

Reader = Callable[[bytes, Path, str, "LoadOptions"], "LoadedText"]

# How chunking cuts a kind's text: at Markdown headings, at its spans (pages, slides, ...), into
# lines (code), or into sentences only (prose).
Layout = Literal["markdown", "spans", "lines", "prose"]


@dataclass(frozen=True)
class Format:
    """One file format: which files it claims and how they are read, cut and located."""

    kind: str  # stored with every chunk as `file_type`; what `kb ask --type` filters on
    summary: str  # one line for help texts
    reader: str  # "module:function" of a `Reader`, imported on first use
    layout: Layout
    suffixes: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()  # whole file names (lower case), e.g. "makefile"
    has_lines: bool = False  # a location is a line range of the file itself

    def read(self, data: bytes, path: Path, options: LoadOptions) -> LoadedText:
        """Run this format's reader."""
        module, _, function = self.reader.partition(":")
        reader: Reader = getattr(importlib.import_module(module), function)
        return reader(data, path, self.kind, options)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FORMATS: tuple[Format, ...] = (
    Format(
        "markdown",
        "Markdown",
        "core.loaders.text:load_plain",
        "markdown",
        _words(".md .markdown .mdx"),
        has_lines=True,
    ),
    Format(
        "text",
        "plain text",
        "core.loaders.text:load_plain",
        "prose",
        _words(".txt .text .rst .adoc .org .tex .log"),
        _words("license readme changelog notice makefile dockerfile"),
        has_lines=True,
    ),
    Format(
        "code",
        "source code and configuration",
        "core.loaders.text:load_plain",
        "lines",
        _words(
            """
        .py .pyi .js .jsx .mjs .cjs .ts .tsx .go
        .rs .java .kt .kts .scala .c .h .cc .cpp .cxx
        .hpp .hh .cs .swift .m .mm .rb .php .pl .lua
        .r .jl .sh .bash .zsh .fish .ps1 .bat .sql .proto
        .graphql .css .scss .less .vue .svelte .yaml .yml .toml .ini
        .cfg .conf .env.example .xml .gradle .cmake .dockerfile .tf
        .hcl .nix .el .clj .ex .exs .erl .hs .ml .dart
        .zig .v .sv .vhd
            """
        ),
        has_lines=True,
    ),
    Format("pdf", "PDF (page by page)", "core.loaders.pdf:load_pdf", "spans", _words(".pdf")),
    Format(
        "html", "web pages", "core.loaders.html:load_html", "markdown", _words(".html .htm .xhtml")
    ),
    Format("docx", "Word documents", "core.loaders.docx:load_docx", "markdown", _words(".docx")),
    Format(
        "odt", "OpenDocument text", "core.loaders.odt:load_odt", "markdown", _words(".odt .fodt")
    ),
    Format(
        "pptx",
        "PowerPoint (slide by slide)",
        "core.loaders.pptx:load_pptx",
        "spans",
        _words(".pptx"),
    ),
    Format(
        "xlsx",
        "Excel (rows by sheet)",
        "core.loaders.xlsx:load_xlsx",
        "spans",
        _words(".xlsx .xlsm"),
    ),
    Format(
        "csv",
        "CSV and TSV tables",
        "core.loaders.delimited:load_delimited",
        "spans",
        _words(".csv .tsv"),
    ),
    Format(
        "json",
        "JSON and JSON Lines",
        "core.loaders.jsondata:load_json",
        "spans",
        _words(".json .jsonc .jsonl .ndjson .geojson"),
    ),
    Format(
        "notebook",
        "Jupyter notebooks (cell by cell)",
        "core.loaders.notebook:load_notebook",
        "spans",
        _words(".ipynb"),
    ),
    Format(
        "epub",
        "EPUB e-books (chapter by chapter)",
        "core.loaders.epub:load_epub",
        "spans",
        _words(".epub"),
    ),
    Format(
        "subtitles",
        "subtitles (by start time)",
        "core.loaders.subtitles:load_subtitles",
        "spans",
        _words(".srt .vtt .sbv"),
    ),
    Format(
        "email",
        "e-mail (.eml, .mbox)",
        "core.loaders.mail:load_email",
        "spans",
        _words(".eml .mbox"),
    ),
    Format(
        "image",
        "images, read by OCR",
        "core.loaders.ocr:load_image",
        "prose",
        _words(".png .jpg .jpeg .tiff .tif .webp .bmp"),
    ),
)

# Never worth sniffing: no reader, and not text. Skipped quietly when found in a folder.
BINARY = _words(
    """
        .gif .ico .svgz
        .mp3 .mp4 .wav .flac .ogg .mov .avi .mkv .webm .zip
        .gz .tgz .bz2 .xz .7z .rar .tar .zst .jar .war
        .whl .egg .exe .dll .so .dylib .o .a .lib .class
        .pyc .pyo .bin .dat .db .sqlite .sqlite3 .parquet .arrow .npy
        .npz .pkl .pickle .pt .onnx .gguf .safetensors .woff .woff2 .ttf
        .otf .eot .doc .xls .ppt .ods .odp
        .key .pages .numbers .iso .dmg .DS_Store
    """
)

_SNIFF = Format("text", "plain text", "core.loaders.text:load_sniffed", "prose", has_lines=True)
_BY_SUFFIX = {suffix: f for f in FORMATS for suffix in f.suffixes}
_BY_NAME = {name: f for f in FORMATS for name in f.names}
_BY_KIND = {f.kind: f for f in FORMATS}


def file_kinds() -> tuple[str, ...]:
    """Every kind a chunk can have, in table order (for filters and help texts)."""
    return tuple(_BY_KIND)


def format_of(kind: str) -> Format:
    """The format of a stored kind (KeyError for an unknown one)."""
    return _BY_KIND[kind]


def kind_of(path: Path) -> str | None:
    """The kind of reader for a path by its name, `sniff` for unknown names, None for known binaries."""
    suffix = path.suffix.lower()
    found = _BY_SUFFIX.get(suffix) or _BY_NAME.get(path.name.lower())
    if found is not None:
        return found.kind
    if suffix in BINARY or path.name in BINARY:
        return None
    return "sniff"


def load(path: Path, kind: str, data: bytes, options: LoadOptions | None = None) -> LoadedText:
    """Turn a file's bytes into text; raises UnreadableFile or NotText."""
    from core.loaders.base import LoadOptions, UnreadableFile

    if not data.strip():
        raise UnreadableFile("empty file")
    reader = _SNIFF if kind == "sniff" else _BY_KIND[kind]
    loaded = reader.read(data, path, options or LoadOptions())
    if not loaded.text.strip():
        raise UnreadableFile("no text in file")
    return loaded
