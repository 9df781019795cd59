"""What `--json` prints for a result: one plain dict per result type, shared by the commands and
`kb serve --mcp` (its tools return the same shapes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.results import Answer, SourceFile
    from core.retrieve import Retrieval


def sources_payload(files: Sequence[SourceFile]) -> dict[str, Any]:
    """`kb sources --json`: the indexed files."""
    return {"files": [asdict(f) for f in files], "count": len(files)}


def retrieval_payload(retrieval: Retrieval) -> dict[str, Any]:
    """`kb ask --retrieve-only --json`: the ranked chunks."""
    return {
        "question": retrieval.query.question,
        "mode": retrieval.query.mode,
        "languages": list(retrieval.languages),
        "best_score": retrieval.best_dense,
        "sources": [asdict(s) for s in retrieval.sources],
        "timings": retrieval.timings,
    }


def answer_payload(answer: Answer) -> dict[str, Any]:
    """`kb ask --json`: the answer, its sources and whether the knowledge base answered."""
    return {**asdict(answer), "found": answer.found}
