"""`kb ingest`: scan folders, plan against what is indexed, then read, chunk, embed and store the changes.

Incremental by content hash: unchanged files cost a stat; a renamed or moved file reuses its stored
vectors; a changed file is re-chunked and only chunks whose text is new are embedded (the rest come from
its old vectors or the embedding cache); files gone from an ingested root are removed, and only from
that root. Each file's chunks are written all at once, so a file is never partly indexed.

The work is split by job: `scan` finds the files, `plan` compares them with what is indexed, and
`pipeline` reads, embeds and writes the changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from core.answerability import calibrate, calibration_current, load_calibration
from core.cache import EmbeddingCache
from core.config import Settings, kb_home
from core.engine import Engine, knowledge_base_exists, open_engine
from core.errors import ConfigError
from core.ingest.pipeline import Progress, ProgressFn, apply_plan
from core.ingest.plan import make_plan, plan_report
from core.ingest.scan import resolve_roots
from core.results import IngestReport

if TYPE_CHECKING:
    from core.embedders.base import KbEmbedding

__all__ = ["ingest", "resolve_roots", "run_ingest"]


def run_ingest(
    settings: Settings,
    paths: Sequence[Path],
    *,
    dry_run: bool = False,
    rebuild: bool = False,
    on_progress: ProgressFn | None = None,
    embedder: KbEmbedding | None = None,
) -> IngestReport:
    """`kb ingest`: open (or create) the knowledge base and its embedding cache, then `ingest`.

    A dry run against a knowledge base that does not exist yet creates nothing.
    """
    if dry_run and rebuild:
        raise ConfigError("--dry-run and --rebuild cannot be combined", hint="drop one of them")
    roots = resolve_roots(paths)  # a missing path is a usage error before anything is opened
    if dry_run and not knowledge_base_exists(settings):
        return plan_report(make_plan(roots, {}, settings), roots, settings, dry_run=True)
    with open_engine(settings, purpose="write", rebuild=rebuild, embedder=embedder) as engine:
        cache = None
        if settings.embedding.cache and not dry_run:
            path = kb_home(settings.kb.home) / "embedding-cache.sqlite3"
            cache = EmbeddingCache(path, str(engine.shard.meta["embedder"]))
        try:
            return ingest(roots, engine, dry_run=dry_run, cache=cache, on_progress=on_progress)
        finally:
            if cache is not None:
                cache.close()


def ingest(
    paths: Sequence[Path],
    engine: Engine,
    *,
    dry_run: bool = False,
    cache: EmbeddingCache | None = None,
    on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Bring the knowledge base in step with `paths`; with `dry_run`, only report the plan."""
    started = time.perf_counter()
    settings = engine.settings
    roots = resolve_roots(paths)
    records = {str(r["doc_id"]): r for r in engine.shard.records()}
    plan = make_plan(roots, records, settings)
    report = plan_report(plan, roots, settings, dry_run=dry_run)
    if dry_run:
        return replace(report, seconds=time.perf_counter() - started)
    progress = Progress(
        on_progress, files_total=len(plan.added) + len(plan.changed) + len(plan.renamed)
    )
    stats, written, problems = apply_plan(plan, engine, cache, progress)
    if written or plan.deleted or not calibration_current(load_calibration(engine.kb_dir)):
        calibrate(engine, cache)  # the refusal's baseline follows the knowledge base's content
    return replace(
        report,
        added=tuple(c.rel_path for c, _ in plan.added if str(c.abs_path) in written),
        changed=tuple(c.rel_path for c, _ in plan.changed if str(c.abs_path) in written),
        renamed=tuple(
            r
            for r, (_, c, _) in zip(report.renamed, plan.renamed, strict=True)
            if str(c.abs_path) in written
        ),
        problems=tuple(problems),
        chunks_written=stats["written"],
        chunks_embedded=stats["embedded"],
        chunks_reused=stats["reused"],
        ocr_pages=stats["ocr_pages"],
        chunks_total=engine.shard.count(),
        files_total=engine.shard.count("file"),
        embed_seconds=progress.embed_seconds,
        seconds=time.perf_counter() - started,
        embedder_runtime=engine.embedder_runtime(),
    )
