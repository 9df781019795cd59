"""Everything `kb` writes: results on stdout (rich on a terminal, plain when piped, or --json),
progress, warnings and errors on stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from core.errors import KbError
    from core.results import Answer, ForgetReport, IngestReport, SourceFile


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(err: KbError) -> None:
    """`error: …` and `hint: …` on stderr; user text is escaped, never read as markup."""
    console = _stderr()
    console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
    if err.hint:
        console.print(f"[dim]hint:[/] {escape(err.hint)}", soft_wrap=True)


@dataclass
class Output:
    """Owns the terminal facts: which stream, whether fancy, whether JSON."""

    as_json: bool = False
    out: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=_stderr)

    @property
    def fancy(self) -> bool:
        """Colours and tables only on a terminal, never in JSON mode."""
        return not self.as_json and self.out.is_terminal

    def write(self, text: str) -> None:
        """Raw text on stdout: no wrapping, no markup."""
        self.out.file.write(text + "\n")
        self.out.file.flush()

    def json(self, payload: Any) -> None:
        """One JSON object on one line."""
        self.write(json.dumps(payload, ensure_ascii=False, default=str))

    def warn(self, text: str) -> None:
        """A one-line warning on stderr."""
        self.err.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)

    # -- ingest -------------------------------------------------------------------------------

    def ingest_report(self, report: IngestReport) -> None:
        """The summary of `kb ingest`."""
        for problem in report.problems:
            self.warn(f"{problem.path}: {problem.reason}")
        if self.as_json:
            self.json(asdict(report))
            return
        if report.dry_run:
            for label, items in (
                ("add", report.added),
                ("change", report.changed),
                ("delete", report.deleted),
            ):
                for item in items:
                    self.write(f"{label}\t{item}")
            for moved in report.renamed:
                self.write(f"rename\t{moved.old} -> {moved.new}")
        counts = (
            f"added {len(report.added)}, changed {len(report.changed)}, renamed {len(report.renamed)}, "
            f"deleted {len(report.deleted)}, unchanged {report.unchanged}"
        )
        if self.fancy:
            title = f"kb ingest → '{escape(report.kb)}'" + (
                " (dry run: nothing written)" if report.dry_run else ""
            )
            table = Table(title=title, show_header=False)
            table.add_column(style="bold")
            table.add_column()
            table.add_row("files", escape(counts))
            if not report.dry_run:
                table.add_row(
                    "chunks",
                    f"{report.chunks_written} written ({report.chunks_embedded} embedded, "
                    f"{report.chunks_reused} reused); {report.chunks_total} in the knowledge base",
                )
                table.add_row("problems", str(len(report.problems)))
                table.add_row(
                    "time", f"{report.seconds:.1f} s ({report.embed_seconds:.1f} s embedding)"
                )
            self.out.print(table)
        else:
            tail = ""
            if not report.dry_run:
                tail = (
                    f"; chunks: {report.chunks_written} written, {report.chunks_embedded} embedded, "
                    f"{report.chunks_reused} reused, {report.chunks_total} total; "
                    f"problems {len(report.problems)}; {report.seconds:.1f} s"
                )
            self.write(("dry run: " if report.dry_run else "") + counts + tail)

    # -- sources / forget ---------------------------------------------------------------------

    def sources(self, files: list[SourceFile]) -> None:
        """The indexed files."""
        if self.as_json:
            self.json({"files": [asdict(f) for f in files], "count": len(files)})
            return
        if not self.fancy:
            for f in files:
                self.write(f"{f.abs_path}\t{f.chunks}\t{f.indexed_at}")
            return
        table = Table(title=f"{len(files)} indexed files")
        for column in ("file", "type", "lang", "chunks", "indexed"):
            table.add_column(column, justify="right" if column == "chunks" else "left")
        for f in files:
            table.add_row(escape(f.abs_path), f.file_type, f.lang, str(f.chunks), f.indexed_at)
        self.out.print(table)

    def forgot(self, report: ForgetReport) -> None:
        """What `kb forget` removed."""
        if self.as_json:
            self.json(asdict(report))
            return
        for path in report.removed:
            self.write(f"forgot\t{path}")
        if self.fancy:
            self.err.print(f"removed {len(report.removed)} files, {report.chunks_removed} chunks")

    # -- ask ----------------------------------------------------------------------------------

    def answer(self, answer: Answer, *, show_sources: bool = True) -> None:
        """An answer and its sources."""
        if self.as_json:
            self.json(asdict(answer))
            return
        if self.fancy:
            from rich.markdown import Markdown

            self.out.print(Markdown(answer.answer))
            self.out.print(
                f"[dim]({escape(answer.model)} answer, {escape(answer.mode)} retrieval)[/]"
            )
            if show_sources:
                self.out.print(self._sources_table(answer))
            return
        self.write(answer.answer)
        if show_sources:
            self.write("")
            for s in answer.sources:
                self.write(
                    f"[{s.n}] {s.path}{_locator(s.page, s.line_start, s.line_end)}\t{s.score:.3f}"
                )

    def _sources_table(self, answer: Answer) -> Table:
        table = Table(title="Sources", show_lines=False)
        for column in ("#", "file", "where", "score", "snippet"):
            table.add_column(column, overflow="fold")
        for s in answer.sources:
            uri = Path(s.abs_path).as_uri() if s.abs_path.startswith("/") else ""
            link = f"[link={uri}]{escape(s.path)}[/link]" if uri else escape(s.path)
            where = " › ".join(s.headings) + _locator(s.page, s.line_start, s.line_end)
            snippet = " ".join(s.text.split())[:120]
            table.add_row(
                f"[{s.n}]", link, escape(where.strip()), f"{s.score:.3f}", escape(snippet)
            )
        return table

    def config(self, rows: list[tuple[str, str, str]], path: str | None) -> None:
        """The effective configuration and where each value came from."""
        if self.as_json:
            self.json(
                {
                    "config_file": path,
                    "settings": [{"key": k, "value": v, "from": o} for k, v, o in rows],
                }
            )
            return
        if self.fancy:
            table = Table(title=f"kb configuration (config file: {escape(path or 'none')})")
            for column in ("key", "value", "from"):
                table.add_column(column)
            for key, value, origin in rows:
                table.add_row(key, escape(value), escape(origin))
            self.out.print(table)
            return
        for key, value, origin in rows:
            self.write(f"{key} = {value}\t# {origin}")


def _locator(page: int | None, line_start: int | None, line_end: int | None) -> str:
    if page:
        return f" p.{page}"
    if line_start:
        return (
            f" L{line_start}-{line_end}"
            if line_end and line_end != line_start
            else f" L{line_start}"
        )
    return ""


def stdin_is_terminal() -> bool:
    """Whether stdin is an interactive terminal."""
    return sys.stdin.isatty()
