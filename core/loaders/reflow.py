"""Lines of a PDF page joined back into paragraphs.

A PDF's text layer breaks lines where the page ran out of width, often mid-sentence (Chinese text
mid-word: "如\\n果"). A line that fills the page's usual width and does not end a sentence
continues on the next line, so the two are joined (without a space next to a CJK character, with
one between Latin words). Short lines (headings, a paragraph's last line), table rows
(`a | b | c`) and lines that end a sentence keep their line break, so a heading never runs into the
paragraph below it.
"""

from __future__ import annotations

import unicodedata

FULL = 0.85  # a line at least this share of the page's usual width is taken to run on
_ENDS = frozenset("。！？!?.:：;；")


def reflow(text: str) -> str:
    """`text` with layout line breaks inside paragraphs removed."""
    lines = text.split("\n")
    widths = sorted(_width(line) for line in lines if line.strip())
    if len(widths) < 4:
        return text
    usual = widths[int(0.8 * (len(widths) - 1))]  # most full lines are about this wide
    out: list[str] = []
    for line in lines:
        if out and _runs_on(out[-1], usual) and line.strip() and " | " not in line:
            out[-1] = _join(out[-1], line)
        else:
            out.append(line)
    return "\n".join(out)


def _runs_on(line: str, usual: int) -> bool:
    stripped = line.rstrip()
    return (
        bool(stripped)
        and " | " not in stripped
        and stripped[-1] not in _ENDS
        and _width(stripped) >= FULL * usual
    )


def _join(left: str, right: str) -> str:
    left, right = left.rstrip(), right.lstrip()
    if _wide(left[-1]) or _wide(right[0]):
        return left + right
    if left.endswith("-") and left[-2:-1].isalpha() and right[:1].islower():
        return left + right  # a word hyphenated at the line's end keeps its hyphen
    return left + " " + right


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _width(line: str) -> int:
    return sum(2 if _wide(c) else 1 for c in line)
