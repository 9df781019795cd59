"""Office, e-book, notebook, subtitle, data and e-mail files read as the text a person reads, located."""

from __future__ import annotations

import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from core.chunking import chunk_text
from core.loaders import LoadedText, UnreadableFile, kind_of, load


def read(name: str, data: bytes) -> LoadedText:
    path = Path(name)
    kind = kind_of(path)
    assert kind is not None
    return load(path, kind, data)


def located(loaded: LoadedText) -> dict[str, str]:
    """Each span's location -> its text."""
    return {s.location: loaded.text[s.start : s.end] for s in loaded.spans}


# Builders of real files ------------------------------------------------------------------------


def make_pptx() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    first.shapes.title.text = "Pricing"
    first.placeholders[1].text_frame.text = "The Enterprise plan costs $899 a month."
    first.notes_slide.notes_text_frame.text = "Mention the yearly discount."
    second = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    second.shapes.title.text = "Plans"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for (row, col), text in {(0, 0): "Plan", (0, 1): "Seats", (1, 0): "Team", (1, 1): "10"}.items():
        table.cell(row, col).text = text
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text, no span
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def make_xlsx() -> bytes:
    import datetime

    from openpyxl import Workbook

    book = Workbook()
    plans = book.active
    assert plans is not None
    plans.title = "Plans"
    plans.append(["Plan", "Seats", "Price", "Since"])
    plans.append(["Enterprise", 100, "$899", datetime.date(2024, 1, 31)])
    plans.append(["Team", 10, "$99", None])
    numbers = book.create_sheet("Numbers")
    numbers.append([1, 2.5])
    numbers.append([3, 4.0])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def make_epub() -> bytes:
    files = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": (
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>"
        ),
        "OEBPS/content.opf": (
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>A Small Book</dc:title>'
            "</metadata><manifest>"
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
            '<item id="b" href="text/two.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="a" href="text/one.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="c" href="text/three.xhtml" media-type="application/xhtml+xml"/>'
            '</manifest><spine><itemref idref="a"/><itemref idref="b"/><itemref idref="c"/>'
            "</spine></package>"
        ),
        "OEBPS/nav.xhtml": (
            '<html xmlns="http://www.w3.org/1999/xhtml"><body><nav><ol>'
            '<li><a href="text/one.xhtml">The Beginning</a></li>'
            '<li><a href="text/two.xhtml#start">Middle Part</a></li></ol></nav></body></html>'
        ),
        "OEBPS/text/one.xhtml": "<html><body><p>It was a quiet morning.</p></body></html>",
        "OEBPS/text/two.xhtml": "<html><body><h1>Two</h1><p>The storm came.</p></body></html>",
        "OEBPS/text/three.xhtml": "<html><body><p>No title here.</p></body></html>",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Setup\n", "Load the data."]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": "import pandas as pd\nprint('rows:', 42)",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["rows: 42\n"]},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": "iVBORw0KGgo" * 50, "text/plain": ["<Figure>"]},
                },
                {
                    "output_type": "execute_result",
                    "metadata": {},
                    "execution_count": 1,
                    "data": {
                        "text/html": ["<table><tr><td>1</td></tr></table>"],
                        "text/plain": "   a\n0  1",
                    },
                },
            ],
        },
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 2,
            "source": "1/0",
            "outputs": [
                {
                    "output_type": "error",
                    "ename": "ZeroDivisionError",
                    "evalue": "division by zero",
                    "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m"],
                }
            ],
        },
    ],
}

SRT = """1
00:00:01,000 --> 00:00:03,500
Welcome to the <i>quarterly</i>
review of our pricing.

2
00:00:03,600 --> 00:00:06,000
{\\an8}The Enterprise plan now
costs $899.

3
00:09:04,000 --> 00:09:07,000
After the break: questions.
"""

VTT = """WEBVTT

STYLE
::cue { color: yellow }

NOTE written by hand

intro
00:00:01.000 --> 00:00:03.000 align:start position:10%
<v Alice>Hello <c.loud>everyone</c>, and welcome.</v>

00:00:03.500 --> 00:00:05.000
<v Bob>Thanks &amp; hello.</v>
"""


def make_email() -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = "bob@example.com"
    message["Date"] = "Tue, 02 Jan 2024 10:00:00 +0000"
    message["Subject"] = "Refund policy — 退款"
    message.set_content("Refunds are accepted within thirty days.\n退款窗口是三十天。\n")
    message.add_alternative(
        "<p>Refunds are accepted within <b>thirty</b> days.</p>", subtype="html"
    )
    message.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="policy.pdf"
    )
    return message.as_bytes()


def make_html_only_email(subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "news@example.com"
    message["Subject"] = subject
    message.set_content(
        f"<html><body><h1>News</h1><p>{body}</p></body></html>",
        subtype="html",
        cte="quoted-printable",
    )
    return message.as_bytes()


def make_odt() -> bytes:
    content = (
        '<?xml version="1.0"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0">'
        "<office:body><office:text>"
        '<text:h text:outline-level="1">Deployment</text:h>'
        "<text:p>Servers need<text:s/> two GB of memory.</text:p>"
        "<text:list><text:list-item><text:p>Install</text:p></text:list-item>"
        "<text:list-item><text:p>Run</text:p></text:list-item></text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>RAM</text:p></table:table-cell>"
        "<table:table-cell><text:p>2 GB</text:p></table:table-cell></table:table-row></table:table>"
        "</office:text></office:body></office:document-content>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    return buffer.getvalue()


# The registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("deck.pptx", "pptx"),
        ("book.XLSX", "xlsx"),
        ("table.csv", "csv"),
        ("table.tsv", "csv"),
        ("data.json", "json"),
        ("settings.jsonc", "json"),
        ("rows.jsonl", "json"),
        ("analysis.ipynb", "notebook"),
        ("novel.epub", "epub"),
        ("talk.srt", "subtitles"),
        ("talk.vtt", "subtitles"),
        ("mail.eml", "email"),
        ("archive.mbox", "email"),
        ("letter.odt", "odt"),
        ("old.ppt", None),
        ("old.xls", None),
    ],
)
def test_kind_by_name(name: str, kind: str | None) -> None:
    assert kind_of(Path(name)) == kind


# PowerPoint -------------------------------------------------------------------------------------


def test_pptx_slides_are_spans_with_titles_tables_and_notes() -> None:
    loaded = read("deck.pptx", make_pptx())
    slides = located(loaded)
    assert list(slides) == ["slide 1", "slide 2"]  # the blank third slide has no span
    assert slides["slide 1"] == (
        "Pricing\n\nThe Enterprise plan costs $899 a month.\n\nNotes: Mention the yearly discount."
    )
    assert slides["slide 2"] == "Plans\n\nPlan | Seats\nTeam | 10"
    assert [s.heading for s in loaded.spans] == ["Pricing", "Plans"]


# Spreadsheets and CSV ---------------------------------------------------------------------------


def test_xlsx_rows_read_as_header_value_pairs_per_sheet() -> None:
    loaded = read("book.xlsx", make_xlsx())
    assert located(loaded) == {
        "Plans, rows 2-3": (
            "Plan: Enterprise; Seats: 100; Price: $899; Since: 2024-01-31\n"
            "Plan: Team; Seats: 10; Price: $99"
        ),
        "Numbers, rows 1-2": "1 | 2.5\n3 | 4",  # no header row: cells as they are
    }
    assert [s.heading for s in loaded.spans] == ["Plans", "Numbers"]


def test_gbk_csv_is_decoded_and_located_by_rows() -> None:
    data = "姓名,城市,备注\n张三,北京,\n李四,上海,VIP\n".encode("gbk")
    loaded = read("people.csv", data)
    assert located(loaded) == {
        "rows 2-3": "姓名: 张三; 城市: 北京\n姓名: 李四; 城市: 上海; 备注: VIP"
    }


def test_semicolon_csv_and_tsv_are_split_at_their_delimiter() -> None:
    assert read("a.csv", b"Plan;Price\nTeam;99\n").text == "Plan: Team; Price: 99"
    assert read("a.tsv", b"Plan\tPrice\nTeam, Pro\t99\n").text == "Plan: Team, Pro; Price: 99"


def test_long_tables_are_grouped_into_several_row_spans() -> None:
    rows = "".join(f"customer {i},plan {i % 3},{i * 10}\n" for i in range(2, 400))
    loaded = read("big.csv", b"Customer,Plan,Spend\n" + rows.encode())
    assert len(loaded.spans) > 3
    assert loaded.spans[0].location.startswith("rows 2-")
    assert loaded.spans[-1].location.endswith("-399")
    assert "Customer: customer 250; Plan: plan 1; Spend: 2500" in loaded.text


def test_row_bound_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.loaders.delimited

    monkeypatch.setattr(core.loaders.delimited, "MAX_ROWS", 5)
    rows = "".join(f"{i},x\n" for i in range(20))
    loaded = read("big.csv", b"N,X\n" + rows.encode())
    assert loaded.spans[-1].location == "rows 2-5"  # the header row counts
    assert loaded.notes == ("cut after row 5 (5 rows per file)",)


def test_sheet_row_bound_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.loaders.xlsx

    monkeypatch.setattr(core.loaders.xlsx, "MAX_ROWS", 2)
    loaded = read("book.xlsx", make_xlsx())
    assert located(loaded) == {
        "Plans, row 2": "Plan: Enterprise; Seats: 100; Price: $899; Since: 2024-01-31"
    }
    assert loaded.notes == (
        "sheet 'Plans' cut after row 2 (2 rows per file)",
        "sheet 'Numbers' left out: past 2 rows",
    )


# JSON -----------------------------------------------------------------------------------------


def test_json_reads_as_key_paths_without_escapes() -> None:
    data = json.dumps(
        {"user": {"name": "张三", "tags": ["admin", "ops"], "active": True}, "version": 2},
        ensure_ascii=True,
    ).encode()
    loaded = read("data.json", data)
    assert "\\u" not in loaded.text
    assert loaded.text == "user.name: 张三; user.tags: admin, ops; user.active: true\nversion: 2"


def test_json_arrays_of_records_read_one_record_a_line() -> None:
    records = [{"id": i, "plan": "Team", "price": 99} for i in range(1, 4)]
    loaded = read("plans.json", json.dumps(records).encode())
    assert located(loaded) == {
        "records 1-3": "id: 1; plan: Team; price: 99\nid: 2; plan: Team; price: 99\n"
        "id: 3; plan: Team; price: 99"
    }


def test_jsonl_records_are_located_by_line_and_bad_lines_noted() -> None:
    data = (
        b'{"q": "refund window?", "a": "30 days"}\n\n{"q": "memory?"\n{"q": "ram", "a": "2 GB"}\n'
    )
    loaded = read("qa.jsonl", data)
    assert located(loaded) == {"lines 1-4": "q: refund window?; a: 30 days\nq: ram; a: 2 GB"}
    assert loaded.notes == ("skipped line 3: invalid JSON (column 16: Expecting ',' delimiter)",)


def test_jsonc_comments_and_trailing_commas_are_tolerated() -> None:
    data = b'{\n  // the compiler\n  "target": "es2020", /* modern */\n  "url": "http://x//y",\n}\n'
    assert read("tsconfig.json", data).text == "target: es2020\nurl: http://x//y"


def test_large_json_objects_are_opened_into_located_parts() -> None:
    users = [{"name": f"user {i}", "bio": "likes long walks " * 5} for i in range(60)]
    loaded = read("users.json", json.dumps({"users": users, "count": 60}).encode())
    assert len(loaded.spans) > 3
    assert loaded.spans[0].location.startswith("users[0-")  # records of one list: "users[0-13]"
    assert loaded.spans[0].heading == "users"
    assert (
        "\nname: user 59; bio: likes long walks" in loaded.text
    )  # a record reads with its own keys
    assert "users[59]" not in loaded.text
    assert loaded.spans[-1].location.endswith("count")


# Notebooks --------------------------------------------------------------------------------------


def test_notebook_cells_are_spans_with_code_fenced_and_text_outputs() -> None:
    loaded = read("analysis.ipynb", json.dumps(NOTEBOOK).encode())
    cells = located(loaded)
    assert cells == {
        "cell 1": "# Setup\nLoad the data.",
        "cell 2": "```python\nimport pandas as pd\nprint('rows:', 42)\n```\n\nrows: 42\n<Figure>\n   a\n0  1",
        "cell 3": "```python\n1/0\n```\n\nZeroDivisionError: division by zero",
    }
    assert "iVBOR" not in loaded.text
    assert "<table>" not in loaded.text
    assert {s.heading for s in loaded.spans} == {"Setup"}


# Subtitles --------------------------------------------------------------------------------------


def test_srt_reads_as_sentences_located_by_start_time() -> None:
    loaded = read("talk.srt", SRT.encode())
    assert located(loaded) == {
        "00:00:01": "Welcome to the quarterly review of our pricing. The Enterprise plan now costs $899.",
        "00:09:04": "After the break: questions.",  # a long pause starts a new paragraph
    }


def test_vtt_drops_styles_notes_and_tags_and_names_speakers() -> None:
    loaded = read("talk.vtt", VTT.encode())
    assert loaded.text == "Alice: Hello everyone, and welcome. Bob: Thanks & hello."
    assert [s.location for s in loaded.spans] == ["00:00:01"]


def test_chinese_subtitles_join_without_spaces() -> None:
    srt = "1\n00:00:01,000 --> 00:00:02,000\n退款窗口\n\n2\n00:00:02,000 --> 00:00:03,000\n是三十天。\n"
    assert read("zh.srt", srt.encode("gbk")).text == "退款窗口是三十天。"


# EPUB -------------------------------------------------------------------------------------------


def test_epub_chapters_follow_the_spine_with_toc_titles() -> None:
    loaded = read("novel.epub", make_epub())
    assert loaded.title == "A Small Book"
    assert [(s.location, s.heading) for s in loaded.spans] == [
        ("The Beginning", "The Beginning"),
        ("Middle Part", "Middle Part"),
        ("chapter 3", ""),
    ]
    assert located(loaded)["Middle Part"] == "# Two\n\nThe storm came."


# E-mail -----------------------------------------------------------------------------------------


def test_eml_has_headers_plain_body_and_attachment_names() -> None:
    loaded = read("mail.eml", make_email())
    assert loaded.text == (
        "From: Alice Example <alice@example.com>\nTo: bob@example.com\n"
        "Date: Tue, 02 Jan 2024 10:00:00 +0000\nSubject: Refund policy — 退款\n\n"
        "Refunds are accepted within thirty days.\n退款窗口是三十天。\n\nAttachments: policy.pdf"
    )
    assert loaded.spans[0].location == "Refund policy — 退款"


def test_quoted_printable_html_mail_reads_as_text() -> None:
    body = "Café prices rise by " + "ten percent " * 10  # long enough to be soft-wrapped (=\n)
    data = make_html_only_email("Prices", body)
    assert b"=\n" in data or b"=\r\n" in data
    loaded = read("news.eml", data)
    assert loaded.text.endswith("# News\n\n" + body.strip())
    assert "=3D" not in loaded.text
    assert "<p>" not in loaded.text


def test_mbox_has_one_span_per_message() -> None:
    first = make_html_only_email("First news", "one")
    second = make_html_only_email("", "From the desk: two")  # a body line starting "From "
    data = b"From a@b Mon Jan 1 00:00:00 2024\n" + first + b"\nFrom c@d Tue Jan 2 00:00:00 2024\n"
    data += second.replace(b"From the desk", b">From the desk")
    loaded = read("archive.mbox", data)
    assert [s.location for s in loaded.spans] == ["First news", "message 2"]
    assert located(loaded)["message 2"].endswith("From the desk: two")


# OpenDocument -----------------------------------------------------------------------------------


def test_odt_reads_headings_lists_and_tables() -> None:
    assert read("letter.odt", make_odt()).text == (
        "# Deployment\n\nServers need  two GB of memory.\n\n- Install\n\n- Run\n\nRAM | 2 GB"
    )


# Chunks carry the locations ---------------------------------------------------------------------


def test_chunks_of_located_formats_carry_their_span_location() -> None:
    loaded = read("deck.pptx", make_pptx())
    chunks = chunk_text(loaded, count_tokens=len, chunk_size=200, chunk_overlap=0)
    assert [(c.location, c.heading_path) for c in chunks] == [
        ("slide 1", ("Pricing",)),
        ("slide 2", ("Plans",)),
    ]


# Unreadable files ------------------------------------------------------------------------------


def _zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.pptx", b"PK\x03\x04 truncated", r"corrupt PowerPoint file \(BadZipFile\)"),
        ("a.pptx", _zip({"x.txt": "not a deck"}), r"corrupt PowerPoint file \(\w+\)"),
        (
            "a.pptx",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100,
            "password-protected PowerPoint",
        ),
        ("a.xlsx", b"PK\x03\x04 truncated", r"corrupt Excel file \(BadZipFile\)"),
        ("a.xlsx", _zip({"x.txt": "not a workbook"}), r"corrupt Excel file \(\w+\)"),
        ("a.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "password-protected Excel"),
        ("a.epub", b"PK\x03\x04 truncated", r"corrupt EPUB file \(BadZipFile\)"),
        ("a.epub", _zip({"mimetype": "application/epub+zip"}), "corrupt EPUB file .*container.xml"),
        ("a.odt", _zip({"mimetype": "x"}), r"corrupt OpenDocument file \(KeyError\)"),
        (
            "a.ipynb",
            b'{"cells": [\n  {"cell_type": "code",\n',
            r"invalid notebook JSON \(line 3, column 1",
        ),
        ("a.ipynb", b'{"nbformat": 4}', r"not a Jupyter notebook \(no cells\)"),
        ("a.json", b'{"a": 1,\n "b": }', r"invalid JSON \(line 2, column 7: Expecting value\)"),
        ("a.jsonl", b"{bad\n[also bad\n", r"invalid JSON Lines \(line 1: invalid JSON \(column 2"),
        ("a.srt", b"just some words\nwith no cues\n", r"malformed SRT subtitles"),
        ("a.vtt", b"not a webvtt file\n", r"malformed VTT subtitles"),
        ("a.eml", b"no headers here, just text\n", r"not an e-mail message \(no headers\)"),
        ("a.mbox", b"Subject: x\n\nbody\n", r"not an mbox file"),
        ("a.csv", bytes(range(256)) * 20, r"binary content"),
        ("a.json", b"{}", "no text in file"),
    ],
)
def test_unreadable_files_have_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile, match=reason):
        read(name, data)


def test_epub_with_encrypted_chapters_is_refused() -> None:
    data = make_epub()
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
            '<enc:CipherReference URI="OEBPS/text/one.xhtml"/></enc:CipherData></enc:EncryptedData>'
            "</encryption>",
        )
    with pytest.raises(UnreadableFile, match="DRM-protected e-book"):
        read("locked.epub", buffer.getvalue())
