"""Retrieval: dense, keyword (sparse) and hybrid search over one knowledge base.

Hybrid fuses scores, not ranks: each chunk's dense (cosine) and keyword (BM25) scores are min-max
normalised over the whole knowledge base and combined as `w * dense + (1 - w) * keyword`
(`[retrieval] dense_weight`). Measured better than reciprocal-rank fusion on SciFact and XQuAD
(README, performance). The normalisation is cheap: the highest score is the top hit, the lowest
keyword score is 0 (a chunk sharing no word), and the lowest cosine is the knowledge base's floor:
the mean lowest cosine of its calibration questions in the question's language (`core.answerability`,
recorded at ingest), else minus the top score of the negated query (a second scan of every vector,
exact, or once the store is indexed a rough search). The floor saves that scan (~3.5 ms on SciFact,
a third of the search) at the same nDCG@10 within 0.0015 (README, performance); about the lowest is
enough.
Every candidate gets both scores (the engine scores the missing side for exactly those ids), so a
chunk found by one side only is never ranked on half its evidence. The searches go to the store in
two batches; payloads are read only for the candidates that rank high enough to be looked at.

Language balance: the bundled e5 model scores same-language pairs about 0.07 higher, so in a
knowledge base holding several languages a Chinese question would rarely reach an English chunk.
With `balance_languages`, the dense search runs once per language present (a filtered search on
the indexed `lang` field) and each language's cosines are normalised over that language alone.

Then near-duplicate chunks are collapsed, an optional cross-encoder reranks, and neighbouring
chunks can be added around each hit (`context`). No LlamaIndex import on this path: a cold
`kb ask --retrieve-only` stays well under a second.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from core.answerability import dense_floors, load_calibration, relevance
from core.config import Settings
from core.embedders import dual_split
from core.engine import Engine, Search
from core.errors import ConfigError
from core.loaders import file_kinds
from core.results import Source
from core.text import NO_LANGUAGE, detect_language, tokenize

Mode = Literal["hybrid", "dense", "sparse"]
# Per search (and at least 4x top_k). 50, not 100: the same chunks come back in the same order
# (top 5 and top 10: SciFact with local and local-dual-int8, XQuAD en, zh, zh->en), and a
# question costs ~9% less CPU (fewer hits to read, fewer candidates to fill in).
CANDIDATES = 50
RERANK_POOL = 30
CROSS_SCALE = math.sqrt(0.5)  # both halves of a `local-dual` query weigh the same
TERM_LIMIT = 100  # chunks counted per question keyword (rarity needs no more)
MAX_TERMS = 16
NEAR_DUPLICATE = 0.9  # Jaccard similarity of character trigrams above which two chunks are one
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RetrievalQuery:
    """What to look for and where."""

    question: str
    mode: Mode = "hybrid"
    top_k: int = 5
    paths: tuple[str, ...] = ()  # globs over the indexed path (root-relative) or absolute path
    file_types: tuple[str, ...] = ()
    context: int = 0  # neighbouring chunks added on each side of a hit
    dense_weight: float = 0.6
    balance_languages: bool = True

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        question: str,
        *,
        mode: Mode | None = None,
        top_k: int | None = None,
        context: int | None = None,
        paths: tuple[str, ...] = (),
        file_types: tuple[str, ...] = (),
    ) -> RetrievalQuery:
        """The query `[retrieval]` settings describe for `question`; a keyword given wins."""
        cfg = settings.retrieval
        return cls(
            question,
            mode=cfg.mode if mode is None else mode,
            top_k=cfg.top_k if top_k is None else top_k,
            paths=paths,
            file_types=file_types,
            context=cfg.context if context is None else context,
            dense_weight=cfg.dense_weight,
            balance_languages=cfg.balance_languages,
        )


@dataclass(frozen=True)
class Retrieval:
    """Ranked sources plus what the answer step needs to judge them."""

    query: RetrievalQuery
    sources: tuple[Source, ...]
    best_dense: float | None  # highest cosine of any chunk, None when no dense search ran
    languages: tuple[str, ...]  # languages searched separately (empty: one search)
    timings: dict[str, float] = field(default_factory=dict)
    empty: bool = False  # the knowledge base holds no chunk at all
    kb_languages: tuple[str, ...] = ()  # languages of the chunks searched (empty: not known)
    language_chunks: dict[str, int] = field(default_factory=dict)  # chunks per language
    # The highest cosine among each language's chunks (as `best_dense` reads it), when the chunks'
    # language is known: what `core.answerability` calibrates each language's relevance against.
    language_best: dict[str, float] = field(default_factory=dict)
    # The lowest cosine among each language's chunks, where it was scanned (`scan_lowest`).
    language_lowest: dict[str, float] = field(default_factory=dict)
    # How many chunks hold each of the question's keywords (counted up to TERM_LIMIT), and how many
    # chunks were searched: the rarity of its words, for `core.answerability`.
    term_chunks: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    # The knowledge base's baseline the relevances were computed against (`core.answerability`),
    # read once: the decision to answer uses the same one.
    calibration: dict[str, Any] | None = None


@dataclass
class _Candidate:
    id: str
    payload: dict[str, Any] = field(default_factory=dict)  # read once the candidate ranks high
    dense: float | None = None
    sparse: float = 0.0
    score: float = 0.0
    group: str | None = None  # the language whose search gave the dense score (None: one search)
    also_in: list[str] = field(default_factory=list)  # paths of near-duplicates folded into it


@dataclass(frozen=True)
class _Group:
    """The chunks of one language (or all): the query vector they are searched with, the conditions
    that select them, what scales their top cosine back to e5's (`local-dual`), the language its
    chunks are written in (None: not known), and their floor."""

    vector: list[float]
    conditions: dict[str, Any]
    scale: float
    written_in: str | None
    floor: float | None = None  # the calibrated lowest cosine (None: scanned for, if needed)

    def scans_lowest(self, mode: Mode, asked: bool) -> bool:
        """Whether the farthest chunk is searched for: asked to, or hybrid fusion needs the lowest
        cosine and no floor is known (dense and keyword ranking never read it)."""
        return asked or (mode == "hybrid" and self.floor is None)


def retrieve(
    query: RetrievalQuery,
    engine: Engine,
    *,
    vector: list[float] | None = None,
    scan_lowest: bool = False,
) -> Retrieval:
    """The `top_k` chunks that best match the question, as numbered sources (`vector`: the
    question's vector when already known; `scan_lowest`: each language's lowest cosine scanned
    for, not read from the calibrated floor, and reported in `language_lowest`)."""
    began = time.perf_counter()
    conditions = _conditions(query, engine)
    calibration = load_calibration(engine.kb_dir)
    shard = engine.shard
    depth = max(CANDIDATES, 4 * query.top_k)
    asked_in = detect_language(query.question)
    present: list[str] = []
    counts: dict[str, int] = {}  # chunks per language
    if query.mode != "sparse":
        counts = {str(lang): n for lang, n in shard.facet("lang", conditions).items()}
        present = sorted(counts)
    # Chunks in no detected language (numbers, symbols: `detect_language`'s "other") are no
    # language to balance or to cross to: they are searched with the question's language (else
    # the first one), not normalised on their own, where the best of a few tables would score 1.
    spoken = [lang for lang in present if lang != NO_LANGUAGE] or present
    if query.balance_languages and len(spoken) > 1:
        searched_in: tuple[str | None, ...] = tuple(spoken)
    else:
        searched_in = (spoken[0] if len(spoken) == 1 else None,)
    embed_began = time.perf_counter()
    if query.mode == "sparse":
        vector = None
    elif vector is None:
        # Every chunk in the question's language: a two-model embedder's cross-language half
        # would be zeroed (`_group_vector`), so it is not computed.
        across = any(written_in != asked_in for written_in in searched_in)
        vector = engine.query_vector(query.question, across_languages=across)
    embedded = time.perf_counter()

    candidates: dict[str, _Candidate] = {}
    ranges: dict[str | None, tuple[float, float]] = {}  # language -> (lowest, highest) cosine
    languages: tuple[str, ...] = ()
    best_dense: float | None = None
    language_best: dict[str, float] = {}
    groups: dict[str | None, _Group] = {}  # language (None: all at once) -> how it is searched
    searches: list[Search] = []
    # Hybrid fusion normalises cosines from each language's lowest: the calibrated floor of the
    # whole knowledge base (not of a `--path`/`--type` subset), else scanned for.
    floors: dict[str, float] = {}
    if query.mode == "hybrid" and not scan_lowest and not conditions:
        floors = dense_floors(calibration, asked_in)
    if vector is not None:
        if query.balance_languages and len(spoken) > 1:
            languages = tuple(spoken)
        host = asked_in if asked_in in languages else (languages[0] if languages else None)
        split = dual_split(engine.settings.embedding)
        for language, written_in in zip(languages or (None,), searched_in, strict=True):
            scoped = conditions
            if language:
                with_none = language == host and NO_LANGUAGE in present
                scoped = {**conditions, "lang": [language, NO_LANGUAGE] if with_none else language}
            same = written_in == asked_in
            # With both models in one vector, a same-language search measures e5 alone at 1/sqrt(2).
            scale = math.sqrt(2) if split and same else 1.0
            group_vector = _group_vector(vector, split, same_language=same)
            floor = floors.get(written_in) if written_in else None
            group = _Group(group_vector, scoped, scale, written_in, floor)
            groups[language] = group
            searches.append(Search(depth, group.vector, conditions=scoped, with_payload=False))
            if group.scans_lowest(query.mode, scan_lowest):
                # The farthest chunk (nearest to the negated query): its cosine is the lowest.
                negated = [-x for x in group.vector]
                searches.append(
                    Search(1, negated, conditions=scoped, with_payload=False, rough=True)
                )
    terms: list[str] = []
    if query.mode != "dense":
        searches.append(
            Search(depth, text=query.question, conditions=conditions, with_payload=False)
        )
        terms = list(dict.fromkeys(tokenize(query.question)))[:MAX_TERMS]
        searches += [
            Search(TERM_LIMIT, text=t, conditions=conditions, with_payload=False, count_only=True)
            for t in terms
        ]
    results = iter(shard.search_many(searches))
    stages = {"search_s": time.perf_counter()}  # stage -> when it ended (durations below)
    language_lowest: dict[str, float] = {}
    for language, group in groups.items():
        hits = next(results)
        farthest = next(results) if group.scans_lowest(query.mode, scan_lowest) else []
        if not hits:
            continue
        if farthest:
            lowest = -farthest[0].score
            if group.written_in:
                language_lowest[group.written_in] = lowest
        else:  # the floor, or lower when this question's own hits go below it
            lowest = min(group.floor if group.floor is not None else 0.0, hits[-1].score)
        ranges[language] = (lowest, hits[0].score)
        top = hits[0].score * group.scale
        best_dense = top if best_dense is None else max(best_dense, top)
        if group.written_in:
            language_best[group.written_in] = top
        for hit in hits:
            candidates[hit.id] = _Candidate(hit.id, dense=hit.score, group=language)
    best_sparse = 0.0
    if query.mode != "dense":
        hits = next(results)
        best_sparse = hits[0].score if hits else 0.0
        for hit in hits:
            candidate = candidates.setdefault(hit.id, _Candidate(hit.id))
            candidate.sparse = hit.score
    term_chunks = {term: len(next(results)) for term in terms}
    if query.mode == "hybrid" and vector is not None and best_sparse > 0:
        _fill_missing(query.question, groups, candidates, engine, conditions)
    searched = time.perf_counter()
    stages["fill_missing_s"] = searched
    for candidate in candidates.values():
        candidate.score = _score(candidate, query, ranges, best_sparse)
    ranked = sorted(candidates.values(), key=lambda c: (-c.score, c.id))
    stages["fusion_s"] = time.perf_counter()
    reranker = engine.reranker
    keep = max(query.top_k, RERANK_POOL) if reranker is not None else query.top_k
    ranked = _collapse_near_duplicates(ranked, limit=keep, engine=engine)
    stages["collapse_s"] = time.perf_counter()
    if reranker is not None and ranked:
        pool = ranked[:RERANK_POOL]
        scores = reranker.rerank(query.question, [str(c.payload.get("text", "")) for c in pool])
        for candidate, score in zip(pool, scores, strict=True):
            candidate.score = float(score)
        ranked = sorted(pool, key=lambda c: (-c.score, c.id))
        stages["rerank_s"] = time.perf_counter()
    chosen = ranked[: query.top_k]
    thresholds = engine.refusal

    def relevant(candidate: _Candidate) -> float | None:
        if candidate.dense is None:
            return None
        scale = groups[candidate.group].scale if candidate.group in groups else 1.0
        lang = str(candidate.payload.get("lang", ""))
        same = lang == asked_in or (lang in ("", NO_LANGUAGE) and asked_in in present)
        text = str(candidate.payload.get("text", ""))
        return relevance(
            candidate.dense * scale,
            query.question,
            text,
            same,
            calibration,
            thresholds,
            term_chunks,
            count,
            written_in=lang,
        )

    count = shard.count() if terms and calibration else 0
    sources = tuple(
        _source(n, candidate, engine, query.context, relevant(candidate))
        for n, candidate in enumerate(chosen, 1)
    )
    done = time.perf_counter()
    return Retrieval(
        query=query,
        sources=sources,
        best_dense=best_dense,
        languages=languages,
        empty=not sources and shard.count() == 0,
        kb_languages=tuple(present),
        language_chunks=counts,
        language_best=language_best,
        language_lowest=language_lowest,
        term_chunks=term_chunks,
        calibration=calibration,
        chunks=count or (shard.count() if terms else 0),
        timings={
            "embed_s": round(embedded - embed_began, 4),
            "search_s": round(searched - embedded + embed_began - began, 4),
            "retrieve_s": round(done - began, 4),
            **_durations(embedded, stages),
        },
    )


def _durations(start: float, ends: dict[str, float]) -> dict[str, float]:
    """`--trace`'s finer stages: each stage's end time (in order) as the seconds it took."""
    out: dict[str, float] = {}
    for name, end in ends.items():
        out[f"stage_{name}"] = round(end - start, 4)
        start = end
    return out


def _conditions(query: RetrievalQuery, engine: Engine) -> dict[str, Any]:
    """Payload conditions for `--path` and `--type`."""
    conditions: dict[str, Any] = {}
    unknown = [t for t in query.file_types if t not in file_kinds()]
    if unknown:
        raise ConfigError(
            f"unknown file type {unknown[0]!r}", hint=f"use one of: {', '.join(file_kinds())}"
        )
    if query.file_types:
        conditions["file_type"] = list(query.file_types)
    if query.paths:
        doc_ids = [
            str(record["doc_id"])
            for record in engine.shard.records()
            if any(
                pattern == str(record.get(key, ""))  # a literal name, even with [brackets]
                or fnmatch.fnmatchcase(str(record.get(key, "")), pattern)
                for pattern in query.paths
                for key in ("path", "abs_path")
            )
        ]
        if not doc_ids:
            raise ConfigError(
                f"no indexed file matches --path {' '.join(query.paths)}",
                hint="`kb sources` lists the indexed paths; quote globs so the shell leaves them alone",
            )
        conditions["doc_id"] = doc_ids
    return conditions


def _group_vector(vector: list[float], split: int | None, *, same_language: bool) -> list[float]:
    """The query vector for one language's chunks. With both bundled models in one vector
    (`local-dual`), chunks in the question's language are searched with e5 alone (its half kept,
    the USE half zeroed) and other languages' chunks with both halves (the mean of both cosines)."""
    if split is None:
        return vector
    if same_language:
        return vector[:split] + [0.0] * (len(vector) - split)
    return [x * CROSS_SCALE for x in vector]


def _fill_missing(
    question: str,
    groups: dict[str | None, _Group],
    candidates: dict[str, _Candidate],
    engine: Engine,
    conditions: dict[str, Any],
) -> None:
    """Score each candidate on the side that did not find it, all in one batch of searches
    restricted to those ids. Dense: each language's search with its own query, which finds exactly
    the candidates written in that language."""
    searches: list[tuple[str | None, Search]] = []
    no_dense = [c.id for c in candidates.values() if c.dense is None]
    if no_dense:
        for language, group in groups.items():
            search = Search(len(no_dense), group.vector, None, group.conditions, no_dense, False)
            searches.append((language, search))
    no_sparse = [c.id for c in candidates.values() if c.sparse == 0.0]
    if no_sparse:
        searches.append(
            (None, Search(len(no_sparse), None, question, conditions, no_sparse, False))
        )
    answers = engine.shard.search_many([search for _, search in searches])
    for (language, search), hits in zip(searches, answers, strict=True):
        for hit in hits:
            if search.vector is not None:
                candidates[hit.id].dense = hit.score
                candidates[hit.id].group = language
            else:
                candidates[hit.id].sparse = hit.score


def _score(
    candidate: _Candidate,
    query: RetrievalQuery,
    ranges: dict[str | None, tuple[float, float]],
    best_sparse: float,
) -> float:
    if query.mode == "sparse":
        return candidate.sparse
    dense = candidate.dense if candidate.dense is not None else -1.0
    if query.mode == "dense":
        return dense
    low, high = ranges.get(candidate.group, (0.0, 1.0))
    dense_norm = (dense - low) / (high - low) if high > low else 1.0
    sparse_norm = candidate.sparse / best_sparse if best_sparse > 0 else 0.0
    weight = query.dense_weight
    return weight * min(1.0, max(0.0, dense_norm)) + (1 - weight) * sparse_norm


def _collapse_near_duplicates(
    ranked: list[_Candidate], *, limit: int, engine: Engine
) -> list[_Candidate]:
    """Keep the best of chunks whose text is (nearly) the same: copies of a file, repeated
    boilerplate. Payloads are read here, a page at a time, only for the candidates looked at."""
    kept: list[_Candidate] = []
    shingles: list[set[str]] = []
    page = limit  # a near-duplicate is rare: reading only what is needed first is cheaper
    for start in range(0, len(ranked), page):
        window = ranked[start : start + page]
        payloads = engine.shard.payloads([c.id for c in window if not c.payload])
        for candidate in window:
            candidate.payload = candidate.payload or payloads.get(candidate.id, {})
            grams = _trigrams(str(candidate.payload.get("text", "")))
            path = str(candidate.payload.get("path", ""))
            twin = next(
                (
                    i
                    for i, other in enumerate(shingles)
                    if _near(grams, other)
                    or (path != kept[i].payload.get("path") and _within(grams, other))
                ),
                None,
            )
            if twin is not None:  # the same text again: one source, naming the other files
                first = kept[twin]
                if path and path != first.payload.get("path") and path not in first.also_in:
                    first.also_in.append(path)
                continue
            kept.append(candidate)
            shingles.append(grams)
            if len(kept) >= limit:
                return kept
    return kept


def _within(a: set[str], b: set[str]) -> bool:
    """Whether the smaller of two chunks is (nearly) all inside the other: the same text cut
    differently in another file (a talk as .txt and as .srt). NEAR_DUPLICATE of it is shared."""
    small = min(len(a), len(b))
    return small >= 20 and len(a & b) >= NEAR_DUPLICATE * small


def _trigrams(text: str) -> set[str]:
    flat = _SPACE.sub(" ", text.lower()).strip()
    return {flat[i : i + 3] for i in range(max(1, len(flat) - 2))}


def _near(a: set[str], b: set[str]) -> bool:
    """Jaccard similarity of at least NEAR_DUPLICATE (sizes too far apart cannot reach it)."""
    small, large = sorted((len(a), len(b)))
    if not small or small < NEAR_DUPLICATE * large:
        return False
    return len(a & b) >= NEAR_DUPLICATE * len(a | b)


def _source(
    n: int, candidate: _Candidate, engine: Engine, context: int, relevance: float | None
) -> Source:
    meta = candidate.payload
    text = str(meta.get("text", ""))
    line_start, line_end = meta.get("line_start"), meta.get("line_end")
    if context > 0 and meta.get("chunk_index") is not None:
        index = int(meta["chunk_index"])
        wanted = [i for i in range(index - context, index + context + 1) if i >= 0 and i != index]
        around = engine.shard.neighbours(str(meta.get("doc_id")), wanted)
        pieces = sorted([*(hit.payload for hit in around), meta], key=_chunk_index)
        text = _stitch(pieces)
        line_start = pieces[0].get("line_start", line_start)
        line_end = pieces[-1].get("line_end", line_end)
    return Source(
        n=n,
        path=str(meta.get("path", "")),
        abs_path=str(meta.get("abs_path", "")),
        score=round(candidate.score, 4),
        text=text,
        chunk_id=candidate.id,
        page=meta.get("page"),
        headings=tuple(meta.get("headings") or ()),
        line_start=line_start,
        line_end=line_end,
        location=str(meta.get("location") or ""),
        also_in=tuple(candidate.also_in),
        lang=str(meta.get("lang", "")),
        file_type=str(meta.get("file_type", "")),
        doc_id=str(meta.get("doc_id", "")),
        chunk_index=meta.get("chunk_index"),
        dense_score=None if candidate.dense is None else round(candidate.dense, 4),
        keyword_score=round(candidate.sparse, 4),
        relevance=relevance,
    )


def _chunk_index(payload: dict[str, Any]) -> int:
    return int(payload.get("chunk_index", 0))


def _stitch(pieces: list[dict[str, Any]]) -> str:
    """Neighbouring chunks as one text: overlapping characters (by file offsets) appear once."""
    text = str(pieces[0].get("text", ""))
    end = pieces[0].get("end_char")
    for piece in pieces[1:]:
        body = str(piece.get("text", ""))
        start = piece.get("start_char")
        if isinstance(end, int) and isinstance(start, int) and start < end:
            body = body[end - start :]  # the overlap with the previous chunk
            text += body
        else:
            text += "\n\n" + body
        end = piece.get("end_char", end)
    return text
