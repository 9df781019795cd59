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


TRACE_STAGES = (  # timing key -> label, in the order they happen
    ("load_s", "load"),
    ("embed_s", "embed question"),
    ("stage_search_s", "search"),
    ("stage_fill_missing_s", "score the other side"),
    ("stage_fusion_s", "fusion"),
    ("stage_collapse_s", "collapse"),
    ("stage_rerank_s", "rerank"),
    ("retrieve_s", "retrieval total"),
    ("first_token_s", "first token"),
    ("generate_s", "generation"),
    ("answer_s", "answer"),
)


def trace_line(
    timings: dict[str, float], usage: dict[str, int] | None = None, *, label: str = ""
) -> str:
    """`--trace`: `trace: load 120 ms · embed question 8 ms · ... · tokens 812 in, 64 out`
    (`label`, e.g. "p50", when the figures are a run's percentiles)."""
    parts = [
        f"{label} {timings[key] * 1000:.0f} ms" for key, label in TRACE_STAGES if key in timings
    ]
    if usage:
        parts.append(
            f"tokens {usage.get('prompt_tokens', 0)} in, {usage.get('completion_tokens', 0)} out"
        )
    return f"trace{f' ({label})' if label else ''}: " + " · ".join(parts)


def source_line(s: Source) -> str:
    """`[1] path L3-9<TAB>score`: a source as one plain line (its relevance when known)."""
    return f"[{s.n}] {s.path}{locator(s)}{also_in(s)}\t{shown_score(s):.3f}"


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
    link: str = "",
) -> Table:
    """Sources as a Rich table; those the answer does not cite are dimmed."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    # Rows are in ranking order (fused score); the number shown is each source's own relevance when
    # the knowledge base has a baseline, so a lower row can read higher (README: "Refusal").
    scored = "relevance" if any(s.relevance is not None for s in sources) else "score"
    for column in ("#", "file", "where", scored, "snippet"):
        table.add_column(column, overflow="fold")
    for s in sources:
        uri = source_uri(s, link)
        name = f"[link={escape(uri)}]{escape(s.path)}[/link]" if uri else escape(s.path)
        name += escape(also_in(s))
        where = " › ".join(s.headings) + locator(s)
        text = " ".join(s.text.split())
        text = text[:snippet] + ("…" if len(text) > snippet else "")
        style = "dim" if cited and s.n not in cited else ""
        table.add_row(
            f"[{s.n}]",
            name,
            escape(where.strip()),
            f"{shown_score(s):.3f}",
            escape(text),
            style=style,
        )
    return table


def source_uri(s: Source, template: str = "") -> str:
    """A terminal link to where a source starts: `template` filled with {path} and {line}
    (e.g. `vscode://file{path}:{line}`), else `file:///…#L12` (`#page=3` for a page)."""
    if not s.abs_path.startswith("/"):
        return ""
    line = s.line_start or 1
    if template:
        try:
            return template.format(path=s.abs_path, line=line, page=s.page or 1)
        except (KeyError, IndexError, ValueError):
            pass  # a template with other fields: the plain file link below
    uri = Path(s.abs_path).as_uri()
    if s.page:
        return f"{uri}#page={s.page}"
    return f"{uri}#L{s.line_start}" if s.line_start else uri


def also_in(s: Source) -> str:
    """` (also in: a.srt, a.vtt)` for a source whose text other files hold too, else nothing."""
    return f" (also in: {', '.join(s.also_in)})" if s.also_in else ""


def locator(s: Source) -> str:
    """Where a chunk sits: ` p.3`, ` slide 4`, ` 00:09:04`, ` L3-9`, or nothing."""
    line_start, line_end = s.line_start, s.line_end
    if s.page:
        return f" p.{s.page}"
    if s.location:
        return f" {s.location}"
    if line_start:
        return (
            f" L{line_start}-{line_end}"
            if line_end and line_end != line_start
            else f" L{line_start}"
        )
    return ""
