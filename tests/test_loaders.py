"""Every format and encoding kb reads, and every way a file can be unreadable."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pytest

from core.loaders import LoadedText, NotText, UnreadableFile, decode, kind_of, load
from tests.conftest import EXAMPLES

CHINESE = "退款窗口是三十天。部署需要至少两GB内存，请提前准备服务器。"


@pytest.mark.parametrize(
    "data",
    [
        CHINESE.encode("utf-8"),
        codecs.BOM_UTF8 + CHINESE.encode("utf-8"),
        CHINESE.encode("gbk") * 3,
        CHINESE.encode("gb18030") * 3,
        CHINESE.encode("utf-16"),  # with BOM
    ],
    ids=["utf8", "utf8-bom", "gbk", "gb18030", "utf16"],
)
def test_encodings_are_detected(data: bytes) -> None:
    assert decode(data).startswith(CHINESE)


def test_windows_line_endings_are_normalised() -> None:
    assert decode(b"a\r\nb\rc") == "a\nb\nc"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.md", "markdown"),
        ("a.rst", "text"),
        ("a.py", "code"),
        ("a.yaml", "code"),
        ("a.pdf", "pdf"),
        ("a.HTML", "html"),
        ("a.docx", "docx"),
        ("Makefile", "text"),
        ("photo.png", "image"),
        ("anim.gif", None),
        ("weird.xyz", "sniff"),
    ],
)
def test_kind_by_name(name: str, kind: str | None) -> None:
    assert kind_of(Path(name)) == kind


def test_unknown_binary_is_not_text() -> None:
    with pytest.raises(NotText):
        load(Path("blob.xyz"), "sniff", b"\x00\x01\x02binary" * 10)


def test_unknown_text_is_read() -> None:
    assert load(Path("notes.xyz"), "sniff", b"plain notes").text == "plain notes"


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("text", b"", "empty file"),
        ("text", b"   \n\n", "empty file"),
        ("text", b"abc\x00\x00\x00def" * 20, "binary content"),
        ("pdf", b"%PDF-1.4 not really a pdf", "corrupt PDF"),
        ("docx", b"PK\x03\x04 not a zip", "corrupt Word file"),
        ("html", b"<html><nav>menu only</nav></html>", "no text"),
    ],
)
def test_unreadable_files_have_a_reason(kind: str, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile, match=reason):
        load(Path("x"), kind, data)


def test_pdf_pages_are_kept() -> None:
    data = (EXAMPLES / "runbooks" / "oncall-runbook.pdf").read_bytes()
    loaded = load(Path("r.pdf"), "pdf", data)
    assert [page for page, _, _ in loaded.pages] == [1, 2]
    for _, start, end in loaded.pages:
        assert loaded.text[start:end].strip()


def test_encrypted_and_truncated_pdfs_are_reported() -> None:
    from pypdf import PdfReader, PdfWriter

    data = (EXAMPLES / "runbooks" / "oncall-runbook.pdf").read_bytes()
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(data)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(UnreadableFile, match="encrypted PDF"):
        load(Path("e.pdf"), "pdf", buffer.getvalue())
    with pytest.raises(UnreadableFile, match="PDF"):
        load(Path("t.pdf"), "pdf", data[: len(data) // 3])


def test_pdf_without_text_is_reported() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(UnreadableFile, match="no extractable text"):
        load(Path("scan.pdf"), "pdf", buffer.getvalue())


def test_html_keeps_main_text_and_headings_not_menus() -> None:
    html = """<html><head><title>Policy</title><style>p{}</style></head><body>
    <header>Site header</header><nav><a>Home</a><a>Pricing</a></nav>
    <main><h1>隐私政策</h1><p>删除的笔记保留 60 天。</p><h2>Logs</h2><p>Logs are kept for 90 days.</p>
    <table><tr><td>a</td><td>b</td></tr></table></main>
    <footer>© Lumen</footer><script>var x = 1;</script></body></html>"""
    loaded = load(Path("p.html"), "html", html.encode())
    assert loaded.title == "Policy"
    assert "# 隐私政策" in loaded.text
    assert "## Logs" in loaded.text
    assert "Logs are kept for 90 days." in loaded.text
    for noise in ("Site header", "Pricing", "© Lumen", "var x"):
        assert noise not in loaded.text


def test_docx_headings_become_structure(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Licensing", level=1)
    document.add_paragraph("The refund window is 30 days.")
    document.add_heading("Grace period", level=2)
    document.add_paragraph("A 21-day grace period applies.")
    path = tmp_path / "p.docx"
    document.save(str(path))
    loaded = load(path, "docx", path.read_bytes())
    assert "## Licensing" in loaded.text
    assert "### Grace period" in loaded.text
    assert "The refund window is 30 days." in loaded.text


@pytest.mark.parametrize(
    "data",
    [
        CHINESE.encode("utf-8") * 40 + b"\xff" + CHINESE.encode("utf-8"),
        (CHINESE.encode("utf-8") * 40)[:-1],
        "Café prices are naïve. ".encode() * 30 + b"\xe9",
    ],
    ids=["stray-byte", "cut-off", "latin1-byte"],
)
def test_utf8_with_a_few_damaged_bytes_stays_utf8(data: bytes) -> None:
    text = decode(data)
    assert text.count("\ufffd") == 1
    assert CHINESE[:10] in text or "Café prices are naïve." in text


def test_short_gbk_text_is_not_mistaken_for_damaged_utf8() -> None:
    assert decode("你好，世界".encode("gbk")) == "你好，世界"


def test_korean_stays_korean() -> None:
    text = "안녕하세요 세계 여러분 반갑습니다"
    assert decode(text.encode("cp949")) == text


def test_html_code_blocks_keep_lines_and_are_not_headings() -> None:
    html = (
        "<main><h2>Install</h2><pre># install deps\n    pip install lumen\n</pre>"
        "<h2>Usage</h2><p>Run it.</p></main>"
    )
    text = load(Path("p.html"), "html", html.encode()).text
    assert "```\n# install deps\n    pip install lumen\n```" in text
    from core.chunking import chunk_text
    from core.text import approx_tokens

    chunks = chunk_text(
        LoadedText(text, "html"), count_tokens=approx_tokens, chunk_size=200, chunk_overlap=0
    )
    assert [c.heading_path for c in chunks] == [("Install",), ("Usage",)]


def test_html_in_a_form_and_article_headers_are_kept() -> None:
    html = (
        "<body><header>Site</header><form><article><header><h1>Rotating API tokens</h1></header>"
        "<p>Use kb token rotate.</p></article><input value='x'></form></body>"
    )
    text = load(Path("p.html"), "html", html.encode()).text
    assert "# Rotating API tokens" in text
    assert "Use kb token rotate." in text


def test_docx_tables_stay_in_place(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Refunds", level=1)
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Plan", "Window"), ("Pro", "30 days")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Privacy", level=1)
    document.add_paragraph("We keep logs for 7 days.")
    path = tmp_path / "t.docx"
    document.save(str(path))
    text = load(path, "docx", path.read_bytes()).text
    assert text.index("Pro | 30 days") < text.index("## Privacy")


def test_a_docx_zip_bomb_is_refused_before_unpacking(tmp_path: Path) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document>" + " " * (300 * 1024 * 1024))
    data = buffer.getvalue()
    assert len(data) < 1024 * 1024  # a small file on disk
    with pytest.raises(UnreadableFile, match=r"would unpack to 300 MB .* zip bomb"):
        load(tmp_path / "bomb.docx", "docx", data)
