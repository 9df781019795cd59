"""Progress bars on stderr, drawn only when it is a terminal (silent otherwise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli.output import Output
    from core.results import IngestProgress


class IngestProgressBar:
    """Files and chunks of `kb ingest` (and of a BEIR corpus ingested by `kb eval --beir`)."""

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
            TextColumn("{task.completed}/{task.total} chunks"),
            TextColumn("{task.fields[files]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out.err,
            transient=True,
            disable=not out.err.is_terminal,
        )
        self.task = self.progress.add_task("reading", total=None, files="", rate="")

    def __enter__(self) -> Callable[[IngestProgress], None]:
        self.progress.start()
        return self.update

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, tick: IngestProgress) -> None:
        rate = f"{tick.chunks_done / tick.embed_seconds:.1f} chunks/s" if tick.embed_seconds else ""
        self.progress.update(
            self.task,
            description=tick.phase,
            completed=tick.chunks_done,
            total=tick.chunks_total or None,
            files=f"{tick.files_done}/{tick.files_total} files",
            rate=rate,
        )


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
