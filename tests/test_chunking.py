"""Sentences, keyword tokens and structure-aware chunking."""

from __future__ import annotations

import pytest

from core.chunking import chunk_text
from core.loaders import LoadedText, Span
from core.text import (
    approx_tokens,
    detect_language,
    sparse_document,
    sparse_query,
    split_sentences,
    tokenize,
)


def test_sentences_respect_chinese_and_english_boundaries() -> None:
    text = "退款窗口是30天。请联系客服！能退吗？The window is 30 days. Ask us (see FAQ). Done"
    got = [s.text for s in split_sentences(text)]
    assert got == [
        "退款窗口是30天。",
        "请联系客服！",
        "能退吗？",
        "The window is 30 days.",
        "Ask us (see FAQ).",
        "Done",
    ]
    for s in split_sentences(text, offset=5):
        assert text[s.start - 5 : s.end - 5] == s.text


def test_tokens_segment_chinese_and_stem_english() -> None:
    tokens = list(tokenize("退款窗口 The refunds were processed"))
    assert "退款" in tokens
    assert "窗口" in tokens
    assert "refund" in tokens
    assert "process" in tokens
    assert "the" not in tokens
    assert "were" not in tokens


def test_numbers_and_latin_words_are_not_glued_to_chinese() -> None:
    # "308分" must match a question about "多少分"; "NFL联盟" must match "NFL".
    tokens = list(tokenize("黑豹队只丢了308分，领先NFL联盟"))
    assert "308" in tokens
    assert "分" in tokens
    assert "nfl" in tokens
    assert "联盟" in tokens


def test_full_width_text_is_normalised() -> None:
    assert list(tokenize("ＡＰＩ")) == list(tokenize("api"))


def test_sparse_vectors_share_terms_between_query_and_document() -> None:
    doc_idx, doc_val = sparse_document("refund window refund")
    q_idx, q_val = sparse_query("the refund")
    assert set(q_idx) <= set(doc_idx)
    assert q_val == [1.0]
    # Repeated terms weigh more, with BM25 saturation.
    weights = dict(zip(doc_idx, doc_val, strict=True))
    assert weights[q_idx[0]] > min(doc_val)


@pytest.mark.parametrize(
    ("text", "lang"),
    [("部署需要至少 2 GB 内存", "zh"), ("Deploy with 2 GB of memory", "en"), ("12345 !!", "other")],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


MARKDOWN = """# Guide
Intro sentence.

## Install
### Docker
Run the image. It listens on port 8743.

```
# a comment, not a heading
```

## 配置
同步间隔是15秒。冲突策略是保留两份！
"""


def test_markdown_chunks_carry_heading_path_lines_and_offsets() -> None:
    loaded = LoadedText(MARKDOWN, "markdown")
    chunks = chunk_text(loaded, count_tokens=approx_tokens, chunk_size=200, chunk_overlap=20)
    paths = [c.heading_path for c in chunks]
    assert paths == [("Guide",), ("Guide", "Install", "Docker"), ("Guide", "配置")]
    docker = chunks[1]
    assert "# a comment, not a heading" in docker.text  # code fences are not headings
    assert docker.text.startswith("## Install")  # a heading with no body joins the next section
    for chunk in chunks:
        assert MARKDOWN[chunk.start : chunk.end] == chunk.text
        assert chunk.line_start is not None
        assert chunk.line_end is not None
        first_line = MARKDOWN.splitlines()[chunk.line_start - 1]
        assert chunk.text.startswith(first_line.strip())


def test_chunks_fit_the_budget_and_overlap() -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(200))
    chunks = chunk_text(
        LoadedText(text, "text"), count_tokens=approx_tokens, chunk_size=60, chunk_overlap=15
    )
    assert len(chunks) > 5
    assert all(approx_tokens(c.text) <= 60 + 5 for c in chunks)
    # Neighbours share a sentence.
    assert chunks[0].end > chunks[1].start


def test_chinese_chunks_break_at_sentence_ends() -> None:
    text = "".join(f"第{i}条规则说明了同步的细节，并且包含很多文字。" for i in range(80))
    chunks = chunk_text(
        LoadedText(text, "text"), count_tokens=approx_tokens, chunk_size=80, chunk_overlap=0
    )
    assert len(chunks) > 3
    assert all(c.text.endswith("。") for c in chunks)


def test_overlong_sentence_is_split_to_fit() -> None:
    text = "word, " * 600
    chunks = chunk_text(
        LoadedText(text, "text"), count_tokens=approx_tokens, chunk_size=50, chunk_overlap=0
    )
    assert len(chunks) > 10
    assert all(approx_tokens(c.text) <= 50 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "").rstrip()


def test_pdf_chunks_keep_their_page() -> None:
    text = "Page one text.\n\nPage two text."
    loaded = LoadedText(text, "pdf", spans=(Span(0, 14, "p. 1", 1), Span(16, 30, "p. 2", 2)))
    chunks = chunk_text(loaded, count_tokens=approx_tokens, chunk_size=100, chunk_overlap=0)
    assert [(c.page, c.text) for c in chunks] == [(1, "Page one text."), (2, "Page two text.")]
    assert chunks[0].line_start is None


def test_code_is_chunked_by_lines() -> None:
    code = "\n".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(40))
    chunks = chunk_text(
        LoadedText(code, "code"), count_tokens=approx_tokens, chunk_size=40, chunk_overlap=0
    )
    assert len(chunks) > 3
    assert all(c.text.startswith(("def", "    return")) for c in chunks)


@pytest.mark.parametrize("text", ["x" * 5000, "abc def " * 3000, "第一段没有标点符号" * 700])
def test_text_without_sentence_ends_is_cut_to_fit_and_loses_nothing(text: str) -> None:
    chunks = chunk_text(
        LoadedText(text, "text"), count_tokens=approx_tokens, chunk_size=100, chunk_overlap=10
    )
    assert len(chunks) > 5
    assert all(approx_tokens(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_fences_close_only_on_a_matching_fence() -> None:
    text = "# Top\nIntro.\n\n````md\n```\n# not a heading\n```\n~~~\n# nor this\n````\n\n## Real\nBody.\n"
    chunks = chunk_text(
        LoadedText(text, "markdown"), count_tokens=approx_tokens, chunk_size=200, chunk_overlap=0
    )
    assert [c.heading_path for c in chunks] == [("Top",), ("Top", "Real")]
