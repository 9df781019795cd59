"""Planning an ingest: scanned files against what is indexed, by stat then content hash.

A file whose size and mtime match its record is unchanged without being read; one whose hash
matches a file gone from disk is a rename (its vectors are reused); files gone from an ingested
root are deleted, and only those certainly gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings
from core.ingest.scan import Candidate, ScanLog, file_problem, is_under, relative, scan
from core.results import IngestReport, RenamedFile


@dataclass
class Plan(ScanLog):
    """What an ingest will do: the scan's problems and ignored files, and each file's fate."""

    added: list[tuple[Candidate, str | None]] = field(default_factory=list)  # (file, known hash)
    changed: list[tuple[Candidate, str | None]] = field(default_factory=list)
    renamed: list[tuple[dict[str, Any], Candidate, str]] = field(default_factory=list)  # old, new
    deleted: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[Candidate] = field(default_factory=list)
    touched: list[Candidate] = field(default_factory=list)


def plan_report(
    plan: Plan, roots: Sequence[Path], settings: Settings, *, dry_run: bool
) -> IngestReport:
    """The report of a plan, before anything is written (a dry run's whole answer)."""
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


def make_plan(
    roots: Sequence[Path], records: dict[str, dict[str, Any]], settings: Settings
) -> Plan:
    """Decide each scanned file's fate against the stored `records` (by document id)."""
    plan = Plan()
    seen: set[str] = set()
    candidates: list[Candidate] = []
    for root in roots:
        for item in scan(root, settings, plan):
            if isinstance(item, Candidate):
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
        and any(is_under(Path(doc_id), root) for root in roots)
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
            plan.problems.append(file_problem(candidate.rel_path, err))
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


def _same_stat(record: dict[str, Any], candidate: Candidate) -> bool:
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
        if is_under(Path(doc_id), root):
            return relative(Path(doc_id), root)
    return doc_id
