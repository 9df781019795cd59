"""What every reader returns, and the two ways a file can fail to be read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

SNIFF_BYTES = 8192  # how much of a file of unknown type is looked at to decide it is text

OcrMode = Literal["auto", "always", "never"]


class UnreadableFile(Exception):
    """A file kb cannot read; the message is the reason, shown to the user."""


class NotText(Exception):
    """A file that is binary and has no reader: skipped quietly (unless named explicitly)."""


class MissingDependency(UnreadableFile):
    """A reader needs an optional package that is not installed; the message names the extra."""


@dataclass(frozen=True)
class Span:
    """A located part of a file's text: a page, a slide, a sheet's rows, a notebook cell, a cue.

    Chunks never cross a span's edges, and each chunk shows its span's `location`.
    """

    start: int
    end: int
    location: str  # what a person reads in the sources table: "p. 3", "slide 4", "00:09:04"
    page: int | None = None  # a PDF's page number (1-based)
    heading: str = ""  # a heading for the span's chunks: a slide title, a sheet name


@dataclass(frozen=True)
class LoadedText:
    """A file's text as a person reads it, the kind of file it came from, and where each part is."""

    text: str
    kind: str  # a `Format.kind` of the registry
    title: str = ""
    spans: tuple[Span, ...] = field(default=())  # empty: the text is one piece (lines or headings)
    notes: tuple[str, ...] = field(default=())  # one line each: pages skipped and why
    ocr_pages: int = 0  # pages or images read by OCR

    @property
    def pages(self) -> tuple[tuple[int, int, int], ...]:
        """(page number, start, end) of every span that is a page."""
        return tuple((s.page, s.start, s.end) for s in self.spans if s.page is not None)


@dataclass(frozen=True)
class LoadOptions:
    """How readers may read: OCR policy and a progress hook for long files (pages done, total)."""

    ocr: OcrMode = "auto"
    on_page: Callable[[int, int], None] | None = None


OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted Office files are OLE files, not zips
MAX_UNPACKED_MB = 200  # Office files and e-books are zips: refuse one that would unpack to more
MAX_UNPACK_RATIO = 200  # real Office XML compresses about 5-20x; zip bombs, thousands of times


def check_zip(data: bytes, what: str) -> None:
    """Refuse a zip whose members would unpack past the limits, before anything is unpacked.

    `what` names the file in the reason ("Word file", "PowerPoint file").
    """
    import io
    import zipfile

    if data.startswith(OLE_MAGIC):
        raise UnreadableFile(f"password-protected {what} (or an old binary Office file renamed)")
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError) as err:
        raise UnreadableFile(f"corrupt {what} ({type(err).__name__})") from err
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_UNPACKED_MB * 1024 * 1024 or unpacked > MAX_UNPACK_RATIO * max(1, len(data)):
        raise UnreadableFile(
            f"{what} would unpack to {unpacked / 1024 / 1024:.0f} MB from "
            f"{len(data) / 1024:.0f} KB (a zip bomb?)"
        )
