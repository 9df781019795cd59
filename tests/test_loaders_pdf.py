"""PDF text through PDFium, garbled text layers, ruled tables, and offline OCR of scans and images."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.loaders import LoadOptions, MissingDependency, NotText, UnreadableFile, load
from core.loaders.garble import garbled

REPO = Path(__file__).parents[1]
# Real documents kept beside the clone (CI), or beside the folder of worktrees (a worktree).
DOCS_REAL = next(
    (
        p
        for p in (REPO.parent / "shared/data/docs-real", REPO.parents[1] / "shared/data/docs-real")
        if p.is_dir()
    ),
    REPO.parent / "shared/data/docs-real",
)
PUMPKIN = DOCS_REAL / "pumpkin-book-p100-104.pdf"
HAN = re.compile(r"[\u4e00-\u9fff]")
ENGLISH = "Refund window: 30 days for every plan."


def _pypdf_pages(data: bytes) -> list[str]:
    """What pypdf (kb's old reader) returns for each page: mojibake for fonts with no Unicode map."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def test_the_chinese_textbook_is_read_with_its_page_numbers() -> None:
    loaded = load(PUMPKIN, "pdf", PUMPKIN.read_bytes())
    assert [page for page, _, _ in loaded.pages] == [1, 2, 3, 4, 5]
    # Every Chinese character (pypdf: 0), less the running header and footer of all five pages.
    header = "→_→ 欢迎去各大电商平台选购纸质版南瓜书《机器学习公式详解》 ←_←"
    footer = "→_→ 配套视频教程：https://www.bilibili.com/video/BV1Mh411e7VU ←_←"
    assert header not in loaded.text
    assert footer not in loaded.text
    running = len(HAN.findall(header + footer))
    assert len(HAN.findall(loaded.text)) == 2625 - 5 * running
    first = loaded.spans[0]
    assert "8.3 Bagging 与随机森林" in loaded.text[first.start : first.end]
    assert first.location == "p. 1"
    assert not loaded.notes
    assert loaded.ocr_pages == 0


def test_pypdfs_mojibake_is_garbled_and_real_text_is_not() -> None:
    data = PUMPKIN.read_bytes()
    for page in _pypdf_pages(data):
        reason = garbled(page)
        assert reason is not None
        assert reason.startswith("letters from")
        assert "unrelated scripts" in reason
    for page in load(PUMPKIN, "pdf", data).text.split("\n\n"):
        assert garbled(page) is None


@pytest.mark.parametrize(
    "text",
    [
        "The refund window is 30 days. Σ α β γ ∑ x² — “quoted”, café, naïve.",
        "退款期限为三十天。训练集 D 的样本个数为 |D|，泛化误差 E(f; D)。",
        "日本語のテキストとカタカナ、漢字、English words, and 한국어 텍스트.",
        "Русский текст с формулой α + β = γ and an English name.",
        "Icons \ue001 in \ue002 a long line of ordinary text from an icon font on the page.",
        "",
    ],
)
def test_clean_text_in_any_language_is_not_garbled(text: str) -> None:
    assert garbled(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\ue000\ue001\ue002 \ue003\ue004 ab", "private-use characters"),
        ("Pr\ufffd\ufffdf of \ufffdhe th\ufffdorem", "replacement characters"),
        ("\x01\x02\x03\x04 text", "control characters"),
    ],
)
def test_unmapped_characters_are_garbled(text: str, reason: str) -> None:
    assert garbled(text) == reason


def _pdf_with_hidden_unicode(pages: list[tuple[str, bool]]) -> bytes:
    """A PDF whose pages show Helvetica text; a page marked True maps its glyphs to private-use
    code points in its ToUnicode CMap, as broken font subsets do: it looks right and extracts wrong."""
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        b"/CMapName /Garbled def 1 begincodespacerange <00> <FF> endcodespacerange\n"
        b"1 beginbfrange <20> <7E> <E020> endbfrange endcmap\n"
        b"CMapName currentdict /CMap defineresource pop end end\n"
    )
    objects: list[bytes] = []  # numbered from 3: 1 is the catalog, 2 the page tree

    def add(obj: bytes) -> int:
        objects.append(obj)
        return len(objects) + 2

    kids = []
    for text, hidden in pages:
        stream = f"BT /F1 14 Tf 20 50 Td ({text}) Tj ET".encode()
        font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"
        if hidden:
            font += b" /ToUnicode %d 0 R" % add(
                b"<< /Length %d >>\nstream\n%sendstream" % (len(cmap), cmap)
            )
        font_ref = add(font + b" >>")
        content_ref = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        page_ref = add(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 100] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (font_ref, content_ref)
        )
        kids.append(b"%d 0 R" % page_ref)
    body = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    body.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids)))
    body += objects
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for index, obj in enumerate(body, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (index, obj))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(body) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(body) + 1, xref)
    )
    return out.getvalue()


GARBLED = [("Page one has a clean text layer.", False), ("Refunds take 30 days", True)]


def test_a_garbled_page_is_reported_not_indexed_when_ocr_is_off() -> None:
    loaded = load(Path("g.pdf"), "pdf", _pdf_with_hidden_unicode(GARBLED), LoadOptions(ocr="never"))
    assert loaded.text == "Page one has a clean text layer."
    assert [page for page, _, _ in loaded.pages] == [1]
    assert loaded.notes == ("p. 2: garbled text layer (private-use characters); OCR is off",)
    assert loaded.ocr_pages == 0


def test_a_garbled_page_is_read_by_ocr() -> None:
    loaded = load(Path("g.pdf"), "pdf", _pdf_with_hidden_unicode(GARBLED), LoadOptions(ocr="auto"))
    assert [page for page, _, _ in loaded.pages] == [1, 2]
    page_two = loaded.text[loaded.spans[1].start : loaded.spans[1].end]
    assert "Refunds take 30 days" in page_two
    assert loaded.ocr_pages == 1
    assert not loaded.notes


def test_only_garbled_pages_make_the_file_unreadable() -> None:
    data = _pdf_with_hidden_unicode([("Refunds take 30 days", True)])
    with pytest.raises(UnreadableFile, match=r"no page has text: p\. 1: garbled text layer"):
        load(Path("g.pdf"), "pdf", data, LoadOptions(ocr="never"))


def test_a_ruled_table_keeps_its_cell_boundaries() -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()
    table = Table(
        [["Plan", "Seats", "Price"], ["Team", "10", "$99"], ["Enterprise", "100", "$899"]]
    )
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4).build(
        [
            Paragraph("Pricing", styles["Heading1"]),
            Paragraph("Prices are per month.", styles["Normal"]),
            table,
            Paragraph("Annual plans get two months free.", styles["Normal"]),
        ]
    )
    loaded = load(Path("prices.pdf"), "pdf", buffer.getvalue())
    lines = loaded.text.splitlines()
    assert lines == [
        "Pricing",
        "Prices are per month.",
        "Plan | Seats | Price",
        "Team | 10 | $99",
        "Enterprise | 100 | $899",
        "Annual plans get two months free.",
    ]


def test_a_boxed_code_block_is_not_a_table() -> None:
    runbook = REPO / "examples" / "docs" / "runbooks" / "oncall-runbook.pdf"
    text = load(runbook, "pdf", runbook.read_bytes()).text
    assert "curl -fsS http://localhost:8743/healthz\njournalctl -u lumen" in text
    assert " | " not in text


def _scan() -> bytes:
    """A 'scanned' strip as a PNG: real Chinese lines (the textbook's page 1 rendered at 144 dpi)
    above an English line drawn with Pillow's own font."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw, ImageFont

    document = pdfium.PdfDocument(PUMPKIN.read_bytes())
    page = document[0].render(scale=2).to_pil().convert("L")
    document.close()
    canvas = Image.new("L", (900, 190), 255)
    canvas.paste(page.crop((90, 70, 990, 200)), (0, 0))
    font = ImageFont.load_default(size=30)
    ImageDraw.Draw(canvas).text((20, 140), ENGLISH, fill=0, font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _scanned_pdf() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(_scan())).save(buffer, format="PDF", resolution=144)
    return buffer.getvalue()


def _assert_scan_text(text: str) -> None:
    assert "Bagging" in text
    assert "随机森林" in text
    assert "的解释" in text
    assert ENGLISH in text


def test_a_scanned_page_is_read_by_ocr() -> None:
    progress: list[tuple[int, int]] = []
    loaded = load(
        Path("scan.pdf"),
        "pdf",
        _scanned_pdf(),
        LoadOptions(ocr="auto", on_page=lambda done, total: progress.append((done, total))),
    )
    _assert_scan_text(loaded.text)
    assert [page for page, _, _ in loaded.pages] == [1]
    assert loaded.ocr_pages == 1
    assert progress == [(1, 1)]


def test_a_scanned_page_is_reported_when_ocr_is_off() -> None:
    with pytest.raises(
        UnreadableFile, match=r"p\. 1: no text layer \(a scanned image\?\); OCR is off"
    ):
        load(Path("scan.pdf"), "pdf", _scanned_pdf(), LoadOptions(ocr="never"))


def test_ocr_always_reads_pages_that_have_text() -> None:
    data = _pdf_with_hidden_unicode([("Refunds take 30 days", False)])
    loaded = load(Path("t.pdf"), "pdf", data, LoadOptions(ocr="always"))
    assert loaded.ocr_pages == 1
    assert "Refunds take 30 days" in loaded.text


def test_an_image_is_read_by_ocr() -> None:
    loaded = load(Path("scan.png"), "image", _scan())
    _assert_scan_text(loaded.text)
    assert loaded.ocr_pages == 1
    with pytest.raises(NotText):
        load(Path("scan.png"), "image", _scan(), LoadOptions(ocr="never"))
    with pytest.raises(NotText):
        load(Path("logo.png"), "image", b"\x89PNG\r\n\x1a\n\x00\x00")


@pytest.fixture
def no_ocr_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if the `ocr` extra were not installed: importing rapidocr fails."""
    from core.loaders.ocr import _engine

    _engine.cache_clear()
    monkeypatch.setitem(sys.modules, "rapidocr", None)
    yield
    _engine.cache_clear()


@pytest.mark.usefixtures("no_ocr_package")
def test_without_the_ocr_extra_scans_name_it() -> None:
    with pytest.raises(MissingDependency, match=r"pip install 'kb\[ocr\]'"):
        load(Path("scan.pdf"), "pdf", _scanned_pdf())
    with pytest.raises(MissingDependency, match=r"pip install 'kb\[ocr\]'"):
        load(Path("scan.png"), "image", _scan())
    loaded = load(Path("g.pdf"), "pdf", _pdf_with_hidden_unicode(GARBLED))
    assert loaded.text == "Page one has a clean text layer."
    assert loaded.notes == (
        "p. 2: garbled text layer (private-use characters); "
        "OCR needs the optional package rapidocr (pip install 'kb[ocr]')",
    )
