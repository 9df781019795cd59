"""HTML: the main text with headings as Markdown `#` lines; navigation, scripts and page furniture dropped."""

from __future__ import annotations

import re
from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions
from core.loaders.text import decode


def load_html(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    """An HTML page's readable text."""
    return html_text(decode(data))


# Page furniture, never content. <header>/<footer> count as furniture only outside the main text.
_HTML_DROP = [
    "script",
    "style",
    "noscript",
    "nav",
    "aside",
    "svg",
    "iframe",
    "template",
    "button",
    "select",
    "input",
    "textarea",
    "canvas",
    "menu",
    "dialog",
]
_HTML_FURNITURE = ["header", "footer"]
_HTML_BLOCKS = [
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "dt",
    "dd",
    "blockquote",
    "table",
    "tr",
    "figcaption",
    "caption",
    "br",
    "hr",
    "ul",
    "ol",
]


def html_text(markup: str) -> LoadedText:
    import warnings

    from bs4 import BeautifulSoup

    # bs4 warns ("looks like a URL", "XML parsed as HTML") on stderr: a second line for one file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for role in ("navigation", "banner", "contentinfo", "search"):
        for tag in soup.find_all(True, attrs={"role": role}):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find(True, attrs={"role": "main"})
    if root is None:
        root = soup.body or soup
        for tag in root.find_all(_HTML_FURNITURE):
            if tag.find_parent(["article", "main"]) is None:
                tag.decompose()
    # Preformatted text keeps its lines and indentation, fenced so '#' lines are not headings.
    blocks: list[str] = []
    for pre in root.find_all("pre"):
        blocks.append(pre.get_text().strip("\n"))
        pre.replace_with(f"\n\n\x00{len(blocks) - 1}\x00\n\n")
    for level in range(1, 7):
        for heading in root.find_all(f"h{level}"):
            heading.insert_before(f"\n\n{'#' * level} ")
            heading.insert_after("\n\n")
    for block in root.find_all(_HTML_BLOCKS):
        block.insert_after("\n")
    for cell in root.find_all(["td", "th"]):
        cell.insert_after(" | ")
    raw = root.get_text()
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in raw.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = re.sub(r"\x00(\d+)\x00", lambda m: f"```\n{blocks[int(m.group(1))]}\n```", text)
    return LoadedText(text, "html", title=title)
