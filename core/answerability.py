"""Whether the knowledge base can answer a question, decided from several signals and explained in one line.

One cosine cannot decide it: e5 scores unrelated text around 0.79-0.85, higher against Chinese
text than English, so a global threshold either refuses answerable questions or keeps off-topic
ones. The decision here looks at:

- `dense_z`: the best cosine against *this* knowledge base's own baseline. At ingest, a fixed
  list of everyday questions (weather, cooking, sport..., in the question's language) is asked of the
  knowledge base; their best cosines give a mean and spread, stored beside the knowledge base
  (`answerability.json`). A question is scored in standard deviations above that baseline, so
  the language offset (a Chinese question on English text scores lower, and so do the baseline
  questions) and each corpus's own level cancel out. The same is kept for each language of the
  knowledge base's chunks (`written_in`): in a knowledge base holding both languages, a source in
  the other language is measured against the baseline questions' best cosines over that language's
  chunks, so its relevance reads like a same-language source's (`local-dual` scores the two kinds
  of pair on different scales: e5 alone, and the mean of e5's and USE's cosines).
- `coverage`: the share of the question's content words (weighted by their rarity in the
  knowledge base) found in the top sources written in the question's language.
- `translated_coverage`: when none of the top sources is in the question's language (a Chinese
  question shares no word with English text, and that is no reason to refuse it), how well the
  question's topic words are matched by words of the top sources through word vectors that place
  a word near its translation (USE: 天气 / weather 0.95, 蛋白质 / protein 0.91). "今天北京的天气怎么样？"
  finds no weather, Beijing or today in abstracts on immunology; a question about them finds its
  words. Names are its weak side (尼克松 is not matched to Nixon).
- `sentence_match`: the same words must meet in one sentence: the best of the top sources'
  sentences by USE's cosine to the question plus the share of its topic words that sentence alone
  translates. Generic words ("last", "keep") find a near-translation in any text; an off-topic
  question's words rarely all find theirs in one sentence.
- `translated_match`: the weaker of the two, what the cross-language rule adds to dense_z. It never
  exceeds the translated coverage, so at the same threshold it refuses every question the
  translated coverage alone refused, and more (held out, `benchmarks/answerability.py`: "words
  across" and "sentence across" are each part fitted alone). Alone, the sentence match let short
  chunks of a related topic through (a Chinese machine-learning textbook's pages on ensembles
  answered English questions on backpropagation and k-means).

Each signal has one threshold per embedder (its row's `refusal` in `core.embedders.SPECS`, read
through the embedder a knowledge base records: another model's cosines sit elsewhere), fitted on
other knowledge bases than the one it is measured on (`benchmarks/answerability.py`,
leave-one-set-out). The first signal under its threshold is the
reason given (`kb ask --json`: `refusal`). Costs well under a millisecond: everything is read from
the retrieval already done, except the word and sentence vectors of a question asked across
languages (150-300 words and up to 48 sentences of the top sources: 30-130 ms the first time, then
kept by the process; the answer's leading sentences reuse them).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.text import answer_sentences, detect_language, surface_words, tokenize, topic_words

if TYPE_CHECKING:
    from core.cache import EmbeddingCache
    from core.engine import Engine
    from core.retrieve import Retrieval

CALIBRATION_FILE = "answerability.json"
# Below this share of a knowledge base's chunks, the question's language counts as absent from it.
MIN_LANGUAGE_SHARE = 0.1
CALIBRATION_VERSION = 1
# From this many chunks, hybrid search reads each language's lowest cosine from the calibrated
# floor instead of scanning for it. The lowest of every chunk varies little between questions on a
# large knowledge base (SciFact, 9,193 chunks: sd 0.008, a tenth of the cosines' range; the sample
# docs, ~40 chunks: up to 0.07 off), and the scan costs ~0.4 ms per 1,000 chunks (896-d).
FLOOR_FROM_CHUNKS = 2_000
COVERAGE_SOURCES = 3  # the top sources whose words count as covered
SENTENCES_READ = 16  # sentences of each such source read for `sentence_match` (and answer leads)
# A question word's best cosine to a source word, read as covered from 0 (at or below LOW) to whole
# (at or above HIGH): translations score 0.8-0.96, unrelated words ~0.3 (soft credit separated
# better than one cut-off: AUC 0.962 against 0.887 at 0.65, benchmarks/answerability.py's sets).
TRANSLATED_LOW, TRANSLATED_HIGH = 0.4, 0.8

WordVectors = Callable[[Sequence[str]], Any]  # words -> unit vectors, one row each (numpy)

# Everyday questions no knowledge base of documents is about. Asked of each knowledge base at ingest
# to learn what its best cosine looks like for a question it cannot answer. Not the benchmark's
# off-topic questions (those measure the result).
BASELINE: dict[str, tuple[str, ...]] = {
    "en": (
        "What time does the supermarket close on Sundays?",
        "How do I make a cup of green tea?",
        "Is it going to snow in Chicago tomorrow?",
        "Who won the football match last night?",
        "What is a good name for a golden retriever puppy?",
        "How do I fold a fitted sheet?",
        "What should I wear to a summer wedding?",
        "How many calories are in a banana?",
        "Where can I buy cheap concert tickets?",
        "How do I unclog a kitchen sink?",
        "What is the best way to learn to play the guitar?",
        "How long should I let pizza dough rise?",
        "What are some fun things to do in Rome?",
        "How do I change a flat tyre on a bicycle?",
        "Which houseplants are safe for cats?",
        "How do I get rid of hiccups?",
        "What is the plot of the movie Titanic?",
        "How often should I water a cactus?",
        "What is a healthy breakfast for kids?",
        "How much should I tip a taxi driver in New York?",
        "How do I write a thank-you note to my teacher?",
        "What board games are good for a family night?",
        "How do I keep my phone battery from draining fast?",
        "When do the clocks change for daylight saving time?",
        "How do you play chess for beginners?",
        "What are the lyrics of Happy Birthday?",
        "How do I iron a shirt without creases?",
        "Why do cats purr?",
        "What is the best time of year to visit Iceland?",
        "How do I clean white sneakers?",
        "How can I sleep better at night?",
        "What is the recipe for chocolate chip cookies?",
    ),
    "zh": (
        "周末超市几点关门？",
        "绿茶怎么泡才好喝？",
        "快递一般几天能送到？",
        "昨晚的足球比赛谁赢了？",
        "给小狗取什么名字好听？",
        "冰箱里有异味怎么去除？",
        "夏天参加婚礼穿什么合适？",
        "一个苹果有多少卡路里？",
        "演唱会门票在哪里买便宜？",
        "厨房下水道堵了怎么办？",
        "怎样才能快速学会弹吉他？",
        "饺子馅怎么调才好吃？",
        "去成都旅游有哪些好玩的地方？",
        "自行车胎漏气了怎么补？",
        "哪些绿植适合放在卧室？",
        "打嗝停不下来怎么办？",
        "电影《泰坦尼克号》讲的是什么故事？",
        "多肉植物多久浇一次水？",
        "小孩早餐吃什么比较健康？",
        "坐出租车需要给小费吗？",
        "怎么给老师写一封感谢信？",
        "过年家庭聚会玩什么游戏？",
        "手机电池掉电太快怎么办？",
        "春节放假一共几天？",
        "象棋入门应该怎么学？",
        "生日快乐歌的歌词是什么？",
        "衬衫怎么熨才平整？",
        "猫为什么会发出呼噜声？",
        "什么季节去云南旅游最好？",
        "白色运动鞋发黄怎么清洗？",
        "晚上睡不着觉怎么办？",
        "红烧排骨的家常做法是什么？",
    ),
}


# Which baseline a calibration asked: another list calls for a new one (the next `kb ingest`).
BASELINE_ID = hashlib.sha256(json.dumps(BASELINE, ensure_ascii=False).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Thresholds:
    """Where the decision refuses, for one embedder's vectors (its row's `refusal` in
    `core.embedders.SPECS`): fitted by `benchmarks/answerability.py` on other knowledge bases. The
    defaults are those fitted with `local`; `dense` (a raw cosine) is the embedder's own."""

    support: float = 3.25  # dense_z + coverage_weight * coverage, when a source shares the language
    coverage_weight: float = 6.0
    dense_z: float = -1.25  # dense_z alone, when no top source is in the question's language
    # dense_z + cross_weight * cross_signal, when no top source is in the question's language and
    # word vectors are at hand (None: that rule is not fitted for this embedder: dense_z alone)
    cross_support: float | None = None
    cross_weight: float = 6.0
    # the signal it adds: translated_match, or (fitted for comparison) translated_coverage or
    # sentence_match alone
    cross_signal: str = "translated_match"
    # Without a baseline (a knowledge base built before it existed): the raw cosine; 0: never.
    dense: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """The decision and its one-line reason."""

    answerable: bool
    signal: str  # the signal that refused ("" when answered): support, dense_z, dense, no_sources
    value: float | None
    threshold: float | None
    signals: dict[str, float | None]
    weight: float = 0.0  # the weight of the signal added to dense_z, for the reason line
    added: str = ""  # that signal: coverage, or the thresholds' cross_signal

    def reason(self) -> str:
        """One line: which signal refused, its value and threshold."""
        if self.answerable:
            return ""
        if self.signal == "no_sources":
            return "nothing matched"
        line = f"{self.signal} {self.value:.2f} < threshold {self.threshold:.2f}"
        if self.added:
            z, added = self.signals["dense_z"], self.signals[self.added]
            line += f" (dense_z {z:.2f} + {self.weight:g} x {self.added} {added:.2f})"
        return line


# -------------------------------------------------------------------------------- calibration


def calibration_path(kb_dir: Path) -> Path:
    """Where a knowledge base's baseline is kept."""
    return kb_dir / CALIBRATION_FILE


def load_calibration(kb_dir: Path) -> dict[str, Any] | None:
    """The stored baseline, or None (never calibrated, unreadable, or an older format)."""
    try:
        data = json.loads(calibration_path(kb_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
        return None
    return data


def calibrate(engine: Engine, cache: EmbeddingCache | None = None) -> dict[str, Any] | None:
    """Ask the baseline questions of the knowledge base and store their best cosines' mean and
    spread per question language (None when the knowledge base is empty, or its embedder is not a
    bundled model: asking an endpoint 64 questions per ingest is not free)."""
    from core.embedders import SPECS
    from core.retrieve import RetrievalQuery, retrieve

    if engine.shard.count() == 0:
        calibration_path(engine.kb_dir).unlink(missing_ok=True)
        return None
    if not SPECS[engine.settings.embedding.provider].encoder:
        return None  # a remote embedder: 64 more requests per ingest; its cosine threshold stays
    vectors = _baseline_vectors(engine, cache)
    stats: dict[str, dict[str, float]] = {}
    written_in: dict[str, dict[str, dict[str, float]]] = {}  # question -> chunks' language
    floor: dict[str, dict[str, float]] = {}  # question -> chunks' language -> mean lowest cosine
    for lang, questions in BASELINE.items():
        best: list[float] = []
        per_language: dict[str, list[float]] = {}
        lowest: dict[str, list[float]] = {}
        for question in questions:
            query = RetrievalQuery.from_settings(engine.settings, question, mode="dense", top_k=1)
            result = retrieve(query, engine, vector=vectors[question], scan_lowest=True)
            if result.best_dense is not None:
                best.append(result.best_dense)
            for chunks_lang, cosine in result.language_best.items():
                per_language.setdefault(chunks_lang, []).append(cosine)
            for chunks_lang, cosine in result.language_lowest.items():
                lowest.setdefault(chunks_lang, []).append(cosine)
        if len(best) >= 2:
            stats[lang] = _spread(best)
        written_in[lang] = {k: _spread(v) for k, v in sorted(per_language.items()) if len(v) >= 2}
        floor[lang] = {k: round(statistics.fmean(v), 5) for k, v in sorted(lowest.items())}
    if not stats:
        return None
    data = {
        "version": CALIBRATION_VERSION,
        "embedder": str(engine.shard.meta.get("embedder", "")),
        "chunks": engine.shard.count(),
        "questions": BASELINE_ID,
        "baseline": stats,
        "written_in": written_in,
        "floor": floor,
    }
    path = calibration_path(engine.kb_dir)
    if path.parent.is_dir():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    return data


def _spread(cosines: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(cosines), 5),
        "sd": round(max(statistics.stdev(cosines), 0.005), 5),
    }


def calibration_current(calibration: dict[str, Any] | None) -> bool:
    """Whether a stored baseline has every part this version reads and asked today's questions (one
    written before the per-language baselines, the floors or a change of the questions still
    works, and is replaced at the next `kb ingest`)."""
    return (
        calibration is not None
        and "written_in" in calibration
        and "floor" in calibration
        and calibration.get("questions") == BASELINE_ID
    )


def dense_floors(calibration: dict[str, Any] | None, asked: str) -> dict[str, float]:
    """Chunks' language -> the mean lowest cosine of the calibration questions asked in `asked`:
    where hybrid fusion's normalisation starts, without scanning every vector for each question's
    own lowest. Empty when not calibrated, not in that language, or the knowledge base is smaller
    than FLOOR_FROM_CHUNKS (there the scan is cheap, and the lowest of a few chunks varies too much
    from question to question for a mean to stand in for it)."""
    if not calibration or int(calibration.get("chunks", 0)) < FLOOR_FROM_CHUNKS:
        return {}
    by_language = calibration.get("floor", {}).get(asked, {})
    return {str(k): float(v) for k, v in by_language.items() if isinstance(v, int | float)}


def _baseline_vectors(engine: Engine, cache: EmbeddingCache | None) -> dict[str, list[float]]:
    """The baseline questions' query vectors, through the embedding cache (keyed apart from
    passages: the same text embeds differently as a query)."""
    from core.cache import text_hash

    questions = [q for qs in BASELINE.values() for q in qs]
    keys = {q: text_hash("query\x00" + q) for q in questions}
    known = cache.get_many(keys.values()) if cache is not None else {}
    vectors: dict[str, list[float]] = {}
    fresh: list[tuple[str, list[float]]] = []
    for question in questions:
        vector = known.get(keys[question])
        if vector is None:
            vector = engine.query_vector(question)
            fresh.append((keys[question], vector))
        vectors[question] = vector
    if cache is not None and fresh:
        cache.put_many(fresh)
    return vectors


# -------------------------------------------------------------------------------- the decision


def relevance(
    cosine: float | None,
    retrieval_question: str,
    text: str,
    same_language: bool,
    calibration: dict[str, Any] | None,
    thresholds: Thresholds,
    term_chunks: Mapping[str, int] | None = None,
    chunks: int = 0,
    *,
    written_in: str = "",
) -> float | None:
    """One source's relevance from 0 to 1, read the same on every knowledge base and in both
    languages: the refusal's own measure (support, or dense_z for a source in another language)
    for this source alone, through a logistic centred on its threshold, so 0.5 is just enough to
    answer from. Its cosine is held against the baseline over chunks in its own language
    (`written_in`) when there is one. None without a baseline."""
    z = _dense_z(cosine, detect_language(retrieval_question), calibration, written_in)
    if z is None:
        return None
    margin = z - thresholds.dense_z
    if same_language:
        cover = coverage(retrieval_question, [text], term_chunks, chunks)
        if cover is not None:
            margin = z + thresholds.coverage_weight * cover - thresholds.support
    return round(1.0 / (1.0 + math.exp(-margin)), 3)


def _dense_z(
    cosine: float | None, lang: str, calibration: dict[str, Any] | None, written_in: str = ""
) -> float | None:
    """A cosine in standard deviations above the baseline of questions in `lang`: over the
    chunks written in `written_in` when that baseline is known, else over all chunks."""
    if cosine is None or calibration is None:
        return None
    asked = lang if lang in BASELINE else "en"
    base = calibration.get("written_in", {}).get(asked, {}).get(written_in) if written_in else None
    base = base or calibration.get("baseline", {}).get(asked)
    if not base:
        return None
    return (cosine - float(base["mean"])) / float(base["sd"])


def signals(
    retrieval: Retrieval,
    calibration: dict[str, Any] | None,
    words: WordVectors | None = None,
) -> dict[str, float | None]:
    """Every signal of one question (None: not applicable). `words`: word vectors for
    `translated_coverage` (without them, or with a top source in the question's language, None)."""
    question = retrieval.query.question
    lang = detect_language(question)
    best = retrieval.best_dense
    dense_z = _dense_z(best, lang, calibration)
    # Words are compared only with sources in the question's language: a Chinese question shares
    # no word with an English source, and that is no reason to refuse it. Nor with a knowledge base
    # where the question's language is a stray minority (formula-heavy chunks of a Chinese
    # textbook detected as English): the question is then asked across languages.
    counts = retrieval.language_chunks
    minority = bool(counts) and counts.get(lang, 0) < MIN_LANGUAGE_SHARE * sum(counts.values())
    same = [
        s.text
        for s in retrieval.sources[:COVERAGE_SOURCES]
        if not minority and (s.lang == lang or (not s.lang and lang in retrieval.kb_languages))
    ]
    cover = max(
        (
            coverage(question, [text], retrieval.term_chunks, retrieval.chunks) or 0.0
            for text in same
        ),
        default=None,
    )
    translated = sentence = match = None
    if cover is None and words is not None and retrieval.sources:
        top = retrieval.sources[:COVERAGE_SOURCES]
        translated = translated_coverage(question, [s.text for s in top], words)
        if translated is not None:
            read = [t for s in top for t in answer_sentences(s.text, s.headings)[:SENTENCES_READ]]
            sentence = max(sentence_matches(question, read, words), default=0.0)
            # What the cross-language rule reads: the weaker of the two, so the question's words
            # must be found in the top sources and meet in one of their sentences.
            match = min(translated, sentence)
    return {
        "dense": best,
        "dense_z": None if dense_z is None else round(dense_z, 3),
        "coverage": None if cover is None else round(cover, 3),
        "translated_coverage": None if translated is None else round(translated, 3),
        "sentence_match": None if sentence is None else round(sentence, 3),
        "translated_match": None if match is None else round(match, 3),
    }


def decide(
    retrieval: Retrieval,
    calibration: dict[str, Any] | None,
    thresholds: Thresholds,
    *,
    fallback: float | None = None,
    keywords: bool = True,
    words: WordVectors | None = None,
) -> Verdict:
    """Answer or refuse; the first signal under its threshold is the reason. Without a baseline
    the raw cosine is held to `fallback` (default `thresholds.dense`; 0: never refused on it).
    `words`: word vectors, for a question no top source shares the language of."""
    use_words = keywords and thresholds.cross_support is not None
    found = signals(retrieval, calibration, words if use_words else None)
    if not retrieval.sources:
        return Verdict(False, "no_sources", None, None, found)
    return verdict(found, thresholds, fallback=fallback, keywords=keywords)


def verdict(
    found: dict[str, float | None],
    thresholds: Thresholds,
    *,
    fallback: float | None = None,
    keywords: bool = True,
) -> Verdict:
    """The decision over signals already computed (see `decide`): `support` when a top source is
    in the question's language, else `cross_support` (dense_z and the thresholds' `cross_signal`)
    where the embedder has that rule, else `dense_z` alone, else (no baseline) the raw cosine."""
    z, cover = found["dense_z"], found["coverage"] if keywords else None
    if z is not None and cover is not None:
        support = z + thresholds.coverage_weight * cover
        found = {**found, "support": round(support, 3)}
        if support < thresholds.support:
            weight = thresholds.coverage_weight
            return Verdict(False, "support", support, thresholds.support, found, weight, "coverage")
        return Verdict(True, "", None, None, found)
    name = thresholds.cross_signal
    across = found.get(name) if keywords else None
    if z is not None and across is not None and thresholds.cross_support is not None:
        support = z + thresholds.cross_weight * across
        found = {**found, "cross_support": round(support, 3)}
        if support < thresholds.cross_support:
            limit, weight = thresholds.cross_support, thresholds.cross_weight
            return Verdict(False, "cross_support", support, limit, found, weight, name)
        return Verdict(True, "", None, None, found)
    if z is not None:
        if z < thresholds.dense_z:
            return Verdict(False, "dense_z", z, thresholds.dense_z, found)
        return Verdict(True, "", None, None, found)
    limit = thresholds.dense if fallback is None else fallback
    best = found["dense"]
    if best is not None and limit > 0 and best < limit:
        return Verdict(False, "dense", best, limit, found)
    return Verdict(True, "", None, None, found)


def coverage(
    question: str,
    texts: Sequence[str],
    term_chunks: Mapping[str, int] | None = None,
    chunks: int = 0,
) -> float | None:
    """Share of the question's keywords found in `texts`, each weighted by its rarity in the
    knowledge base (inverse document frequency over chunks; without counts, by its length). A word
    no chunk holds weighs most (None: the question has no keyword)."""
    terms = set(tokenize(question))
    if not terms:
        return None
    present: set[str] = set()
    for text in texts:
        present.update(tokenize(text))
    if term_chunks and chunks:
        weight = {t: math.log(1.0 + chunks / (term_chunks.get(t, 0) + 0.5)) for t in terms}
    else:
        weight = {t: math.log(1.0 + len(t)) for t in terms}
    total = sum(weight.values())
    return sum(w for t, w in weight.items() if t in present) / total if total else None


def translated_coverage(question: str, texts: Sequence[str], words: WordVectors) -> float | None:
    """How well the question's topic words are matched by the words of `texts` (in another
    language) through their word vectors: each question word by its nearest word there, credited
    from 0 at a cosine of TRANSLATED_LOW to whole at TRANSLATED_HIGH; the mean over the question's
    words (None: the question has no topic word)."""
    asked = topic_words(question)
    if not asked:
        return None
    return _translated(words(asked), [w for text in texts for w in surface_words(text)], words)


def translated_coverages(
    question: str, texts: Sequence[str], words: WordVectors
) -> list[float] | None:
    """`translated_coverage` of each of `texts` alone, the question's words read once."""
    asked = topic_words(question)
    if not asked:
        return None
    vectors = words(asked)
    return [_translated(vectors, surface_words(text), words) for text in texts]


def sentence_matches(question: str, sentences: Sequence[str], words: WordVectors) -> list[float]:
    """How well each of `sentences` (in another language than the question) answers it: the cosine
    of their vectors (`words` embeds short texts too) plus the share of the question's topic words
    each translates (`translated_coverage`; 0 for a question without one). A question matched
    only across several sources, one generic word here and another there, scores low."""
    if not sentences:
        return []
    meaning = words(sentences) @ words([question])[0]
    shares = translated_coverages(question, sentences, words) or [0.0] * len(sentences)
    return [float(near) + share for near, share in zip(meaning, shares, strict=True)]


def _translated(asked: Any, found: list[str], words: WordVectors) -> float:
    """The credited share of the question's words (their vectors: `asked`) matched in `found`."""
    import numpy as np

    found = list(dict.fromkeys(found))
    if not found:
        return 0.0
    best = (asked @ words(found).T).max(axis=1)
    credit = np.clip((best - TRANSLATED_LOW) / (TRANSLATED_HIGH - TRANSLATED_LOW), 0.0, 1.0)
    return float(credit.mean())
