"""Benchmark kb's document readers on real files: correctness, speed and memory, format by format.

Each entry of ``MEASURES`` measures one format and returns rows (``Row``: format, case, reader,
seconds, pages, a correctness figure); add a format by adding a function to that list.

* ``pdf``: the old reader (pypdf) and kb's (``core.loaders.pdf``, PDFium) side by side on every
  real PDF found (``--pdf FILE`` adds more): seconds, pages/s, Chinese characters recovered, and
  pages the mojibake check (``core.loaders.garble``) flags.
* ``ocr``: RapidOCR's character error rate (edit distance / reference length, after Unicode NFKC
  and with whitespace removed) at several render scales, on (a) pages of the docs-real textbook
  rendered by PDFium, against their own text layer, and (b) clean 12-pt pages drawn with Pillow
  in a CJK font (zh) and DejaVu Sans (en); seconds a page, pages/s and the process's peak memory
  so far (scales run in increasing order). Needs the `ocr` extra and, for (b), a CJK font
  (Debian: ``apt-get install fonts-wqy-microhei``).
* ``formats``: every other format (deck, workbook, CSV, JSON, JSON Lines, notebook, EPUB,
  subtitles, e-mail, OpenDocument), each a file made with its own library around known phrases
  (``benchmarks/documents_formats.py``): share of the known text recovered, files/s, peak memory.
* ``qa``: the questions of ``docs-real/qa.jsonl`` through the real ``kb ingest`` and ``kb ask --json``
  processes (bundled embedder, no LLM): the right page among the top 3 sources, and a gold answer in
  the extractive answer. Target: all five.
* ``ocr-install``: the installed size of the `ocr` extra (rapidocr, onnxruntime, OpenCV and the
  rest of what they pull in), summed from each distribution's file list.

Run from the repository root (OCR: about 10 s a page at scale 2 on 2 free cores)::

    python benchmarks/documents.py                       # everything
    python benchmarks/documents.py --only pdf            # one format
    python benchmarks/documents.py --scales 1 1.5 2 --ocr-pages 2

Prints a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import resource
import sys
import textwrap
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from core.loaders import LoadOptions  # noqa: E402
from core.loaders.garble import garbled  # noqa: E402

HAN = re.compile(r"[\u4e00-\u9fff]")
DOCS_REAL = next(
    (
        p
        for p in (REPO.parent / "shared/data/docs-real", REPO.parents[1] / "shared/data/docs-real")
        if p.is_dir()
    ),
    REPO.parent / "shared/data/docs-real",
)
PUMPKIN = DOCS_REAL / "pumpkin-book-p100-104.pdf"
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ENGLISH = (
    "The refund window is thirty days from the date of purchase for every plan. Annual plans "
    "get two months free and can be cancelled at any time from the billing page. When the health "
    "check fails, confirm from the host itself, then read the recent log before restarting the "
    "service. The disk alert fires when the data volume passes 85 percent; prune old backups "
    "and never delete files in the vault directory by hand. Usually a single token is exceeding "
    "120 requests per minute: find it and contact its owner before revoking it. "
)
OCR_EXTRA = (
    "rapidocr",
    "onnxruntime",
    "opencv-python-headless",
    "shapely",
    "pyclipper",
    "omegaconf",
    "colorlog",
    "flatbuffers",
    "protobuf",
    "antlr4-python3-runtime",
)


@dataclass(frozen=True)
class Row:
    """One measurement: a reader on one case."""

    format: str
    case: str
    reader: str
    seconds: float
    pages: int
    figure: str  # what was right: "2625 zh chars", "CER 0.4%", "312 MB"
    peak_mb: float = 0.0

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_pdfs(extra: Sequence[Path]) -> list[Path]:
    found = [PUMPKIN, REPO / "examples/docs/runbooks/oncall-runbook.pdf"]
    found += sorted(Path("/usr/share/doc").glob("*/*.pdf"))
    return [p for p in (*found, *extra) if p.is_file()]


def measure_pdf(args: argparse.Namespace) -> list[Row]:
    """pypdf (kb's old reader) against kb's PDFium reader on real PDFs."""
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    from core.loaders.pdf import load_pdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    rows = []
    for path in real_pdfs(args.pdf):
        data = path.read_bytes()
        started = time.perf_counter()
        pages = [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]
        seconds = time.perf_counter() - started
        text = "\n".join(pages)
        bad = sum(1 for page in pages if garbled(page))
        figure = f"{len(HAN.findall(text))} zh chars, {bad} garbled pages"
        rows.append(Row("pdf", path.name, "pypdf", seconds, len(pages), figure))
        started = time.perf_counter()
        document = pdfium.PdfDocument(data)
        text = "\n".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
        seconds = time.perf_counter() - started
        figure = f"{len(HAN.findall(text))} zh chars (no table finding)"
        rows.append(Row("pdf", path.name, "pypdfium2 bare", seconds, len(document), figure))
        document.close()
        started = time.perf_counter()
        loaded = load_pdf(data, path, "pdf", LoadOptions(ocr="never"))
        seconds = time.perf_counter() - started
        bad = len(loaded.notes)
        figure = f"{len(HAN.findall(loaded.text))} zh chars, {bad} garbled pages"
        total = max(page for page, _, _ in loaded.pages)
        rows.append(Row("pdf", path.name, "kb (pypdfium2)", seconds, total, figure))
    return rows


def cer(found: str, reference: str) -> float:
    """Character error rate: edit distance / reference length, NFKC, whitespace removed."""
    a = "".join(unicodedata.normalize("NFKC", found).split())
    b = "".join(unicodedata.normalize("NFKC", reference).split())
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        previous = current
    return previous[-1] / max(1, len(b))


def clean_page(text: str, font_path: str, scale: float, wrap: int) -> Any:
    """A page of 12-pt text (A4, 1-inch margins) drawn at `scale` (1 = 72 dpi)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, size=round(12 * scale))
    image = Image.new("L", (round(595 * scale), round(842 * scale)), 255)
    draw = ImageDraw.Draw(image)
    y = 72 * scale
    for line in textwrap.wrap(text, wrap):
        draw.text((72 * scale, y), line, fill=0, font=font)
        y += 18 * scale
        if y > 770 * scale:
            break
    return image


def measure_ocr(args: argparse.Namespace) -> list[Row]:
    """RapidOCR's character error rate and speed at several render scales."""
    import pypdfium2 as pdfium

    from core.loaders.ocr import _engine, read_image

    started = time.perf_counter()
    _engine()
    rows = [Row("ocr", "load models", "rapidocr", time.perf_counter() - started, 0, "", peak_mb())]
    document = pdfium.PdfDocument(PUMPKIN.read_bytes())
    references = []
    for index in range(min(args.ocr_pages, len(document))):
        page = document[index]
        textpage = page.get_textpage()
        references.append(textpage.get_text_range())
        textpage.close()
    zh_source = "".join(HAN.findall("".join(references))) or "中文"
    cjk_font = next((f for f in CJK_FONTS if Path(f).is_file()), None)
    for scale in sorted(args.scales):
        errors, seconds = [], 0.0
        for index, reference in enumerate(references):
            bitmap = document[index].render(scale=scale)
            image = bitmap.to_pil()
            started = time.perf_counter()
            found = read_image(image)
            seconds += time.perf_counter() - started
            bitmap.close()
            errors.append(cer(found, reference))
        figure = f"CER {100 * sum(errors) / len(errors):.1f}%"
        case = f"textbook p.1-{len(references)} x{scale:g}"
        rows.append(Row("ocr", case, "rapidocr", seconds, len(references), figure, peak_mb()))
        pages = [("en 12pt", ENGLISH * 4, LATIN_FONT, 90)]
        if cjk_font:
            pages.append(("zh 12pt", zh_source[:1200], cjk_font, 38))
        for name, text, font, wrap in pages:
            if not Path(font).is_file():
                continue
            image = clean_page(text, font, scale, wrap)
            lines = textwrap.wrap(text, wrap)[: 1 + int((770 - 72) / 18)]
            started = time.perf_counter()
            found = read_image(image)
            seconds = time.perf_counter() - started
            figure = f"CER {100 * cer(found, ''.join(lines)):.1f}%"
            rows.append(Row("ocr", f"{name} x{scale:g}", "rapidocr", seconds, 1, figure, peak_mb()))
    document.close()
    return rows


def measure_ocr_install(args: argparse.Namespace) -> list[Row]:
    """Installed size of the `ocr` extra (what pip adds for `kb[ocr]`)."""
    from importlib import metadata

    total = 0
    for name in OCR_EXTRA:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return [Row("ocr-install", "kb[ocr]", "pip", 0.0, 0, f"{total / 1024 / 1024:.0f} MB")]


def measure_formats(args: argparse.Namespace) -> list[Row]:
    import documents_formats

    rows = []
    for name in documents_formats.MAKERS:
        r = documents_formats.measure(name, args.repeat)
        seconds = 1 / float(str(r["files_per_s"])) if r["files_per_s"] else 0.0
        figure = f"{float(str(r['recovered'])):.0%} of known text, {r['spans']} spans"
        rows.append(Row(str(r["kind"]), name, "kb", seconds, 1, figure, float(str(r["peak_mb"]))))
    return rows


def measure_qa(args: argparse.Namespace) -> list[Row]:
    import os
    import subprocess
    import tempfile

    cases = [json.loads(line) for line in (DOCS_REAL / "qa.jsonl").read_text().splitlines()]
    kb = [sys.executable, "-m", "cli"]
    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "KB_KB__HOME": home}
        began = time.perf_counter()
        # Only the documents: the folder's qa.jsonl and README hold the questions themselves.
        sources = sorted({case["source"] for case in cases})
        paths = [str(DOCS_REAL / name) for name in sources]
        subprocess.run([*kb, "ingest", *paths], env=env, check=True, capture_output=True)
        rows.append(Row("qa", "kb ingest docs-real", "kb", time.perf_counter() - began, 5, "ok"))
        for case in cases:
            began = time.perf_counter()
            done = subprocess.run(
                [*kb, "ask", case["question"], "--json"], env=env, capture_output=True, text=True
            )
            seconds = time.perf_counter() - began
            answer = json.loads(done.stdout)
            pages = [s["page"] for s in answer["sources"][:3] if s["path"] == case["source"]]
            gold = any(g in answer["answer"] for g in case["answers"])
            figure = f"page {case['page']} in top 3: {case['page'] in pages}; gold: {gold}"
            rows.append(Row("qa", case["question"][:30], "kb ask", seconds, 1, figure))
    return rows


MEASURES: list[tuple[str, Callable[[argparse.Namespace], list[Row]]]] = [
    ("pdf", measure_pdf),
    ("formats", measure_formats),
    ("qa", measure_qa),
    ("ocr", measure_ocr),
    ("ocr-install", measure_ocr_install),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--only", choices=[name for name, _ in MEASURES], action="append")
    p.add_argument("--pdf", type=Path, action="append", default=[], help="another real PDF")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    p.add_argument("--ocr-pages", type=int, default=1, help="textbook pages to OCR per scale")
    p.add_argument("--repeat", type=int, default=10, help="reads per format file (formats)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[Row] = []
    for name, measure in MEASURES:
        if args.only and name not in args.only:
            continue
        for row in measure(args):
            rows.append(row)
            print(
                f"{row.format:<12} {row.case:<34} {row.reader:<15} {row.seconds:7.2f} s "
                f"{row.pages:4d} p {row.pages_per_s:7.2f} p/s  {row.figure:<30} "
                + (f"peak {row.peak_mb:.0f} MB" if row.peak_mb else ""),
                flush=True,
            )
    print(json.dumps([asdict(row) | {"pages_per_s": round(row.pages_per_s, 3)} for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
