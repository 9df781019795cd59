"""Measuring retrieval on question sets: BEIR-layout folders and document-level metrics.

Metrics follow trec_eval as pytrec_eval computes them (linear gain nDCG, recall, reciprocal rank):
chunks are mapped back to their document, the best chunk counts, and every query of the qrels is
averaged in, so a query with no result scores 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from core.engine import Engine
from core.retrieve import RetrievalQuery, retrieve

Qrels = dict[str, dict[str, int]]  # query id -> {document id: relevance}
Ranking = dict[str, list[str]]  # query id -> document ids, best first
CHUNKS_PER_DOCUMENT = 3  # chunks fetched per wanted document, so k distinct documents come back


@dataclass(frozen=True)
class BeirSet:
    """A BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv, optional qa.jsonl."""

    name: str
    folder: Path
    queries: dict[str, str]  # only the queries the qrels judge
    qrels: Qrels
    answers: dict[str, list[str]]  # question id -> reference answers, from qa.jsonl

    def corpus(self) -> Iterator[dict[str, str]]:
        """Documents as {_id, title, text}."""
        with (self.folder / "corpus.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def load_beir(folder: Path, split: str = "test") -> BeirSet:
    """Read a BEIR-layout folder's queries, qrels of `split`, and qa.jsonl when present."""
    qrels: Qrels = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            parts = line.rstrip("\n").split("\t")
            if number == 0 and not parts[-1].strip().lstrip("-").isdigit():
                continue  # the header line
            query_id, doc_id, score = parts[0], parts[1], int(parts[-1])
            qrels.setdefault(query_id, {})[doc_id] = score
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if row["_id"] in qrels:
                    queries[row["_id"]] = row["text"]
    answers: dict[str, list[str]] = {}
    qa = folder / "qa.jsonl"
    if qa.exists():
        with qa.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    answers[row["id"]] = list(row.get("answers", []))
    return BeirSet(folder.name, folder, queries, qrels, answers)


def write_corpus(beir: BeirSet, target: Path) -> int:
    """Each document as `<_id>.md` (`# title` then the text), so `kb ingest` can read them.

    Files whose content is already right are left alone, so a second run re-ingests nothing.
    """
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for doc in beir.corpus():
        title, text = doc.get("title", "").strip(), doc.get("text", "")
        body = f"# {title}\n\n{text}\n" if title else f"{text}\n"
        path = target / f"{doc['_id']}.md"
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
        count += 1
    return count


def document_of(path: str) -> str:
    """The BEIR document id of an ingested `<_id>.md` file."""
    return Path(path).stem


def rank_documents(engine: Engine, query: RetrievalQuery, k: int = 10) -> list[str]:
    """The `k` best documents for the query, each ranked by its best chunk."""
    ranked: list[str] = []
    wide = replace(query, top_k=CHUNKS_PER_DOCUMENT * k)
    for source in retrieve(wide, engine).sources:
        doc = document_of(source.path)
        if doc not in ranked:
            ranked.append(doc)
    return ranked[:k]


def retrieval_metrics(
    qrels: Mapping[str, Mapping[str, int]], ranking: Ranking, k: int = 10
) -> dict[str, float]:
    """nDCG@k, recall@k, MRR@k and hit rate@k, averaged over every query in `qrels`."""
    import pytrec_eval

    run = {
        qid: {doc: float(len(docs) - rank) for rank, doc in enumerate(docs[:k])}
        for qid, docs in ranking.items()
        if docs and qid in qrels
    }
    measures = {f"ndcg_cut.{k}", f"recall.{k}", "recip_rank"}
    evaluator = pytrec_eval.RelevanceEvaluator({q: dict(r) for q, r in qrels.items()}, measures)
    per_query = evaluator.evaluate(run)
    total = max(1, len(qrels))

    def mean(key: str) -> float:
        return sum(per_query.get(q, {}).get(key, 0.0) for q in qrels) / total

    hits = sum(
        1 for q, rels in qrels.items() if any(rels.get(d, 0) > 0 for d in ranking.get(q, [])[:k])
    )
    return {
        f"ndcg@{k}": mean(f"ndcg_cut_{k}"),
        f"recall@{k}": mean(f"recall_{k}"),
        f"mrr@{k}": mean("recip_rank"),  # the run holds k documents, so this is MRR@k
        f"hit@{k}": hits / total,
    }


def contains_answer(answer: str, references: Sequence[str]) -> bool:
    """Whether `answer` contains a reference answer, ignoring case, width and punctuation."""
    flat = normalise(answer)
    return any(normalise(ref) and normalise(ref) in flat for ref in references)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation removed, whitespace collapsed."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in folded)
    return " ".join(kept.split())
