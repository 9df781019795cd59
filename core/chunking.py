"""Structure-aware chunking sized in the embedder's own tokens.

How a file is cut first comes from its format in the loader registry: Markdown-like text (Markdown,
HTML, Word, which the loaders render with `#` headings) into heading sections, located formats into
their spans (PDF pages, slides, sheets, cells), code into lines; each section is then packed greedily from
whole sentences (Chinese 。！？； and English boundaries) up to the token budget, with a small overlap.
Every chunk knows its character span, heading path, page and line range.
"""

from __future__ import annotations

import bisect
import itertools
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from core.loaders import LoadedText, format_of
from core.text import Sentence, split_sentences

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_SOFT_BREAK = re.compile(r"[，、,：:）)\s]")

TokenCounter = Callable[[str], int]
SENTENCE_WINDOW = 1 << 18  # characters split into sentences at a time, so a huge file streams


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a file."""

    text: str
    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    line_start: int | None = None
    line_end: int | None = None
    location: str = (
        ""  # the span's location ("p. 3", "slide 4", "00:09:04"); "" for line-located files
    )


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    headings: tuple[str, ...]
    page: int | None = None
    location: str = ""


def chunk_text(
    loaded: LoadedText,
    *,
    count_tokens: TokenCounter,
    chunk_size: int,
    chunk_overlap: int,
) -> list[Chunk]:
    """Cut a loaded file into chunks of at most `chunk_size` tokens (measured by `count_tokens`)."""
    text = loaded.text
    form = format_of(loaded.kind)
    if loaded.spans:
        sections = [
            _Section(s.start, s.end, (s.heading,) if s.heading else (), s.page, s.location)
            for s in loaded.spans
        ]
    elif form.layout == "markdown":
        sections = _markdown_sections(text)
    else:
        sections = [_Section(0, len(text), ())]
    line_starts = array("q", [0])
    if form.has_lines:
        line_starts.extend(m.end() for m in re.finditer("\n", text))
    chunks: list[Chunk] = []
    for section in sections:
        units: Iterable[Sentence]
        if form.layout == "lines":
            units = _lines(text[section.start : section.end], section.start)
        else:
            units = _sentences(text, section.start, section.end)
        for start, end in _pack(text, units, count_tokens, chunk_size, chunk_overlap):
            lines: tuple[int | None, int | None] = (None, None)
            if form.has_lines:
                lines = (
                    bisect.bisect_right(line_starts, start),
                    bisect.bisect_right(line_starts, max(start, end - 1)),
                )
            chunks.append(
                Chunk(
                    text[start:end],
                    start,
                    end,
                    section.headings,
                    section.page,
                    *lines,
                    location=section.location,
                )
            )
    return chunks


def _markdown_sections(text: str) -> list[_Section]:
    """Split at ATX headings outside code fences; a heading with no body joins the next section."""
    marks: list[tuple[int, int, str]] = []  # (offset, level, title)
    fence = ""  # the open code fence, if any: closed only by the same character, as long or longer
    offset = 0
    for line in text.splitlines(keepends=True):
        if (opened := _FENCE.match(line)) is not None and (
            not fence or (opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence))
        ):
            fence = "" if fence else opened.group(1)
        elif not fence and (match := _HEADING.match(line.rstrip("\n"))):
            marks.append((offset, len(match.group(1)), match.group(2).strip()))
        offset += len(line)
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    bounds = [0] + [m[0] for m in marks] + [len(text)]
    heading_of = {m[0]: (m[1], m[2]) for m in marks}
    pending: int | None = None  # start of headings that had no body of their own
    for start, end in itertools.pairwise(bounds):
        if start in heading_of:
            level, title = heading_of[start]
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        body = text[start:end]
        if not body.strip():
            continue
        if start in heading_of and not body.partition("\n")[2].strip():
            pending = start if pending is None else pending
            continue
        path = tuple(title for _, title in stack)
        sections.append(_Section(start if pending is None else pending, end, path))
        pending = None
    if pending is not None:
        sections.append(_Section(pending, len(text), tuple(title for _, title in stack)))
    return sections


def _sentences(text: str, start: int, end: int) -> Iterator[Sentence]:
    """`split_sentences` of `text[start:end]`, a window at a time: memory stays bounded by the
    window, not the section (a 100 MB file may be one section, or one line).

    The last sentence of a window may run past it, so the next window starts at that sentence;
    a window holding one sentence only (no boundary in SENTENCE_WINDOW characters) is passed on
    whole, to be cut at soft breaks like any over-long sentence.
    """
    cursor = start
    while cursor < end:
        limit = min(end, cursor + SENTENCE_WINDOW)
        found = split_sentences(text[cursor:limit], cursor)
        if limit == end or len(found) < 2:
            yield from found
            cursor = limit
            continue
        yield from found[:-1]
        cursor = found[-1].start


def _lines(body: str, offset: int) -> list[Sentence]:
    units: list[Sentence] = []
    cursor = 0
    for line in body.splitlines(keepends=True):
        stripped = line.rstrip()
        if stripped.strip():
            units.append(Sentence(stripped, offset + cursor, offset + cursor + len(stripped)))
        cursor += len(line)
    return units


def _pieces(
    text: str, units: Iterable[Sentence], count_tokens: TokenCounter, budget: int
) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of every unit, over-long ones cut to fit the budget."""
    for unit in units:
        tokens = count_tokens(unit.text)
        if tokens <= budget:
            yield (unit.start, unit.end, tokens)
        else:
            yield from _split_long(text, unit.start, unit.end, count_tokens, budget)


def _pack(
    text: str,
    units: Iterable[Sentence],
    count_tokens: TokenCounter,
    budget: int,
    overlap: int,
) -> Iterator[tuple[int, int]]:
    """Greedy packing of units into spans of at most `budget` tokens, repeating up to `overlap`."""
    current: list[tuple[int, int, int]] = []
    used = 0
    for piece in _pieces(text, units, count_tokens, budget):
        if current and used + piece[2] > budget:
            yield (current[0][0], current[-1][1])
            carried: list[tuple[int, int, int]] = []
            carried_tokens = 0
            for previous in reversed(current):
                if carried_tokens + previous[2] > overlap or len(carried) + 1 == len(current):
                    break
                carried.insert(0, previous)
                carried_tokens += previous[2]
            if carried_tokens + piece[2] > budget:
                carried, carried_tokens = [], 0
            current, used = carried, carried_tokens
        current.append(piece)
        used += piece[2]
    if current:
        yield (current[0][0], current[-1][1])


def _split_long(
    text: str, start: int, end: int, count_tokens: TokenCounter, budget: int
) -> list[tuple[int, int, int]]:
    """Cut an over-long sentence at soft breaks (commas, spaces) into pieces that fit the budget.

    Tokens are counted on a window a few budgets wide, never on the whole remainder, so a
    megabyte-long line without punctuation costs linear time.
    """
    pieces: list[tuple[int, int, int]] = []
    window = max(budget * 6, 64)
    cursor = start
    while cursor < end:
        limit = min(end, cursor + window)
        tokens = count_tokens(text[cursor:limit])
        if tokens <= budget and limit == end:
            pieces.append((cursor, end, tokens))
            break
        cut = (
            limit if tokens <= budget else cursor + max(1, int((limit - cursor) * budget / tokens))
        )
        while True:
            lower = cursor + (cut - cursor) // 2
            soft = [m.end() for m in _SOFT_BREAK.finditer(text, lower, cut)]
            candidate = soft[-1] if soft and cut < end else cut
            tokens = count_tokens(text[cursor:candidate])
            if tokens <= budget or candidate - cursor <= 1:
                break
            cut = cursor + max(1, (candidate - cursor) * 9 // 10)
        piece_end = candidate
        while piece_end < end and text[piece_end].isspace():
            piece_end += 1
        stripped_end = candidate
        while stripped_end > cursor and text[stripped_end - 1].isspace():
            stripped_end -= 1
        if stripped_end > cursor:
            pieces.append((cursor, stripped_end, tokens))
        cursor = piece_end
    return pieces
