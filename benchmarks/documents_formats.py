"""Benchmark the non-PDF readers: text recovered, files/s and peak memory, per format.

Each format gets one mid-sized file built with its real library (python-pptx, openpyxl) or the
standard library, holding a known list of phrases (English and Chinese sentences, split across
subtitle cue lines and cues where the format does that). Each file is read through
`core.loaders.load`, as ingest does. Measured per format:

* recovered: the share of the phrases' characters found, whole, in the text read;
* extra: characters of text read per character of phrases (labels such as `Plan:`, headers,
  fences; markup leaking through would show here);
* files/s: reads per second over `--repeat` reads (default 20) after one warm-up read;
* peak MB: tracemalloc's peak for one read (Python allocations, not resident memory).

Run from the repository root (about a minute on 2 cores)::

    python benchmarks/documents_formats.py
    python benchmarks/documents_formats.py --repeat 5

Prints a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from core.loaders import kind_of, load

WORDS = [
    "refund",
    "window",
    "deploy",
    "memory",
    "server",
    "plan",
    "seats",
    "price",
    "invoice",
    "quarter",
    "review",
    "storm",
]
ZH = ["退款窗口是三十天", "部署需要至少两GB内存", "请提前准备服务器", "企业版每月八百九十九元"]


def phrases(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 4 == 3:
            out.append(f"{rng.choice(ZH)}，编号{i}。")
        else:
            words = " ".join(rng.choice(WORDS) for _ in range(8))
            out.append(f"Item {i} says {words}.")
    return out


def make_pptx(known: list[str]) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for start in range(0, len(known), 4):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = known[start]
        slide.placeholders[1].text_frame.text = known[start + 1]
        slide.placeholders[1].text_frame.add_paragraph().text = known[start + 2]
        slide.notes_slide.notes_text_frame.text = known[start + 3]
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def make_xlsx(known: list[str]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Id", "Note", "Amount"])
    for i, phrase in enumerate(known):
        sheet.append([i, phrase, i * 10.5])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def make_csv(known: list[str]) -> bytes:
    rows = ["编号,备注,金额"] + [f'{i},"{p}",{i * 10}' for i, p in enumerate(known)]
    return "\n".join(rows).encode("gb18030")


def make_json(known: list[str]) -> bytes:
    records = [{"id": i, "user": {"note": p, "tags": ["a", "b"]}} for i, p in enumerate(known)]
    return json.dumps({"records": records}, ensure_ascii=True).encode()


def make_jsonl(known: list[str]) -> bytes:
    return "\n".join(json.dumps({"id": i, "text": p}) for i, p in enumerate(known)).encode()


def make_notebook(known: list[str]) -> bytes:
    cells = []
    for i, phrase in enumerate(known):
        if i % 2:
            cells.append(
                {
                    "cell_type": "code",
                    "source": f"print({phrase!r})",
                    "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": phrase + "\n"},
                        {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo" * 300}},
                    ],
                }
            )
        else:
            cells.append({"cell_type": "markdown", "source": [f"## Part {i}\n", phrase]})
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    return json.dumps(notebook).encode()


def _cues(known: list[str], separator: str) -> list[tuple[str, str]]:
    """(timing, text) per cue: each phrase over two cues, the first half on two lines.

    Cut at a space, or (Chinese) between characters, never inside a Latin word such as "GB".
    """
    cues = []
    second = 0
    for phrase in known:
        cut = _cut(phrase)
        first, rest = phrase[:cut].strip(), phrase[cut:].strip()
        mid = _cut(first)
        for text in (f"{first[:mid].strip()}\n{first[mid:].strip()}", rest):
            start = f"00:{second // 60:02d}:{second % 60:02d}{separator}000"
            end = f"00:{second // 60:02d}:{second % 60:02d}{separator}900"
            cues.append((f"{start} --> {end}", text))
            second += 1
    return cues


def _cut(text: str) -> int:
    if " " in text[: len(text) // 2]:
        return text.rfind(" ", 0, len(text) // 2)
    cut = len(text) // 2
    while 0 < cut < len(text) and text[cut - 1].isascii() and text[cut].isascii():
        cut += 1
    return cut


def make_srt(known: list[str]) -> bytes:
    cues = _cues(known, ",")
    return "\n".join(f"{n}\n{t}\n{x}\n" for n, (t, x) in enumerate(cues, 1)).encode()


def make_vtt(known: list[str]) -> bytes:
    cues = _cues(known, ".")
    return ("WEBVTT\n\n" + "\n".join(f"{t}\n<c.x>{x}</c>\n" for t, x in cues)).encode()


def make_epub(known: list[str]) -> bytes:
    chapters = [known[i : i + 10] for i in range(0, len(known), 10)]
    items = "".join(
        f'<item id="c{n}" href="c{n}.xhtml" media-type="application/xhtml+xml"/>'
        for n in range(len(chapters))
    )
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(len(chapters)))
    files = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="content.opf"/></rootfiles></container>',
        "content.opf": '<package xmlns="http://www.idpf.org/2007/opf"><metadata/>'
        f"<manifest>{items}</manifest><spine>{spine}</spine></package>",
    }
    for n, chapter in enumerate(chapters):
        body = "".join(f"<p>{p}</p>" for p in chapter)
        files[f"c{n}.xhtml"] = f"<html><body><h1>Chapter {n}</h1>{body}</body></html>"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _message(subject: str, lines: list[str]) -> bytes:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["Subject"] = subject
    html = "".join(f"<p>{p}</p>" for p in lines)
    message.set_content(f"<html><body>{html}</body></html>", subtype="html", cte="quoted-printable")
    return message.as_bytes()


def make_eml(known: list[str]) -> bytes:
    return _message("All phrases", known)


def make_mbox(known: list[str]) -> bytes:
    out = b""
    for n in range(0, len(known), 5):
        out += b"From a@example.com Mon Jan  1 00:00:00 2024\n" + _message(
            f"M{n}", known[n : n + 5]
        )
        out += b"\n"
    return out


def make_odt(known: list[str]) -> bytes:
    body = "".join(f"<text:p>{p}</text:p>" for p in known)
    content = (
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>'
        f"{body}</office:text></office:body></office:document-content>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("content.xml", content)
    return buffer.getvalue()


MAKERS: dict[str, tuple[Callable[[list[str]], bytes], int]] = {
    "deck.pptx": (make_pptx, 200),
    "book.xlsx": (make_xlsx, 2000),
    "table.csv": (make_csv, 2000),
    "data.json": (make_json, 2000),
    "data.jsonl": (make_jsonl, 2000),
    "notebook.ipynb": (make_notebook, 300),
    "book.epub": (make_epub, 1000),
    "talk.srt": (make_srt, 600),
    "talk.vtt": (make_vtt, 600),
    "mail.eml": (make_eml, 200),
    "archive.mbox": (make_mbox, 500),
    "letter.odt": (make_odt, 1000),
}


def measure(name: str, repeat: int) -> dict[str, object]:
    maker, count = MAKERS[name]
    known = phrases(count)
    data = maker(known)
    path = Path(name)
    kind = kind_of(path)
    assert kind is not None
    loaded = load(path, kind, data)  # warm-up: imports the reader and its library
    found = sum(len(p) for p in known if p in loaded.text)
    total = sum(len(p) for p in known)
    tracemalloc.start()
    load(path, kind, data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    started = time.perf_counter()
    for _ in range(repeat):
        load(path, kind, data)
    elapsed = time.perf_counter() - started
    return {
        "file": name,
        "kind": kind,
        "kb": round(len(data) / 1024),
        "phrases": count,
        "recovered": round(found / total, 4),
        "extra": round(len(loaded.text) / total, 2),
        "spans": len(loaded.spans),
        "files_per_s": round(repeat / elapsed, 1),
        "peak_mb": round(peak / 1024 / 1024, 1),
        "first_span": loaded.spans[0].location if loaded.spans else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = [measure(name, args.repeat) for name in MAKERS]
    header = f"{'file':16} {'KB':>6} {'recovered':>9} {'extra':>6} {'spans':>6} {'files/s':>8} {'peak MB':>8}  first span"
    print(header)
    for r in rows:
        print(
            f"{r['file']!s:16} {r['kb']!s:>6} {r['recovered']!s:>9} {r['extra']!s:>6} "
            f"{r['spans']!s:>6} {r['files_per_s']!s:>8} {r['peak_mb']!s:>8}  {r['first_span']}"
        )
    print(json.dumps(rows, ensure_ascii=False))


if __name__ == "__main__":
    main()
