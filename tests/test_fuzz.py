"""Hostile bytes through every loader: anything may come out, but only kb's own per-file errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chunking import chunk_text
from core.loaders import NotText, UnreadableFile, load

KINDS = ["markdown", "text", "code", "html", "pdf", "docx"]
PREFIXES = {
    "pdf": b"%PDF-1.4\n",
    "docx": b"PK\x03\x04",
    "html": b"<html><body>",
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), body=st.binary(max_size=4096))
def test_random_bytes_never_crash_a_loader(kind: str, body: bytes) -> None:
    data = PREFIXES.get(kind, b"") + body
    try:
        loaded = load(Path(f"fuzz.{kind}"), kind, data)
    except (UnreadableFile, NotText):
        return
    assert isinstance(loaded.text, str)


@settings(max_examples=60, deadline=None)
@given(
    members=st.dictionaries(
        st.sampled_from(["word/document.xml", "[Content_Types].xml", "x"]), st.binary(max_size=512)
    )
)
def test_random_zips_named_docx_never_crash(members: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises((UnreadableFile, NotText)):
        load(Path("fuzz.docx"), "docx", buffer.getvalue())


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["markdown", "text", "code"]), text=st.text(max_size=3000))
def test_any_text_chunks_into_slices_of_itself_within_the_size(kind: str, text: str) -> None:
    try:
        loaded = load(Path(f"fuzz.{kind}"), kind, text.encode("utf-8", errors="surrogatepass"))
    except (UnreadableFile, NotText):
        return
    chunks = chunk_text(loaded, count_tokens=len, chunk_size=128, chunk_overlap=16)
    for chunk in chunks:
        assert loaded.text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text) <= 128
