"""`kb ingest`: scan folders, plan against what is indexed, then read, chunk, embed and store the changes.

Incremental by content hash: unchanged files cost a stat; a renamed or moved file reuses its stored
vectors; a changed file is re-chunked and only chunks whose text is new are embedded (the rest come from
its old vectors or the embedding cache); files gone from an ingested root are removed, and only from
that root. Each file's chunks are written all at once, so a file is never partly indexed.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cache import EmbeddingCache, text_hash
from core.chunking import Chunk, chunk_text
from core.config import Settings, kb_home
from core.engine import Engine, knowledge_base_exists, open_engine
from core.errors import ConfigError
from core.loaders import SNIFF_BYTES, NotText, UnreadableFile, kind_of, load, looks_like_text
from core.results import FileProblem, IngestProgress, IngestReport, RenamedFile
from core.text import detect_language

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from core.providers import KbEmbedding

CHUNK_NAMESPACE = uuid.UUID("0b7d7f8e-61a4-4f7e-8d7e-3f1c2f0e9b21")
CONTEXT_TOKENS = 48  # reserved for the title/heading line embedded in front of each chunk
EMBED_WINDOW = 64  # new chunks embedded between file commits
LARGE_FILE_CHUNKS = 512  # a file of more chunks is written in windows, staged (bounded memory)
LARGE_WINDOW = 256  # chunks of a large file built, embedded and written at a time
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj"})  # never indexed, even with --hidden

ProgressFn = Callable[[IngestProgress], None]


@dataclass(frozen=True)
class _Candidate:
    abs_path: Path
    rel_path: str
    root: Path
    kind: str
    size: int
    mtime_ns: int


@dataclass
class _Prepared:
    candidate: _Candidate
    file_hash: str
    nodes: list[TextNode]
    missing: list[int] = field(default_factory=list)  # indexes of nodes still without a vector
    language: str = "other"
    title: str = ""


@dataclass
class _Plan:
    added: list[tuple[_Candidate, str | None]] = field(default_factory=list)  # (file, known hash)
    changed: list[tuple[_Candidate, str | None]] = field(default_factory=list)
    renamed: list[tuple[dict[str, Any], _Candidate, str]] = field(default_factory=list)  # old, new
    deleted: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[_Candidate] = field(default_factory=list)
    touched: list[_Candidate] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    ignored: int = 0


def resolve_roots(paths: Sequence[Path]) -> list[Path]:
    """Absolute, existing ingest roots; a missing path is a usage error."""
    roots: list[Path] = []
    for path in paths:
        if not path.exists():
            hint = "check the path" if not path.is_symlink() else "the link points nowhere"
            raise ConfigError(f"no such file or folder: {path}", hint=hint)
        resolved = path.resolve()
        if resolved not in roots:
            roots.append(resolved)
    # A root inside another root adds nothing but ambiguity: keep the outer one.
    return [r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)]


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
        return _report(_make_plan(roots, {}, settings), roots, settings, dry_run=True)
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
    plan = _make_plan(roots, records, settings)
    report = _report(plan, roots, settings, dry_run=dry_run)
    if dry_run:
        return replace(report, seconds=time.perf_counter() - started)
    progress = _Progress(
        on_progress, files_total=len(plan.added) + len(plan.changed) + len(plan.renamed)
    )
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
        chunks_total=engine.shard.count(),
        files_total=engine.shard.count("file"),
        embed_seconds=progress.embed_seconds,
        seconds=time.perf_counter() - started,
    )


# -- scanning and planning ----------------------------------------------------------------------


def _report(
    plan: _Plan, roots: Sequence[Path], settings: Settings, *, dry_run: bool
) -> IngestReport:
    return IngestReport(
        kb=settings.kb.name,
        kb_dir=str(settings.kb_dir()),
        roots=tuple(str(root) for root in roots),
        dry_run=dry_run,
        added=tuple(c.rel_path for c, _ in plan.added),
        changed=tuple(c.rel_path for c, _ in plan.changed),
        renamed=tuple(RenamedFile(str(old["path"]), new.rel_path) for old, new, _ in plan.renamed),
        deleted=tuple(_display(str(r["doc_id"]), roots) for r in plan.deleted),
        unchanged=len(plan.unchanged),
        ignored=plan.ignored,
        problems=tuple(plan.problems),
    )


def _make_plan(
    roots: Sequence[Path], records: dict[str, dict[str, Any]], settings: Settings
) -> _Plan:
    plan = _Plan()
    seen: set[str] = set()
    candidates: list[_Candidate] = []
    for root in roots:
        for item in _scan(root, settings, plan):
            if isinstance(item, _Candidate):
                key = str(item.abs_path)
                if key not in seen:
                    candidates.append(item)
            else:
                key = str(item.absolute())
            seen.add(key)
    # Only files that are gone from disk are deleted: one that is filtered out, unreadable, or
    # in a folder that cannot be listed keeps what was indexed (`kb forget` removes it).
    in_scope = {
        doc_id: record
        for doc_id, record in records.items()
        if doc_id not in seen
        and any(_is_under(Path(doc_id), root) for root in roots)
        and _gone(Path(doc_id))
    }
    deleted_by_hash: dict[str, list[dict[str, Any]]] = {}
    for gone in in_scope.values():
        deleted_by_hash.setdefault(str(gone.get("file_hash")), []).append(gone)
    for candidate in candidates:
        record = records.get(str(candidate.abs_path))
        if record is not None and _same_stat(record, candidate):
            plan.unchanged.append(candidate)
            continue
        try:
            digest = _hash_file(candidate.abs_path)
        except OSError as err:
            plan.problems.append(_problem(candidate.rel_path, err))
            continue
        if record is None:
            movers = deleted_by_hash.get(digest)
            if movers:
                source = movers.pop()
                plan.renamed.append((source, candidate, digest))
                del in_scope[str(source["doc_id"])]
            else:
                plan.added.append((candidate, digest))
        elif record.get("file_hash") == digest:
            plan.unchanged.append(candidate)
            # Same bytes, new mtime: record the new mtime so the next run skips the hash.
            plan.touched.append(candidate)
        else:
            plan.changed.append((candidate, digest))
    plan.deleted = sorted(in_scope.values(), key=lambda r: str(r.get("path")))
    return plan


def _scan(root: Path, settings: Settings, plan: _Plan) -> Iterator[_Candidate | Path]:
    """Files under `root` that pass the filters; a bare Path marks a file seen but not readable."""
    cfg = settings.ingest
    if root.is_file():
        candidate = _candidate(root, root.name, root.parent, cfg.max_file_mb, plan)
        if candidate is not None:
            yield candidate
        else:
            yield root
        return
    gitignore = _GitIgnore(root, plan) if cfg.gitignore else None

    def on_error(err: OSError) -> None:
        where = Path(err.filename) if err.filename else root
        plan.problems.append(_problem(_printable(_rel(where, root)), err))

    for folder, dirs, files in os.walk(root, onerror=on_error):
        here = Path(folder)
        if gitignore is not None:
            gitignore.load(here)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in VCS_DIRS
            and (cfg.hidden or not d.startswith("."))
            and not (gitignore is not None and gitignore.ignores(here / d, is_dir=True))
        )
        for name in sorted(files):
            path = here / name
            rel = _rel(path, root)
            if not cfg.hidden and name.startswith("."):
                continue
            if gitignore is not None and gitignore.ignores(path, is_dir=False):
                continue
            if cfg.include and not any(_glob(rel, pattern) for pattern in cfg.include):
                continue
            if any(_glob(rel, pattern) for pattern in cfg.exclude):
                continue
            candidate = _candidate(path, rel, root, cfg.max_file_mb, plan)
            yield candidate if candidate is not None else path


class _GitIgnore:
    """`.gitignore` files as git reads them: every folder's file from the repository top down to
    the path, the deepest decisive pattern winning (so `!keep.log` below re-includes)."""

    def __init__(self, root: Path, plan: _Plan) -> None:
        self.plan = plan
        self.root = root
        self.specs: dict[Path, Any] = {}
        self._chains: dict[Path, list[tuple[str, Any]]] = {}
        top = next((p for p in (root, *root.parents) if (p / ".git").exists()), root)
        for folder in reversed((root, *root.parents)):
            if _is_under(folder, top) and folder != root:
                self.load(folder)

    def load(self, folder: Path) -> None:
        import pathspec

        path = folder / ".gitignore"
        if not path.is_file():
            return
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            self.plan.problems.append(_problem(_printable(_rel(path, self.root)), err))
            return
        self.specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines)
        self._chains.clear()

    def ignores(self, path: Path, *, is_dir: bool) -> bool:
        text = path.as_posix()
        for folder, spec in self._chain(path.parent):  # deepest first
            rel = text[len(folder) + 1 :] + ("/" if is_dir else "")
            include = spec.check_file(rel).include
            if include is not None:
                return bool(include)
        return False

    def _chain(self, folder: Path) -> list[tuple[str, Any]]:
        """The specs that apply inside `folder`, deepest first (computed once per folder)."""
        chain = self._chains.get(folder)
        if chain is None:
            chain = [
                (f.as_posix(), self.specs[f]) for f in (folder, *folder.parents) if f in self.specs
            ]
            self._chains[folder] = chain
        return chain


def _candidate(path: Path, rel: str, root: Path, max_mb: float, plan: _Plan) -> _Candidate | None:
    kind = kind_of(path)
    if kind is None:
        plan.ignored += 1
        return None
    if _printable(str(path)) != str(path):
        # A name in a legacy encoding (GBK from a Windows zip, ...): the index stores paths as
        # UTF-8 text, so the file is reported with its bytes escaped and left for renaming.
        plan.problems.append(FileProblem(_printable(rel), "file name is not valid UTF-8"))
        return None
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "file vanished while scanning"
        plan.problems.append(FileProblem(rel, reason))
        return None
    except OSError as err:
        loop = err.errno == errno.ELOOP
        plan.problems.append(FileProblem(rel, "symbolic link loop") if loop else _problem(rel, err))
        return None
    if not stat.S_ISREG(info.st_mode):
        plan.ignored += 1
        return None
    if info.st_size > max_mb * 1024 * 1024:
        plan.problems.append(
            FileProblem(rel, f"larger than {max_mb:g} MB (raise [ingest].max_file_mb to read it)")
        )
        return None
    if not os.access(path, os.R_OK):
        plan.problems.append(FileProblem(rel, "permission denied"))
        return None
    if kind == "sniff" and not _sniff(path):
        plan.ignored += 1
        return None
    return _Candidate(path.absolute(), rel, root, kind, info.st_size, info.st_mtime_ns)


def _printable(name: str) -> str:
    """A file name as UTF-8 text; bytes that are not UTF-8 appear as `\\xb1` escapes."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _sniff(path: Path) -> bool:
    """`looks_like_text` on a file's first bytes; a file that cannot be read is left to the reader."""
    try:
        with path.open("rb") as handle:
            return looks_like_text(handle.read(SNIFF_BYTES))
    except OSError:
        return True


def _glob(rel: str, pattern: str) -> bool:
    """A glob against the root-relative path, or against the file name when it has no slash."""
    if "/" not in pattern:
        return fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatch(rel, pattern)


def _same_stat(record: dict[str, Any], candidate: _Candidate) -> bool:
    return record.get("size") == candidate.size and record.get("mtime_ns") == candidate.mtime_ns


def _hash_file(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gone(path: Path) -> bool:
    """True only when the file certainly no longer exists (not when it cannot be checked)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _display(doc_id: str, roots: Sequence[Path]) -> str:
    """A stored file's path relative to the ingest root it falls under."""
    for root in roots:
        if _is_under(Path(doc_id), root):
            return _rel(Path(doc_id), root)
    return doc_id


def _is_under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or path.name
    except ValueError:
        return str(path)


def _problem(rel: str, err: OSError) -> FileProblem:
    if isinstance(err, PermissionError):
        return FileProblem(rel, "permission denied")
    return FileProblem(rel, err.strerror or str(err))


# -- reading, embedding, writing ----------------------------------------------------------------


class _Progress:
    def __init__(self, callback: ProgressFn | None, files_total: int) -> None:
        self.callback = callback
        self.files_total = files_total
        self.files_done = 0
        self.chunks_total = 0
        self.chunks_done = 0
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
                )
            )


def _write_changes(
    plan: _Plan,
    engine: Engine,
    cache: EmbeddingCache | None,
    problems: list[FileProblem],
    progress: _Progress,
) -> tuple[dict[str, int], set[str]]:
    stats = {"written": 0, "embedded": 0, "reused": 0}
    written: set[str] = set()
    work: list[tuple[_Candidate, str | None, str | None]] = [
        *((c, h, str(c.abs_path)) for c, h in plan.changed),
        *((c, h, str(old["doc_id"])) for old, c, h in plan.renamed),
        *((c, h, None) for c, h in plan.added),
    ]
    # Files stream through read -> embed -> write in windows of about EMBED_WINDOW new chunks, so
    # memory stays bounded and finished files are stored early. The chunk total is extrapolated from
    # the bytes read so far until every file has been read.
    total_bytes = sum(c.size for c, _, _ in work) or 1
    bytes_read = 0
    chunks_seen = 0
    pending: list[tuple[_Prepared, str | None]] = []
    for candidate, digest, reuse_from in work:
        _index_if_grown(engine, progress)
        progress.emit("read", candidate.rel_path)
        bytes_read += candidate.size
        try:
            read = _read(candidate, digest, engine)
        except (UnreadableFile, OSError) as err:
            reason = str(err) if isinstance(err, UnreadableFile) else _problem("", err).reason
            problems.append(FileProblem(candidate.rel_path, reason))
            progress.files_done += 1
            continue
        except NotText:
            progress.files_done += 1
            continue
        if len(read.chunks) > LARGE_FILE_CHUNKS:
            stats["embedded"] += _embed(pending, engine, cache, progress)
            stats["written"] += _commit(pending, engine, progress, written)
            pending = []
            chunks_seen += len(read.chunks)
            progress.chunks_total = round(chunks_seen * total_bytes / max(bytes_read, 1))
            for key, value in _write_large(read, reuse_from, engine, cache, progress).items():
                stats[key] += value
            written.add(str(candidate.abs_path))
            continue
        nodes = _nodes(read, 0, len(read.chunks), engine)
        item = _Prepared(
            candidate,
            read.file_hash,
            nodes,
            list(range(len(nodes))),
            read.language,
            read.display_title,
        )
        stats["reused"] += _fill_known_vectors(item, engine, cache, reuse_from)
        chunks_seen += len(item.missing)
        progress.chunks_total = round(chunks_seen * total_bytes / max(bytes_read, 1))
        pending.append((item, reuse_from))
        if sum(len(p.missing) for p, _ in pending) >= EMBED_WINDOW:
            stats["embedded"] += _embed(pending, engine, cache, progress)
            stats["written"] += _commit(pending, engine, progress, written)
            pending = []
    progress.chunks_total = chunks_seen
    stats["embedded"] += _embed(pending, engine, cache, progress)
    stats["written"] += _commit(pending, engine, progress, written)
    return stats, written


@dataclass
class _Read:
    """A file read and chunked, before any node is built (a large file's nodes come in windows)."""

    candidate: _Candidate
    file_hash: str
    kind: str
    title: str  # the loaded title, embedded in front of each chunk ("" if none)
    display_title: str
    language: str
    chunks: list[Chunk]


def _read(candidate: _Candidate, digest: str | None, engine: Engine) -> _Read:
    data = candidate.abs_path.read_bytes()
    file_hash = digest or hashlib.blake2b(data, digest_size=16).hexdigest()
    loaded = load(candidate.abs_path, candidate.kind, data)
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
    progress: _Progress,
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
        progress.chunks_done += len(keys)
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
    progress: _Progress,
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
        stats["reused"] += _fill_known_vectors(item, engine, cache, None)
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


def _index_if_grown(engine: Engine, progress: _Progress) -> None:
    """A long ingest indexes as it goes, every 2x `[store] index_after` chunks written, between
    files: the store's growing segment, and its memory, stay bounded."""
    if progress.unindexed >= 2 * engine.settings.store.index_after:
        _optimize(engine, progress)


def _optimize(engine: Engine, progress: _Progress) -> None:
    """Let the store index what has grown past `[store] index_after` (nothing, when small)."""
    progress.emit("index")
    engine.shard.optimize()
    progress.unindexed = 0


def _record(
    candidate: _Candidate, file_hash: str, kind: str, title: str, language: str
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
    progress: _Progress,
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
