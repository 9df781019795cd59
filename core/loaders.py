"""Read one file into text: Markdown, text, reStructuredText, code, PDF, HTML and Word.

Each reader returns a `LoadedText`; anything that makes a file unusable raises `UnreadableFile` with a
short reason (corrupt, encrypted, empty, undecodable), which ingest reports and moves past.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

MARKDOWN = frozenset({".md", ".markdown", ".mdx"})
PLAIN = frozenset({".txt", ".text", ".rst", ".adoc", ".org", ".tex", ".csv", ".tsv", ".log"})
HTML = frozenset({".html", ".htm", ".xhtml"})
CODE = frozenset(
    [
        ".py",
        ".pyi",
        ".ipynb",
        ".js",
        ".jsx",
        ".mjs",
        ".cjs",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".cxx",
        ".hpp",
        ".hh",
        ".cs",
        ".swift",
        ".m",
        ".mm",
        ".rb",
        ".php",
        ".pl",
        ".lua",
        ".r",
        ".jl",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".bat",
        ".sql",
        ".proto",
        ".graphql",
        ".css",
        ".scss",
        ".less",
        ".vue",
        ".svelte",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".env.example",
        ".json",
        ".jsonc",
        ".xml",
        ".gradle",
        ".cmake",
        ".dockerfile",
        ".tf",
        ".hcl",
        ".nix",
        ".el",
        ".clj",
        ".ex",
        ".exs",
        ".erl",
        ".hs",
        ".ml",
        ".dart",
        ".zig",
        ".v",
        ".sv",
        ".vhd",
    ]
)
# Formats never worth sniffing: skipped as binary without reading.
BINARY = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".bmp",
        ".webp",
        ".ico",
        ".tif",
        ".tiff",
        ".svgz",
        ".mp3",
        ".mp4",
        ".wav",
        ".flac",
        ".ogg",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
        ".rar",
        ".tar",
        ".zst",
        ".jar",
        ".war",
        ".whl",
        ".egg",
        ".exe",
        ".dll",
        ".so",
        ".dylib",
        ".o",
        ".a",
        ".lib",
        ".class",
        ".pyc",
        ".pyo",
        ".bin",
        ".dat",
        ".db",
        ".sqlite",
        ".sqlite3",
        ".parquet",
        ".arrow",
        ".npy",
        ".npz",
        ".pkl",
        ".pickle",
        ".pt",
        ".onnx",
        ".gguf",
        ".safetensors",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".doc",
        ".xls",
        ".xlsx",
        ".ppt",
        ".pptx",
        ".odt",
        ".ods",
        ".odp",
        ".key",
        ".pages",
        ".numbers",
        ".epub",
        ".iso",
        ".dmg",
        ".DS_Store",
    ]
)
NAMED_TEXT = frozenset({"makefile", "dockerfile", "license", "readme", "changelog", "notice"})
SNIFF_BYTES = 8192


class UnreadableFile(Exception):
    """A file kb cannot read; the message is the reason, shown to the user."""


class NotText(Exception):
    """A file that is binary and has no reader: skipped quietly."""


@dataclass(frozen=True)
class LoadedText:
    """A file's text, how to chunk it, and (for PDFs) which character span is which page."""

    text: str
    kind: str  # markdown | text | code | pdf | html | docx
    title: str = ""
    pages: tuple[tuple[int, int, int], ...] = field(default=())  # (page number, start, end)

    @property
    def has_lines(self) -> bool:
        """Whether line numbers of `text` are the file's own line numbers."""
        return self.kind in {"markdown", "text", "code"}


def kind_of(path: Path) -> str | None:
    """The reader for a path by its name, `sniff` for unknown names, None for known binaries."""
    suffix = path.suffix.lower()
    if suffix in MARKDOWN:
        return "markdown"
    if suffix in PLAIN:
        return "text"
    if suffix in HTML:
        return "html"
    if suffix == ".pdf":
        return "pdf"
    if suffix == ".docx":
        return "docx"
    if suffix in CODE or path.name.lower() in NAMED_TEXT:
        return "code" if suffix in CODE else "text"
    if suffix in BINARY or path.name in BINARY:
        return None
    return "sniff"


def load(path: Path, kind: str, data: bytes) -> LoadedText:
    """Turn a file's bytes into text; raises UnreadableFile or NotText."""
    if not data.strip():
        raise UnreadableFile("empty file")
    if kind == "pdf":
        loaded = _load_pdf(data)
    elif kind == "docx":
        loaded = _load_docx(data)
    elif kind == "html":
        loaded = _load_html(decode(data))
    elif kind == "sniff":
        if not looks_like_text(data[:SNIFF_BYTES]):
            raise NotText
        try:
            loaded = LoadedText(decode(data), "text")
        except UnreadableFile as err:
            raise NotText from err
    else:
        loaded = LoadedText(decode(data), kind)
    if not loaded.text.strip():
        raise UnreadableFile("no text in file")
    return loaded


def looks_like_text(head: bytes) -> bool:
    """Whether a file of unknown type is worth reading: its start has no NUL byte (or a UTF-16 mark)."""
    return b"\x00" not in head or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def decode(data: bytes) -> str:
    """Bytes to text: BOMs first, then strict UTF-8, then a detected legacy encoding (GBK, ...)."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return _clean(data.decode(encoding))
            except UnicodeDecodeError as err:
                raise UnreadableFile(f"invalid {encoding} text") from err
    if b"\x00" in data[:SNIFF_BYTES]:
        # Text has no NUL bytes, except UTF-16/32 without a byte-order mark.
        wide = _detect(data)
        if wide is None or not wide.startswith(("utf_16", "utf_32")):
            raise UnreadableFile("binary content (NUL bytes) in a text file")
        return _clean(data.decode(wide, errors="replace"))
    try:
        return _clean(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few damaged bytes (a cut-off last character, one stray byte) is still UTF-8.
    lenient = data.decode("utf-8", errors="replace")
    damaged = lenient.count("\ufffd") - data.count("\ufffd".encode())
    if damaged <= len(lenient) // 200 + (len(lenient) >= 40):
        return _clean(lenient)
    guess = _detect(data)
    if guess is None:
        raise UnreadableFile("cannot detect the text encoding")
    # GBK files are decoded as GB18030, its superset; a few stray bytes must not lose the file.
    encoding = "gb18030" if guess in {"gbk", "gb2312", "gb18030"} else guess
    return _clean(data.decode(encoding, errors="replace"))


def _detect(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = from_bytes(data[: 1 << 20])
    best = matches.best()
    if best is None:
        return None
    # Short CJK texts often fit several codecs equally well; kb's users write Chinese, so a tie
    # goes to GB18030 (a real Korean or Japanese text scores better in its own codec).
    for match in matches:
        if match.encoding in {"gb18030", "gbk", "gb2312"} and match.chaos <= best.chaos:
            return "gb18030"
    return str(best.encoding)


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _load_pdf(data: bytes) -> LoadedText:
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
        pages: list[tuple[int, int, int]] = []
        cursor = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = _clean(page.extract_text() or "").strip()
            if not page_text:
                continue
            if parts:
                parts.append("\n\n")
                cursor += 2
            parts.append(page_text)
            pages.append((number, cursor, cursor + len(page_text)))
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
    return LoadedText("".join(parts), "pdf", title=title, pages=tuple(pages))


# Page furniture, never content. <header>/<footer> count as furniture only outside the main text.
_HTML_DROP = [
    "script",
    "style",
    "noscript",
    "nav",
    "aside",
    "svg",
    "iframe",
    "template",
    "button",
    "select",
    "input",
    "textarea",
    "canvas",
    "menu",
    "dialog",
]
_HTML_FURNITURE = ["header", "footer"]
_HTML_BLOCKS = [
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "dt",
    "dd",
    "blockquote",
    "table",
    "tr",
    "figcaption",
    "caption",
    "br",
    "hr",
    "ul",
    "ol",
]


def _load_html(markup: str) -> LoadedText:
    import warnings

    from bs4 import BeautifulSoup

    # bs4 warns ("looks like a URL", "XML parsed as HTML") on stderr: a second line for one file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for role in ("navigation", "banner", "contentinfo", "search"):
        for tag in soup.find_all(True, attrs={"role": role}):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find(True, attrs={"role": "main"})
    if root is None:
        root = soup.body or soup
        for tag in root.find_all(_HTML_FURNITURE):
            if tag.find_parent(["article", "main"]) is None:
                tag.decompose()
    # Preformatted text keeps its lines and indentation, fenced so '#' lines are not headings.
    blocks: list[str] = []
    for pre in root.find_all("pre"):
        blocks.append(pre.get_text().strip("\n"))
        pre.replace_with(f"\n\n\x00{len(blocks) - 1}\x00\n\n")
    for level in range(1, 7):
        for heading in root.find_all(f"h{level}"):
            heading.insert_before(f"\n\n{'#' * level} ")
            heading.insert_after("\n\n")
    for block in root.find_all(_HTML_BLOCKS):
        block.insert_after("\n")
    for cell in root.find_all(["td", "th"]):
        cell.insert_after(" | ")
    raw = root.get_text()
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in raw.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = re.sub(r"\x00(\d+)\x00", lambda m: f"```\n{blocks[int(m.group(1))]}\n```", text)
    return LoadedText(text, "html", title=title)


MAX_UNPACKED_MB = 200  # a .docx is a zip: refuse one that would unpack to more (a zip bomb)
MAX_UNPACK_RATIO = 200  # real Word XML compresses about 5-20x; bombs, thousands of times


def _check_unpacked_size(data: bytes) -> None:
    """Refuse a zip whose members would unpack past the limits, before anything is unpacked."""
    import io
    import zipfile

    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError) as err:
        raise UnreadableFile(f"corrupt Word file ({type(err).__name__})") from err
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_UNPACKED_MB * 1024 * 1024 or unpacked > MAX_UNPACK_RATIO * max(1, len(data)):
        raise UnreadableFile(
            f"Word file would unpack to {unpacked / 1024 / 1024:.0f} MB from "
            f"{len(data) / 1024:.0f} KB (a zip bomb?)"
        )


def _load_docx(data: bytes) -> LoadedText:
    import io
    import zipfile

    _check_unpacked_size(data)
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
