"""The sources of the last answer, kept in the knowledge base's folder for `kb open N`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from core.config import Settings
from core.errors import ConfigError, KbError
from core.results import Source

FILE = "last-answer.json"


@dataclass(frozen=True)
class Place:
    """Where source [n] of the last answer is: a file, and the line or page it starts at."""

    n: int
    path: str
    abs_path: str
    file_type: str = ""
    line: int | None = None
    page: int | None = None


def save_sources(settings: Settings, sources: Sequence[Source]) -> None:
    """Remember where the answer's sources are (replacing the previous answer's)."""
    places = [
        {
            "n": s.n,
            "path": s.path,
            "abs_path": s.abs_path,
            "file_type": s.file_type,
            "line": s.line_start,
            "page": s.page,
        }
        for s in sources
    ]
    folder = settings.kb_dir()
    if not folder.is_dir():
        return
    temporary = folder / f".{FILE}.{os.getpid()}"
    temporary.write_text(json.dumps({"sources": places}, ensure_ascii=False), encoding="utf-8")
    temporary.replace(folder / FILE)


def last_source(settings: Settings, n: int) -> Place:
    """Source [n] of the last answer from this knowledge base."""
    path = settings.kb_dir() / FILE
    try:
        places = json.loads(path.read_text(encoding="utf-8"))["sources"]
    except (OSError, ValueError, KeyError) as err:
        raise KbError(
            f"no answer to open a source of yet (knowledge base '{settings.kb.name}')",
            hint='ask something first: kb ask "QUESTION"',
        ) from err
    for place in places:
        if place.get("n") == n:
            return Place(
                n=n,
                path=str(place.get("path", "")),
                abs_path=str(place.get("abs_path", "")),
                file_type=str(place.get("file_type", "")),
                line=place.get("line"),
                page=place.get("page"),
            )
    raise ConfigError(
        f"the last answer has no source [{n}]",
        hint=f"pick one of {', '.join(str(p.get('n')) for p in places)}" if places else "",
    )
