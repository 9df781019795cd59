"""Question sets: JSONL files, BEIR-layout folders (corpus, queries, qrels), and the judgements
they give resolved against what is indexed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings, kb_home
from core.errors import ConfigError
from core.evaluate.metrics import Qrels
from core.results import IngestProgress, IngestReport, InputProblem


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
