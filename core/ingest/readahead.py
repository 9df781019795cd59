"""The read-ahead of ingest: files read, chunked and turned into nodes in a background thread while
the caller embeds and writes the ones before them, so both cores work (the embedder releases the
GIL in native code)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from core.ingest.scan import Candidate
from core.loaders import NotText, UnreadableFile

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from core.engine import Engine
    from core.ingest.pipeline import Progress, _Read

Outcome = tuple["_Read", "list[TextNode] | None"] | NotText | UnreadableFile | OSError


class ReadAhead:
    """Reads, chunks and builds the nodes of the files to write in a background thread, in order,
    at most `limit` chunks ahead of the caller (a large file's nodes are left to the
    caller, who builds them window by window). Counts the chunks planned as it goes: the progress
    total is exact once every file is read, and extrapolated from the bytes read until then.

    Iterating yields each work item with its outcome: the read file and its nodes, or the reason
    it was skipped. A failure of the thread itself is raised in the caller."""

    def __init__(
        self,
        work: Sequence[tuple[Candidate, str | None, str | None]],
        engine: Engine,
        progress: Progress,
        prepare: Callable[[Candidate, str | None], tuple[Outcome, int]],
        *,
        limit: int,
    ) -> None:
        self.prepare = prepare
        self.limit = limit
        self.work = work
        self.engine = engine
        self.progress = progress
        self.total_bytes = sum(c.size for c, _, _ in work) or 1
        self.ready: deque[tuple[int, Outcome, int]] = deque()  # (work index, outcome, chunks)
        self.buffered = 0  # chunks in `ready`
        self.failure: BaseException | None = None
        self.finished = False
        self.stopping = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="kb-read-ahead", daemon=True)

    def __enter__(self) -> Iterator[tuple[tuple[Candidate, str | None, str | None], Outcome]]:
        if self.work:  # nothing to write (an unchanged re-ingest) loads no model
            _ = self.engine.embedder  # built once, here, not raced for by both threads
            self.thread.start()
        return self._take()

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        if self.thread.is_alive():
            self.thread.join()

    def _take(self) -> Iterator[tuple[tuple[Candidate, str | None, str | None], Outcome]]:
        for index in range(len(self.work)):
            with self.changed:
                while not self.ready and self.failure is None:
                    self.changed.wait()
                if self.failure is not None:
                    raise self.failure
                done, outcome, chunks = self.ready.popleft()
                self.buffered -= chunks
                self.changed.notify_all()
            assert done == index
            yield self.work[index], outcome

    def _run(self) -> None:
        chunks_seen = 0
        bytes_read = 0
        try:
            for index, (candidate, digest, _) in enumerate(self.work):
                outcome, chunks = self.prepare(candidate, digest)
                bytes_read += candidate.size
                chunks_seen += chunks
                last = index == len(self.work) - 1
                with self.changed:
                    # Large files hold no nodes here: they count for little while they wait.
                    held = 0 if isinstance(outcome, BaseException) or outcome[1] is None else chunks
                    while self.buffered and self.buffered + held > self.limit:
                        if self.stopping:
                            return
                        self.changed.wait()
                    if self.stopping:
                        return
                    self.progress.chunks_total = (
                        chunks_seen
                        if last
                        else round(chunks_seen * self.total_bytes / max(bytes_read, 1))
                    )
                    self.progress.chunks_estimated = not last
                    self.ready.append((index, outcome, held))
                    self.buffered += held
                    self.changed.notify_all()
        except BaseException as err:  # a bug: raised in the caller's thread
            with self.changed:
                self.failure = err
                self.changed.notify_all()
