"""Text files: bytes to text (BOMs, UTF-8, detected legacy encodings such as GBK), and the plain readers."""

from __future__ import annotations

import codecs
from pathlib import Path

from core.loaders.base import SNIFF_BYTES, LoadedText, LoadOptions, NotText, UnreadableFile


def load_plain(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    """Markdown, plain text and code: the decoded text as it is."""
    return LoadedText(decode(data), kind)


def load_sniffed(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    """A file of unknown type: text if it looks like text, else NotText."""
    if not looks_like_text(data[:SNIFF_BYTES]):
        raise NotText
    try:
        return LoadedText(decode(data), "text")
    except UnreadableFile as err:
        raise NotText from err


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
                return clean(data.decode(encoding))
            except UnicodeDecodeError as err:
                raise UnreadableFile(f"invalid {encoding} text") from err
    if b"\x00" in data[:SNIFF_BYTES]:
        # Text has no NUL bytes, except UTF-16/32 without a byte-order mark.
        wide = _detect(data)
        if wide is None or not wide.startswith(("utf_16", "utf_32")):
            raise UnreadableFile("binary content (NUL bytes) in a text file")
        return clean(data.decode(wide, errors="replace"))
    try:
        return clean(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few damaged bytes (a cut-off last character, one stray byte) is still UTF-8.
    lenient = data.decode("utf-8", errors="replace")
    damaged = lenient.count("\ufffd") - data.count("\ufffd".encode())
    if damaged <= len(lenient) // 200 + (len(lenient) >= 40):
        return clean(lenient)
    guess = _detect(data)
    if guess is None:
        raise UnreadableFile("cannot detect the text encoding")
    # GBK files are decoded as GB18030, its superset; a few stray bytes must not lose the file.
    encoding = "gb18030" if guess in {"gbk", "gb2312", "gb18030"} else guess
    return clean(data.decode(encoding, errors="replace"))


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


def clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
