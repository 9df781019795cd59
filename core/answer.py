"""`kb ask`: retrieve, then answer with [n] citations that are checked against the sources shown.

- Refusal first: when `core.answerability` finds the question unanswerable (its best cosine is not
  clearly above this knowledge base's everyday-question baseline, or the top sources miss most of
  its words, or nothing matched), the answer says the knowledge base does not cover the question,
  names the signal that refused, lists the nearest sources and never calls an LLM.
- With no LLM configured the answer is extractive: the sentences of the retrieved chunks that share
  the most (rarest) words with the question, each followed by its [n]. Deterministic.
- With an LLM, the prompt fences the sources as data (`core.prompts`); tokens reach the caller as
  they arrive, reasoning (`<think>…</think>` or a `reasoning_content` stream) kept apart. After
  generation every [n] is checked: numbers that are not a shown source are removed and reported;
  an answer left with no citation gets the extractive passages as its support.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from core.answerability import (
    SENTENCES_READ,
    Thresholds,
    Verdict,
    WordVectors,
    decide,
    sentence_matches,
)
from core.engine import Engine
from core.errors import NothingToAnswerFrom
from core.prompts import NOT_FOUND, answer_messages, not_found_text
from core.results import Answer, Source
from core.retrieve import Retrieval
from core.text import NO_LANGUAGE, answer_sentences, detect_language, tokenize

MAX_ANSWER_SENTENCES = 3
OnEvent = Callable[[str, str], None]  # (kind, text): kind is "token" or "thinking"
_CITATION = re.compile(r"\[(\s*\d+(?:\s*[,，、;]\s*\d+)*\s*)\]")
_NUMBER = re.compile(r"\d+")


def answer(
    retrieval: Retrieval,
    engine: Engine,
    *,
    on_event: OnEvent | None = None,
    show_thinking: bool = False,
    asked: str | None = None,
) -> Answer:
    """Answer the retrieved question: refused, extractive or generated, with checked citations
    (`asked`: what the person typed, when the question retrieved was rewritten from it).

    Needs the engine's settings and models, not its store: callers may `release()` the knowledge
    base first, so a long generation never keeps `kb ingest` waiting.
    """
    question = retrieval.query.question
    sources = list(retrieval.sources)
    if retrieval.empty:
        raise NothingToAnswerFrom(
            "the knowledge base is empty", hint="run `kb ingest PATH` to add documents"
        )
    lang = detect_language(question)
    verdict = judge(retrieval, engine)
    threshold = verdict.threshold if verdict.signal == "dense" else min_score(engine)
    base = Answer(
        question=question,
        answer="",
        mode=retrieval.query.mode,
        model="none",
        sources=tuple(sources),
        timings=retrieval.timings,
        best_score=retrieval.best_dense,
        min_score=threshold or 0.0,
        refusal=verdict.reason(),
        signals=verdict.signals,
    )
    began = time.perf_counter()
    if not verdict.answerable:
        return replace(base, answer=not_found_text(lang), kind="refused")
    llm = engine.llm
    if llm is None:
        text, cited = extractive_answer(question, sources, asked=asked, words=engine.word_vectors)
        return replace(
            base,
            answer=text,
            model="extractive",
            kind="extractive",
            citations=cited,
            timings={**retrieval.timings, "answer_s": round(time.perf_counter() - began, 4)},
        )

    from llama_index.core.llms import ChatMessage

    messages = [
        ChatMessage(role=role, content=content)
        for role, content in answer_messages(question, lang, sources)
    ]
    visible: list[str] = []
    thinking: list[str] = []
    splitter = ThinkSplitter()
    first_token: float | None = None

    def emit(kind: str, text: str) -> None:
        nonlocal first_token
        if not text:
            return
        if kind == "token":
            if first_token is None:
                first_token = time.perf_counter()
            visible.append(text)
        else:
            thinking.append(text)
            if not show_thinking:
                return
        if on_event is not None:
            on_event(kind, text)

    usage: dict[str, int] = {}
    for chunk in llm.stream_chat(messages):
        usage = chunk.additional_kwargs.get("usage") or usage
        reasoning = chunk.additional_kwargs.get("reasoning_delta")
        if reasoning:
            emit("thinking", str(reasoning))
        for kind, text in splitter.feed(chunk.delta or ""):
            emit(kind, text)
    for kind, text in splitter.flush():
        emit(kind, text)
    generated = time.perf_counter()

    raw = "".join(visible).strip()
    text, cited, invalid = check_citations(raw, len(sources))
    kind = "not_found" if _says_not_found(text) and not cited else "generated"
    supporting = ""
    if kind == "generated" and not cited:
        supporting, cited = extractive_answer(question, sources)
    timings = {
        **retrieval.timings,
        "first_token_s": round((first_token or generated) - began, 4),
        "generate_s": round(generated - began, 4),
    }
    return replace(
        base,
        answer=text,
        model=str(llm.metadata.model_name),
        kind=kind,
        citations=cited,
        invalid_citations=invalid,
        supporting=supporting,
        thinking="".join(thinking).strip() if show_thinking else "",
        timings=timings,
        usage=usage,
    )


def min_score(engine: Engine) -> float:
    """The cosine refusal threshold: `[retrieval] min_score`, or for "auto" the one calibrated for
    the embedder the knowledge base was built with (used without a baseline)."""
    configured = engine.settings.retrieval.min_score
    if configured == "auto":
        return engine.refusal.dense
    return float(configured)


def judge(retrieval: Retrieval, engine: Engine) -> Verdict:
    """Whether to answer: `core.answerability` with this knowledge base's baseline and its
    embedder's thresholds, or with `[retrieval] min_score` set to a number, that one cosine
    threshold alone (0: never refuse)."""
    configured = engine.settings.retrieval.min_score
    if configured == "auto":
        return decide(retrieval, retrieval.calibration, engine.refusal, words=engine.word_vectors)
    return decide(retrieval, None, Thresholds(), fallback=float(configured), keywords=False)


def _says_not_found(text: str) -> bool:
    flat = text.strip().rstrip(".。!！").lower()
    return any(flat.startswith(p.rstrip(".。").lower()) for p in NOT_FOUND.values())


# -------------------------------------------------------------------------------- citations


def check_citations(text: str, count: int) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """Keep the [n] that name a shown source (1..count), drop the rest.

    Returns the cleaned text, the valid numbers in order of first use, and the removed citations.
    `[1, 2]` is written as `[1][2]`.
    """
    cited: list[int] = []
    invalid: list[str] = []

    def fix(match: re.Match[str]) -> str:
        numbers = [int(x) for x in _NUMBER.findall(match.group(1))]
        good = [n for n in numbers if 1 <= n <= count]
        invalid.extend(f"[{n}]" for n in numbers if not 1 <= n <= count)
        for n in good:
            if n not in cited:
                cited.append(n)
        return "".join(f"[{n}]" for n in good)

    cleaned = _CITATION.sub(fix, text)
    if invalid:
        cleaned = re.sub(r"[ \t]+([.,;:!?。，；：！？])", r"\1", cleaned)
        cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    return cleaned.strip(), tuple(cited), tuple(invalid)


# -------------------------------------------------------------------------------- reasoning


class ThinkSplitter:
    """Splits a token stream into answer text and `<think>…</think>` reasoning, across chunk edges."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._buffer = ""
        self._inside = False

    def feed(self, delta: str) -> Iterator[tuple[str, str]]:
        """("token" | "thinking", text) pieces of `delta`; a possible tag prefix is held back."""
        self._buffer += delta
        while self._buffer:
            tag = self.CLOSE if self._inside else self.OPEN
            kind = "thinking" if self._inside else "token"
            at = self._buffer.find(tag)
            if at >= 0:
                if at:
                    yield kind, self._buffer[:at]
                self._buffer = self._buffer[at + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_suffix(self._buffer, tag)
            cut = len(self._buffer) - keep
            if cut:
                yield kind, self._buffer[:cut]
            self._buffer = self._buffer[cut:]
            return

    def flush(self) -> Iterator[tuple[str, str]]:
        """Whatever is held back, at the end of the stream."""
        if self._buffer:
            yield ("thinking" if self._inside else "token"), self._buffer
        self._buffer = ""


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


# -------------------------------------------------------------------------------- extractive


@dataclass(frozen=True)
class _Scored:
    score: float
    source: int
    order: int
    text: str


# Sentence scoring (measured on XQuAD-en/zh, benchmarks/answerability.py): the question's words
# shared, minus the source's relevance gap to the best source, plus a part of the best neighbouring
# sentence's score (an answer often sits next to the sentence that repeats the question).
RELEVANCE_GAP_WEIGHT = 0.5
RANK_STEP = 0.02  # per rank, for sources without a calibrated relevance
NEIGHBOUR_WEIGHT = 0.3
TOPIC_WEIGHT = 0.25  # a follow-up's topic words, next to its own (`kb chat`)


Nearest = Callable[[list[str]], int]  # the index of the sentence nearest the question


def extractive_answer(
    question: str,
    sources: Sequence[Source],
    *,
    nearest: Nearest | None = None,
    asked: str | None = None,
    words: WordVectors | None = None,
) -> tuple[str, tuple[int, ...]]:
    """The sentences that best match the question, each followed by its [n], and the [n] used.

    A sentence scores the summed weight of the question's words it contains, rarer words (within the
    retrieved text) weighing more, minus its source's relevance gap to the most relevant source (or
    a little per rank), plus a part of the better neighbouring sentence's score in the same source.
    Title lines are never answer sentences, but a short one holding a number (a version, a date) is
    put before the sentences under it, and a sentence ending in a colon takes the line after it.
    Falls back to the opening of the best source when no sentence shares a word with the question.
    A source in another language than the question shares no word with it. When the most relevant
    source is one, the answer opens with the LEADS sentences of the top LEAD_SOURCES sources in
    other languages nearest the question: their `core.answerability.sentence_matches` (the cosine
    of their USE vectors plus the share of the question's words they translate, the signal that
    decided the question answerable), plus a part of their source's relevance (`words`: USE's
    vectors of words and short texts). Without them, with
    the most relevant source's sentence nearest the question by `nearest` (the knowledge base's
    embedder), else its opening.
    `asked`: what the person typed when `question` is a chat follow-up asked with its topic ("那内存
    需要多少？ (Nginx 反向代理…)"): the topic's own words weigh only TOPIC_WEIGHT, so the sentence
    answering the follow-up beats the one that answered the topic.
    """
    terms = set(tokenize(question))
    own = set(tokenize(asked)) if asked else terms
    sentences: list[tuple[int, int, str, set[str]]] = []
    frequency: Counter[str] = Counter()
    for rank, source in enumerate(sources):
        for order, text in enumerate(answer_sentences(source.text, source.headings)):
            tokens = set(tokenize(text))
            if not tokens:
                continue
            sentences.append((rank, order, text, tokens))
            frequency.update(tokens & terms)
    total = max(1, len(sentences))
    weight = {
        t: math.log(1 + total / (1 + frequency[t])) * (1.0 if t in own else TOPIC_WEIGHT)
        for t in terms
    }
    possible = sum(weight.values()) or 1.0
    behind = _behind_best(sources)
    raw = [
        sum(weight[t] for t in words & terms) / possible - behind[rank]
        for rank, _, _, words in sentences
    ]
    scored = []
    for i, (rank, order, text, _) in enumerate(sentences):
        score = raw[i]
        if score > 0:  # the sentences around it speak of the question too: "He ... at age 39."
            around = [raw[j] for j in (i - 1, i + 1) if 0 <= j < total and sentences[j][0] == rank]
            score += NEIGHBOUR_WEIGHT * max([0.0, *around])
        scored.append(_Scored(score, sources[rank].n, order, text))
    if asked:  # a follow-up: sentences naming none of its own words answered the topic before
        speaks = [bool(words & own) for _, _, _, words in sentences]
        if any(speaks):
            scored = [s for s, ok in zip(scored, speaks, strict=True) if ok]
    leads = _other_language_leads(question, sources, nearest, words)
    taken = {lead.text for lead in leads}
    best = sorted(
        (s for s in scored if s.score > 0 and s.text not in taken),
        key=lambda s: -s.score,
    )[: MAX_ANSWER_SENTENCES - min(len(leads), 1)]
    if not best and not leads:
        best = [s for s in scored if s.source == sources[0].n][:2]
    best.sort(key=lambda s: (s.source, s.order))
    # The best lead opens the answer; the next ones fill what sentences sharing words left.
    best[:0] = leads[: max(1, MAX_ANSWER_SENTENCES - len(best))]
    cited = tuple(dict.fromkeys(s.source for s in best))
    return " ".join(f"{s.text} [{s.source}]" for s in best), cited


def _behind_best(sources: Sequence[Source]) -> list[float]:
    """What each source's sentences lose for being less relevant than the best source: the gap in
    calibrated relevance (0-1, `core.answerability`), or without one a little per rank."""
    known = [s.relevance for s in sources if s.relevance is not None]
    if len(known) < len(sources) or not known:
        return [RANK_STEP * rank for rank in range(len(sources))]
    top = max(known)
    return [RELEVANCE_GAP_WEIGHT * (top - (s.relevance or 0.0)) for s in sources]


def _other_language_leads(
    question: str,
    sources: Sequence[Source],
    nearest: Nearest | None = None,
    words: WordVectors | None = None,
) -> list[_Scored]:
    """The sentences that open an answer when the most relevant source is written in another
    language than the question: no word is shared to pick them by, but its relevance says it is
    the best match (a Chinese guide answering an English question). See `extractive_answer`."""
    rated = [s for s in sources if s.relevance is not None and s.relevance >= 0.5]
    if not rated:
        return []
    top = max(rated, key=lambda s: s.relevance or 0.0)
    lang = detect_language(question)
    if top.lang in ("", lang, NO_LANGUAGE) or lang == NO_LANGUAGE:
        return []
    if words is not None:
        across = [s for s in sources if s.lang not in ("", lang, NO_LANGUAGE)][:LEAD_SOURCES]
        candidates = [
            (source, order, text)
            for source in across
            for order, text in enumerate(
                answer_sentences(source.text, source.headings)[:LEAD_CANDIDATES]
            )
        ]
        if not candidates:
            return []
        matches = sentence_matches(question, [text for _, _, text in candidates], words)
        scored = [
            _Scored(
                match + LEAD_RELEVANCE * (source.relevance or 0.0),
                source.n,
                order - LEAD_CANDIDATES,  # before the sentences found by shared words
                text,
            )
            for (source, order, text), match in zip(candidates, matches, strict=True)
        ]
        return sorted(scored, key=lambda s: -s.score)[:LEADS]
    opening = answer_sentences(top.text, top.headings)
    if not opening:
        return []
    pick = nearest(opening[:LEAD_CANDIDATES]) if nearest is not None and len(opening) > 1 else 0
    return [_Scored(1.0, top.n, -1, opening[pick])]


LEAD_CANDIDATES = SENTENCES_READ  # sentences of an other-language source read (the decision's too)
# An answer across languages opens with the LEADS sentences, of the top LEAD_SOURCES sources in
# another language, that score best: USE cosine to the question + translated word coverage +
# LEAD_RELEVANCE x their source's relevance. Chinese XQuAD questions on the English articles and
# the reverse (400 each), gold answer among the lead sentences: 0.795 / 0.835 (one sentence: 0.682 /
# 0.713; without the cosine 0.785 / 0.815); the former lead, the most relevant source's sentence
# nearest the question by the knowledge base's embedder, 0.573 / 0.613 (300 each), and it embedded
# up to 16 passages per answer.
LEADS = 2
LEAD_SOURCES = 3
LEAD_RELEVANCE = 0.5


def nearest_to(question: str, engine: Engine) -> Nearest:
    """Which of some sentences is nearest `question` by the knowledge base's own embedder (the
    vectors are normalised: a dot product is the cosine)."""

    def nearest(sentences: list[str]) -> int:
        asked = engine.query_vector(question)
        vectors = engine.passage_vectors(sentences)
        scores = [sum(a * b for a, b in zip(asked, v, strict=False)) for v in vectors]
        return max(range(len(scores)), key=scores.__getitem__)

    return nearest
