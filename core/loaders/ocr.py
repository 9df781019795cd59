"""Offline OCR (RapidOCR: PP-OCR Chinese + English models shipped inside its wheel), and images.

The engine is loaded once per process (about 1.4 s) and reads one image at a time, so a 500-page
scan holds one rendered page in memory. RapidOCR is the optional extra `kb[ocr]` (it brings
onnxruntime and OpenCV, about 300 MB): without it a scanned page is reported, never a crash.
"""

from __future__ import annotations

import functools
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.loaders.base import (
    LoadedText,
    LoadOptions,
    MissingDependency,
    NotText,
    UnreadableFile,
)
from core.loaders.spans import TextBuilder

if TYPE_CHECKING:
    from PIL import Image

INSTALL_HINT = "pip install 'kb[ocr]'"
NEEDS_OCR = f"OCR needs the optional package rapidocr ({INSTALL_HINT})"
MAX_FRAMES = 1000  # pages of a multi-page TIFF read at most
MAX_PIXELS = 100_000_000  # larger images are refused (a decompression bomb?)


@functools.cache
def _engine() -> Any:
    try:
        from rapidocr import RapidOCR
    except ImportError as err:
        raise MissingDependency(NEEDS_OCR) from err
    # RapidOCR logs its model paths at INFO on its own handler; kb's output stays clean.
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return RapidOCR(params={"Global.log_level": "warning"})


def ocr_available() -> bool:
    """True when the OCR engine can be loaded (the `ocr` extra is installed)."""
    try:
        _engine()
    except MissingDependency:
        return False
    return True


def read_image(image: Image.Image) -> str:
    """The text of one image, line by line: boxes on the same row are joined left to right."""
    import numpy as np

    result = _engine()(np.asarray(image.convert("RGB")))
    if not result.txts:
        return ""
    boxes: list[tuple[float, float, float, str]] = []  # top, bottom, left, text
    for box, text in zip(result.boxes, result.txts, strict=True):
        ys = [float(point[1]) for point in box]
        boxes.append((min(ys), max(ys), float(min(point[0] for point in box)), str(text)))
    boxes.sort()
    lines: list[list[tuple[float, str]]] = []
    line_bottom = -1.0
    for top, bottom, left, text in boxes:
        if lines and (top + bottom) / 2 < line_bottom:
            lines[-1].append((left, text))
            line_bottom = max(line_bottom, bottom)
        else:
            lines.append([(left, text)])
            line_bottom = bottom
    return "\n".join(" ".join(text for _, text in sorted(line)) for line in lines)


def load_image(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    """An image (or each page of a multi-page TIFF) read by OCR."""
    if options.ocr == "never":
        raise NotText("an image, and OCR is off")
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as err:  # named .png but no image: like any binary
        raise NotText(f"not an image ({type(err).__name__})") from err
    _engine()  # MissingDependency (naming the extra) before any page is decoded
    built = TextBuilder()
    try:
        with image:
            if image.width * image.height > MAX_PIXELS:
                raise UnreadableFile(f"image too large ({image.width}x{image.height} pixels)")
            total = min(getattr(image, "n_frames", 1), MAX_FRAMES)
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if number > total:
                    break
                text = read_image(frame).strip()
                if options.on_page is not None:
                    options.on_page(number, total)
                built.add(text, f"p. {number}", page=number, located=total > 1)
    except UnreadableFile:
        raise
    except (Image.DecompressionBombError, OSError, ValueError, EOFError) as err:
        raise UnreadableFile(f"corrupt image ({type(err).__name__})") from err
    if not built.parts:
        raise UnreadableFile("no text found by OCR in the image")
    return built.result(kind, ocr_pages=total)
