"""Carrying out an ingest plan: read, chunk, embed and write the changed files.

Files stream through read -> embed -> write in windows, so memory stays bounded; a changed file's
chunks take known vectors (its old chunks, the embedding cache) and only new text is embedded; each
file's chunks are written all at once, and a large file as a staged version made visible in one
step, so a file is never partly indexed.

Reading, parsing, chunking and building nodes run in a read-ahead thread (`_ReadAhead`), up to
READ_AHEAD_CHUNKS chunks ahead, while this thread embeds and writes: the embedders run in native
code that releases the GIL, so both cores work. Every store write stays in this thread, in order,
so what a kill leaves is what it left before (tests/test_crash.py).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.cache import EmbeddingCache, text_hash
from core.chunking import Chunk, chunk_text
from core.engine import Engine
from core.ingest.plan import Plan
from core.ingest.readahead import Outcome, ReadAhead
from core.ingest.scan import Candidate, file_problem
from core.loaders import LoadOptions, NotText, UnreadableFile, load
from core.results import FileProblem, IngestProgress
from core.text import detect_language

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

CHUNK_NAMESPACE = uuid.UUID("0b7d7f8e-61a4-4f7e-8d7e-3f1c2f0e9b21")
CONTEXT_TOKENS = 48  # reserved for the title/heading line embedded in front of each chunk
EMBED_WINDOW = 64  # new chunks embedded between file commits
LARGE_FILE_CHUNKS = 512  # a file of more chunks is written in windows, staged (bounded memory)
LARGE_WINDOW = 256  # chunks of a large file built, embedded and written at a time
READ_AHEAD_CHUNKS = 8192  # chunks read and chunked ahead of the embedder (bounded memory)

ProgressFn = Callable[[IngestProgress], None]


@dataclass
class _Prepared:
    candidate: Candidate
    file_hash: str
    nodes: list[TextNode]
    missing: list[int] = field(default_factory=list)  # indexes of nodes still without a vector
    language: str = "other"
    title: str = ""


def apply_plan(
    plan: Plan, engine: Engine, cache: EmbeddingCache | None, progress: Progress
) -> tuple[dict[str, int], set[str], list[FileProblem]]:
    """Carry out `plan`: remove deleted files, record touched ones, write the changes, then let
    the store index them. Returns chunk counts (written, embedded, reused), the ids of the files
    written, and every problem (the plan's, then those met reading)."""
    engine.shard.drop_staged()  # the unfinished large file of a killed run, if any
    for record in plan.deleted:
        engine.shard.delete_document(str(record["doc_id"]))
    for candidate in plan.touched:
        engine.shard.update_record(
            str(candidate.abs_path), {"size": candidate.size, "mtime_ns": candidate.mtime_ns}
        )
    problems = list(plan.problems)
    stats, written = _write_changes(plan, engine, cache, problems, progress)
    _optimize(engine, progress)  # without changes, only a check (or settings changed since)
    engine.shard.flush()
    return stats, written, problems


class Progress:
    """Counts behind the progress ticks, and the time spent embedding."""

    def __init__(self, callback: ProgressFn | None, files_total: int) -> None:
        self.callback = callback
        self.files_total = files_total
        self.files_done = 0
        self.chunks_total = 0  # chunks of the files to write (an estimate until all are read)
        self.chunks_estimated = True
        self.chunks_done = 0  # of those, chunks with a vector (embedded or reused)
        self.chunks_embedded = 0
        self.embed_seconds = 0.0
        self.unindexed = 0  # chunks written since the store last indexed

    def emit(self, phase: str, current: str = "") -> None:
        if self.callback is not None:
            self.callback(
                IngestProgress(
                    phase=phase,
                    files_done=self.files_done,
                    files_total=self.files_total,
                    chunks_done=self.chunks_done,
                    chunks_total=self.chunks_total,
                    embed_seconds=self.embed_seconds,
                    current=current,
                    chunks_embedded=self.chunks_embedded,
                    chunks_estimated=self.chunks_estimated,
                )
            )


def _write_changes(
    plan: Plan,
    engine: Engine,
    cache: EmbeddingCache | None,
    problems: list[FileProblem],
    progress: Progress,
) -> tuple[dict[str, int], set[str]]:
    stats = {"written": 0, "embedded": 0, "reused": 0, "ocr_pages": 0}
    written: set[str] = set()
    work: list[tuple[Candidate, str | None, str | None]] = [
        *((c, h, str(c.abs_path)) for c, h in plan.changed),
        *((c, h, str(old["doc_id"])) for old, c, h in plan.renamed),
        *((c, h, None) for c, h in plan.added),
    ]
    # Files stream through read -> embed -> write in windows of about EMBED_WINDOW new chunks, so
    # memory stays bounded and finished files are stored early.
    pending: list[tuple[_Prepared, str | None]] = []

    def prepare(candidate: Candidate, digest: str | None) -> tuple[Outcome, int]:
        return _prepare(candidate, digest, engine, progress)

    with ReadAhead(work, engine, progress, prepare, limit=READ_AHEAD_CHUNKS) as reads:
        for (candidate, _, reuse_from), outcome in reads:
            _index_if_grown(engine, progress)
            progress.emit("read", candidate.rel_path)
            if isinstance(outcome, NotText):
                if candidate.explicit:  # named on the command line: never a silent skip
                    problems.append(FileProblem(candidate.rel_path, "not a text file kb can read"))
                progress.files_done += 1
                continue
            if isinstance(outcome, UnreadableFile | OSError):
                reason = (
                    str(outcome)
                    if isinstance(outcome, UnreadableFile)
                    else file_problem("", outcome).reason
                )
                problems.append(FileProblem(candidate.rel_path, reason))
                progress.files_done += 1
                continue
            read, nodes = outcome
            # Pages left out of a file that was read (garbled, or scanned with OCR off): a line each.
            problems.extend(FileProblem(candidate.rel_path, note) for note in read.notes)
            stats["ocr_pages"] += read.ocr_pages
            if nodes is None:  # a large file: written in windows, staged
                stats["embedded"] += _embed(pending, engine, cache, progress)
                stats["written"] += _commit(pending, engine, progress, written)
                pending = []
                for key, value in _write_large(read, reuse_from, engine, cache, progress).items():
                    stats[key] += value
                written.add(str(candidate.abs_path))
                continue
            item = _Prepared(
                candidate,
                read.file_hash,
                nodes,
                list(range(len(nodes))),
                read.language,
                read.display_title,
            )
            reused = _fill_known_vectors(item, engine, cache, reuse_from)
            stats["reused"] += reused
            progress.chunks_done += reused
            pending.append((item, reuse_from))
            if sum(len(p.missing) for p, _ in pending) >= EMBED_WINDOW:
                stats["embedded"] += _embed(pending, engine, cache, progress)
                stats["written"] += _commit(pending, engine, progress, written)
                pending = []
    stats["embedded"] += _embed(pending, engine, cache, progress)
    stats["written"] += _commit(pending, engine, progress, written)
    return stats, written


def _prepare(
    candidate: Candidate, digest: str | None, engine: Engine, progress: Progress
) -> tuple[Outcome, int]:
    """A file read, chunked and (unless large: built window by window later) turned into nodes;
    or why it was skipped. With its chunk count. Runs in the read-ahead thread."""
    try:
        read = _read(candidate, digest, engine, progress)
    except (NotText, UnreadableFile, OSError) as err:
        return err, 0
    chunks = len(read.chunks)
    return (read, None if chunks > LARGE_FILE_CHUNKS else _nodes(read, 0, chunks, engine)), chunks


@dataclass
class _Read:
    """A file read and chunked, before any node is built (a large file's nodes come in windows)."""

    candidate: Candidate
    file_hash: str
    kind: str
    title: str  # the loaded title, embedded in front of each chunk ("" if none)
    display_title: str
    language: str
    chunks: list[Chunk]
    notes: tuple[str, ...] = ()  # parts left out, one line each ("p. 3: garbled text layer ...")
    ocr_pages: int = 0


def _read(
    candidate: Candidate, digest: str | None, engine: Engine, progress: Progress | None = None
) -> _Read:
    data = candidate.abs_path.read_bytes()
    file_hash = digest or hashlib.blake2b(data, digest_size=16).hexdigest()

    def on_page(done: int, total: int) -> None:
        if progress is not None:
            progress.emit("read", f"{candidate.rel_path} (OCR, page {done} of {total})")

    options = LoadOptions(ocr=engine.settings.ingest.ocr, on_page=on_page)
    loaded = load(candidate.abs_path, candidate.kind, data, options)
    del data
    cfg = engine.settings.ingest
    chunks = chunk_text(
        loaded,
        count_tokens=engine.embedder.count_tokens,
        chunk_size=cfg.chunk_size - CONTEXT_TOKENS,
        chunk_overlap=cfg.chunk_overlap,
    )
    if not chunks:
        raise UnreadableFile("no text in file")
    return _Read(
        candidate,
        file_hash,
        loaded.kind,
        loaded.title,
        loaded.title or candidate.abs_path.name,  # for display; embeddings see loaded.title
        detect_language(loaded.text[:20000]),
        chunks,
        loaded.notes,
        loaded.ocr_pages,
    )


def _nodes(read: _Read, start: int, stop: int, engine: Engine) -> list[TextNode]:
    """The nodes of chunks `start` to `stop` of a file, with their ids, metadata and hashes."""
    from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode

    count = engine.embedder.count_tokens
    candidate = read.candidate
    doc_id = str(candidate.abs_path)
    nodes: list[TextNode] = []
    for index in range(start, stop):
        chunk = read.chunks[index]
        context = _context_line(read.title, chunk.heading_path, count)
        metadata: dict[str, Any] = {
            "path": candidate.rel_path,
            "abs_path": doc_id,
            "root": str(candidate.root),
            "file_type": read.kind,
            "title": read.display_title,
            "headings": list(chunk.heading_path),
            "page": chunk.page,
            "location": chunk.location or None,
            "line_start": chunk.line_start,
            "line_end": chunk.line_end,
            "start_char": chunk.start,
            "end_char": chunk.end,
            "chunk_index": index,
            "file_hash": read.file_hash,
            "lang": detect_language(chunk.text),
            "context": context,
        }
        node = TextNode(
            id_=str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\n{read.file_hash}\n{index}")),
            text=chunk.text,
            metadata=metadata,
            excluded_embed_metadata_keys=[k for k in metadata if k != "context"],
            excluded_llm_metadata_keys=[k for k in metadata if k != "context"],
            metadata_template="{value}",
            text_template="{metadata_str}\n\n{content}" if context else "{content}",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)},
        )
        node.metadata["chunk_hash"] = text_hash(node.get_content(metadata_mode=MetadataMode.EMBED))
        node.excluded_embed_metadata_keys.append("chunk_hash")
        node.excluded_llm_metadata_keys.append("chunk_hash")
        nodes.append(node)
    return nodes


def _context_line(title: str, headings: Sequence[str], count: Callable[[str], int]) -> str:
    """`title › heading › subheading`, cut to fit the tokens reserved for it.

    It leaves out the file's name and folder, so a renamed or moved file keeps its vectors.
    """
    parts = [title, *headings] if title and (not headings or headings[0] != title) else [*headings]
    line = " › ".join(part for part in parts if part)
    while len(line) > 8 and count(line) > CONTEXT_TOKENS - 4:
        line = line[: int(len(line) * 0.8)].rstrip() + "…"
    return line


def _fill_known_vectors(
    item: _Prepared, engine: Engine, cache: EmbeddingCache | None, reuse_from: str | None
) -> int:
    """Give nodes the vectors already known (old chunks of the file, the cache); returns how many."""
    known: dict[str, list[float]] = {}
    if reuse_from is not None:
        known.update(engine.shard.document_vectors(reuse_from))
    hashes = [str(node.metadata["chunk_hash"]) for node in item.nodes]
    if cache is not None:
        known.update(cache.get_many(h for h in hashes if h not in known))
    for index, node in enumerate(item.nodes):
        vector = known.get(hashes[index])
        if vector is not None:
            node.embedding = vector
    item.missing = [i for i, node in enumerate(item.nodes) if node.embedding is None]
    return len(item.nodes) - len(item.missing)


def _embed(
    batch: list[tuple[_Prepared, str | None]],
    engine: Engine,
    cache: EmbeddingCache | None,
    progress: Progress,
) -> int:
    todo = [(item, i) for item, _ in batch for i in item.missing]
    if not todo:
        return 0
    from llama_index.core.schema import MetadataMode

    embedder = engine.embedder
    by_hash: dict[str, str] = {}
    for item, i in todo:
        node = item.nodes[i]
        by_hash.setdefault(str(node.metadata["chunk_hash"]), node.get_content(MetadataMode.EMBED))
    hashes = list(by_hash)
    uses = Counter(str(item.nodes[i].metadata["chunk_hash"]) for item, i in todo)
    vectors: dict[str, list[float]] = {}
    step = embedder.embed_batch_size
    for start in range(0, len(hashes), step):
        keys = hashes[start : start + step]
        began = time.perf_counter()
        rows = embedder.get_text_embedding_batch([by_hash[k] for k in keys])
        progress.embed_seconds += time.perf_counter() - began
        vectors.update(zip(keys, rows, strict=True))
        if cache is not None:  # at once: if a later batch fails, a rerun need not pay again
            cache.put_many(list(zip(keys, rows, strict=True)))
        progress.chunks_embedded += len(keys)
        progress.chunks_done += sum(uses[k] for k in keys)
        progress.emit("embed", todo[0][0].candidate.rel_path)
    for item, i in todo:
        node = item.nodes[i]
        node.embedding = vectors[str(node.metadata["chunk_hash"])]
    for item, _ in batch:
        item.missing = []
    return len(hashes)


def _write_large(
    read: _Read,
    reuse_from: str | None,
    engine: Engine,
    cache: EmbeddingCache | None,
    progress: Progress,
) -> dict[str, int]:
    """A file of many chunks, embedded and written LARGE_WINDOW chunks at a time as a staged
    version, then made visible in one step: memory stays bounded and the file is still never seen
    half-written. Known vectors come from the cache (a whole document's old vectors could be as big
    as the file)."""
    doc_id = str(read.candidate.abs_path)
    engine.shard.drop_staged(doc_id)  # what a killed run left of this file
    stats = {"written": 0, "embedded": 0, "reused": 0}
    for start in range(0, len(read.chunks), LARGE_WINDOW):
        nodes = _nodes(read, start, min(start + LARGE_WINDOW, len(read.chunks)), engine)
        item = _Prepared(
            read.candidate, read.file_hash, nodes, [], read.language, read.display_title
        )
        reused = _fill_known_vectors(item, engine, cache, None)
        stats["reused"] += reused
        progress.chunks_done += reused
        stats["embedded"] += _embed([(item, None)], engine, cache, progress)
        engine.store.stage(doc_id, nodes)
        stats["written"] += len(nodes)
        # Not indexed between windows: making the file visible rewrites its staged points, which
        # moves indexed ones back into the growing segment (2.1 GB at 100 MB against 1.8 GB).
        progress.unindexed += len(nodes)
        progress.emit("write", read.candidate.rel_path)
    record = _record(read.candidate, read.file_hash, read.kind, read.display_title, read.language)
    engine.store.commit_staged(doc_id, {**record, "chunks": len(read.chunks)})
    if reuse_from is not None and reuse_from != doc_id:
        engine.shard.delete_document(reuse_from)
    progress.files_done += 1
    progress.emit("write", read.candidate.rel_path)
    return stats


def _index_if_grown(engine: Engine, progress: Progress) -> None:
    """A long ingest indexes as it goes, every 2x `[store] index_after` chunks written, between
    files: the store's growing segment, and its memory, stay bounded."""
    if progress.unindexed >= 2 * engine.settings.store.index_after:
        _optimize(engine, progress)


def _optimize(engine: Engine, progress: Progress) -> None:
    """Let the store index what has grown past `[store] index_after` (nothing, when small)."""
    progress.emit("index")
    engine.shard.optimize()
    progress.unindexed = 0


def _record(
    candidate: Candidate, file_hash: str, kind: str, title: str, language: str
) -> dict[str, Any]:
    """A file's record, without its chunk count."""
    return {
        "path": candidate.rel_path,
        "abs_path": str(candidate.abs_path),
        "root": str(candidate.root),
        "file_type": kind,
        "title": title,
        "lang": language,
        "file_hash": file_hash,
        "size": candidate.size,
        "mtime_ns": candidate.mtime_ns,
        "indexed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _commit(
    batch: list[tuple[_Prepared, str | None]],
    engine: Engine,
    progress: Progress,
    written_docs: set[str],
) -> int:
    written = 0
    for item, reuse_from in batch:
        candidate = item.candidate
        doc_id = str(candidate.abs_path)
        kind = str(item.nodes[0].metadata["file_type"])
        record = _record(candidate, item.file_hash, kind, item.title, item.language)
        record["chunks"] = len(item.nodes)
        engine.store.replace_document(doc_id, item.nodes, record)
        if reuse_from is not None and reuse_from != doc_id:
            engine.shard.delete_document(reuse_from)
        written += len(item.nodes)
        progress.unindexed += len(item.nodes)
        written_docs.add(doc_id)
        progress.files_done += 1
        progress.emit("write", candidate.rel_path)
    return written
