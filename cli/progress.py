"""Progress bars on stderr, drawn only when it is a terminal (silent otherwise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli.output import Output
    from core.results import IngestProgress


class IngestProgressBar:
    """Files and chunks of `kb ingest` (and of a BEIR corpus ingested by `kb eval --beir`): chunks
    with a vector of the chunks planned (`~` while that total is extrapolated from the bytes read
    so far), files, the embedder's chunks/s and the time left."""

    def __init__(self, out: Output) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[chunks]}"),
            TextColumn("{task.fields[files]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out.err,
            transient=True,
            disable=not out.err.is_terminal,
        )
        self.task = self.progress.add_task("reading", total=None, chunks="", files="", rate="")

    def __enter__(self) -> Callable[[IngestProgress], None]:
        self.progress.start()
        return self.update

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, tick: IngestProgress) -> None:
        self.progress.update(
            self.task,
            description=tick.phase,
            completed=tick.chunks_done,
            total=tick.chunks_total or None,
            chunks=chunks_text(tick),
            files=f"{tick.files_done}/{tick.files_total} files",
            rate=rate_text(tick),
        )


def chunks_text(tick: IngestProgress) -> str:
    """`120/9,214 chunks`, `120/~9,200 chunks` while the total is an estimate, "" before any."""
    if not tick.chunks_total:
        return ""
    about = "~" if tick.chunks_estimated else ""
    return f"{tick.chunks_done:,}/{about}{tick.chunks_total:,} chunks"


def rate_text(tick: IngestProgress) -> str:
    """The embedder's chunks per second so far ("" before it has embedded anything)."""
    if not tick.embed_seconds or not tick.chunks_embedded:
        return ""
    return f"{tick.chunks_embedded / tick.embed_seconds:.1f} chunks/s"


class QuestionProgress:
    """Questions of `kb eval` answered so far."""

    def __init__(self, out: Output, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "evaluating",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=out.err,
            transient=True,
            disable=not out.err.is_terminal,
        )
        self.task = self.bar.add_task("eval", total=total)

    def __enter__(self) -> Callable[[int, int], None]:
        self.bar.start()
        return lambda done, total: self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
