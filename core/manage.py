"""`kb sources` and `kb forget`: what is indexed, and removing files or folders from the index."""

from __future__ import annotations

from pathlib import Path

from core.engine import Engine
from core.errors import KbError
from core.results import ForgetReport, SourceFile


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
