"""`kb sources`, `kb forget` and `kb migrate`: what is indexed, removing files or folders from the
index, and copying a knowledge base to a Qdrant server."""

from __future__ import annotations

import time
from pathlib import Path

from core.config import Settings
from core.engine import (
    Engine,
    collection_name,
    drop_server_collection,
    open_engine,
    open_store,
)
from core.errors import ConfigError, KbError
from core.results import ForgetReport, MigrateReport, SourceFile

COPY_BATCH = 256  # points per write to the server


def list_sources(engine: Engine) -> list[SourceFile]:
    """Every indexed file, sorted by root and path."""
    files = [
        SourceFile(
            path=str(r.get("path", "")),
            abs_path=str(r.get("abs_path", r.get("doc_id", ""))),
            root=str(r.get("root", "")),
            file_type=str(r.get("file_type", "")),
            lang=str(r.get("lang", "")),
            chunks=int(r.get("chunks", 0)),
            size=int(r.get("size", 0)),
            indexed_at=str(r.get("indexed_at", "")),
        )
        for r in engine.shard.records()
    ]
    return sorted(files, key=lambda f: (f.root, f.path))


def forget(paths: list[Path], engine: Engine) -> ForgetReport:
    """Remove the named files, or every file under the named folders, from the index."""
    targets = [
        Path(p).absolute().resolve() if Path(p).exists() else Path(p).absolute() for p in paths
    ]
    removed: list[str] = []
    chunks = 0
    for record in engine.shard.records():
        doc = Path(str(record["doc_id"]))
        if any(doc == t or doc.is_relative_to(t) for t in targets):
            engine.shard.delete_document(str(record["doc_id"]))
            removed.append(str(record.get("path", doc)))
            chunks += int(record.get("chunks", 0))
    if not removed:
        raise KbError(
            f"nothing indexed under {', '.join(map(str, paths))}",
            hint="see `kb sources` for what is indexed",
        )
    engine.shard.flush()
    return ForgetReport(tuple(sorted(removed)), chunks)


def migrate(
    settings: Settings, url: str, *, collection: str = "", replace: bool = False
) -> MigrateReport:
    """Copy the embedded knowledge base to a Qdrant server's collection, vectors and all: nothing is
    embedded again. The collection is created with `[store] shards` and `replicas`; an existing
    one that already holds files is left alone unless `replace`."""
    started = time.perf_counter()
    if not url:
        raise ConfigError("kb migrate needs a server url", hint="kb migrate --to http://HOST:6333")
    source_settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"backend": "edge"})}
    )
    target = collection or collection_name(settings)
    with open_engine(source_settings, purpose="manage") as engine:
        meta = dict(engine.shard.meta)
        if replace:
            drop_server_collection(settings, url, target)
        server = open_store(settings, meta, create=True, url=url, collection=target)
        try:
            if server.count("file"):
                raise KbError(
                    f"collection {target} at {url} already holds a knowledge base",
                    hint="pick another with --collection, or replace it with --replace",
                )
            batch = []
            for point in engine.shard.points(vectors=True):
                batch.append(point)
                if len(batch) >= COPY_BATCH:
                    server.put_points(batch)
                    batch = []
            server.put_points(batch)
            files, chunks = server.count("file"), server.count("chunk")
            expected = (engine.shard.count("file"), engine.shard.count("chunk"))
        finally:
            server.close()
    if (files, chunks) != expected:
        raise KbError(
            f"the copy at {url} holds {files} files and {chunks} chunks, "
            f"the knowledge base {expected[0]} and {expected[1]}",
            hint="run kb migrate --replace again",
        )
    return MigrateReport(
        kb=settings.kb.name,
        source=str(source_settings.kb_dir()),
        url=url,
        collection=target,
        files=files,
        chunks=chunks,
        seconds=time.perf_counter() - started,
    )
