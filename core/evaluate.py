"""Measuring retrieval on question sets: BEIR-layout folders and document-level metrics.

Metrics follow trec_eval as pytrec_eval computes them (linear gain nDCG, recall, reciprocal rank):
chunks are mapped back to their document, the best chunk counts, and every query of the qrels is
averaged in, so a query with no result scores 0.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.config import Settings, kb_home
from core.engine import Engine
from core.errors import ConfigError
from core.results import IngestProgress, IngestReport, Source
from core.retrieve import Mode, RetrievalQuery, retrieve

Qrels = dict[str, dict[str, int]]  # query id -> {document id: relevance}
Ranking = dict[str, list[str]]  # query id -> document ids, best first
CHUNKS_PER_DOCUMENT = 3  # chunks fetched per wanted document, so k distinct documents come back
_CJK_CHAR = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CJK_PIECE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\u3400-\u9fff\uf900-\ufaff\s]+")
_CITED = re.compile(r"\[(\d+)\]")
_SPACE_BY_CJK = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff]) | (?=[\u3400-\u9fff\uf900-\ufaff])")
_CITATIONS = re.compile(r"(?:\s*\[\d+\])+")
_SCORE = re.compile(r"[1-5]")


@dataclass(frozen=True)
class InputProblem:
    """A line of a question set that was skipped, and why."""

    line: int
    reason: str


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
    return _mean_retrieval(query_metrics(qrels, ranking, k), k)


def _mean_retrieval(per_query: Mapping[str, Mapping[str, float]], k: int) -> dict[str, float]:
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


# -------------------------------------------------------------------------------- question sets


@dataclass(frozen=True)
class EvalCase:
    """One question, with what a good answer contains and which documents hold it."""

    id: str
    question: str
    answers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # paths or document ids, as the question set names them
    relevance: tuple[tuple[str, int], ...] = ()  # graded judgements (BEIR qrels), else from sources


def load_cases(path: Path) -> tuple[list[EvalCase], list[InputProblem]]:
    """A JSONL question set: `question`, optional `id`, `answer`/`answers`, `sources`.

    Malformed lines are returned as problems (with their line number) and skipped.
    """
    cases: list[EvalCase] = []
    problems: list[InputProblem] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}", hint="a UTF-8 JSONL file") from err
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(InputProblem(number, f"not JSON ({err.msg})"))
            continue
        question = row.get("question") if isinstance(row, dict) else None
        if not isinstance(question, str) or not question.strip():
            problems.append(InputProblem(number, 'no "question" text'))
            continue
        answers = row.get("answers", row.get("answer", []))
        sources = row.get("sources", [])
        answers = [answers] if isinstance(answers, str) else answers
        sources = [sources] if isinstance(sources, str) else sources
        if not _strings(answers) or not _strings(sources):
            problems.append(InputProblem(number, '"answers" and "sources" must be strings'))
            continue
        case_id = str(row.get("id", f"line-{number}"))
        if case_id in seen:
            problems.append(InputProblem(number, f"duplicate id {case_id!r}"))
            continue
        seen.add(case_id)
        cases.append(EvalCase(case_id, question.strip(), tuple(answers), tuple(sources)))
    return cases, problems


def beir_cases(beir: BeirSet) -> list[EvalCase]:
    """A BEIR set's judged queries, with qa.jsonl answers where present."""
    return [
        EvalCase(
            qid,
            text,
            tuple(beir.answers.get(qid, ())),
            tuple(d for d, rel in beir.qrels[qid].items() if rel > 0),
            tuple(beir.qrels[qid].items()),
        )
        for qid, text in beir.queries.items()
    ]


def prepare_beir(
    settings: Settings,
    folder: Path,
    split: str = "test",
    on_progress: Callable[[IngestProgress], None] | None = None,
) -> tuple[BeirSet, list[EvalCase], IngestReport]:
    """`kb eval --beir`: the folder's corpus ingested into the selected knowledge base (written as
    files under `<home>/beir/<kb name>`; incremental, so later runs reuse it) and its judged cases."""
    from core.ingest import run_ingest

    try:
        beir = load_beir(folder, split)
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise ConfigError(
            f"{folder} is not a BEIR folder: {err}",
            hint="it needs corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv",
        ) from err
    corpus = beir_corpus_dir(settings)
    corpus.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    corpus.mkdir(exist_ok=True, mode=0o700)  # the documents' text: owner only
    write_corpus(beir, corpus)
    report = run_ingest(settings, [corpus], on_progress=on_progress)
    return beir, beir_cases(beir), report


def beir_corpus_dir(settings: Settings) -> Path:
    """Where a BEIR knowledge base's documents are written as files."""
    return kb_home(settings.kb.home) / "beir" / settings.kb.name


def _strings(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def resolve_sources(
    cases: Sequence[EvalCase], records: Sequence[Mapping[str, object]]
) -> tuple[Qrels, list[str]]:
    """Judgements keyed by indexed path; names that match no indexed document are returned.

    A source may be the indexed path, the absolute path, the file name or its stem (a document id).
    """
    index: dict[str, str] = {}
    for record in records:
        path = str(record.get("path", ""))
        absolute = str(record.get("abs_path", record.get("doc_id", "")))
        for key in (Path(path).stem, Path(path).name, absolute, path):  # most specific last
            if key:
                index[key] = path
    qrels: Qrels = {}
    unknown: list[str] = []
    for case in cases:
        graded = case.relevance or tuple((s, 1) for s in case.sources)
        rels: dict[str, int] = {}
        for name, grade in graded:
            found = index.get(name) or index.get(name.rstrip("/"))
            if found is None:
                unknown.append(name)
            else:
                rels[found] = max(grade, rels.get(found, 0))
        if graded:
            qrels[case.id] = rels
    return qrels, sorted(set(unknown))


# -------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class CaseResult:
    """How one question went."""

    id: str
    question: str
    expected: tuple[str, ...]  # relevant documents (indexed paths)
    retrieved: tuple[str, ...]  # the top k documents
    answer: str
    kind: str
    metrics: dict[str, float]  # retrieval (when judged) and answer metrics of this question
    retrieve_s: float
    answer_s: float
    references: tuple[str, ...] = ()
    best_score: float | None = None  # the best dense score retrieval found (refusal calibration)


@dataclass(frozen=True)
class EvalReport:
    """A run of `kb eval`: averaged metrics, latencies and every question's result."""

    name: str
    kb: str
    mode: str
    model: str
    k: int
    questions: int
    metrics: dict[str, float]
    latency: dict[str, dict[str, float]]
    problems: tuple[InputProblem, ...]
    unknown_sources: tuple[str, ...]
    cases: tuple[CaseResult, ...]
    created: str = ""


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
        query = RetrievalQuery(
            case.question,
            mode=mode,
            top_k=CHUNKS_PER_DOCUMENT * k,
            dense_weight=cfg.dense_weight,
            balance_languages=cfg.balance_languages,
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
            metrics.update(_answer_metrics(result.answer, result.sources, case.answers))
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
        metrics={**(_mean_retrieval(per_query, k) if judged else {}), **_answer_averages(final)},
        latency={
            "retrieve_s": _percentiles([r.retrieve_s for r in final]),
            "answer_s": _percentiles([r.answer_s for r in final]) if answers else {},
        },
        problems=tuple(problems),
        unknown_sources=tuple(unknown),
        cases=tuple(final),
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def _model_name(engine: Engine) -> str:
    llm = engine.llm
    return "extractive" if llm is None else str(llm.metadata.model_name)


def _answer_metrics(
    text: str, sources: Sequence[Source], references: Sequence[str]
) -> dict[str, float]:
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
    for metric in ("contains", "f1", "citation_validity", "faithfulness", "relevancy"):
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
    """The worst questions: retrieval misses first, then low nDCG, then answers missing the reference."""
    ndcg = f"ndcg@{report.k}"
    hit = f"hit@{report.k}"

    def badness(result: CaseResult) -> tuple[float, float, float, float]:
        m = result.metrics
        return (m.get(hit, 1.0), m.get(ndcg, 1.0), m.get("contains", 1.0), m.get("f1", 1.0))

    return sorted(report.cases, key=badness)[:count]


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


# -------------------------------------------------------------------------------- saved runs


def runs_dir(settings: Settings) -> Path:
    """Where `--save NAME` keeps runs."""
    return kb_home(settings.kb.home) / "evals"


def save_run(report: EvalReport, settings: Settings) -> Path:
    """Write the run as JSON under its name."""
    folder = runs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{report.name}.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(asdict(report), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_run(name: str, settings: Settings) -> EvalReport:
    """A saved run (by name, or a path to its JSON file)."""
    path = Path(name) if name.endswith(".json") else runs_dir(settings) / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"no saved eval run {name!r} ({path})", hint="save one with `kb eval FILE --save NAME`"
        ) from err
    data["problems"] = tuple(InputProblem(**p) for p in data.get("problems", ()))
    data["unknown_sources"] = tuple(data.get("unknown_sources", ()))
    data["cases"] = tuple(
        CaseResult(
            **{
                **c,
                "expected": tuple(c["expected"]),
                "retrieved": tuple(c["retrieved"]),
                "references": tuple(c.get("references", ())),
            }
        )
        for c in data["cases"]
    )
    return EvalReport(**data)


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side: metric deltas and the questions that moved."""

    a: str
    b: str
    metrics: dict[str, tuple[float | None, float | None]]
    better: tuple[tuple[str, str, float], ...]  # (id, question, change of the key metric)
    worse: tuple[tuple[str, str, float], ...]
    key: str


def compare_runs(a: EvalReport, b: EvalReport) -> Comparison:
    """Per-metric values of both runs, and per-question changes of nDCG (or answer F1)."""
    names = sorted(set(a.metrics) | set(b.metrics))
    key = f"ndcg@{b.k}" if f"ndcg@{b.k}" in b.metrics else "f1"
    before = {c.id: c for c in a.cases}
    better, worse = [], []
    for case in b.cases:
        old = before.get(case.id)
        if old is None or key not in case.metrics or key not in old.metrics:
            continue
        change = case.metrics[key] - old.metrics[key]
        if change > 1e-9:
            better.append((case.id, case.question, change))
        elif change < -1e-9:
            worse.append((case.id, case.question, change))
    return Comparison(
        a.name,
        b.name,
        {n: (a.metrics.get(n), b.metrics.get(n)) for n in names},
        tuple(sorted(better, key=lambda x: -x[2])),
        tuple(sorted(worse, key=lambda x: x[2])),
        key,
    )


# -------------------------------------------------------------------------------- generating


def generate_cases(
    engine: Engine, *, count: int, per_chunk: int = 1, seed: int = 0
) -> list[dict[str, object]]:
    """Questions written by the LLM from sampled chunks, in each chunk's language, with its source."""
    import random

    from llama_index.core.llms import ChatMessage

    from core.prompts import generate_messages

    llm = engine.llm
    if llm is None:
        raise ConfigError(
            "`kb eval generate` needs an LLM", hint="configure [llm] provider (see `kb config`)"
        )
    chunks = engine.shard.chunk_payloads()
    if not chunks:
        raise ConfigError("the knowledge base is empty", hint="run `kb ingest PATH` first")
    rng = random.Random(seed)
    picked = rng.sample(chunks, min(count, len(chunks)))
    rows: list[dict[str, object]] = []
    for chunk in picked:
        text, lang = str(chunk.get("text", "")), str(chunk.get("lang", "en"))
        messages = [
            ChatMessage(role=role, content=content)
            for role, content in generate_messages(text, lang, per_chunk)
        ]
        reply = llm.chat(messages).message.content or ""
        for line in reply.splitlines():
            question = line.strip().lstrip("-*0123456789.) ").strip()
            if len(question) > 3:
                rows.append({"question": question, "sources": [str(chunk.get("path", ""))]})
            if sum(1 for r in rows if r["sources"] == [chunk.get("path")]) >= per_chunk:
                break
    return rows
