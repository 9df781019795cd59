"""Jupyter notebooks (nbformat 4 and 3 JSON, read with stdlib json): one span per cell.

Markdown cells as they are, code fenced in its language, text outputs as text; images, HTML and
widget outputs are left out. A cell's heading is the last Markdown heading above it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile
from core.loaders.spans import TextBuilder
from core.loaders.text import decode

MAX_OUTPUT_CHARS = 4000  # of one cell's outputs (training logs, long prints): the start is kept
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def load_notebook(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    try:
        notebook = json.loads(decode(data))
    except json.JSONDecodeError as err:
        raise UnreadableFile(
            f"invalid notebook JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    if not isinstance(notebook, dict):
        raise UnreadableFile("not a Jupyter notebook (no cells)")
    cells = notebook.get("cells")
    if cells is None and isinstance(notebook.get("worksheets"), list):  # nbformat 3
        cells = [c for sheet in _dicts(notebook["worksheets"]) for c in _dicts(sheet.get("cells"))]
    if not isinstance(cells, list):
        raise UnreadableFile("not a Jupyter notebook (no cells)")
    metadata: dict[str, Any] = notebook.get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {}
    language = _language(metadata)
    builder = TextBuilder()
    heading = ""
    cut = 0
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            continue
        kind_of_cell = cell.get("cell_type")
        source = _text(cell.get("source", cell.get("input", "")))
        if kind_of_cell in {"markdown", "heading"}:
            if kind_of_cell == "heading":  # nbformat 3 heading cells
                source = "#" * int(cell.get("level", 1) or 1) + " " + source
            headings = _HEADING.findall(source)
            builder.add(source, f"cell {number}", headings[0] if headings else heading)
            heading = headings[-1] if headings else heading
        elif kind_of_cell == "code":
            parts = [f"```{language}\n{source.strip()}\n```"] if source.strip() else []
            output = _outputs(cell.get("outputs"))
            if len(output) > MAX_OUTPUT_CHARS:
                output = output[:MAX_OUTPUT_CHARS].rstrip() + " …"
                cut += 1
            if output:
                parts.append(output)
            builder.add("\n\n".join(parts), f"cell {number}", heading)
        else:  # raw cells
            builder.add(source, f"cell {number}", heading)
    if cut:
        builder.notes.append(
            f"outputs of {cut} cell(s) cut to their first {MAX_OUTPUT_CHARS:,} characters"
        )
    title = str(metadata.get("title") or "")
    return builder.result(kind, title)


def _outputs(outputs: object) -> str:
    texts: list[str] = []
    for output in _dicts(outputs):
        kind = output.get("output_type")
        if kind == "stream":
            texts.append(_text(output.get("text")))
        elif kind in {"execute_result", "display_data", "pyout"}:
            data = output.get("data")
            bundle: dict[str, Any] = data if isinstance(data, dict) else output
            for mime in ("text/markdown", "text/plain", "text"):
                if mime in bundle:
                    texts.append(_text(bundle[mime]))
                    break
        elif kind in {"error", "pyerr"}:
            texts.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    return _ANSI.sub("", "\n".join(t.strip("\n") for t in texts if t.strip())).strip()


def _language(metadata: dict[str, Any]) -> str:
    for key, field in (("language_info", "name"), ("kernelspec", "language")):
        value = metadata.get(key)
        if isinstance(value, dict):
            name = value.get(field)
            if isinstance(name, str) and re.fullmatch(r"[\w+#-]+", name):
                return name.lower()
    return "python"


def _text(value: object) -> str:
    """A notebook string: one string, or a list of lines."""
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
