"""Scoring: document-level retrieval metrics and answer metrics.

Metrics follow trec_eval as pytrec_eval computes them (linear gain nDCG, recall, reciprocal rank):
chunks are mapped back to their document, the best chunk counts, and every query of the qrels is
averaged in, so a query with no result scores 0.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from core.results import Source

Qrels = dict[str, dict[str, int]]  # query id -> {document id: relevance}
Ranking = dict[str, list[str]]  # query id -> document ids, best first
_CJK_CHAR = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CJK_PIECE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\u3400-\u9fff\uf900-\ufaff\s]+")
_CITED = re.compile(r"\[(\d+)\]")
_SPACE_BY_CJK = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff]) | (?=[\u3400-\u9fff\uf900-\ufaff])")
_CITATIONS = re.compile(r"(?:\s*\[\d+\])+")


def query_metrics(
    qrels: Mapping[str, Mapping[str, int]], ranking: Ranking, k: int = 10
) -> dict[str, dict[str, float]]:
    """Per query: nDCG@k, recall@k, MRR@k and hit@k (trec_eval's definitions, via pytrec_eval).

    A query without results (or absent from `ranking`) scores 0 everywhere.
    """
    import pytrec_eval

    run = {
        qid: {doc: float(len(docs) - rank) for rank, doc in enumerate(docs[:k])}
        for qid, docs in ranking.items()
        if docs and qid in qrels
    }
    judged = {q: dict(r) for q, r in qrels.items() if any(v > 0 for v in r.values())}
    measures = {f"ndcg_cut.{k}", f"recall.{k}", "recip_rank"}
    scored = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(run) if judged else {}
    out: dict[str, dict[str, float]] = {}
    for qid, rels in qrels.items():
        values = scored.get(qid, {})
        top = ranking.get(qid, [])[:k]
        out[qid] = {
            f"ndcg@{k}": float(values.get(f"ndcg_cut_{k}", 0.0)),
            f"recall@{k}": float(values.get(f"recall_{k}", 0.0)),
            f"mrr@{k}": float(values.get("recip_rank", 0.0)),  # the run holds k documents
            f"hit@{k}": 1.0 if any(rels.get(doc, 0) > 0 for doc in top) else 0.0,
        }
    return out


def retrieval_metrics(
    qrels: Mapping[str, Mapping[str, int]], ranking: Ranking, k: int = 10
) -> dict[str, float]:
    """nDCG@k, recall@k, MRR@k and hit rate@k, averaged over every query in `qrels`."""
    return mean_retrieval(query_metrics(qrels, ranking, k), k)


def mean_retrieval(per_query: Mapping[str, Mapping[str, float]], k: int) -> dict[str, float]:
    """`query_metrics` averaged over its queries."""
    names = [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}", f"hit@{k}"]
    total = max(1, len(per_query))
    return {name: sum(v[name] for v in per_query.values()) / total for name in names}


def contains_answer(answer: str, references: Sequence[str]) -> bool:
    """Whether `answer` contains a reference answer, ignoring case, width and punctuation."""
    flat = normalise(answer)
    return any(normalise(ref) and normalise(ref) in flat for ref in references)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation removed, whitespace collapsed (and dropped next to Chinese)."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in folded)
    return _SPACE_BY_CJK.sub("", " ".join(kept.split()))


def token_f1(answer: str, references: Sequence[str]) -> float:
    """SQuAD-style token F1 against the best reference; Chinese is compared character by character."""
    mine = _f1_tokens(answer)
    best = 0.0
    for reference in references:
        theirs = _f1_tokens(reference)
        common = sum((Counter(mine) & Counter(theirs)).values())
        if common:
            precision, recall = common / len(mine), common / len(theirs)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _f1_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for word in normalise(text).split():
        tokens.extend(_CJK_PIECE.findall(word) if _CJK_CHAR.search(word) else [word])
    return tokens


def answer_metrics(
    text: str, sources: Sequence[Source], references: Sequence[str]
) -> dict[str, float]:
    """Per answer: contains and token F1 against the references (when given), citation validity
    (when it cites)."""
    metrics: dict[str, float] = {}
    if references:
        metrics["contains"] = 1.0 if contains_answer(text, references) else 0.0
        metrics["f1"] = token_f1(text, references)
    validity = citation_validity(text, sources)
    if validity is not None:
        metrics["citation_validity"] = validity
    return metrics


def citation_validity(text: str, sources: Sequence[Source]) -> float | None:
    """Share of [n] that name a shown source whose text supports the claim it follows.

    The claim is the text between the previous citation and this one; it is supported when the
    source contains at least half of its keywords. None when the answer cites nothing.
    """
    from core.text import tokenize

    by_number = {s.n: s for s in sources}
    total = supported = 0
    start = 0
    for group in _CITATIONS.finditer(text):
        claim = set(tokenize(text[start : group.start()]))
        start = group.end()
        for number in (int(n) for n in _CITED.findall(group.group())):
            total += 1
            source = by_number.get(number)
            if source is None:
                continue
            if not claim or len(claim & set(tokenize(source.text))) >= 0.5 * len(claim):
                supported += 1
    return supported / total if total else None
