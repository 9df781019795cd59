"""Plain, frozen results that core returns and the CLI renders."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileProblem:
    """A file that could not be indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class RenamedFile:
    """A file indexed under `old` that is now at `new` (its vectors were reused)."""

    old: str
    new: str


@dataclass(frozen=True)
class IngestProgress:
    """A progress tick: files read and written, chunks embedded so far."""

    phase: str  # read | embed | write | index
    files_done: int
    files_total: int
    chunks_done: int  # chunks of the files to write that have a vector (embedded or reused)
    chunks_total: int  # chunks of the files to write: exact once all are read (see below)
    embed_seconds: float
    current: str = ""
    chunks_embedded: int = 0  # chunks embedded so far (their rate: chunks_embedded / embed_seconds)
    chunks_estimated: bool = False  # chunks_total is extrapolated from the bytes read so far


@dataclass(frozen=True)
class IngestReport:
    """What `kb ingest` did (or, with dry_run, would do)."""

    kb: str
    kb_dir: str
    roots: tuple[str, ...]
    dry_run: bool
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    renamed: tuple[RenamedFile, ...] = ()
    deleted: tuple[str, ...] = ()
    unchanged: int = 0
    ignored: int = 0
    problems: tuple[FileProblem, ...] = ()
    chunks_written: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0
    files_total: int = 0
    ocr_pages: int = 0  # pages and images read by OCR
    embed_seconds: float = 0.0
    seconds: float = 0.0
    embedder_runtime: str = ""  # what embedded, e.g. "onnxruntime fp32" ("" if nothing was)


@dataclass(frozen=True)
class SourceFile:
    """One indexed file, for `kb sources`."""

    path: str
    abs_path: str
    root: str
    file_type: str
    lang: str
    chunks: int
    size: int
    indexed_at: str


@dataclass(frozen=True)
class ForgetReport:
    """Files removed from the index by `kb forget`."""

    removed: tuple[str, ...]
    chunks_removed: int


@dataclass(frozen=True)
class MigrateReport:
    """What `kb migrate` copied, and where to."""

    kb: str
    source: str
    url: str
    collection: str
    files: int
    chunks: int
    seconds: float


@dataclass(frozen=True)
class Source:
    """A retrieved chunk, cited as [n] in an answer."""

    n: int
    path: str
    abs_path: str
    score: float
    text: str
    chunk_id: str
    page: int | None = None
    headings: tuple[str, ...] = ()
    line_start: int | None = None
    line_end: int | None = None
    location: str = ""  # where in the file, as a person finds it: "slide 4", "Sheet1, rows 2-40"
    also_in: tuple[str, ...] = ()  # other files holding the same text (a talk as .txt, .srt, .vtt)
    lang: str = ""
    file_type: str = ""
    doc_id: str = ""
    chunk_index: int | None = None
    dense_score: float | None = None  # cosine similarity, when a dense search ran
    keyword_score: float | None = None  # BM25-style score, when a keyword search ran
    # 0-1, the same scale on every knowledge base and language (core.answerability.relevance)
    relevance: float | None = None


@dataclass(frozen=True)
class Answer:
    """An answer with its numbered sources."""

    question: str
    answer: str
    mode: str
    model: str  # the LLM's name, "extractive", or "none" for a refusal
    sources: tuple[Source, ...]
    timings: dict[str, float]
    # extractive | generated | refused (nothing relevant: no LLM called) | not_found (the LLM said so)
    kind: str = "extractive"
    citations: tuple[int, ...] = ()  # the [n] the answer cites, each a shown source
    invalid_citations: tuple[str, ...] = ()  # citations removed from a generated answer
    supporting: str = ""  # extractive passages, when a generated answer cited nothing
    thinking: str = ""  # the model's reasoning, only when asked for
    best_score: float | None = None  # the best dense score retrieval found
    min_score: float = 0.0  # the cosine threshold applied when no baseline was calibrated
    refusal: str = ""  # why it was refused: the signal, its value and threshold
    signals: dict[str, float | None] = field(default_factory=dict)  # core.answerability's signals
    usage: dict[str, int] = field(default_factory=dict)  # prompt/completion tokens, when reported

    @property
    def found(self) -> bool:
        """Whether the knowledge base answered (not refused, not "not found")."""
        return self.kind in ("extractive", "generated")


@dataclass(frozen=True)
class InputProblem:
    """A line of a question set that was skipped, and why."""

    line: int
    reason: str


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
    timings: dict[str, float] = field(default_factory=dict)  # retrieval's stages (`--trace`)


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
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # per-stage percentiles


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side: metric deltas and the questions that moved."""

    a: str
    b: str
    metrics: dict[str, tuple[float | None, float | None]]
    better: tuple[tuple[str, str, float], ...]  # (id, question, change of the key metric)
    worse: tuple[tuple[str, str, float], ...]
    key: str


@dataclass(frozen=True)
class Check:
    """One part of a setup checked by `kb doctor`: passed or not, what was found, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorReport:
    """Every check `kb doctor` ran on a knowledge base and its settings."""

    kb: str
    kb_dir: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)
