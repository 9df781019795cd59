"""Subtitles .srt/.vtt/.sbv (webvtt-py): the spoken text in paragraphs, each located by its start time.

Cue numbers, timings, styles and tags are dropped; cues are joined into sentences, and sentences
into paragraphs of about PARAGRAPH_CHARS (a new one also after a long pause). A speaker's name
(`<v Bob>`) starts their line when the speaker changes.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile
from core.loaders.spans import TextBuilder
from core.loaders.text import decode

PARAGRAPH_CHARS = 600  # a paragraph ends at the first sentence end past this many characters
PAUSE_SECONDS = 4.0  # a silence this long starts a new paragraph
_SENTENCE_END = re.compile(r"[.!?。！？…][\"'”’)）]*$")
_ASS_TAG = re.compile(r"\{\\[^}]*\}")  # {\an8}, {\i1}: SSA/ASS overrides left in SRT files
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")


def load_subtitles(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    suffix = path.suffix.lower().lstrip(".")
    text = decode(data)
    form = suffix if suffix in {"srt", "vtt", "sbv"} else "vtt"
    if text.lstrip().startswith("WEBVTT"):
        form = "vtt"
    try:
        captions = webvtt.from_buffer(io.StringIO(text), format=form).captions
    except (MalformedFileError, MalformedCaptionError) as err:
        raise UnreadableFile(f"malformed {form.upper()} subtitles ({err})") from err
    builder = TextBuilder()
    paragraph: list[str] = []
    start = ""
    size = 0
    previous_end = 0.0
    previous_line = ""
    speaker: str | None = None
    for caption in captions:
        lines = [
            " ".join(_ASS_TAG.sub("", html.unescape(line)).split())
            for line in caption.text.split("\n")
        ]
        # Rolling captions (YouTube) repeat the previous cue's last line: keep each line once.
        lines = [line for line in lines if line and line != previous_line]
        if not lines:
            continue
        words = _join(lines)
        if caption.voice and caption.voice != speaker:
            words = f"{caption.voice}: {words}"
        speaker = caption.voice or speaker
        pause = caption.start_in_seconds - previous_end > PAUSE_SECONDS
        ends = paragraph and _SENTENCE_END.search(paragraph[-1]) is not None
        if paragraph and (
            (size >= PARAGRAPH_CHARS and ends) or pause or size >= 3 * PARAGRAPH_CHARS
        ):
            builder.add(_join(paragraph), start, "")
            paragraph, size = [], 0
        if not paragraph:
            start = _clock(caption.start_in_seconds)
        paragraph.append(words)
        size += len(words) + 1
        previous_end = caption.end_in_seconds
        previous_line = lines[-1]
    if paragraph:
        builder.add(_join(paragraph), start, "")
    return builder.result(kind)


def _join(pieces: list[str]) -> str:
    """Pieces of running text joined with a space, or none where either side is CJK."""
    text = ""
    for piece in pieces:
        if text and not (_CJK.match(text[-1]) or _CJK.match(piece[0])):
            text += " "
        text += piece
    return text


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
