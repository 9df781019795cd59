"""`kb ingest --watch`: after the first pass, an incremental pass each time files under the roots
change (watchfiles: native file events, debounced into batches).

Each pass is a whole `run_ingest` over the roots: the same scan, filters, plan and problem reports
as a plain `kb ingest`, so a batch of events never needs interpreting (a rename is a rename because
the plan finds the same content at a new path). The knowledge base is open only during a pass, so
between passes `kb ask` and `kb sources` run freely. Ctrl-C (KeyboardInterrupt) between passes
leaves nothing half done; during a pass, the pass's own guarantee holds (a file is never partly
indexed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Event

from core.config import Settings, kb_home
from core.ingest import run_ingest
from core.ingest.pipeline import ProgressFn
from core.ingest.scan import resolve_roots
from core.results import IngestReport

DEBOUNCE_MS = 800  # changes within this window are one pass
READY_AFTER_MS = 300  # quiet time after which the watcher reports that it is running


def watch_ingest(
    settings: Settings,
    paths: Sequence[Path],
    *,
    on_pass: Callable[[IngestReport], None],
    on_ready: Callable[[tuple[Path, ...]], None] | None = None,
    on_progress: ProgressFn | None = None,
    stop: Event | None = None,
    debounce_ms: int = DEBOUNCE_MS,
) -> None:
    """Run an ingest pass over `paths` after every batch of file changes, until `stop` is set or
    the process is interrupted. `on_ready` is called once the watcher is running."""
    from watchfiles import DefaultFilter, watch

    roots = tuple(resolve_roots(paths))
    own = [kb_home(settings.kb.home).resolve(), settings.kb_dir().resolve()]

    class _Filter(DefaultFilter):
        """watchfiles' defaults (.git, __pycache__, editor swap files...) and the knowledge base's
        own folders, should they lie under a watched root."""

        def __call__(self, change: object, path: str) -> bool:
            where = Path(path)
            if any(where == p or where.is_relative_to(p) for p in own):
                return False
            return bool(super().__call__(change, path))  # type: ignore[arg-type]

    ready = False
    for changes in watch(
        *roots,
        watch_filter=_Filter(),
        debounce=debounce_ms,
        stop_event=stop,
        rust_timeout=READY_AFTER_MS,
        yield_on_timeout=True,
        raise_interrupt=True,
    ):
        if not changes:  # the quiet-time tick: the watcher is running
            if not ready and on_ready is not None:
                on_ready(roots)
            ready = True
            continue
        on_pass(run_ingest(settings, roots, on_progress=on_progress))
