"""Hostile bytes through every loader: anything may come out, but only kb's own per-file errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chunking import chunk_text
from core.loaders import NotText, UnreadableFile, file_kinds, load

KINDS = list(file_kinds())
PREFIXES = {
    "pdf": b"%PDF-1.4\n",
    "docx": b"PK\x03\x04",
    "html": b"<html><body>",
    "pptx": b"PK\x03\x04",
    "xlsx": b"PK\x03\x04",
    "epub": b"PK\x03\x04",
    "odt": b"PK\x03\x04",
    "json": b'{"a": [',
    "notebook": b'{"cells": [{"cell_type": "code", "source": "',
    "subtitles": b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n",
    "email": b"From: a@b\nContent-Type: text/html; charset=utf-8\n\n",
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


ZIP_MEMBERS = {
    "pptx": ["[Content_Types].xml", "ppt/presentation.xml", "_rels/.rels"],
    "xlsx": ["[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"],
    "epub": ["META-INF/container.xml", "content.opf", "ch1.xhtml", "META-INF/encryption.xml"],
    "odt": ["content.xml", "meta.xml"],
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(sorted(ZIP_MEMBERS)))
def test_random_zips_of_office_and_ebook_kinds_never_crash(data: st.DataObject, kind: str) -> None:
    names = st.sampled_from(ZIP_MEMBERS[kind])
    members = data.draw(st.dictionaries(names, st.binary(max_size=512)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    try:
        loaded = load(Path(f"fuzz.{kind}"), kind, buffer.getvalue())
    except (UnreadableFile, NotText):
        return
    assert isinstance(loaded.text, str)


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
