"""`kb ask`: hybrid retrieval over the knowledge base and an extractive, cited answer.

With no LLM configured the answer is extractive: the sentences of the retrieved chunks that share the
most keywords with the question, each followed by the [n] of its source. Deterministic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

from core.engine import Engine
from core.errors import NothingToAnswerFrom
from core.results import Answer, Source
from core.text import split_sentences, tokenize

_MODES = {
    "dense": VectorStoreQueryMode.DEFAULT,
    "sparse": VectorStoreQueryMode.SPARSE,
    "hybrid": VectorStoreQueryMode.HYBRID,
}
MAX_ANSWER_SENTENCES = 3


def retrieve(question: str, engine: Engine, *, mode: str, top_k: int) -> list[Source]:
    """The `top_k` chunks that best match `question`, as numbered sources."""
    embedder = engine.embedder
    embedding = embedder.get_query_embedding(question) if mode != "sparse" else None
    result = engine.store.query(
        VectorStoreQuery(
            query_embedding=embedding,
            query_str=question,
            similarity_top_k=top_k,
            mode=_MODES[mode],
        )
    )
    sources: list[Source] = []
    for n, (node, score) in enumerate(
        zip(result.nodes or [], result.similarities or [], strict=False), 1
    ):
        meta = node.metadata
        sources.append(
            Source(
                n=n,
                path=str(meta.get("path", "")),
                abs_path=str(meta.get("abs_path", "")),
                score=round(float(score), 4),
                text=node.get_content(),
                chunk_id=node.node_id,
                page=meta.get("page"),
                headings=tuple(meta.get("headings") or ()),
                line_start=meta.get("line_start"),
                line_end=meta.get("line_end"),
                lang=str(meta.get("lang", "")),
                file_type=str(meta.get("file_type", "")),
            )
        )
    return sources


@dataclass(frozen=True)
class _Scored:
    score: float
    source: int
    order: int
    text: str


def extractive_answer(question: str, sources: list[Source]) -> str:
    """The best-matching sentences, each with its [n]; falls back to the top chunk's opening."""
    terms = set(tokenize(question))
    scored: list[_Scored] = []
    for rank, source in enumerate(sources):
        headings = set(source.headings)
        for order, sentence in enumerate(split_sentences(source.text)):
            text = sentence.text
            if text.startswith("#"):  # a heading line: drop it, keep any text after it
                _, _, text = text.partition("\n")
            text = text.strip()
            words = set(tokenize(text))
            if not words or text in headings:
                continue
            overlap = len(terms & words) / max(1, len(terms))
            # Earlier (better-ranked) sources win ties.
            scored.append(_Scored(overlap - 0.02 * rank, source.n, order, text))
    best = sorted((s for s in scored if s.score > 0), key=lambda s: -s.score)[:MAX_ANSWER_SENTENCES]
    if not best:
        best = [s for s in scored if s.source == sources[0].n][:2]
    best.sort(key=lambda s: (s.source, s.order))
    return " ".join(f"{s.text} [{s.source}]" for s in best)


def ask(question: str, engine: Engine, *, mode: str, top_k: int) -> Answer:
    """Retrieve, then answer extractively with citations."""
    began = time.perf_counter()
    sources = retrieve(question, engine, mode=mode, top_k=top_k)
    retrieved = time.perf_counter()
    if not sources:
        raise NothingToAnswerFrom(
            "the knowledge base has nothing to answer from", hint="run `kb ingest PATH` first"
        )
    text = extractive_answer(question, sources)
    return Answer(
        question=question,
        answer=text,
        mode=mode,
        model="extractive",
        sources=tuple(sources),
        timings={
            "retrieve_s": round(retrieved - began, 4),
            "answer_s": round(time.perf_counter() - retrieved, 4),
        },
    )
