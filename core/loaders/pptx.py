"""PowerPoint .pptx (python-pptx): one span per slide, its title as heading, body, tables and notes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile, check_zip
from core.loaders.spans import TextBuilder


def load_pptx(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    import io
    import zipfile

    check_zip(data, "PowerPoint file")
    builder = TextBuilder()
    try:
        from pptx import Presentation

        deck = Presentation(io.BytesIO(data))
        for number, slide in enumerate(deck.slides, start=1):
            title_shape = slide.shapes.title
            title = _one_line(title_shape.text_frame.text) if title_shape is not None else ""
            parts = [title] if title else []
            parts.extend(_shape_texts(s for s in slide.shapes if s != title_shape))
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    parts.append(f"Notes: {notes.text.strip()}")
            builder.add("\n\n".join(parts), f"slide {number}", title)
        title = deck.core_properties.title or ""
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as err:
        raise UnreadableFile(f"corrupt PowerPoint file ({type(err).__name__})") from err
    except Exception as err:  # python-pptx/lxml raise assorted errors on damaged files
        raise UnreadableFile(f"corrupt PowerPoint file ({type(err).__name__})") from err
    return builder.result(kind, title)


def _shape_texts(shapes: Iterable[Any]) -> Iterator[str]:
    """The text of shapes in reading order (top to bottom, left to right), groups opened."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    def position(shape: Any) -> tuple[int, int]:
        return (shape.top or 0, shape.left or 0)

    for shape in sorted(shapes, key=position):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shape_texts(shape.shapes)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [" | ".join(_one_line(c.text) for c in row.cells) for row in shape.table.rows]
            yield "\n".join(r for r in rows if r.strip(" |"))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            lines = [p.text.strip() for p in shape.text_frame.paragraphs]
            text = "\n".join(line for line in lines if line)
            if text:
                yield text
        elif getattr(shape, "has_chart", False) and shape.has_chart:
            chart = shape.chart
            if chart.has_title and chart.chart_title.has_text_frame:
                yield _one_line(chart.chart_title.text_frame.text)


def _one_line(text: str) -> str:
    return " ".join(text.split())
