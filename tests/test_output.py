"""Rendering: the same results on a terminal (Rich), piped (plain) and as JSON."""

from __future__ import annotations

import io
import json

from rich.console import Console

from cli.output import Output
from core.results import Answer, FileProblem, IngestReport, RenamedFile, Source

REPORT = IngestReport(
    kb="default",
    kb_dir="/tmp/kb/default",
    roots=("/docs",),
    dry_run=False,
    added=("a.md",),
    renamed=(RenamedFile("old [draft].md", "new.md"),),
    problems=(FileProblem("bad [1].pdf", "corrupt PDF"),),
    chunks_written=3,
    chunks_embedded=2,
    chunks_reused=1,
    chunks_total=10,
    seconds=1.5,
)
ANSWER = Answer(
    question="q?",
    answer="The window is 30 days. [1]",
    mode="hybrid",
    model="extractive",
    sources=(
        Source(
            n=1,
            path="文档 [v2].md",
            abs_path="/docs/文档 [v2].md",
            score=0.5,
            text="The window is 30 days.",
            chunk_id="c1",
            headings=("Refunds",),
            line_start=3,
            line_end=4,
        ),
    ),
    timings={"retrieve_s": 0.01},
)


def _output(*, terminal: bool, as_json: bool = False) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return (
        Output(
            as_json=as_json,
            out=Console(file=out, force_terminal=terminal, width=100),
            err=Console(file=err, force_terminal=False, width=100),
        ),
        out,
        err,
    )


def test_ingest_summary_on_a_terminal_is_a_table_with_markup_escaped() -> None:
    output, out, err = _output(terminal=True)
    output.ingest_report(REPORT)
    assert "added 1, changed 0, renamed 1" in out.getvalue()
    assert "3 written (2 embedded, 1 reused)" in out.getvalue()
    assert "warning: bad [1].pdf: corrupt PDF" in err.getvalue()  # brackets are not Rich markup


def test_ingest_summary_piped_is_one_plain_line() -> None:
    output, out, _ = _output(terminal=False)
    output.ingest_report(REPORT)
    assert out.getvalue().count("\n") == 1
    assert "\x1b[" not in out.getvalue()


def test_json_mode_never_decorates_even_on_a_terminal() -> None:
    output, out, _ = _output(terminal=True, as_json=True)
    output.answer(ANSWER)
    assert json.loads(out.getvalue())["sources"][0]["path"] == "文档 [v2].md"


def test_answer_on_a_terminal_links_sources() -> None:
    output, out, _ = _output(terminal=True)
    output.answer(ANSWER)
    text = out.getvalue()
    assert "file:///docs/%E6%96%87%E6%A1%A3%20%5Bv2%5D.md" in text
    assert "Refunds" in text
    assert "L3-4" in text


def test_answer_piped_is_plain_text_then_source_lines() -> None:
    output, out, _ = _output(terminal=False)
    output.answer(ANSWER)
    assert out.getvalue() == "The window is 30 days. [1]\n\n[1] 文档 [v2].md L3-4\t0.500\n"


def test_ingest_progress_text_never_shows_an_unknown_total() -> None:
    from cli.progress import chunks_text, rate_text
    from core.results import IngestProgress

    reading = IngestProgress("read", 0, 3, 0, 0, 0.0)
    assert chunks_text(reading) == ""
    assert rate_text(reading) == ""
    early = IngestProgress("embed", 0, 3, 16, 900, 2.0, chunks_embedded=16, chunks_estimated=True)
    assert chunks_text(early) == "16/~900 chunks"
    assert rate_text(early) == "8.0 chunks/s"
    exact = IngestProgress("write", 3, 3, 1200, 1200, 100.0, chunks_embedded=1000)
    assert chunks_text(exact) == "1,200/1,200 chunks"
    assert "None" not in chunks_text(exact) + rate_text(exact)


def test_sources_table_names_the_number_it_shows() -> None:
    """Relevance when the knowledge base has a baseline (rows stay in ranking order), else score."""
    from dataclasses import replace

    from cli.render import sources_table

    ranked = (
        replace(ANSWER.sources[0], n=1, score=0.9, relevance=0.4),
        replace(ANSWER.sources[0], n=2, score=0.8, relevance=0.97),
    )
    for sources, header, shown in (
        (ranked, "relevance", ["0.400", "0.970"]),
        (tuple(replace(s, relevance=None) for s in ranked), "score", ["0.900", "0.800"]),
    ):
        buffer = io.StringIO()
        Console(file=buffer, width=120).print(sources_table(sources))
        text = buffer.getvalue()
        assert header in text
        assert ("relevance" in text) == (header == "relevance")
        assert text.index(shown[0]) < text.index(shown[1])  # ranking order kept
