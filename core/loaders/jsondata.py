"""JSON and JSON Lines (stdlib json): key paths and values as text, `user.name: 张三`.

Arrays of records read as one record per line (`id: 7; name: 张三; tags: a, b`) or, for long
records, one per paragraph; JSON Lines one record per line, located by line number. Comments and
trailing commas (tsconfig.json, VS Code settings, .jsonc) are tolerated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile
from core.loaders.spans import SPAN_CHARS, TextBuilder, grouped, label_range
from core.loaders.text import decode

MAX_CHARS = 10_000_000  # of text made from one file; the rest is left out, with a note
MAX_LIST = 100  # items of a list of plain values shown (`tags: a, b, c, … (400 more)`)
ONE_LINE = 300  # a record up to this long is one line of `key: value` pairs
_DEPTH = 4  # how deep a large value is opened into separately located parts
_JSONC = re.compile(r'("(?:\\.|[^"\\])*")|(//[^\n]*|/\*.*?\*/)|(,)(?=\s*[}\]])', re.DOTALL)


def load_json(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    text = decode(data)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _lines(text, kind)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as strict:
        if strict.msg == "Extra data" and strict.lineno > 1:  # JSON Lines named .json
            return _lines(text, kind)
        try:
            value = json.loads(_JSONC.sub(_uncomment, text))
        except json.JSONDecodeError as err:
            raise UnreadableFile(
                f"invalid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
            ) from err
    builder = TextBuilder()
    if isinstance(value, list):
        items = ((_record(v), i) for i, v in enumerate(value, start=1))
        for texts, first, last in grouped(_bounded(items, builder)):
            builder.add(_paragraphs(texts), label_range(first, last, "record", "records"))
    elif isinstance(value, dict):
        for texts, first_path, last_path in grouped(_bounded(_parts(value, "", 0), builder)):
            where = _where(first_path, last_path)
            builder.add(_paragraphs(texts), where, re.split(r"[.\[]", first_path)[0])
    else:
        builder.add(_scalar(value), "value")
    return builder.result(kind)


def _lines(text: str, kind: str) -> LoadedText:
    """JSON Lines: one record a line; a bad line is a note, a file of bad lines unreadable."""
    builder = TextBuilder()
    bad: list[str] = []

    def records() -> Iterator[tuple[str, int]]:
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append(f"line {number}: invalid JSON (column {err.colno}: {err.msg})")
                continue
            yield _record(value), number

    for texts, first, last in grouped(_bounded(records(), builder)):
        builder.add(_paragraphs(texts), label_range(first, last, "line", "lines"))
    if bad and not builder.spans:
        raise UnreadableFile(f"invalid JSON Lines ({bad[0]})")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        builder.notes.append(f"skipped {bad[0]}{more}")
    return builder.result(kind)


def _bounded(items: Iterator[tuple[str, Any]], builder: TextBuilder) -> Iterator[tuple[str, Any]]:
    size = 0
    for text, label in items:
        size += len(text) + 2
        if size > MAX_CHARS:
            builder.notes.append(f"cut at {label}: past {MAX_CHARS:,} characters of text")
            return
        yield text, label


def _parts(value: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    """A container's children as (text, key path); a large child is opened into its own parts."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        child_path = _path(path, key)
        text = "\n".join(_flatten(child, child_path))
        if not text:
            continue
        opens = isinstance(child, dict) or (
            isinstance(child, list) and any(isinstance(c, dict | list) for c in child)
        )
        if len(text) > SPAN_CHARS and opens and depth < _DEPTH:
            yield from _parts(child, child_path, depth + 1)
        elif isinstance(child, dict) and isinstance(key, int):  # a record in a list: its own keys
            yield _record(child), child_path
        elif isinstance(child, dict) and len(text) <= ONE_LINE:
            yield _record(child, child_path), child_path
        else:
            yield text, child_path


def _where(first: str, last: str) -> str:
    """`users[3]`, `users[3-9]` for records of one list, else `first … last`."""
    if first == last:
        return first
    a, b = re.fullmatch(r"(.*)\[(\d+)\]", first), re.fullmatch(r"(.*)\[(\d+)\]", last)
    if a and b and a.group(1) == b.group(1):
        return f"{a.group(1)}[{a.group(2)}-{b.group(2)}]"
    return f"{first} … {last}"


def _record(value: Any, path: str = "") -> str:
    """One record: `key: value` pairs on one line when short, else one pair a line."""
    lines = list(_flatten(value, ""))
    if not lines:
        return ""
    if path:
        lines = [f"{path}.{line}" if not line.startswith("[") else path + line for line in lines]
    one = "; ".join(lines)
    return one if len(one) <= ONE_LINE and "\n" not in one else "\n".join(lines)


def _flatten(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _flatten(child, _path(path, key))
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            shown = ", ".join(_scalar(v) for v in value[:MAX_LIST])
            more = f", … ({len(value) - MAX_LIST} more)" if len(value) > MAX_LIST else ""
            if shown:
                yield f"{path}: {shown}{more}" if path else shown + more
        else:
            for index, child in enumerate(value):
                yield from _flatten(child, f"{path}[{index}]")
    else:
        text = _scalar(value)
        if text:
            yield f"{path}: {text}" if path else text


def _path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value)


def _paragraphs(texts: list[str]) -> str:
    """Records one a line, or one a paragraph when any spans several lines."""
    return ("\n\n" if any("\n" in t for t in texts) else "\n").join(t for t in texts if t)


def _uncomment(match: re.Match[str]) -> str:
    """A comment becomes blanks (keeping line breaks, so error positions stay true)."""
    if match.group(1) is not None:
        return match.group(1)
    if match.group(2) is not None:
        return re.sub(r"[^\n]", " ", match.group(2))
    return " "
