"""Benchmark the embedded store at scale: ingest, memory, reopen and hybrid query latency at 200,000 chunks.

A synthetic knowledge base: Markdown files of English (two in three) and Chinese (one in three) text,
drawn from Zipf-distributed vocabularies (40,000 made-up English words under the common English
function words; the 40,000 most frequent words of jieba's dictionary) with a few bursty topic words
per file, so keyword postings look like real text. Vectors come from a cheap deterministic embedder
(a seeded random unit vector of dimension 384 per text), so only kb's own work and the store are
measured, not a model. Each phase runs in its own process:

* ingest: `core.ingest.run_ingest` over the generated folder (read, chunk, embed, keyword vectors,
  store writes), exactly what `kb ingest` does minus the model; files, chunks, wall seconds, chunks/s,
  the time inside reading + chunking, the embedder and store writes, chunks/s per tenth of the run
  (does writing slow down as the store grows?) and the process's peak resident memory (`ru_maxrss`;
  on Linux also the peaks of its heap and of its mapped files, sampled from /proc every 0.2 s).
  With `--direct`, chunks go straight to `EdgeShardStore.replace_document` instead (same texts,
  same payload fields, no files, no LlamaIndex nodes);
* reopen: a new process opens the knowledge base (`open_engine`) and answers one hybrid question
  (`core.retrieve.retrieve`), `--reopens` times; open, first query (English and Chinese questions
  apart: the first Chinese one loads jieba's dictionary) and whole-process seconds, min / median /
  max. The whole-process figure leaves out the stand-in embedder's own start (LlamaIndex, numpy),
  which kb's bundled embedders do not pay when answering;
* query: one process answers `--questions` varied en and zh questions through `retrieve` (what
  `kb ask` calls) after a warm-up; p50 / p95 / max, the store calls per question and where their time
  goes; then dense-only, dense restricted to one language, and sparse-only searches straight on
  `EdgeShardStore` (100 candidates, as `retrieve` asks for); peak resident memory of the process.

Run from the repository root (200,000 chunks take about 15 minutes on 2 cores)::

    python benchmarks/scale.py                                   # 200,000 chunks, temporary folder
    python benchmarks/scale.py --chunks 20000                    # a quick look
    python benchmarks/scale.py --dir /tmp/kb-scale --keep        # keep it; run again to re-measure
                                                                 # reopen and query without ingesting
    python benchmarks/scale.py --dir /tmp/kb-scale --keep --profile   # pyinstrument of the queries

Prints a table (figure, value, target, ok/MISS) and, last, one JSON line with every figure. Timings
are wall-clock: other work on the machine shows in them (the 1-minute load average at the start
and end of each phase is printed). The operating system's page cache is not dropped between
phases, so "reopen" is a new process over files the kernel may still hold in memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # both imported where used: a reopen process times kb's imports, not these
    import numpy as np

    from core.embedders.base import KbEmbedding

DIM = 384
SEED = 20240611
VOCABULARY = 40_000
TOPIC_WORDS = 24  # bursty words of one file
TOPIC_SHARE = 0.12  # share of a file's words drawn from its topic words
CHUNKS_PER_FILE = 10  # on average; files range from about 4 to 16 chunks
FILES_PER_FOLDER = 1000
CALIBRATION_FILES = 60
QUESTIONS = 300
WARMUP = 30
REOPENS = 7
# What core.retrieve asked each search for when the README's figures were taken (it asks 50 now).
CANDIDATES = 100
TARGET_RSS_MIB = 1536
TARGET_P95_MS = 30.0
LOG_EVERY_S = 30.0

_COMMON_EN = (  # the most frequent English words, as one string
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more can who out some its into than them only other time new about two may then could first "
    "any these also after over most made did many before must through back years where much your "
    "way well down should because each just those how too little state good very make world still "
    "own see men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three"
)
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "cl", "dr", "gr", "pl", "pr", "st", "tr", "sh", "ch", "th", "sk", "sp")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y")
_CODAS = ("", "", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk", "ng", "x")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the cheap embedder


def seeded_embedder() -> KbEmbedding:
    """A random unit vector seeded by the text's hash: deterministic and nearly free."""
    return _seeded_class()()


@cache
def _seeded_class() -> type[KbEmbedding]:
    import numpy as np

    from core.embedders.base import KbEmbedding

    class SeededEmbedding(KbEmbedding):
        model_name: str = f"seeded-{DIM}"
        dim: int = DIM
        embed_batch_size: int = 64

        @classmethod
        def class_name(cls) -> str:
            return "scale-seeded"

        def _vector(self, text: str) -> list[float]:
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            row = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(DIM)
            return [float(x) for x in row / np.linalg.norm(row)]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._vector(query)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [self._vector(text) for text in texts]

    return SeededEmbedding


# ---------------------------------------------------------------------------- synthetic text


class Vocabulary:
    """Words by rank, drawn with Zipf-Mandelbrot probabilities (s = 1.0, q = 2.7)."""

    def __init__(self, words: Sequence[str]) -> None:
        import numpy as np

        self.words = np.array(words, dtype=object)
        weights = 1.0 / (np.arange(len(words)) + 2.7)
        self.cdf = np.cumsum(weights / weights.sum())

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        import numpy as np

        index = np.searchsorted(self.cdf, rng.random(n))
        return np.minimum(index, len(self.words) - 1)


@cache
def english() -> Vocabulary:
    """Common English words first, then made-up words of one to three syllables."""
    rng = random.Random(SEED)
    words = list(dict.fromkeys(_COMMON_EN.split()))
    seen = set(words)
    while len(words) < VOCABULARY:
        syllables = rng.choice((1, 2, 2, 2, 3))
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
        )
        if word not in seen and len(word) > 2:
            seen.add(word)
            words.append(word)
    return Vocabulary(words)


@cache
def chinese() -> Vocabulary:
    """The most frequent all-Chinese words of jieba's dictionary, by frequency."""
    import jieba

    rows: list[tuple[int, str]] = []
    dictionary = Path(jieba.__file__).with_name("dict.txt")
    for line in dictionary.read_text(encoding="utf-8").splitlines():
        parts = line.split(" ")
        if len(parts) >= 2 and all("\u4e00" <= ch <= "\u9fff" for ch in parts[0]):
            rows.append((int(parts[1]), parts[0]))
    rows.sort(key=lambda row: -row[0])
    return Vocabulary([word for _, word in rows[:VOCABULARY]])


def is_chinese(index: int) -> bool:
    return index % 3 == 2


class Writer:
    """Sentences for one file: Zipf-drawn words with the file's topic words mixed in."""

    def __init__(self, index: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng([SEED, index])
        self.zh = is_chinese(index)
        self.vocab = chinese() if self.zh else english()
        self.topic = self.rng.integers(300, len(self.vocab.words), TOPIC_WORDS)

    def words(self, n: int) -> list[str]:
        index = self.vocab.draw(self.rng, n)
        bursty = self.rng.random(n) < TOPIC_SHARE
        index[bursty] = self.rng.choice(self.topic, int(bursty.sum()))
        return [str(w) for w in self.vocab.words[index]]

    def sentence(self) -> str:
        if self.zh:
            n = int(self.rng.integers(6, 18))
            words = self.words(n)
            if n > 9:
                words[n // 2] += "，"
            return "".join(words) + str(self.rng.choice(["。", "。", "。", "？", "；"]))
        n = int(self.rng.integers(8, 26))
        words = self.words(n)
        if n > 12:
            words[n // 2] += ","
        return " ".join(words).capitalize() + str(self.rng.choice([".", ".", ".", "?", ";"]))

    def heading(self, n: int) -> str:
        return ("" if self.zh else " ").join(self.words(n)).strip().capitalize()


def document(index: int) -> str:
    """File `index` as Markdown: a title, sections of paragraphs; about CHUNKS_PER_FILE chunks."""
    w = Writer(index)
    # Sentences per file: a chunk holds about 6 English or 8 Chinese sentences.
    per_chunk = 8 if w.zh else 6
    sentences = int(w.rng.integers(per_chunk * 4, per_chunk * 16 + 1) * CHUNKS_PER_FILE / 10)
    lines = [f"# {w.heading(4)}", ""]
    while sentences > 0:
        lines += [f"## {w.heading(3)}", ""]
        for _ in range(int(w.rng.integers(2, 5))):
            take = min(sentences, int(w.rng.integers(3, 8)))
            sentences -= take
            lines += [("" if w.zh else " ").join(w.sentence() for _ in range(take)), ""]
            if sentences <= 0:
                break
    return "\n".join(lines)


def file_path(docs: Path, index: int) -> Path:
    return docs / f"{index // FILES_PER_FOLDER:03d}" / f"doc-{index:06d}.md"


def chunk_document(text: str, settings: Any) -> list[Any]:
    """The real chunker on a generated file (as `kb ingest` cuts it)."""
    from core.chunking import chunk_text
    from core.ingest.pipeline import CONTEXT_TOKENS
    from core.loaders import load
    from core.text import approx_tokens

    loaded = load(Path("x.md"), "markdown", text.encode())
    return chunk_text(
        loaded,
        count_tokens=approx_tokens,
        chunk_size=settings.ingest.chunk_size - CONTEXT_TOKENS,
        chunk_overlap=settings.ingest.chunk_overlap,
    )


def files_for(chunks: int, settings: Any) -> tuple[int, float]:
    """How many files give about `chunks` chunks (from a sample through the real chunker)."""
    sample = [len(chunk_document(document(i), settings)) for i in range(CALIBRATION_FILES)]
    mean = sum(sample) / len(sample)
    return max(1, round(chunks / mean)), mean


def write_documents(docs: Path, files: int) -> int:
    """Write the generated files; returns their total size in bytes."""
    size = 0
    last = time.perf_counter()
    for index in range(files):
        path = file_path(docs, index)
        if index % FILES_PER_FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        data = document(index).encode()
        path.write_bytes(data)
        size += len(data)
        if time.perf_counter() - last >= LOG_EVERY_S:
            last = time.perf_counter()
            log(f"  written {index + 1}/{files} files")
    return size


def questions(n: int) -> list[str]:
    """Varied questions (two in three English): a few words of a random file's sentence in a template."""
    import numpy as np

    rng = np.random.default_rng([SEED, 1])
    en_templates = (
        "What is {}?",
        "How does {} work?",
        "Why {}?",
        "Explain {}",
        "{}",
        "Where is {} described?",
    )
    zh_templates = ("{}是什么？", "{}怎么样？", "为什么{}？", "关于{}", "{}", "请解释{}")
    out: list[str] = []
    for k in range(n):
        base = 3 * int(rng.integers(0, 1_000_000))
        w = Writer(base + 2 if k % 3 == 2 else base + int(rng.integers(0, 2)))
        words = w.words(int(rng.integers(2, 7)))
        templates = zh_templates if w.zh else en_templates
        out.append(str(rng.choice(templates)).format(("" if w.zh else " ").join(words)))
    return out


# ---------------------------------------------------------------------------- settings, helpers


def make_settings(home: Path) -> Any:
    """Defaults, with the KB home in `home` and no embedding cache; no config.toml, .env or KB_*."""
    from core.config import load_settings

    config = home / "config.toml"
    if not config.exists():
        config.write_text("", encoding="utf-8")
    loaded = load_settings(
        config,
        environ={},
        overrides={"kb": {"home": str(home)}, "embedding": {"cache": False}},
        dotenv_path=home / "no.env",
    )
    return loaded.settings


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class RssSampler:
    """Peak anonymous (heap) and file-backed (mapped store files) resident memory, sampled."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        try:
            status = Path("/proc/self/status").read_text()
        except OSError:  # not Linux: ru_maxrss only
            return
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                mib = int(value.split()[0]) / 1024
                self.peak[key] = max(self.peak.get(key, 0.0), mib)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread_ms(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50": 1000 * percentile(seconds, 0.5),
        "p95": 1000 * percentile(seconds, 0.95),
        "max": 1000 * max(seconds),
        "n": len(seconds),
    }


def shard_info(shard: Any) -> dict[str, Any]:
    info = shard.client.info()
    return {
        "segments": info.segments_count,
        "points": info.points_count,
        "indexed_vectors": info.indexed_vectors_count,
    }


def folder_mib(path: Path) -> float:
    """Space the files take on disk (allocated blocks: the store's files are sparse)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / 2**20


# ---------------------------------------------------------------------------- phases (child processes)


def phase_ingest(work: Path, direct: bool) -> dict[str, Any]:
    """Ingest the generated folder (or, `direct`, write the same chunks straight to the store)."""
    from ingest import timed_steps  # benchmarks/ingest.py, beside this script

    import core.ingest
    from core.results import IngestProgress

    manifest = json.loads((work / "manifest.json").read_text())
    settings = make_settings(work / "home")
    embedder = seeded_embedder()
    rates: list[tuple[int, float]] = []  # (chunks done, seconds) along the run
    began = time.perf_counter()
    last_log = [began]

    def on_progress(tick: IngestProgress) -> None:
        if tick.phase != "write":
            return
        now = time.perf_counter()
        rates.append((tick.chunks_done, now - began))
        if now - last_log[0] >= LOG_EVERY_S:
            last_log[0] = now
            log(
                f"  {tick.files_done}/{tick.files_total} files, {tick.chunks_done} chunks, "
                f"{tick.chunks_done / (now - began):.0f} chunks/s, peak RSS {peak_rss_mib():.0f} MiB"
            )

    cpu_began = time.process_time()
    if direct:
        result = _direct_ingest(manifest["files"], settings, embedder, on_progress)
    else:
        steps = ("_read", "_nodes", "_embed", "_commit", "_optimize")
        with timed_steps(steps) as spent:
            report = core.ingest.run_ingest(
                settings, [work / "docs"], embedder=embedder, on_progress=on_progress
            )
        result = {
            "files": report.files_total,
            "chunks": report.chunks_total,
            "problems": len(report.problems),
            "read_chunk_s": spent.get("_read", 0.0) + spent.get("_nodes", 0.0),
            "embed_s": spent.get("_embed", 0.0),
            "store_write_s": spent.get("_commit", 0.0),  # keyword vectors, points, upserts
            "index_s": spent.get("_optimize", 0.0),  # the store indexing (HNSW) what grew
        }
    wall = time.perf_counter() - began
    result.update(
        wall_s=wall,
        cpu_s=time.process_time() - cpu_began,
        chunks_per_s=result["chunks"] / wall,
        peak_rss_mib=peak_rss_mib(),
        tenths=_tenths(rates),
    )
    return result


def _tenths(rates: list[tuple[int, float]]) -> list[float]:
    """Chunks/s within each tenth of the chunks written."""
    if not rates:
        return []
    total = rates[-1][0]
    out: list[float] = []
    prev_chunks, prev_s = 0, 0.0
    cursor = 0
    for tenth in range(1, 11):
        goal = total * tenth / 10
        while cursor < len(rates) - 1 and rates[cursor][0] < goal:
            cursor += 1
        chunks, seconds = rates[cursor]
        if seconds > prev_s:
            out.append((chunks - prev_chunks) / (seconds - prev_s))
            prev_chunks, prev_s = chunks, seconds
    return out


def _direct_ingest(
    files: int, settings: Any, embedder: KbEmbedding, on_progress: Callable[[Any], None]
) -> dict[str, Any]:
    """The same chunks and payload fields as `kb ingest`, written per file with `replace_document`
    and indexed as ingest does."""
    from core.engine import open_engine
    from core.results import IngestProgress
    from core.text import detect_language
    from stores.contract import ChunkPoint

    chunks_done = 0
    read_s = embed_s = write_s = index_s = 0.0
    indexed_at = 0
    with open_engine(settings, purpose="write", embedder=embedder) as engine:
        for index in range(files):
            t0 = time.perf_counter()
            text = document(index)
            pieces = chunk_document(text, settings)
            doc_id = f"/synthetic/doc-{index:06d}.md"
            t1 = time.perf_counter()
            vectors = embedder.get_text_embedding_batch([p.text for p in pieces])
            t2 = time.perf_counter()
            points = [
                ChunkPoint(
                    id=str(
                        hashlib.md5(f"{doc_id}\n{n}".encode(), usedforsecurity=False).hexdigest()
                    ),
                    doc_id=doc_id,
                    vector=vector,
                    sparse_text=piece.text,
                    payload={
                        "path": doc_id[1:],
                        "abs_path": doc_id,
                        "root": "/synthetic",
                        "file_type": "markdown",
                        "headings": list(piece.heading_path),
                        "line_start": piece.line_start,
                        "line_end": piece.line_end,
                        "start_char": piece.start,
                        "end_char": piece.end,
                        "chunk_index": n,
                        "lang": detect_language(piece.text),
                        "text": piece.text,
                    },
                )
                for n, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
            ]
            record = {"path": doc_id[1:], "abs_path": doc_id, "chunks": len(points)}
            engine.shard.replace_document(doc_id, points, record)
            t3 = time.perf_counter()
            read_s, embed_s, write_s = read_s + t1 - t0, embed_s + t2 - t1, write_s + t3 - t2
            chunks_done += len(points)
            if chunks_done - indexed_at >= 2 * settings.store.index_after:  # as ingest does
                t3 = time.perf_counter()
                engine.shard.optimize()
                index_s, indexed_at = index_s + time.perf_counter() - t3, chunks_done
            on_progress(IngestProgress("write", index + 1, files, chunks_done, 0, 0.0))
        t3 = time.perf_counter()
        engine.shard.optimize()
        index_s += time.perf_counter() - t3
        engine.shard.flush()
        total = engine.shard.count()
    return {
        "files": files,
        "chunks": total,
        "problems": 0,
        "read_chunk_s": read_s,  # generate + chunk (no file reading in this mode)
        "embed_s": embed_s,
        "store_write_s": write_s,
        "index_s": index_s,
    }


def phase_reopen(work: Path, question: str) -> dict[str, Any]:
    """Open the knowledge base in this (new) process and answer one hybrid question."""
    began = time.perf_counter()
    embedder = seeded_embedder()  # the stand-in for the model: imports LlamaIndex and numpy
    embedder.get_query_embedding("warm-up")
    stand_in = time.perf_counter()
    from core.engine import open_engine
    from core.retrieve import RetrievalQuery, retrieve
    from core.text import detect_language

    imported = time.perf_counter()
    settings = make_settings(work / "home")
    with open_engine(settings, purpose="read", embedder=embedder) as engine:
        opened = time.perf_counter()
        result = retrieve(RetrievalQuery(question), engine)
        answered = time.perf_counter()
    return {
        "stand_in_s": stand_in - began,
        "import_s": imported - stand_in,
        "open_s": opened - imported,
        "first_query_s": answered - opened,
        "lang": detect_language(question),
        "sources": len(result.sources),
        "peak_rss_mib": peak_rss_mib(),
    }


def phase_query(work: Path, count: int, profile: bool) -> dict[str, Any]:
    """Hybrid questions through `retrieve`, then dense-only and sparse-only store searches."""
    from core.engine import open_engine
    from core.retrieve import RetrievalQuery, retrieve
    from core.text import detect_language

    settings = make_settings(work / "home")
    asked = questions(count + WARMUP)
    warmup, asked = asked[:WARMUP], asked[WARMUP:]
    embedder = seeded_embedder()
    out: dict[str, Any] = {"questions": len(asked)}
    with open_engine(settings, purpose="read", embedder=embedder) as engine:
        shard = engine.shard
        out["shard"] = shard_info(shard)
        out["languages"] = shard.facet("lang")
        for question in warmup:
            retrieve(RetrievalQuery(question), engine)
        calls: Counter[str] = Counter()
        call_s: dict[str, float] = {}
        with _counting(shard, calls, call_s):
            total: list[float] = []
            search: list[float] = []
            profiler = _profiler() if profile else None
            if profiler is not None:
                profiler.start()
            for question in asked:
                began = time.perf_counter()
                result = retrieve(RetrievalQuery(question), engine)
                total.append(time.perf_counter() - began)
                search.append(result.timings["search_s"])
            if profiler is not None:
                profiler.stop()
                report = work / "profile-query.txt"
                report.write_text(profiler.output_text(unicode=True, color=False), "utf-8")
                (work / "profile-query.html").write_text(profiler.output_html(), "utf-8")
                out["profile"] = str(report)
        out["hybrid_ms"] = spread_ms(total)
        out["hybrid_search_ms"] = spread_ms(search)
        out["store_calls_per_question"] = {k: v / len(asked) for k, v in calls.items()}
        out["store_ms_per_question"] = {k: 1000 * v / len(asked) for k, v in call_s.items()}

        dense: list[float] = []
        dense_lang: list[float] = []
        sparse: list[float] = []
        for question in asked:
            vector = embedder.get_query_embedding(question)
            began = time.perf_counter()
            shard.dense_search(vector, limit=CANDIDATES)
            dense.append(time.perf_counter() - began)
            began = time.perf_counter()
            shard.dense_search(
                vector, limit=CANDIDATES, conditions={"lang": detect_language(question)}
            )
            dense_lang.append(time.perf_counter() - began)
            began = time.perf_counter()
            shard.sparse_search(question, limit=CANDIDATES)
            sparse.append(time.perf_counter() - began)
        out["dense_ms"] = spread_ms(dense)
        out["dense_one_language_ms"] = spread_ms(dense_lang)
        out["sparse_ms"] = spread_ms(sparse)
    out["peak_rss_mib"] = peak_rss_mib()
    return out


@contextmanager
def _counting(shard: Any, calls: Counter[str], spent: dict[str, float]) -> Iterator[None]:
    """Count and time the shard's search calls (instance attributes, removed afterwards)."""
    names = ("search_many", "dense_search", "sparse_search", "facet", "count", "neighbours")
    for name in names:
        original = getattr(shard, name)

        def wrapper(
            *args: Any, _f: Callable[..., Any] = original, _n: str = name, **kwargs: Any
        ) -> Any:
            began = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                calls[_n] += 1
                spent[_n] = spent.get(_n, 0.0) + time.perf_counter() - began

        setattr(shard, name, wrapper)
    try:
        yield
    finally:
        for name in names:
            delattr(shard, name)


def _profiler() -> Any:
    from pyinstrument import Profiler

    return Profiler(interval=0.0005)


# ---------------------------------------------------------------------------- orchestration


def run_phase(work: Path, phase: str, *extra: str) -> dict[str, Any]:
    """Run one phase of this script in a new process; returns its JSON and the wall seconds."""
    command = [sys.executable, str(Path(__file__).resolve()), "--dir", str(work), "--phase", phase]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    began = time.perf_counter()
    done = subprocess.run(
        [*command, *extra], cwd=work, env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = seconds
    return result


def prepare(work: Path, chunks: int, direct: bool, keep: bool) -> dict[str, Any]:
    """Generate the files (unless reusing a kept folder of the same size); returns the manifest."""
    manifest_path = work / "manifest.json"
    if keep and manifest_path.exists():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if manifest.get("chunks_asked") == chunks and "ingest" in manifest:
            log(f"reusing the knowledge base in {work} ({manifest['ingest']['chunks']} chunks)")
            return manifest
        log(f"{work} holds another size or an unfinished run: starting over")
    for name in ("docs", "home", "manifest.json"):
        target = work / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (work / "home").mkdir(parents=True)
    settings = make_settings(work / "home")
    files, mean = files_for(chunks, settings)
    manifest = {"chunks_asked": chunks, "files": files, "seed": SEED, "direct": direct}
    log(f"{files} files of about {mean:.1f} chunks each for {chunks} chunks")
    if not direct:
        began = time.perf_counter()
        size = write_documents(work / "docs", files)
        manifest["docs_mib"] = size / 2**20
        log(f"  {files} files, {size / 2**20:.0f} MiB, in {time.perf_counter() - began:.0f} s")
    manifest_path.write_text(json.dumps(manifest))
    return manifest


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_table(rows: Sequence[tuple[str, str, str, str]]) -> None:
    header = ("figure", "value", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def summary_rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    ing, reopen, query = figures["ingest"], figures["reopen"], figures["query"]
    mode = "direct to the store" if figures["direct"] else "kb's ingest path"
    opened = reopen["open_s"]
    first = {
        lang: [t for t, q in zip(reopen["first_query_s"], reopen["lang"], strict=True) if q == lang]
        for lang in ("en", "zh")
    }
    whole = reopen["kb_process_s"]
    hybrid = query["hybrid_ms"]
    rows = [
        ("files / chunks", f"{ing['files']} / {ing['chunks']}", "", ""),
        (f"ingest wall ({mode})", f"{ing['wall_s']:.0f} s", "", ""),
        ("ingest chunks/s", f"{ing['chunks_per_s']:.0f}", "", ""),
        (
            "  of which read+chunk / embed / keyword vectors+writes / indexing",
            f"{ing['read_chunk_s']:.0f} / {ing['embed_s']:.0f} / {ing['store_write_s']:.0f} / "
            f"{ing.get('index_s', 0.0):.0f} s",
            "",
            "",
        ),
        (
            "  chunks/s, first / last tenth",
            f"{ing['tenths'][0]:.0f} / {ing['tenths'][-1]:.0f}" if ing["tenths"] else "-",
            "",
            "",
        ),
        (
            "peak RSS, ingest process (heap / mapped files, sampled)",
            f"{ing['peak_rss_mib']:.0f} MiB ({_split(ing)})",
            f"<= {TARGET_RSS_MIB} MiB",
            verdict(ing["peak_rss_mib"] <= TARGET_RSS_MIB),
        ),
        (
            "peak RSS, query process (heap / mapped files, sampled)",
            f"{query['peak_rss_mib']:.0f} MiB ({_split(query)})",
            f"<= {TARGET_RSS_MIB} MiB",
            verdict(query["peak_rss_mib"] <= TARGET_RSS_MIB),
        ),
        (
            "peak RSS, reopen processes (max; heap / mapped files)",
            f"{max(reopen['peak_rss_mib']):.0f} MiB ({_split_max(reopen)})",
            "",
            "",
        ),
        ("knowledge base on disk", f"{figures['disk_mib']:.0f} MiB", "", ""),
        (
            f"reopen: open_engine, min / median / max of {len(opened)}",
            f"{min(opened):.3f} / {statistics.median(opened):.3f} / {max(opened):.3f} s",
            "",
            "",
        ),
        *(
            (
                f"reopen: first hybrid query, {lang} question ({len(times)} runs)",
                f"{min(times):.3f} / {statistics.median(times):.3f} / {max(times):.3f} s",
                "",
                "",
            )
            for lang, times in first.items()
            if times
        ),
        (
            "reopen: whole process without the stand-in embedder",
            f"{min(whole):.3f} / {statistics.median(whole):.3f} / {max(whole):.3f} s",
            "",
            "",
        ),
        (
            f"hybrid retrieve, {query['questions']} questions: p50 / p95 / max",
            f"{hybrid['p50']:.1f} / {hybrid['p95']:.1f} / {hybrid['max']:.1f} ms",
            f"p95 <= {TARGET_P95_MS:.0f} ms",
            verdict(hybrid["p95"] <= TARGET_P95_MS),
        ),
    ]
    for key, label in (
        ("dense_ms", "store: dense only"),
        ("dense_one_language_ms", "store: dense, one language"),
        ("sparse_ms", "store: sparse only"),
    ):
        t = query[key]
        rows.append((f"{label}, p50 / p95", f"{t['p50']:.1f} / {t['p95']:.1f} ms", "", ""))
    calls = ", ".join(f"{k} {v:.1f}" for k, v in sorted(query["store_calls_per_question"].items()))
    spent = ", ".join(f"{k} {v:.1f}" for k, v in sorted(query["store_ms_per_question"].items()))
    rows.append(("store calls per question", calls, "", ""))
    rows.append(("store ms per question (mean)", spent, "", ""))
    rows.append(("shard", json.dumps(query["shard"]), "", ""))
    loads = ", ".join(f"{k} {a:.2f}->{b:.2f}" for k, (a, b) in figures["load"].items())
    rows.append(("1-min load average per phase", loads, "", ""))
    return rows


def _split(phase: dict[str, Any]) -> str:
    anon, mapped = phase.get("peak_anon_mib"), phase.get("peak_file_mib")
    return f"{anon:.0f} / {mapped:.0f}" if anon is not None and mapped is not None else "-"


def _split_max(runs: dict[str, Any]) -> str:
    anon, mapped = runs.get("peak_anon_mib") or [None], runs.get("peak_file_mib") or [None]
    if None in anon or None in mapped:
        return "-"
    return f"{max(anon):.0f} / {max(mapped):.0f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--chunks", type=int, default=200_000, help="about how many chunks to store")
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder, and reuse a knowledge base of the same size already in it",
    )
    p.add_argument(
        "--direct",
        action="store_true",
        help="write chunks straight to the store instead of through kb's ingest",
    )
    p.add_argument("--questions", type=int, default=QUESTIONS, help="timed hybrid questions")
    p.add_argument("--reopens", type=int, default=REOPENS, help="cold reopen processes")
    p.add_argument("--profile", action="store_true", help="pyinstrument the timed questions")
    p.add_argument("--phase", choices=("ingest", "reopen", "query"), help=argparse.SUPPRESS)
    p.add_argument("--question", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase is not None:  # a child process: one phase, one JSON line on stdout
        work = args.dir.resolve()
        with RssSampler() as rss:
            if args.phase == "ingest":
                result = phase_ingest(work, args.direct)
            elif args.phase == "reopen":
                result = phase_reopen(work, args.question)
            else:
                result = phase_query(work, args.questions, args.profile)
        result["peak_anon_mib"] = rss.peak.get("RssAnon")
        result["peak_file_mib"] = rss.peak.get("RssFile")
        print(json.dumps(result, default=str))
        return 0

    work = (args.dir or Path(tempfile.mkdtemp(prefix="kb-scale-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"chunks_asked": args.chunks, "direct": args.direct, "load": {}}
    try:
        figures["cpus"] = os.cpu_count()
        began_load = os.getloadavg()[0]
        manifest = prepare(work, args.chunks, args.direct, args.keep)
        figures["load"]["generate"] = (began_load, os.getloadavg()[0])
        if "ingest" in manifest:
            figures["ingest"] = manifest["ingest"]
            figures["ingest_reused"] = True
        else:
            log("ingesting...")
            before = os.getloadavg()[0]
            figures["ingest"] = run_phase(work, "ingest", *(["--direct"] if args.direct else []))
            figures["load"]["ingest"] = (before, os.getloadavg()[0])
            manifest["ingest"] = figures["ingest"]
            (work / "manifest.json").write_text(json.dumps(manifest))
        ing = figures["ingest"]
        log(
            f"ingest: {ing['files']} files, {ing['chunks']} chunks in {ing['wall_s']:.0f} s "
            f"({ing['chunks_per_s']:.0f} chunks/s), peak RSS {ing['peak_rss_mib']:.0f} MiB"
        )
        figures["disk_mib"] = folder_mib(work / "home")

        log(f"reopening {args.reopens} times...")
        before = os.getloadavg()[0]
        asked = questions(args.reopens)
        runs = [run_phase(work, "reopen", "--question", q) for q in asked]
        figures["load"]["reopen"] = (before, os.getloadavg()[0])
        figures["reopen"] = {
            key: [run[key] for run in runs]
            for key in (
                "open_s",
                "first_query_s",
                "process_s",
                "stand_in_s",
                "lang",
                "import_s",
                "peak_rss_mib",
                "peak_anon_mib",
                "peak_file_mib",
            )
        }
        figures["reopen"]["kb_process_s"] = [r["process_s"] - r["stand_in_s"] for r in runs]

        log(f"querying ({args.questions} questions after {WARMUP} warm-up)...")
        before = os.getloadavg()[0]
        extra = ["--questions", str(args.questions), *(["--profile"] if args.profile else [])]
        figures["query"] = run_phase(work, "query", *extra)
        figures["load"]["query"] = (before, os.getloadavg()[0])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    print_table(summary_rows(figures))
    if "profile" in figures["query"]:
        print(f"profile of the timed questions: {figures['query']['profile']}")
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
