"""Everything `kb` writes: results on stdout (rich on a terminal, plain when piped, or --json),
progress, warnings and errors on stderr.

Rich is imported inside the methods that draw, not at import time: every command module imports this
one, and `kb --help` should not pay for rich (about 25 ms and 2.5 MiB).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import IO, TYPE_CHECKING, Any

from cli.payloads import answer_payload, retrieval_payload, sources_payload
from cli.render import answer_note, locator, source_line, sources_table
from cli.stream import AnswerStream

if TYPE_CHECKING:
    from rich.console import Console

    from core.chat import Turn
    from core.errors import KbError
    from core.results import (
        Answer,
        Comparison,
        EvalReport,
        ForgetReport,
        IngestReport,
        MigrateReport,
        Source,
        SourceFile,
    )
    from core.retrieve import Retrieval


def _stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _surely_no_terminal() -> bool:
    """Whether a default stdout Console would surely not be a terminal: stdout is no tty, and
    neither of the variables rich lets overrule that (FORCE_COLOR, TTY_COMPATIBLE) is set."""
    import os

    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return False
    isatty = getattr(_stdout_file(), "isatty", None)
    try:
        return isatty is None or not isatty()
    except ValueError:  # a closed file: rich says no terminal too
        return True


def _stdout_file() -> IO[str]:
    """What `_stdout().file` would be: sys.stdout, or the real one under rich's redirection while a
    live display runs, or a file that drops everything when there is no stdout."""
    import sys

    file = getattr(sys.stdout, "rich_proxied_file", sys.stdout)
    return io.StringIO() if file is None else file


def silence_stdout() -> None:
    """Point stdout at /dev/null: its reader has gone, and Python's final flush must not fail."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test runner's capture)
        pass
    finally:
        os.close(devnull)


def print_error(err: KbError) -> None:
    """`error: …` and `hint: …` on stderr; user text is escaped, never read as markup."""
    from rich.markup import escape

    console = _stderr()
    console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
    if err.hint:
        console.print(f"[dim]hint:[/] {escape(err.hint)}", soft_wrap=True)


class Output:
    """Owns the terminal facts: which stream, whether fancy, whether JSON.

    Its two rich Consoles are made on first use, so JSON and piped output (raw text) need not
    import rich: about 30 ms of a `kb ask` process's CPU."""

    def __init__(
        self,
        *,
        as_json: bool = False,
        stream_json: bool = False,
        link: str = "",
        out: Console | None = None,
        err: Console | None = None,
    ) -> None:
        self.as_json = as_json
        self.stream_json = stream_json  # JSON lines: sources, tokens as they arrive, the answer
        self.link = link  # `[kb] link`: the URL template of source links ("": file://PATH#L12)
        self._out = out
        self._err = err
        self.reader_gone = False  # stdout was a pipe whose reader closed it

    @property
    def out(self) -> Console:
        """stdout's Console."""
        if self._out is None:
            self._out = _stdout()
        return self._out

    @property
    def err(self) -> Console:
        """stderr's Console."""
        if self._err is None:
            self._err = _stderr()
        return self._err

    @property
    def fancy(self) -> bool:
        """Colours and tables only on a terminal, never in JSON mode."""
        if self.as_json:
            return False
        if self._out is None and _surely_no_terminal():
            return False  # what rich would say: plain output never imports it
        return self.out.is_terminal

    def write(self, text: str) -> None:
        """Raw text on stdout: no wrapping, no markup. When the reader has gone (`kb ask Q | head
        -1`), the rest is dropped quietly and the command still ends with its own exit code."""
        if self.reader_gone:
            return
        # The file a default Console writes to (its `file`), without making one just for that.
        file = self._out.file if self._out is not None else _stdout_file()
        try:
            file.write(text + "\n")
            file.flush()
        except BrokenPipeError:
            self.reader_gone = True
            silence_stdout()

    def json(self, payload: Any) -> None:
        """One JSON object on one line."""
        import json

        self.write(json.dumps(payload, ensure_ascii=False, default=str))

    def warn(self, text: str) -> None:
        """A one-line warning on stderr."""
        from rich.markup import escape

        self.err.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)

    # -- ingest -------------------------------------------------------------------------------

    def ingest_report(self, report: IngestReport) -> None:
        """The summary of `kb ingest`."""
        from rich.markup import escape
        from rich.table import Table

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
                if report.ocr_pages:
                    table.add_row("OCR", f"{report.ocr_pages} pages or images read by OCR")
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
                    f"problems {len(report.problems)}; "
                    + (f"OCR pages {report.ocr_pages}; " if report.ocr_pages else "")
                    + f"{report.seconds:.1f} s"
                )
            self.write(("dry run: " if report.dry_run else "") + counts + tail)

    # -- sources / forget ---------------------------------------------------------------------

    def sources(self, files: list[SourceFile]) -> None:
        """The indexed files."""
        from rich.markup import escape
        from rich.table import Table

        if self.as_json:
            self.json(sources_payload(files))
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

    def migrated(self, report: MigrateReport) -> None:
        """What `kb migrate` copied."""
        if self.as_json:
            self.json(asdict(report))
            return
        self.write(
            f"copied {report.files} files, {report.chunks} chunks to collection "
            f"{report.collection} at {report.url} in {report.seconds:.1f} s"
        )
        if self.fancy:
            self.err.print(
                f'use it: set [store] backend = "qdrant", url = "{report.url}"'
                + (
                    f', collection = "{report.collection}"'
                    if report.collection != f"kb_{report.kb}"
                    else ""
                )
            )

    # -- ask ----------------------------------------------------------------------------------

    def retrieved(self, retrieval: Retrieval, *, show_sources: bool = True) -> None:
        """`kb ask --retrieve-only`: the ranked chunks."""
        if self.as_json:
            self.json(retrieval_payload(retrieval))
            return
        if not retrieval.sources:
            self.err.print("nothing matched", soft_wrap=True)
            return
        if self.fancy:
            self.out.print(
                sources_table(retrieval.sources, snippet=400, title="Retrieved", link=self.link)
            )
            return
        for s in retrieval.sources:
            self.write(source_line(s))
            if show_sources:
                self.write("\t" + " ".join(s.text.split()))

    @contextmanager
    def answer_stream(self, retrieval: Retrieval | None) -> Iterator[AnswerStream]:
        """Where an answer's tokens go while it is generated: a live Markdown view on a terminal,
        JSON lines with `--stream-json`, nowhere when piped (the whole answer follows)."""
        stream = AnswerStream(self, stream_json=self.stream_json)
        if self.stream_json and retrieval is not None:
            self.json({"type": "sources", "sources": [asdict(s) for s in retrieval.sources]})
        try:
            yield stream
        finally:
            stream.close()

    def answer(self, answer: Answer, *, show_sources: bool = True, streamed: bool = False) -> None:
        """An answer and its sources; after a live stream, only what follows the text."""
        payload = answer_payload(answer)
        if self.as_json:
            self.json({"type": "answer", **payload} if self.stream_json else payload)
            return
        if answer.invalid_citations:
            self.warn(
                "removed citations that match no source: " + " ".join(answer.invalid_citations)
            )
        sources = answer.sources if show_sources else ()
        if self.fancy:
            from rich.markdown import Markdown
            from rich.markup import escape

            if answer.thinking and not streamed:
                self.out.print(f"[dim italic]{escape(answer.thinking)}[/]")
            if not streamed:
                self.out.print(Markdown(answer.answer))
            if answer.supporting:
                self.out.print("[bold]Supporting passages[/] [dim](no citations in the answer)[/]")
                self.out.print(Markdown(answer.supporting))
            self.out.print(f"[dim]{escape(answer_note(answer))}[/]")
            if sources:
                self.out.print(sources_table(sources, cited=set(answer.citations), link=self.link))
            return
        if answer.thinking:
            self.write(answer.thinking)
            self.write("")
        self.write(answer.answer)
        if answer.supporting:
            self.write("")
            self.write(answer.supporting)
        if answer.kind == "refused":
            from rich.markup import escape

            self.err.print(escape(answer_note(answer)), soft_wrap=True)
        if sources:
            self.write("")
            for s in sources:
                self.write(source_line(s))

    # -- chat ---------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """A status line for the person at the keyboard (stderr, so stdout stays answers only)."""
        from rich.markup import escape

        self.err.print(escape(text), soft_wrap=True, style="dim" if self.fancy else None)

    def chat_answer(self, turn: Turn, *, streamed: bool) -> None:
        """One turn's answer: as `kb ask` shows it, with the cited sources in one line."""
        from rich.markup import escape

        answer = turn.answer
        if self.as_json:
            self.json({**asdict(answer), "found": answer.found, "standalone": turn.standalone})
            return
        if answer.invalid_citations:
            self.warn(
                "removed citations that match no source: " + " ".join(answer.invalid_citations)
            )
        cited = [s for s in answer.sources if s.n in answer.citations] or list(answer.sources[:3])
        where = "  ".join(f"[{s.n}] {s.path}{locator(s)}" for s in cited)
        if self.fancy:
            from rich.markdown import Markdown

            if not streamed:
                self.out.print(Markdown(answer.answer))
            if answer.supporting:
                self.out.print("[bold]Supporting passages[/] [dim](no citations in the answer)[/]")
                self.out.print(Markdown(answer.supporting))
            self.out.print(f"[dim]{escape(where)}[/]")
            self.out.print()
            return
        self.write(answer.answer)
        if answer.supporting:
            self.write(answer.supporting)
        self.write(f"Sources: {where}")
        self.write("")

    def turn_error(self, question: str, err: KbError) -> None:
        """A failed turn: the error line (and a JSON line in order, for scripts); the chat goes on."""
        print_error(err)
        if self.as_json:
            self.json({"question": question, "error": str(err), "hint": err.hint})

    def chunks(self, sources: Sequence[Source], *, full_text: bool) -> None:
        """Sources in full (`/sources`), or with their whole text (`/retrieve`)."""
        if self.as_json:
            self.json({"sources": [asdict(s) for s in sources]})
            return
        if self.fancy:
            self.out.print(
                sources_table(sources, snippet=2000 if full_text else 200, link=self.link)
            )
            return
        for s in sources:
            self.write(source_line(s))
            if full_text:
                self.write("\t" + " ".join(s.text.split()))

    def chat_sessions(self, rows: list[tuple[str, str, int, float]]) -> None:
        """`kb chat --list`."""
        import time

        from rich.markup import escape
        from rich.table import Table

        def when(stamp: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))

        if self.as_json:
            self.json(
                {
                    "sessions": [
                        {"name": n, "kb": kb, "turns": t, "updated": when(u)}
                        for n, kb, t, u in rows
                    ]
                }
            )
            return
        if self.fancy:
            table = Table(title=f"{len(rows)} chat sessions")
            for column in ("session", "knowledge base", "turns", "last used"):
                table.add_column(column)
            for name, kb, turns, updated in rows:
                table.add_row(escape(name), escape(kb), str(turns), when(updated))
            self.out.print(table)
            return
        for name, kb, turns, updated in rows:
            self.write(f"{name}\t{kb}\t{turns}\t{when(updated)}")

    # -- eval ---------------------------------------------------------------------------------

    def eval_report(self, report: EvalReport, *, bad_cases: int) -> None:
        """Averaged metrics, latencies and the worst questions."""
        from rich.markup import escape
        from rich.table import Table

        from core.evaluate.run import bad_cases as worst

        cases = worst(report, bad_cases)
        if self.as_json:
            payload = asdict(report)
            payload["bad_cases"] = [asdict(c) for c in cases]
            self.json(payload)
            return
        latency = "; ".join(
            f"{stage[:-2]} p50 {v['p50'] * 1000:.0f} ms, p95 {v['p95'] * 1000:.0f} ms"
            for stage, v in report.latency.items()
            if v
        )
        title = (
            f"kb eval · {report.questions} questions · '{report.kb}' · {report.mode} · "
            f"{report.model or 'retrieval only'}"
        )
        if self.fancy:
            table = Table(title=escape(title))
            table.add_column("metric")
            table.add_column("value", justify="right")
            for metric, value in report.metrics.items():
                table.add_row(metric, f"{value:.4f}")
            self.out.print(table)
            self.out.print(f"[dim]{escape(latency)}[/]")
        else:
            self.write(title)
            for metric, value in report.metrics.items():
                self.write(f"{metric}\t{value:.4f}")
            self.write(f"latency\t{latency}")
        if cases:
            self.write("")
            self.write(f"worst {len(cases)} questions:")
            for case in cases:
                scores = ", ".join(f"{m} {v:.2f}" for m, v in case.metrics.items())
                self.write(f"- [{case.id}] {case.question}")
                self.write(f"    {scores}")
                if case.expected:
                    self.write(f"    expected: {', '.join(case.expected)}")
                self.write(f"    retrieved: {', '.join(case.retrieved[:5])}")
                if case.answer:
                    self.write(f"    answer: {' '.join(case.answer.split())[:300]}")
                if case.references:
                    self.write(f"    reference: {' | '.join(case.references)}")

    def comparison(self, comparison: Comparison) -> None:
        """`kb eval compare A B`."""
        if self.as_json:
            self.json(asdict(comparison))
            return

        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        self.write(f"{'metric':20} {comparison.a[:12]:>12} {comparison.b[:12]:>12} {'change':>9}")
        for metric, (a, b) in comparison.metrics.items():
            delta = f"{b - a:+.4f}" if a is not None and b is not None else ""
            self.write(f"{metric:20} {cell(a):>12} {cell(b):>12} {delta:>9}")
        for label, rows in (("better", comparison.better), ("worse", comparison.worse)):
            self.write("")
            self.write(f"{len(rows)} questions {label} ({comparison.key}):")
            for case_id, question, change in rows[:20]:
                self.write(f"  {change:+.3f}  [{case_id}] {question}")

    def config(
        self,
        rows: list[tuple[str, str, str]],
        path: str | None,
        files: Sequence[tuple[str, str, bool]] = (),
    ) -> None:
        """The settings files looked for, the effective configuration and where each value came from."""
        from rich.markup import escape
        from rich.table import Table

        if self.as_json:
            self.json(
                {
                    "config_file": path,
                    "files": [{"role": r, "path": p, "found": f} for r, p, f in files],
                    "settings": [{"key": k, "value": v, "from": o} for k, v, o in rows],
                }
            )
            return
        if self.fancy:
            for role, where, found in files:
                mark = "[green]found[/]" if found else "[dim]not found[/]"
                self.out.print(f"{escape(role)}: {escape(where)} ({mark})", soft_wrap=True)
            table = Table(title=f"kb configuration (config file: {escape(path or 'none')})")
            for column in ("key", "value", "from"):
                table.add_column(column)
            for key, value, origin in rows:
                table.add_row(key, escape(value), escape(origin))
            self.out.print(table)
            return
        for role, where, found in files:
            self.write(f"# {role}: {where} ({'found' if found else 'not found'})")
        for key, value, origin in rows:
            self.write(f"{key} = {value}\t# {origin}")
