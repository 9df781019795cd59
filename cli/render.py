"""Pieces of text and tables that several renderers share: a source's one-line form and table row,
where in a file a chunk sits, and the note under an answer.

Rich is imported where a table is built, not at import time, so `kb --help` does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from core.results import Answer, Source


def answer_note(answer: Answer) -> str:
    """The line under an answer: who answered and how, or why nothing was."""
    if answer.kind == "refused":
        best = "none" if answer.best_score is None else f"{answer.best_score:.3f}"
        why = answer.refusal or f"best score {best}, threshold {answer.min_score:.3f}"
        return (
            f"The knowledge base does not seem to cover this ({why}); no answer was generated. "
            "Nearest sources:"
        )
    if answer.kind == "extractive":
        return f"extractive answer (no LLM configured), {answer.mode} retrieval"
    if answer.kind == "not_found":
        return f"{answer.model}: the sources do not answer this; {answer.mode} retrieval"
    return f"answered by {answer.model}, {answer.mode} retrieval"


def source_line(s: Source) -> str:
    """`[1] path L3-9<TAB>score`: a source as one plain line (its relevance when known)."""
    return f"[{s.n}] {s.path}{locator(s.page, s.line_start, s.line_end)}\t{shown_score(s):.3f}"


def shown_score(s: Source) -> float:
    """What a person is shown: the 0-1 relevance (same meaning on every knowledge base and in
    every language) when the knowledge base has a baseline, else the ranking score."""
    return s.relevance if s.relevance is not None else s.score


def sources_table(
    sources: Sequence[Source],
    *,
    cited: set[int] | None = None,
    snippet: int = 120,
    title: str = "Sources",
) -> Table:
    """Sources as a Rich table; those the answer does not cite are dimmed."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in ("#", "file", "where", "score", "snippet"):
        table.add_column(column, overflow="fold")
    for s in sources:
        uri = Path(s.abs_path).as_uri() if s.abs_path.startswith("/") else ""
        link = f"[link={uri}]{escape(s.path)}[/link]" if uri else escape(s.path)
        where = " › ".join(s.headings) + locator(s.page, s.line_start, s.line_end)
        text = " ".join(s.text.split())
        text = text[:snippet] + ("…" if len(text) > snippet else "")
        style = "dim" if cited and s.n not in cited else ""
        table.add_row(
            f"[{s.n}]",
            link,
            escape(where.strip()),
            f"{shown_score(s):.3f}",
            escape(text),
            style=style,
        )
    return table


def locator(page: int | None, line_start: int | None, line_end: int | None) -> str:
    """Where a chunk sits: ` p.3`, ` L3-9`, or nothing."""
    if page:
        return f" p.{page}"
    if line_start:
        return (
            f" L{line_start}-{line_end}"
            if line_end and line_end != line_start
            else f" L{line_start}"
        )
    return ""
