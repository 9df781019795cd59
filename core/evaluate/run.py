"""Running a question set: retrieve (and answer, and judge) every question, then score the run."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from core.engine import Engine
from core.errors import ConfigError
from core.evaluate.cases import EvalCase, resolve_sources
from core.evaluate.metrics import Ranking, answer_metrics, mean_retrieval, query_metrics
from core.results import CaseResult, EvalReport, InputProblem, Source
from core.retrieve import Mode, RetrievalQuery, retrieve

ANSWER_METRICS = ("contains", "f1", "citation_validity")  # of every answered run
JUDGE_METRICS = ("faithfulness", "relevancy")  # of a run with --judge
CHUNKS_PER_DOCUMENT = 3  # chunks fetched per wanted document, so k distinct documents come back
_SCORE = re.compile(r"[1-5]")


def run_eval(
    cases: Sequence[EvalCase],
    engine: Engine,
    *,
    mode: Mode,
    k: int = 10,
    answers: bool = True,
    judge: bool = False,
    problems: Sequence[InputProblem] = (),
    name: str = "",
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Retrieve (and answer) every case; score retrieval at document level and the answers."""
    from core.answer import answer as make_answer

    qrels, unknown = resolve_sources(cases, engine.shard.records())
    cfg = engine.settings.retrieval
    if judge and engine.llm is None:
        raise ConfigError("--judge needs an LLM", hint="configure [llm] provider (see `kb config`)")
    results: list[CaseResult] = []
    ranking: Ranking = {}
    for done, case in enumerate(cases):
        query = RetrievalQuery.from_settings(
            engine.settings,
            case.question,
            mode=mode,
            top_k=CHUNKS_PER_DOCUMENT * k,
            context=0,  # scored by document: no neighbouring chunks
        )
        began = time.perf_counter()
        retrieval = retrieve(query, engine)
        retrieved_s = time.perf_counter() - began
        docs: list[str] = []
        for source in retrieval.sources:
            if source.path not in docs:
                docs.append(source.path)
        ranking[case.id] = docs[:k]
        text, kind, answer_s = "", "", 0.0
        metrics: dict[str, float] = {}
        if answers:
            shown = replace(retrieval, sources=retrieval.sources[: cfg.top_k])
            began = time.perf_counter()
            result = make_answer(shown, engine)
            answer_s = time.perf_counter() - began
            text, kind = result.answer, result.kind
            metrics.update(answer_metrics(result.answer, result.sources, case.answers))
            if judge:
                metrics.update(_judge(engine, case.question, result.answer, result.sources))
        results.append(
            CaseResult(
                case.id,
                case.question,
                tuple(d for d, rel in qrels.get(case.id, {}).items() if rel > 0),
                tuple(docs[:k]),
                text,
                kind,
                metrics,
                round(retrieved_s, 4),
                round(answer_s, 4),
                case.answers,
                retrieval.best_dense,
                dict(retrieval.timings),
            )
        )
        if on_progress is not None:
            on_progress(done + 1, len(cases))
    judged = {q: r for q, r in qrels.items() if r}
    per_query = query_metrics(judged, ranking, k)
    final = [replace(r, metrics={**per_query.get(r.id, {}), **r.metrics}) for r in results]
    return EvalReport(
        name=name,
        kb=engine.settings.kb.name,
        mode=mode,
        model=_model_name(engine) if answers else "",
        k=k,
        questions=len(cases),
        metrics={**(mean_retrieval(per_query, k) if judged else {}), **_answer_averages(final)},
        latency={
            "retrieve_s": _percentiles([r.retrieve_s for r in final]),
            "answer_s": _percentiles([r.answer_s for r in final]) if answers else {},
        },
        problems=tuple(problems),
        unknown_sources=tuple(unknown),
        cases=tuple(final),
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
        stages={
            stage: _percentiles([r.timings[stage] for r in final if stage in r.timings])
            for stage in dict.fromkeys(key for r in final for key in r.timings)
        },
    )


def _model_name(engine: Engine) -> str:
    llm = engine.llm
    return "extractive" if llm is None else str(llm.metadata.model_name)


def _judge(
    engine: Engine, question: str, answer: str, sources: Sequence[Source]
) -> dict[str, float]:
    """LLM-judged faithfulness and answer relevancy, each 1-5 scaled to 0-1."""
    from llama_index.core.llms import ChatMessage

    from core.prompts import judge_messages
    from core.text import detect_language

    llm = engine.llm
    assert llm is not None
    scores: dict[str, float] = {}
    for aspect in ("faithfulness", "relevancy"):
        messages = [
            ChatMessage(role=role, content=content)
            for role, content in judge_messages(
                aspect, detect_language(question), question, answer, sources
            )
        ]
        reply = llm.chat(messages).message.content or ""
        match = _SCORE.search(reply)
        if match:
            scores[aspect] = (min(5, max(1, int(match.group()))) - 1) / 4
    return scores


def _answer_averages(results: Sequence[CaseResult]) -> dict[str, float]:
    """Each answer metric averaged over the questions it applies to."""
    out: dict[str, float] = {}
    for metric in (*ANSWER_METRICS, *JUDGE_METRICS):
        values = [r.metrics[metric] for r in results if metric in r.metrics]
        if values:
            out[metric] = sum(values) / len(values)
    return out


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(ordered[len(ordered) // 2], 4),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4),
    }


def bad_cases(report: EvalReport, count: int) -> list[CaseResult]:
    """The worst questions: retrieval misses first, then low nDCG, then answers missing the
    reference. A question that scored perfectly on every metric is never among them."""
    ndcg = f"ndcg@{report.k}"
    hit = f"hit@{report.k}"

    def badness(result: CaseResult) -> tuple[float, float, float, float]:
        m = result.metrics
        return (m.get(hit, 1.0), m.get(ndcg, 1.0), m.get("contains", 1.0), m.get("f1", 1.0))

    imperfect = [r for r in report.cases if any(v < 1.0 for v in r.metrics.values())]
    return sorted(imperfect, key=badness)[:count]


def metric_names(k: int, *, answers: bool, judge: bool) -> tuple[str, ...]:
    """Every metric a run can report: retrieval at `k` (when the questions name their sources), and
    the answer metrics when it answers."""
    names: tuple[str, ...] = (f"ndcg@{k}", f"recall@{k}", f"mrr@{k}", f"hit@{k}")
    if answers:
        names += ANSWER_METRICS + (JUDGE_METRICS if judge else ())
    return names


def check_floors(floors: Mapping[str, float], k: int, *, answers: bool, judge: bool) -> None:
    """Refuse `--fail-under` floors on metrics the run cannot report, before it runs."""
    known = metric_names(k, answers=answers, judge=judge)
    for metric in floors:
        if metric not in known:
            raise ConfigError(
                f"--fail-under: a run with these options has no metric {metric!r}",
                hint=f"metrics it can report: {', '.join(known)}",
            )


def failing(report: EvalReport, floors: Mapping[str, float]) -> list[str]:
    """`METRIC value < floor` for every floor the report falls below."""
    misses = []
    for metric, floor in floors.items():
        if metric not in report.metrics:
            raise ConfigError(
                f"--fail-under: this run has no metric {metric!r}",
                hint=f"metrics of this run: {', '.join(sorted(report.metrics))}",
            )
        if report.metrics[metric] < floor:
            misses.append(f"{metric} {report.metrics[metric]:.4f} < {floor}")
    return misses
