"""Text analysis shared by chunking and keyword search: language, sentences, BM25 sparse vectors.

One tokenizer serves mixed Chinese/English text: CJK runs are segmented with jieba
(`lcut_for_search`, one-character words kept), Latin words are lower-cased, stop-word filtered and
Snowball-stemmed. Sparse vectors carry the BM25 term-frequency part; the IDF part lives in the
engine (Qdrant's IDF modifier), so it stays right as documents come and go.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

ANALYZER_VERSION = "jieba-snowball-v2"  # v2: digits and Latin no longer glued to Chinese
BM25_K1 = 1.2
BM25_B = 0.75
BM25_AVG_LEN = 256.0

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_TOKEN = re.compile(f"[{_CJK}]+|[^\\W_{_CJK}]+", re.UNICODE)
_LATIN = re.compile(r"[A-Za-z]+")
_SENTENCE_END = re.compile(
    r"(?<=[。！？；])"  # Chinese sentence punctuation
    r"|(?<=[.!?;])\s+|(?<=[.!?;][\"')\]])\s+"  # English, optionally closed by a quote/bracket
    r"|\n\s*\n"  # blank line
    r"|\n(?=[ \t]*(?:[-*+•]\s|\d+[.)]\s|#|\|))"  # a list item, heading or table row
)

_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)


@dataclass(frozen=True)
class Sentence:
    """A sentence and its character span in the text it came from."""

    text: str
    start: int
    end: int


NO_LANGUAGE = "other"  # what `detect_language` says of text with no CJK and no Latin word


def detect_language(text: str) -> str:
    """`zh` when CJK characters outweigh Latin words, `en` for Latin script, else `other`."""
    cjk = sum(len(run) for run in _CJK_RUN.findall(text))
    latin_words = len(_LATIN.findall(text))
    if cjk == 0 and latin_words == 0:
        return NO_LANGUAGE
    # A Chinese character carries about as much as an English word.
    return "zh" if cjk >= latin_words else "en"


def split_sentences(text: str, offset: int = 0) -> list[Sentence]:
    """Sentences with their spans; Chinese (。！？；) and English boundaries and blank lines."""
    sentences: list[Sentence] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if end > start:
            _append_stripped(sentences, text, start, end, offset)
        start = max(match.end(), start)
    _append_stripped(sentences, text, start, len(text), offset)
    return sentences


def _append_stripped(out: list[Sentence], text: str, start: int, end: int, offset: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    begin = start + lead
    out.append(Sentence(stripped, offset + begin, offset + begin + len(stripped)))


@cache
def _jieba_cut() -> Callable[[str], list[str]]:
    """`jieba.lcut_for_search`, reading jieba's dictionary word by word while little text is cut
    (core.jiebadict: the same tokens, ~0.55 s less CPU for a one-shot `kb ask`)."""
    import jieba

    from core import jiebadict

    jieba.setLogLevel(logging.WARNING)
    return jiebadict.segmenter()


@cache
def _stem() -> Callable[[str], str]:
    import snowballstemmer

    stemmer = snowballstemmer.stemmer("english")
    # Words repeat: remembering stems makes the pure-Python Snowball stemmer ~20x cheaper per chunk.
    stem: Callable[[str], str] = lru_cache(maxsize=1 << 18)(stemmer.stemWord)
    return stem


def tokenize(text: str) -> Iterator[str]:
    """Keyword tokens for BM25: jieba words for CJK, stemmed non-stop-words otherwise."""
    stem = _stem()
    for word in _words(text):
        yield stem(word) if word.isascii() else word  # jieba's words are never ASCII


def _words(text: str) -> Iterator[str]:
    """The keyword tokenizer's words before stemming: lower-cased non-stop-words, and jieba's
    words of CJK runs."""
    normalised = unicodedata.normalize("NFKC", text).lower()
    for token in _TOKEN.findall(normalised):
        if token.isascii():  # most tokens: never a CJK run
            if token not in _STOPWORDS:
                yield token
        elif _CJK_RUN.fullmatch(token):
            for word in _jieba_cut()(token):
                if word.strip():
                    yield word
        elif token not in _STOPWORDS:
            yield token


# Chinese function and question words: jieba keeps them as words, and in a question they carry no
# topic (the keyword side lets IDF discount them; a word-for-word comparison across languages cannot).
_ZH_FUNCTION = """的 了 是 在 和 与 及 或 有 没有 什么 哪 哪个 哪些 哪里 哪儿 哪种 哪一 哪一个 哪位 谁 为什么
    为何 怎么 怎样 怎么样 如何 多少 几 多 吗 呢 吧 啊 呀 么 这 那 这个 那个 这些 那些 一个 一种 一 个
    种 被 把 对 从 到 为 以 于 之 也 都 而 其 他 她 它 他们 她们 它们 我 你 您 我们 你们 自己 可以 会
    能 要 就 还 又 等 由 所 该 着 过 给 让 使 将 并 但 但是 因为 所以 如果 是否 是不是 不 上 下 中 里
    内 后 前 时 时候 当 已 已经 曾 曾经 被称为 称为 叫 叫做 哪年 何时 何 多久 一下 最 很 更 得 地
    就是 还是 或者 以及 什么样 主要 通常 应该 需要 能否 可能 才 再 刚 刚才 正在 一些 有些 有关"""
_ZH_FUNCTION_WORDS = frozenset(_ZH_FUNCTION.split())
# English words the stop list keeps that say nothing of a topic in a question (stemmed forms).
_EN_FILLER = frozenset({"mani", "much", "also", "may", "might", "must", "shall", "whose", "one"})
_EN_FILLER |= {"get", "make", "use", "us"}


def surface_words(text: str) -> list[str]:
    """The keyword tokenizer's words of `text`, each once and unstemmed (lower-cased), without
    single letters outside CJK: for comparing words across languages by their vectors, where a stem
    ("studi") would not be a word."""
    words = dict.fromkeys(_words(text))
    return [w for w in words if len(w) > 1 or not w.isalpha() or _CJK_RUN.match(w)]


def topic_words(text: str) -> list[str]:
    """The `surface_words` of a question that name its topic: without Chinese function words and
    English fillers, and without jieba's shorter search-mode pieces of a longer word."""
    stem = _stem()
    words = [
        w
        for w in surface_words(text)
        if w not in _ZH_FUNCTION_WORDS and not (w.isascii() and stem(w) in _EN_FILLER)
    ]
    return [w for w in words if not any(w != other and w in other for other in words)]


def _term_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8"))


def sparse_document(text: str) -> tuple[list[int], list[float]]:
    """BM25 term-frequency weights of a document, as (indices, values); IDF is applied by the engine."""
    counts = Counter(_term_id(token) for token in tokenize(text))
    length = sum(counts.values())
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / BM25_AVG_LEN)
    indices = sorted(counts)
    values = [counts[i] * (BM25_K1 + 1) / (counts[i] + norm) for i in indices]
    return indices, values


def sparse_query(text: str) -> tuple[list[int], list[float]]:
    """A query's distinct terms, each weighted 1."""
    indices = sorted({_term_id(token) for token in tokenize(text)})
    return indices, [1.0] * len(indices)


_APPROX_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+|[^\w\s]", re.UNICODE)


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: a token per CJK character or symbol, one or more per word
    (long words are several sub-word pieces), plus a margin."""
    pieces = sum(1 + len(token) // 6 for token in _APPROX_TOKEN.findall(text))
    return int(pieces * 1.3) + 2


# -------------------------------------------------------------------------------- answer sentences

# Abbreviations after which a full stop does not end a sentence (lower-cased, without the dot).
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "al",
        "approx",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "no",
        "nos",
        "fig",
        "figs",
        "eq",
        "eqs",
        "vol",
        "ed",
        "eds",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "est",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "a.m",
        "p.m",
        "ca",
        "ch",
        "sec",
        "p",
        "pp",
        "ref",
        "refs",
        # titles before a name: "Rev. Paul T. Stallsworth", "Gen. Braddock", "Gov. Dinwiddie"
        "rev",
        "gen",
        "gov",
        "sen",
        "rep",
        "col",
        "capt",
        "lt",
        "sgt",
        "hon",
        "fr",
        "messrs",
    ]
)
_UNDERLINE = re.compile(r"^\s*(?:([=\-~*_^+#])\1{2,}|\|?[\s:|-]*-{3,}[\s:|-]*)\s*$")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_ITEM = re.compile(r"^\s*(?:[-*+•]\s|\d+[.)]\s|\|)")
_SENTENCE_STOP = re.compile(r"[.!?。！？]\s*$")
_LINE_END = re.compile(r"[.!?;:,。！？；：，、)\]\"'”’]\s*$")
# The section labels of a structured abstract (scientific and medical papers), written inline in
# capitals: "BACKGROUND Vitamin D ... RESULTS We found ...". A sentence starting with one gets the
# label as a title of its own, not glued to its first words. Words, not any capitals: "NASA
# Administrator ..." keeps its acronym, and text in capitals ("REVIEW THE TERMS") is no label.
_LABEL_WORDS = (
    "ABSTRACT|ACQUISITION|AIMS?|AND|BACKGROUND|CASE|CLINICAL|CONCLUSIONS?|CONTEXT|DATA|DESIGN|"
    "DISCUSSION|EVIDENCE|EXTRACTION|FINDINGS|FUNDING|IMPORTANCE|INTERPRETATION|INTERVENTIONS?|"
    "INTRODUCTION|LIMITATIONS|MAIN|MATERIALS?|MEASUREMENTS?|MEASURES?|METHODOLOGY|METHODS?|"
    "OBJECTIVES?|OF|OUTCOMES?|PARTICIPANTS|PATIENTS|PRINCIPAL|PURPOSE|RATIONALE|REGISTRATION|"
    "RELEVANCE|REPORT|RESULTS|REVIEW|SELECTION|SETTINGS?|SIGNIFICANCE|SOURCES|STUDY|SUMMARY|"
    "SYNTHESIS|TRIAL"
)
_JOINERS = ("AND", "OF")  # label words that neither start nor end a label
_ABSTRACT_LABEL = re.compile(
    rf"^((?:{_LABEL_WORDS})(?:\s*(?:&|/|,)?\s*(?:{_LABEL_WORDS}))*)\s*[:.]?\s+(?=[A-Z0-9(\"“])"
)
_EN_BREAK = re.compile(r"[.!?;](?:[\"')\]”’]*)(?=\s+)")
_ZH_BREAK = re.compile(r"[。！？；]+[”’」』)）]*")
_WORD_BEFORE = re.compile(r"(?<![\w-])([\w.]+)$")  # a whole word: "Hi-C." ends no initial
_OPEN = "(（[［【"
_CLOSE = ")）]］】"
_BRACKET_REACH = 160  # characters: how far ahead an open bracket's close is looked for
_SHORT_LINE = 48  # characters: a title line or a line after a colon this short may be the answer
_VERSION_OR_DATE = re.compile(r"\d+(?:\.\d+){1,3}|\d{4}[-/.年]\d{1,2}")


@dataclass(frozen=True)
class AnswerUnit:
    """A sentence of a chunk for extractive answers; `heading` marks a title line (not answer
    text, but it may carry the answer: a version, a date), `block` numbers the paragraph."""

    text: str
    heading: bool
    block: int


def answer_units(text: str) -> list[AnswerUnit]:
    """A chunk as clean sentences: underline rows dropped, title lines kept apart (Markdown `#`,
    setext `===`, a short unpunctuated line before a paragraph, or a structured abstract's inline
    label), lines wrapped inside a paragraph joined, and no break after "e.g.", "Dr.", initials or
    inside numbers."""
    lines = text.splitlines()
    blocks: list[tuple[bool, list[str]]] = []  # (heading, lines)
    current: list[str] = []

    def close(heading: bool = False) -> None:
        nonlocal current
        if current:
            blocks.append((heading, current))
        current = []

    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            close()
            continue
        if _UNDERLINE.match(line):
            if len(current) == 1 and not _SENTENCE_STOP.search(current[0]):
                close(heading=True)  # a setext heading: the line above is a title
            else:
                close()
            continue
        if _MD_HEADING.match(raw):
            close()
            blocks.append((True, [line.lstrip("#").strip()]))
            continue
        if _ITEM.match(raw):
            close()
            current = [re.sub(r"^\s*(?:[-*+•]|\d+[.)])\s+", "", raw).strip()]
            continue
        following = next((x.strip() for x in lines[index + 1 :] if x.strip()), "")
        if not current and _looks_like_title(line, following):
            blocks.append((True, [line]))
            continue
        current.append(line)
    close()

    units: list[AnswerUnit] = []
    for number, (heading, block) in enumerate(blocks):
        joined = _join_lines(block)
        if heading:
            units.append(AnswerUnit(joined, True, number))
            continue
        for sentence in _sentences(joined):
            label, rest = _abstract_label(sentence)
            if label:
                units.append(AnswerUnit(label, True, number))
            units.append(AnswerUnit(rest, False, number))
    return units


def answer_sentences(text: str, headings: Sequence[str] = ()) -> list[str]:
    """A chunk's sentences as an answer shows them (`answer_units`): no title lines, nor a line
    that is one of the chunk's `headings`; a short title holding a number (a version, a date) put
    before the sentences under it; a line ending in a colon with the short line after it."""
    units = answer_units(text)
    titles = set(headings)
    out: list[str] = []
    title = ""
    taken = -1  # the unit a line ending in a colon took with it: not a sentence again
    for index, unit in enumerate(units):
        if index == taken:
            continue
        if unit.heading:
            short = len(unit.text) <= _SHORT_LINE
            title = unit.text if short and _VERSION_OR_DATE.search(unit.text) else ""
            continue
        sentence = unit.text
        if sentence in titles:
            continue
        if sentence.endswith((":", "：")) and index + 1 < len(units):
            after = units[index + 1].text
            if len(after) <= _SHORT_LINE:
                sentence = f"{sentence} {after}"
                taken = index + 1
        if title and title not in sentence:
            sentence = f"{title}: {sentence}"
        out.append(sentence)
    return out


def _abstract_label(sentence: str) -> tuple[str, str]:
    """A structured abstract's inline label at the start of `sentence`, and the sentence after it
    (no label: "" and the sentence)."""
    found = _ABSTRACT_LABEL.match(sentence)
    if found is None:
        return "", sentence
    words = found.group(1).replace("/", " ").split()
    rest = sentence[found.end() :]
    if words[0] in _JOINERS or words[-1] in _JOINERS or not any(c.islower() for c in rest):
        return "", sentence  # a sentence in capitals throughout is no labelled one
    return found.group(1), rest


def _looks_like_title(line: str, following: str) -> bool:
    """A short line without closing punctuation, followed by text that starts a sentence."""
    if not following or _LINE_END.search(line) or _UNDERLINE.match(following):
        return False
    cjk = len(_CJK_RUN.findall(line)) and sum(len(r) for r in _CJK_RUN.findall(line))
    short = cjk <= 16 if cjk else len(line.split()) <= 6
    starts = following[0]
    return bool(short) and (starts.isupper() or bool(_CJK_RUN.match(starts)) or starts.isdigit())


def _join_lines(lines: list[str]) -> str:
    out = lines[0]
    for line in lines[1:]:
        glue = "" if _CJK_RUN.search(out[-1:]) and _CJK_RUN.match(line[:1]) else " "
        out += glue + line
    return out


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _ZH_BREAK.finditer(text):
        if _inside_brackets(text, start, match.end()):
            continue  # "重建 ( 琼斯等人，1998 年；波拉克，1998 年) 的支持。" is one sentence
        _split_english(text[start : match.end()], pieces)
        start = match.end()
    _split_english(text[start:], pieces)
    return [p for p in pieces if p]


def _split_english(text: str, out: list[str]) -> None:
    start = 0
    for match in _EN_BREAK.finditer(text):
        end = match.end()
        if text[match.start()] == "." and _abbreviation(text[start : match.start()]):
            continue
        rest = text[end:].lstrip()
        if rest[:1].islower():  # "the value (approx. 3) is" - a sentence goes on in lower case
            continue
        if _inside_brackets(text, start, end):
            continue
        out.append(text[start:end].strip())
        start = end
    tail = text[start:].strip()
    if tail:
        out.append(tail)


def _inside_brackets(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` leaves a bracket open that closes soon after `end`: a list of
    citations or an aside in brackets is not cut in two."""
    depth = 0
    for char in text[start:end]:
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE and depth:
            depth -= 1
    if not depth:
        return False
    ahead = text[end : end + _BRACKET_REACH]
    closing = min((ahead.find(c) for c in _CLOSE if c in ahead), default=-1)
    opening = min((ahead.find(c) for c in _OPEN if c in ahead), default=len(ahead))
    return 0 <= closing < opening


def _abbreviation(before: str) -> bool:
    """Whether the word before a full stop is an abbreviation or an initial."""
    found = _WORD_BEFORE.search(before)
    if not found:
        return False
    word = found.group(1).lower().strip(".")
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())
